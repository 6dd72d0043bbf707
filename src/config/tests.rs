use super::*;

const VERIFIER: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$2V1w1FnHhbJGLi9kRj2T7b6vkmrQHbZAv0yGZLYy7Xc=:0+qa3oGmlshK1u6k5Ts+bCaQmR7QyENc5jv9OUIdQKU=";

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/nonexistent/airlock.toml"))
}

fn base() -> String {
    format!(
        r#"
[listen]
postgres = "127.0.0.1:6432"

[targets.app]
host = "127.0.0.1"
database = "app"
user = "svc"
password_env = "AIRLOCK_TEST_CONFIG_PW"

[identities.bot]
secret = "{VERIFIER}"
model = "gpt-5"
targets = ["app"]
"#
    )
}

#[test]
fn loads_a_valid_file() {
    std::env::set_var("AIRLOCK_TEST_CONFIG_PW", "pw");
    let c = load(&base()).unwrap();
    assert_eq!(c.targets["app"].port, 5432);
    assert_eq!(c.targets["app"].password.as_ref().unwrap().expose(), "pw");
    assert!(c.identities["bot"].may_use("app"));
    assert!(!c.identities["bot"].may_use("other"));
    assert_eq!(c.limits.max_client_connections, 1000);
}

#[test]
fn unknown_key_names_line_and_key() {
    let text = base().replace("database = \"app\"", "database = \"app\"\ndatabse = 1");
    let e = load(&text).unwrap_err().to_string();
    assert!(
        e.starts_with("/nonexistent/airlock.toml:8: targets.app.databse"),
        "{e}"
    );
}

#[test]
fn bad_secret_names_line_and_key() {
    std::env::set_var("AIRLOCK_TEST_CONFIG_PW", "pw");
    let text = base().replace(VERIFIER, "hunter2");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains(":12: identities.bot.secret"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn missing_env_and_bad_units() {
    let text = base().replace("AIRLOCK_TEST_CONFIG_PW", "AIRLOCK_TEST_CONFIG_UNSET");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("targets.app.password_env"), "{e}");
    let text = format!("{}\n[limits]\nconnect_timeout = \"soon\"\n", base());
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("limits.connect_timeout"), "{e}");
}

#[test]
fn unknown_target_in_identity() {
    std::env::set_var("AIRLOCK_TEST_CONFIG_PW", "pw");
    let text = base().replace("targets = [\"app\"]", "targets = [\"nope\"]");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("identities.bot.targets"), "{e}");
}

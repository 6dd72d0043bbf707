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

/// A table's missing field is reported at its own header, naming it (it
/// once named the table above: "audit: missing field `user`" for a target).
#[test]
fn missing_field_names_its_table() {
    let text = format!(
        "{}\n[targets.legacy]\nhost = \"h\"\ndatabase = \"l\"\n",
        base()
    );
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("targets.legacy: missing field `user`"), "{e}");
}

#[test]
fn bad_secret_names_line_and_key() {
    std::env::set_var("AIRLOCK_TEST_CONFIG_PW", "pw");
    let text = base().replace(VERIFIER, "hunter2");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains(":12: identities.bot.secret"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

/// An identity for MySQL targets only needs no SCRAM verifier (it once
/// failed with "missing field `secret`"); one with neither secret is
/// refused, naming both keys.
#[test]
fn an_identity_needs_one_secret_or_the_other() {
    std::env::set_var("AIRLOCK_TEST_CONFIG_PW", "pw");
    let mysql_only = base().replace(
        &format!("secret = \"{VERIFIER}\""),
        "mysql_secret = \"*A65C0DDCC3053B7FB102622F05126B793E30F179\"",
    );
    let c = load(&mysql_only).unwrap();
    assert!(c.identities["bot"].secret.is_none());
    let neither = base().replace(&format!("secret = \"{VERIFIER}\"\n"), "");
    let e = load(&neither).unwrap_err().to_string();
    assert!(
        e.contains("identities.bot: no secret") && e.contains("mysql_secret"),
        "{e}"
    );
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

#[test]
fn jwt_section_is_validated() {
    std::env::set_var("AIRLOCK_TEST_CONFIG_PW", "pw");
    std::env::set_var(
        "AIRLOCK_TEST_JWT_SECRET",
        "s3cret-s3cret-s3cret-s3cret-0123",
    );
    let with = |jwt: &str| format!("{}\n[jwt]\n{jwt}", base());

    let c = load(&with(
        "hs256_secret_env = \"AIRLOCK_TEST_JWT_SECRET\"\ntargets = [\"app\"]\n",
    ))
    .unwrap();
    let jwt = c.jwt.unwrap();
    assert_eq!(jwt.user_claim, "sub");
    assert_eq!(jwt.model_claim, "model");
    assert_eq!(jwt.groups_claim, "groups");
    assert_eq!(jwt.leeway, Duration::from_secs(30));
    assert_eq!(
        jwt.hs256_secret.unwrap().expose(),
        "s3cret-s3cret-s3cret-s3cret-0123"
    );

    // A short HMAC secret would let anyone sign tokens: refused.
    std::env::set_var("AIRLOCK_TEST_JWT_SHORT", "");
    let e = load(&with(
        "hs256_secret_env = \"AIRLOCK_TEST_JWT_SHORT\"\ntargets = [\"app\"]\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("at least 32 bytes"), "{e}");

    // Line 17 is the first key of [jwt].
    let e = load(&with("jwks = \"missing.json\"\ntargets = [\"app\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(":17: jwt.jwks"), "{e}");
    assert!(e.contains("/nonexistent/missing.json"), "{e}");

    let e = load(&with(
        "hs256_secret_env = \"AIRLOCK_TEST_JWT_UNSET\"\ntargets = [\"app\"]\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains(":17: jwt.hs256_secret_env"), "{e}");

    let e = load(&with("targets = [\"app\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("jwt.jwks (or jwt.hs256_secret_env)"), "{e}");

    let e = load(&with(
        "hs256_secret_env = \"AIRLOCK_TEST_JWT_SECRET\"\ntargets = [\"nope\"]\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains(":18: jwt.targets"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), "not json").unwrap();
    let text = with("jwks = \"jwks.json\"\ntargets = [\"app\"]\n");
    let e = Config::from_toml(&text, &dir.path().join("airlock.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("jwt.jwks") && e.contains("is not a JWKS"), "{e}");
}

#[test]
fn a_rule_file_given_as_the_config_says_so() {
    let text = "[[policy]]\nid = \"p\"\nallow_statements = [\"read\"]\n";
    let e = load(text).unwrap_err().to_string();
    assert!(e.contains("this looks like a rule file"), "{e}");
    assert!(!e.contains(": :"), "no empty key: {e}");
    let e = load("[[mask]]\nid = \"m\"\n").unwrap_err().to_string();
    assert!(e.contains("airlock check /nonexistent/airlock.toml"), "{e}");
}

#[test]
fn ephemeral_users_must_expire() {
    let eph = |ttl: &str| {
        base().replace(
            "password_env = \"AIRLOCK_TEST_CONFIG_PW\"\n",
            &format!(
                "password_env = \"AIRLOCK_TEST_CONFIG_PW\"\ncredentials = \"ephemeral\"\nephemeral = {{ ttl = \"{ttl}\", template_role = \"agents\" }}\n"
            ),
        )
    };
    std::env::set_var("AIRLOCK_TEST_CONFIG_PW", "pw");
    let e = load(&eph("0s")).unwrap_err().to_string();
    assert!(e.contains("targets.app.ephemeral.ttl"), "{e}");
    assert!(e.contains("longer than 0s"), "{e}");
    assert!(load(&eph("5m")).is_ok());
}

/// `[audit] retention`: read as a duration, and under an hour refused
/// (records would go before anyone read them).
#[test]
fn audit_retention_is_at_least_an_hour() {
    std::env::set_var("AIRLOCK_TEST_CONFIG_PW", "pw");
    let with = |r: &str| {
        format!(
            "{}\n[audit]\npath = \"a.db\"\nretention = \"{r}\"\n",
            base()
        )
    };
    let c = load(&with("90d")).unwrap();
    let retention = c.audit.as_ref().and_then(|a| a.retention);
    assert_eq!(retention, Some(Duration::from_secs(90 * 86_400)));
    let e = load(&with("10m")).unwrap_err().to_string();
    assert!(e.contains("audit.retention: must be at least 1h"), "{e}");
    let e = load(&with("forever")).unwrap_err().to_string();
    assert!(e.contains("invalid duration"), "{e}");
    let c = load(&format!("{}\n[audit]\npath = \"a.db\"\n", base())).unwrap();
    assert_eq!(c.audit.and_then(|a| a.retention), None);
}

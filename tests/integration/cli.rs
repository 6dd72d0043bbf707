//! The airlock binary as a user runs it: `passwd`, `serve` with a bad
//! config, `explain` without a target, and `demo --check`.

use std::io::Write;
use std::process::{Command, Stdio};

fn airlock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
}

#[test]
fn passwd_prints_a_verifier_that_authenticates() {
    let text = verifier("s3cret\n");
    let v = airlock_protocol::pg::scram::ScramVerifier::parse(&text).unwrap();
    let again = airlock_protocol::pg::scram::ScramVerifier::derive("s3cret", &v.salt, v.iterations);
    assert_eq!(v, again);
}

#[test]
fn serve_reports_config_errors_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[listen]\npostgres = \"127.0.0.1:0\"\n[limits]\nmax_client_connection = 5\n",
    )
    .unwrap();
    let out = airlock()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:4: limits.max_client_connection"),
        "{err}"
    );
}

#[test]
fn demo_check_runs_on_a_single_cpu() {
    // One CPU gives airlock a current-thread runtime: the demo's checks
    // must not block the thread that serves their connections.
    if Command::new("taskset").arg("-V").output().is_err() {
        panic!("taskset (util-linux) is needed for this test");
    }
    let out = Command::new("taskset")
        .args([
            "-c",
            "0",
            env!("CARGO_BIN_EXE_airlock"),
            "demo",
            "--port",
            "0",
            "--check",
        ])
        .output()
        .unwrap();
    demo_checked(&out);
}

#[test]
fn demo_check_runs_end_to_end() {
    let out = airlock()
        .args(["demo", "--port", "0", "--check"])
        .output()
        .unwrap();
    let stdout = demo_checked(&out);
    assert!(stdout.contains("psql \"postgresql://agent:"), "{stdout}");
    // The demo runs the audit log and the admin listener, and says how to
    // use them.
    assert!(
        stdout.contains("airlock approvals --admin http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("airlock log -c "), "{stdout}");
    // The printed commands run as printed: they name this binary by a
    // path, not `airlock`, which is seldom on PATH (operator finding).
    let line = stdout
        .lines()
        .find(|l| l.contains("approvals --admin"))
        .unwrap_or_default();
    let program = line.split_whitespace().next().unwrap_or_default();
    assert!(
        std::path::Path::new(program).is_file(),
        "{program:?} in {line:?}"
    );
    assert!(stdout.contains("deny ID --reason"), "{stdout}");
}

/// `airlock passwd` without a terminal to prompt on (a pipe, a script)
/// says to pass the secret with --stdin (new-user walkthrough: it said
/// "No such device or address").
#[test]
fn passwd_without_a_terminal_says_to_use_stdin() {
    use std::os::unix::process::CommandExt;
    let mut cmd = airlock();
    cmd.arg("passwd").stdin(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe; it only detaches the child
    // from the controlling terminal, so /dev/tty cannot be opened.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipe it in with --stdin"), "{stderr}");
}

/// `demo --check` succeeded and its first check saw the demo's rows; its
/// standard output.
fn demo_checked(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("check: 4 customers visible through airlock"),
        "{stdout}"
    );
    stdout
}

/// `airlock demo` stopped with SIGTERM (not Ctrl-C) still stops its
/// throwaway Postgres and removes its files.
#[test]
fn demo_cleans_up_on_sigterm() {
    use std::io::BufRead;
    let mut child = airlock()
        .args(["demo", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start airlock demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut pg_port = None;
    let mut rules_copy = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("read demo output");
        if let Some(rest) = line.split("(throwaway) on 127.0.0.1:").nth(1) {
            pg_port = rest.trim().parse::<u16>().ok();
        }
        if let Some(rest) = line.strip_prefix("Rules: ") {
            let path = rest.split(" (a copy of").next().unwrap_or(rest);
            rules_copy = Some(std::path::PathBuf::from(path));
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let pg_port = pg_port.expect("the demo printed its PostgreSQL port");
    let rules_copy = rules_copy.expect("the demo printed where its rules are");
    assert!(std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_ok());
    assert!(rules_copy.exists());
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the demo") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(),
        "the demo's PostgreSQL outlived it"
    );
    assert!(
        !rules_copy.exists(),
        "{} was left behind",
        rules_copy.display()
    );
}

/// What `airlock passwd --stdin` prints for `input` (a SCRAM verifier),
/// trimmed.
fn verifier(password: &str) -> String {
    let mut child = airlock()
        .args(["passwd", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `airlock explain` without `--target` judges for the identity's only
/// target, in that target's dialect; with several to choose from it asks
/// for `--target` rather than guess (a guess would show a decision the
/// agent would never get).
#[test]
fn explain_defaults_to_the_identitys_only_target() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        r#"
[[policy]]
id = "shop-ro"
applies_to = { targets = ["shop"] }
read_only = true
deny_columns = ["shop.customers.ssn"]

[[policy]]
id = "app-rw"
applies_to = { targets = ["app"] }
"#,
    )
    .unwrap();
    let config = dir.path().join("airlock.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[listen]
postgres = "127.0.0.1:0"
mysql = "127.0.0.1:0"
[policy]
rules = "rules.toml"
[targets.shop]
protocol = "mysql"
host = "127.0.0.1"
port = 3306
database = "shop"
user = "shop"
password_env = "AIRLOCK_TEST_UNUSED_PW"
[targets.app]
host = "127.0.0.1"
database = "app"
user = "app"
password_env = "AIRLOCK_TEST_UNUSED_PW"
[identities.one]
secret = "{v}"
targets = ["shop"]
[identities.two]
secret = "{v}"
targets = ["shop", "app"]
"#,
            v = verifier("pw")
        ),
    )
    .unwrap();
    let explain = |args: &[&str]| {
        airlock()
            .args(["explain", "--config"])
            .arg(&config)
            .args(args)
            .env("AIRLOCK_TEST_UNUSED_PW", "unused")
            .output()
            .unwrap()
    };
    // The only target, and its dialect: backquotes are MySQL's.
    let out = explain(&["--identity", "one", "SELECT `id` FROM t"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("target: shop"), "{text}");
    assert!(text.contains("decision: allow"), "{text}");
    let out = explain(&["--identity", "one", "DELETE FROM t WHERE id = 1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shop-ro.read-only"), "{text}");
    // Unqualified names resolve in the target's database, as in a session.
    let out = explain(&["--identity", "one", "SELECT ssn FROM customers"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shop-ro.deny-columns"), "{text}");
    assert!(
        out.status.success(),
        "without --exit-code, a decision is no error"
    );
    // For scripts and CI: 2 when the statement would not run, 0 when it
    // would (operator finding: explain always exited 0).
    let code = |sql: &str| {
        explain(&["--identity", "one", "--exit-code", sql])
            .status
            .code()
    };
    assert_eq!(code("SELECT ssn FROM customers"), Some(2));
    assert_eq!(code("SELECT `id` FROM t"), Some(0));
    // Text the server reads otherwise than sqlparser is refused here as in
    // a session: a line comment inside an executable comment runs past its
    // `*/` on the server, which then reads the next line as code (explain
    // once allowed this; sessions expand such text first and refused it).
    let out = explain(&[
        "--identity",
        "one",
        "SELECT 1 /*!40000 -- */ /* \n , ssn FROM customers \n */",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("builtin.unparseable"), "{text}");
    // Two targets: no guess.
    let out = explain(&["--identity", "two", "SELECT 1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("may use targets shop, app: pass --target"),
        "{err}"
    );
    // Named, it judges for that target, in its dialect.
    let out = explain(&[
        "--identity",
        "two",
        "--target",
        "app",
        "DELETE FROM t WHERE id = 1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("target: app"), "{text}");
    assert!(text.contains("decision: allow"), "{text}");
    // A name the config does not list is said to be one (operator
    // finding: a typo was judged silently), and no secret is needed.
    let out = airlock()
        .args(["explain", "--config"])
        .arg(&config)
        .args(["--identity", "tow", "--target", "app", "SELECT 1"])
        .env_remove("AIRLOCK_TEST_UNUSED_PW")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("note: tow is not an identity of the config (a typo?)"),
        "{text}"
    );
}

/// `airlock check` loads rule files as `serve` does, masking rules too
/// (operator finding: a misspelt strategy passed `check` and then stopped
/// `serve`).
#[test]
fn check_validates_masking_rules_too() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[policy]]\nid = \"p\"\nallow_statements = [\"read\"]\n\n[[mask]]\nid = \"m\"\ncolumns = [\"public.t.c\"]\nstrategy = \"redact\"\n",
    )
    .unwrap();
    let out = airlock().arg("check").arg(&good).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ok (1 policy, 1 mask)"), "{stdout}");
    // A policy that writes nothing but is not read_only: a warning.
    assert!(
        stdout.contains("warning: policy p allows no statement that writes, but is not read_only"),
        "{stdout}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[mask]]\nid = \"m\"\ncolumns = [\"public.t.c\"]\nstrategy = \"redacted\"\n",
    )
    .unwrap();
    let out = airlock().arg("check").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.toml:4") && stderr.contains("redacted"),
        "{stderr}"
    );
}

/// `airlock check` with a config warns about rules that load but cannot
/// work as written there (operator finding): approval rules without the
/// `[admin]` listener approvals need, and names the config does not define.
#[test]
fn check_warns_about_rules_the_config_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        r#"
[[policy]]
id = "agents"
applies_to = { identities = ["agnet"], groups = ["ops"] }
allow_statements = ["read", "write"]
require_approval = [{ id = "writes", statements = ["write"], message = "a human checks writes" }]

[[policy]]
id = "reports"
applies_to = { groups = ["reporting"] }
allow_statements = ["read"]
read_only = true

[[mask]]
id = "email"
columns = ["*.email"]
strategy = "redact"
unmasked = { identities = ["auditor"] }
"#,
    )
    .unwrap();
    let config = dir.path().join("airlock.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[listen]
postgres = "127.0.0.1:0"
[policy]
rules = "rules.toml"
[targets.app]
host = "127.0.0.1"
database = "app"
user = "app"
password_env = "AIRLOCK_TEST_UNUSED_PW"
[identities.agent]
secret = "{v}"
groups = ["ops"]
targets = ["app"]
[targets.legacy]
host = "127.0.0.1"
database = "legacy"
user = "catalog"
credentials = "passthrough"
[targets.legacy.passthrough.users.report_app]
groups = ["reporting"]
"#,
            v = verifier("pw")
        ),
    )
    .unwrap();
    // No secret is set: checking rules needs none (operator finding: a CI
    // job had to be given the admin token and every database password).
    let out = airlock()
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("AIRLOCK_TEST_UNUSED_PW")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "warnings do not fail the check: {stdout}"
    );
    assert!(stdout.contains("ok (2 policies, 1 mask)"), "{stdout}");
    assert!(
        stdout.contains(
            "warning: policy agents has require_approval rules, but there is no [admin] listener"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "warning: policy agents names identity agnet that the config does not define (a typo? or a database user of a passthrough target"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: mask email (unmasked) names identity auditor"),
        "{stdout}"
    );
    assert!(!stdout.contains("group ops"), "ops is defined: {stdout}");
    assert!(
        stdout.contains(
            "note: targets.app.password_env: environment variable AIRLOCK_TEST_UNUSED_PW is not set"
        ),
        "{stdout}"
    );
    // Nor the admin token.
    let with_admin = dir.path().join("with-admin.toml");
    let text = std::fs::read_to_string(&config).unwrap()
        + "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"AIRLOCK_TEST_UNSET_TOKEN\"\n";
    std::fs::write(&with_admin, text).unwrap();
    let out = airlock()
        .args(["check", "--config"])
        .arg(&with_admin)
        .env_remove("AIRLOCK_TEST_UNUSED_PW")
        .env_remove("AIRLOCK_TEST_UNSET_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "note: admin.token_env: environment variable AIRLOCK_TEST_UNSET_TOKEN is not set"
        ),
        "{stdout}"
    );
    // A passthrough user's group is defined too (operator finding: it was
    // called a typo at every start and reload).
    assert!(!stdout.contains("reporting"), "{stdout}");
}

/// Rule-file mistakes as a newcomer makes them (new-user walkthrough):
/// each error names the file, the line and the key, a misspelt key gets
/// the name it was probably meant to be, and `check` with a config does
/// not say "ok" before the rules it names fail.
#[test]
fn rule_file_errors_name_the_key_and_suggest_the_intended_one() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[policy]]\nid = \"a\"\nallow_statements = [\"read\"]\n\n[[policy]]\nid = \"b\"\ndeny_colums = [\"public.t.c\"]\n",
            "rules.toml:7: policy[1].deny_colums: unknown field `deny_colums`",
            Some("did you mean `deny_columns`?"),
        ),
        (
            "[settings]\nmax_tokens = \"lots\"\n",
            "rules.toml:2: settings.max_tokens: invalid type: string \"lots\"",
            None,
        ),
        (
            "[[policy]]\nid = \"a\"\ndescription = \"never closed\nallow_statements = [\"read\"]\n",
            "rules.toml:3: policy[0].description: ",
            None,
        ),
    ];
    for (text, expected, hint) in cases {
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, text).unwrap();
        let out = airlock().arg("check").arg(&rules).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(stderr.contains(expected), "{text}\n{stderr}");
        assert!(!stderr.contains("(toml)"), "{stderr}");
        if let Some(hint) = hint {
            assert!(stderr.contains(hint), "{stderr}");
        }
    }
    // With a config: no "ok" for it when its rules fail to load.
    let config = dir.path().join("airlock.toml");
    std::fs::write(
        &config,
        "[listen]\npostgres = \"127.0.0.1:0\"\n[policy]\nrules = \"rules.toml\"\n",
    )
    .unwrap();
    let out = airlock()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(": ok"), "{stdout}");
}

/// Reading the audit log takes only the store's path from the config: an
/// auditor needs neither the admin token nor the upstream password it
/// names (new-user walkthrough: `airlock log` failed on an unset
/// AIRLOCK_ADMIN_TOKEN).
#[test]
fn log_reads_the_store_without_the_configs_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let config = dir.path().join("airlock.toml");
    std::fs::write(
        &config,
        r#"
[listen]
postgres = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:9187"
token_env = "AIRLOCK_TEST_TOKEN_NOBODY_SET"
[targets.app]
host = "127.0.0.1"
database = "app"
user = "app"
password_env = "AIRLOCK_TEST_PASSWORD_NOBODY_SET"
[audit]
path = "audit.db"
"#,
    )
    .unwrap();
    // An empty store, as airlock creates it.
    drop(airlock::audit::writer::AuditLog::open(&db, 16).unwrap());
    for args in [
        vec!["log", "-c"],
        vec!["audit", "verify", "-c"],
        vec!["audit", "prune", "--older-than", "90d", "-c"],
    ] {
        let out = airlock()
            .args(&args)
            .arg(&config)
            .env_remove("AIRLOCK_TEST_TOKEN_NOBODY_SET")
            .env_remove("AIRLOCK_TEST_PASSWORD_NOBODY_SET")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Without [audit] the message names the config it read.
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "[listen]\npostgres = \"127.0.0.1:0\"\n").unwrap();
    let out = airlock().args(["log", "-c"]).arg(&bare).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bare.toml: no audit store"), "{stderr}");
}

/// `airlock approvals -c` against a config whose admin port is chosen at
/// start (the demo's) says to pass the printed URL, instead of dialling
/// port 0 (operator finding: "cannot reach 127.0.0.1:0").
#[test]
fn approvals_against_a_port_chosen_at_start_asks_for_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("airlock.toml");
    std::fs::write(
        &config,
        "[listen]\npostgres = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = airlock()
        .args(["approvals", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pass --admin with the URL airlock printed"),
        "{err}"
    );
}

//! Runs the driver check scripts of `testdata/clients/` (see the README
//! there) against airlock: one script per real driver, each taking
//! `host port user password database`, ending with `ok` when every check
//! passed, and exiting 3 after `skip: ...` when its driver is missing.

use std::path::PathBuf;
use std::process::Command;

/// How a script runs.
pub enum Runner {
    /// `python3 script`.
    Python,
    /// `node script`, with `NODE_PATH` at the modules `scripts/setup
    /// --tests` installs into `target/node-clients`.
    Node,
    /// `java -cp jar Script.java` (a single-file program).
    Java { jar: &'static str },
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/clients")
        .join(name)
}

/// Runs `name` through airlock on `port` as `user`; passes when it printed
/// `ok`, prints the reason and passes when its driver is missing, panics
/// with its output otherwise.
pub async fn run(runner: Runner, name: &str, port: u16, user: &str, password: &str, db: &str) {
    let args: Vec<String> = vec![
        "127.0.0.1".into(),
        port.to_string(),
        user.into(),
        password.into(),
        db.into(),
    ];
    let mut cmd = match runner {
        Runner::Python => {
            let mut c = Command::new("python3");
            c.arg(script(name));
            c
        }
        Runner::Node => {
            let mut c = Command::new("node");
            c.arg(script(name)).env(
                "NODE_PATH",
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/node-clients/node_modules"),
            );
            c
        }
        Runner::Java { jar } => {
            if !std::path::Path::new(jar).exists() {
                println!("skipped: {jar} is not installed (scripts/setup --tests installs it)");
                return;
            }
            let mut c = Command::new("java");
            c.args(["-cp", jar]).arg(script(name));
            c
        }
    };
    cmd.args(&args);
    let out = match tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
    {
        Ok(out) => out,
        Err(e) => {
            println!("skipped: {name}: its runtime could not be started: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && stdout.starts_with("skip:") {
        println!("skipped: {name}: {}", stdout.trim());
        return;
    }
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

//! `airlock demo`: a throwaway Postgres with a small schema holding PII,
//! and airlock in front of it, ready for psql, with its audit log and its
//! admin listener (approvals, web console) on, so that every part the
//! README describes can be tried.
//!
//! Everything lives in a temp dir and disappears on Ctrl-C. The demo uses the
//! same test kit as the integration tests.

use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::testkit::postgres::PgServer;

/// The agent identity the demo creates, and its secret.
pub const DEMO_IDENTITY: &str = "agent";
pub const DEMO_SECRET: &str = "agent-secret";
/// The upstream user airlock logs in as.
const UPSTREAM_USER: &str = "airlock_svc";

/// The demo schema: customers with PII columns, and orders.
pub const DEMO_SQL: &str = include_str!("../testdata/demo_schema.sql");
/// The demo's rules (`rules/demo.toml`), built in so the demo runs from any
/// directory.
pub const DEMO_RULES: &str = include_str!("../rules/demo.toml");

/// Starts the demo. With `check`, stops right after printing.
pub async fn run(port: u16, check: bool) -> anyhow::Result<()> {
    eprintln!("airlock demo: starting a throwaway PostgreSQL ...");
    let pg = tokio::task::spawn_blocking(PgServer::start)
        .await?
        .context("starting PostgreSQL for the demo")?;
    let upstream_password = random_token();
    pg.create_user(UPSTREAM_USER, &upstream_password)?;
    pg.create_database("demo", UPSTREAM_USER)?;
    pg.psql_db("demo", &format!("SET ROLE {UPSTREAM_USER};\n{DEMO_SQL}"))
        .context("loading the demo schema")?;

    let dir = tempfile::tempdir()?;
    let pw_file = dir.path().join("upstream.pw");
    std::fs::write(&pw_file, &upstream_password)?;
    let verifier = airlock_protocol::pg::scram::make_verifier(DEMO_SECRET);
    let rules_path = dir.path().join("demo-rules.toml");
    std::fs::write(&rules_path, DEMO_RULES)?;
    let config_text = format!(
        r#"
[listen]
postgres = "127.0.0.1:{port}"

[targets.demo]
host = "127.0.0.1"
port = {pg_port}
database = "demo"
user = "{UPSTREAM_USER}"
password_file = "{pw}"

[policy]
rules = "{rules}"

[audit]
path = "{audit}"

# Loopback, no token: anyone on this machine may approve. Set token_env
# or token_file anywhere else (see the README).
[admin]
listen = "127.0.0.1:0"

[identities.{DEMO_IDENTITY}]
secret = "{verifier}"
user = "demo-user"
model = "demo-model"
targets = ["demo"]
"#,
        pg_port = pg.port(),
        pw = pw_file.display(),
        rules = rules_path.display(),
        audit = dir.path().join("audit.db").display(),
    );
    let config_path = dir.path().join("airlock.toml");
    std::fs::write(&config_path, &config_text)?;
    let config = Config::load(&config_path)?;
    let running = crate::server::start(config).await?;
    let addr = running.postgres_addr;

    println!();
    println!("airlock demo is running.");
    println!(
        "  PostgreSQL {} (throwaway) on 127.0.0.1:{}",
        pg.version(),
        pg.port()
    );
    println!(
        "  airlock listening on {addr}, config {}",
        config_path.display()
    );
    println!();
    println!("Connect as the agent through airlock:");
    println!(
        "  psql \"postgresql://{DEMO_IDENTITY}:{DEMO_SECRET}@{}:{}/demo\"",
        addr.ip(),
        addr.port()
    );
    println!();
    println!("Try:  SELECT name, email, card_number FROM customers;   -- masked");
    println!(
        "      SELECT ssn FROM customers;                         -- blocked by rule demo-agent.deny-columns"
    );
    println!("      DELETE FROM orders;                                -- blocked: no WHERE");
    println!("      UPDATE orders SET status = 'refunded' WHERE id = 3; -- held for a human");
    println!();
    let config = config_path.display();
    let me = this_binary();
    if let Some(admin) = running.admin_addr {
        println!("Approve or deny held statements (in another terminal):");
        println!("  {me} approvals --admin http://{admin}");
        println!(
            "  {me} approve ID --admin http://{admin}     (or the web console: http://{admin}/)"
        );
        println!("  {me} deny ID --reason \"...\" --admin http://{admin}");
    }
    println!("See what ran and what was refused, and why:");
    println!("  {me} log -c {config}");
    println!();
    println!(
        "Rules: {} (a copy of rules/demo.toml; edits apply within about two seconds, and it is removed on exit)",
        rules_path.display()
    );
    println!("The agent never sees the upstream credential ({UPSTREAM_USER}'s password).");
    if check {
        // psql runs as a blocking child process: off the runtime, which on
        // a one-CPU machine has a single thread and must keep serving
        // airlock's side of psql's connection meanwhile.
        let url = format!(
            "postgresql://{DEMO_IDENTITY}:{DEMO_SECRET}@{}:{}/demo",
            addr.ip(),
            addr.port()
        );
        let checked = tokio::task::spawn_blocking(move || check_through(&pg, &url)).await;
        running.shutdown().await;
        return checked?;
    }
    // SIGTERM (kill) and SIGHUP (the terminal closed) stop it as Ctrl-C
    // does, so the throwaway server and its files never outlive it. They
    // are caught from before the prompt, which is what tells a script
    // (or a test) that the demo is up.
    let mut signals = crate::server::StopSignals::register(true)?;
    println!("Press Ctrl-C to stop; everything is removed on exit.");
    signals.wait().await;
    eprintln!("airlock demo: stopping ...");
    crate::timer_thread::timeout(Duration::from_secs(5), running.shutdown())
        .await
        .ok();
    drop(pg);
    Ok(())
}

/// How to run this binary again from the current directory: `./target/release/airlock`
/// when it is below it (the demo's printed commands must run as printed,
/// and `airlock` is seldom on PATH), else its full path.
fn this_binary() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "airlock".into();
    };
    let here = std::env::current_dir().ok();
    match here.as_deref().and_then(|d| exe.strip_prefix(d).ok()) {
        Some(rel) => format!("./{}", rel.display()),
        None => exe.display().to_string(),
    }
}

/// `demo --check`: the demo's three promises, through airlock at `url`:
/// rows arrive, an email arrives masked, `SELECT ssn` is refused.
fn check_through(pg: &PgServer, url: &str) -> anyhow::Result<()> {
    let psql = |sql: &str| crate::testkit::postgres::psql_via(pg, url, sql);
    let probe = psql("SELECT count(*) FROM customers").context("querying through airlock")?;
    println!("check: {} customers visible through airlock", probe.trim());
    let masked =
        psql("SELECT email FROM customers WHERE id = 1").context("querying through airlock")?;
    anyhow::ensure!(
        !masked.contains("alice@"),
        "the demo rules let an email through unmasked: {masked}"
    );
    println!("check: alice's email arrives masked as {}", masked.trim());
    match psql("SELECT ssn FROM customers") {
        Ok(out) => anyhow::bail!("the demo rules let `SELECT ssn` through: {out}"),
        Err(e) => println!(
            "check: SELECT ssn FROM customers was refused: {}",
            e.to_string()
                .lines()
                .find(|l| l.contains("airlock:"))
                .unwrap_or("blocked")
                .trim()
        ),
    }
    Ok(())
}

fn random_token() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

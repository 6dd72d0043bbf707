//! The MySQL part: sysbench `oltp_point_select` and `oltp_read_only`, with
//! `--db-ps-mode=auto` (server-side prepared statements) and `disable`
//! (text protocol), at 1 and 8 threads, directly to a throwaway MariaDB vs
//! through airlock vs through a null proxy ([`super::forwarder`]: what the
//! extra hop alone costs). The target is airlock ≥ 0.75× direct.
//!
//! MariaDB comes from the test kit (real `mysql_native_password` logins).
//! airlock runs as its own process with a MySQL listener, static upstream
//! credentials, an identity with a `mysql_secret`, and a policy like the
//! PostgreSQL part's: guardrails judged on every statement and three
//! `[[mask]]` columns that sysbench's tables do not have. The sysbench
//! tables are prepared through a direct connection. Skipped, with the
//! reason printed, when sysbench or MariaDB is not installed.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use airlock::testkit::{MariaDbServer, TestkitError};

use super::report::{record, Cells};
use super::{check, pinned, spawn_airlock, which, Opts, Proc};

/// The upstream database (and airlock target) name.
const DB: &str = "bench";
/// The upstream user: sysbench's direct runs and airlock both log in as it.
const USER: &str = "bench";
const PASSWORD: &str = "bench-pw-0123456789";
/// The agent identity sysbench logs in as through airlock.
const AGENT: &str = "agent";
const AGENT_PW: &str = "agent-pw";
/// sysbench's data set: `sbtest1` .. `sbtest<TABLES>`.
const TABLES: u32 = 4;
const TABLE_SIZE: u32 = 10_000;
/// The sysbench tests run, and the prepared-statement modes.
const TESTS: [&str; 2] = ["oltp_point_select", "oltp_read_only"];
const PS_MODES: [&str; 2] = ["auto", "disable"];

/// What the MySQL part measured: tps and qps per cell and target.
pub struct SysbenchResults {
    pub tps: Cells,
    pub qps: Cells,
}

/// The MySQL part ran, or was skipped for the given reason.
pub enum Outcome {
    Ran(SysbenchResults),
    Skipped(String),
}

/// A server sysbench connects to.
struct Endpoint {
    port: u16,
    user: &'static str,
    password: &'static str,
}

impl Endpoint {
    /// sysbench's connection and data-set options for this endpoint.
    fn args(&self) -> Vec<String> {
        vec![
            "--db-driver=mysql".into(),
            "--mysql-host=127.0.0.1".into(),
            format!("--mysql-port={}", self.port),
            format!("--mysql-user={}", self.user),
            format!("--mysql-password={}", self.password),
            format!("--mysql-db={DB}"),
            "--mysql-ssl=off".into(),
            format!("--tables={TABLES}"),
            format!("--table-size={TABLE_SIZE}"),
        ]
    }
}

pub fn run(opts: &Opts) -> anyhow::Result<Outcome> {
    let Ok(sysbench) = which("sysbench") else {
        return Ok(skip(
            "sysbench is not installed (apt-get install sysbench)".into(),
        ));
    };
    let db = match MariaDbServer::start() {
        Ok(db) => db,
        Err(e @ TestkitError::MissingBinary { .. }) => return Ok(skip(e.to_string())),
        Err(e) => return Err(e).context("start MariaDB"),
    };
    db.create_user(USER, PASSWORD)
        .context("create the upstream user")?;
    db.create_database(DB, USER)
        .context("create the bench database")?;
    let direct = Endpoint {
        port: db.port(),
        user: USER,
        password: PASSWORD,
    };
    eprintln!("preparing sysbench tables ({TABLES} x {TABLE_SIZE} rows) ...");
    check(
        pinned(&sysbench)
            .arg("oltp_read_only")
            .args(direct.args())
            .arg("prepare"),
    )
    .context("sysbench prepare (direct)")?;

    let dir = tempfile::tempdir()?;
    let port = airlock::testkit::process::free_port()?;
    let _airlock = start_airlock(dir.path(), db.port(), port)?;
    wait_ready(&db, port)?;
    let via_airlock = Endpoint {
        port,
        user: AGENT,
        password: AGENT_PW,
    };
    let forward_port = airlock::testkit::process::free_port()?;
    let _forwarder = super::forwarder::spawn(forward_port, db.port())?;
    let via_forwarder = Endpoint {
        port: forward_port,
        user: USER,
        password: PASSWORD,
    };
    let targets = [
        ("direct", direct),
        ("forwarder", via_forwarder),
        ("airlock", via_airlock),
    ];

    let mut tps_cells = Cells::new();
    let mut qps_cells = Cells::new();
    for test in TESTS {
        for ps in PS_MODES {
            for &threads in &opts.clients {
                let cell = format!("{test} --db-ps-mode={ps} --threads={threads}");
                for round in 0..opts.rounds {
                    for (name, endpoint) in &targets {
                        let (tps, qps) =
                            sysbench_run(&sysbench, endpoint, test, ps, threads, opts.duration)
                                .with_context(|| format!("{cell} ({name})"))?;
                        eprintln!(
                            "{cell:<50} round {round} {name:<9} {tps:>9.0} tps {qps:>9.0} qps"
                        );
                        record(&mut tps_cells, &cell, name, tps);
                        record(&mut qps_cells, &cell, name, qps);
                    }
                }
            }
        }
    }
    Ok(Outcome::Ran(SysbenchResults {
        tps: tps_cells,
        qps: qps_cells,
    }))
}

fn skip(reason: String) -> Outcome {
    eprintln!("skipping the MySQL part: {reason}");
    Outcome::Skipped(reason)
}

fn start_airlock(dir: &Path, db_port: u16, port: u16) -> anyhow::Result<Proc> {
    std::fs::write(dir.join("upstream.pw"), PASSWORD)?;
    std::fs::write(dir.join("rules.toml"), RULES)?;
    let scram = airlock_protocol::pg::scram::make_verifier(AGENT_PW);
    // Both verifiers, as `airlock passwd --mysql` prints them.
    let mysql_secret = airlock_protocol::mysql::auth::secret_string(AGENT_PW.as_bytes());
    let config = format!(
        "[listen]\nmysql = \"127.0.0.1:{port}\"\n\
         [policy]\nrules = \"rules.toml\"\n\
         [targets.{DB}]\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {db_port}\n\
         database = \"{DB}\"\nuser = \"{USER}\"\npassword_file = \"upstream.pw\"\n\
         [identities.{AGENT}]\nsecret = \"{scram}\"\nmysql_secret = \"{mysql_secret}\"\n\
         targets = [\"{DB}\"]\n"
    );
    let path = dir.join("airlock-mysql.toml");
    std::fs::write(&path, config)?;
    spawn_airlock(&path)
}

/// Guardrails judged on every statement; sysbench's tables are allowed.
const RULES: &str = r#"
[[policy]]
id = "bench"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "transaction", "session"]
allow_tables = ["bench.sbtest*"]
deny_tables = ["bench.secrets", "mysql.*"]
deny_columns = ["bench.customers.ssn", "bench.customers.card_number", "bench.users.password_hash"]

# Three masked columns sysbench's tables do not have: every statement still
# gets a masking plan (from the plan cache once its shape has been seen).
[[mask]]
id = "bench-email"
columns = ["bench.customers.email"]
strategy = "email"

[[mask]]
id = "bench-phone"
columns = ["bench.customers.phone"]
strategy = "redact"

[[mask]]
id = "bench-card"
columns = ["*.card_number"]
strategy = "partial"
keep_last = 4
"#;

/// Runs `sql` with the `mariadb` client through airlock as the agent.
fn via_airlock(db: &MariaDbServer, port: u16, sql: &str) -> anyhow::Result<std::process::Output> {
    std::process::Command::new(db.client_binary())
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--user={AGENT}"))
        .arg(format!("--password={AGENT_PW}"))
        .args([
            "--batch",
            "--skip-column-names",
            "--skip-ssl",
            "-e",
            sql,
            DB,
        ])
        .output()
        .context("run the mariadb client")
}

/// Waits until the agent can log in through airlock, then checks that the
/// policy is live (a denied table is refused by airlock).
fn wait_ready(db: &MariaDbServer, port: u16) -> anyhow::Result<()> {
    let mut last = String::new();
    let mut ready = false;
    for _ in 0..50 {
        let out = via_airlock(db, port, "SELECT 1")?;
        if out.status.success() {
            ready = true;
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(200));
    }
    anyhow::ensure!(
        ready,
        "airlock (MySQL) did not come up or refused the agent: {last}"
    );
    let out = via_airlock(db, port, "SELECT * FROM secrets")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        !out.status.success() && stderr.contains("airlock"),
        "airlock (MySQL) did not refuse a denied table: {stderr}"
    );
    Ok(())
}

/// One sysbench run: (transactions, queries) per second.
fn sysbench_run(
    sysbench: &Path,
    endpoint: &Endpoint,
    test: &str,
    ps_mode: &str,
    threads: u32,
    duration: u32,
) -> anyhow::Result<(f64, f64)> {
    let out = check(
        pinned(sysbench)
            .arg(test)
            .args(endpoint.args())
            .arg(format!("--db-ps-mode={ps_mode}"))
            .arg(format!("--threads={threads}"))
            .arg(format!("--time={duration}"))
            .arg("run"),
    )?;
    let errors = stat(&out, "ignored errors:")
        .ok_or_else(|| anyhow::anyhow!("no error count in sysbench output:\n{out}"))?;
    anyhow::ensure!(
        errors.0 == 0.0,
        "sysbench reported {} errors:\n{out}",
        errors.0
    );
    let tps = stat(&out, "transactions:")
        .ok_or_else(|| anyhow::anyhow!("no transactions in sysbench output:\n{out}"))?;
    let qps = stat(&out, "queries:")
        .ok_or_else(|| anyhow::anyhow!("no queries in sysbench output:\n{out}"))?;
    Ok((tps.1, qps.1))
}

/// A sysbench statistics line such as
/// `    transactions:   10000  (3330.91 per sec.)`: (count, rate).
fn stat(out: &str, label: &str) -> Option<(f64, f64)> {
    let rest = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))?;
    let (count, rate) = rest.split_once('(')?;
    let count = count.trim().parse().ok()?;
    let rate = rate.split_whitespace().next()?.parse().ok()?;
    Some((count, rate))
}

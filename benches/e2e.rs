//! End-to-end benchmark: what airlock costs a client, against the database
//! directly, a null proxy and (for PostgreSQL) PgBouncer.
//!
//! Run with `cargo bench --bench e2e` (add `-- --quick` for a short run:
//! 3 s per cell, one round; `-- --only=pg` or `-- --only=mysql` runs one
//! half; `--seconds=N` and `--rounds=N` set the cells' length and count;
//! `AIRLOCK_BENCH_BIN=PATH` runs another airlock binary). Two parts, each with its own throwaway server from the test kit:
//!
//! * [`pg`]: pgbench through airlock vs direct vs a null proxy
//!   ([`forwarder`]) vs PgBouncer (session pooling, when installed) vs
//!   airlock writing an audit log, plus `SELECT 1` latency and airlock's
//!   memory per idle session.
//! * [`mysql`]: sysbench `oltp_point_select` and `oltp_read_only` through
//!   airlock vs directly to MariaDB vs through a null proxy ([`forwarder`],
//!   the floor any proxy process costs); skipped with a printed reason when
//!   sysbench or MariaDB is not installed.
//!
//! airlock runs with a realistic policy (guardrails judged on every
//! statement, masked columns that the benchmarks' tables do not hit). Each
//! part runs interleaved rounds (A B C A B C ...) so that drift on this
//! shared VM hits every target alike, and reports medians and paired
//! ratios ([`report`]). Everything is pinned to one CPU with `taskset`: on a
//! 2-core VM, cross-core loopback round trips otherwise vary 3x between
//! connections. Results go to stdout as tables and to
//! `target/bench-e2e.json`.

// #[tokio::test] runtimes have tokio's timer; airlock's own runtime does
// not (src/timer_thread.rs), which is what clippy.toml guards.
#![allow(clippy::disallowed_methods)]

#[path = "e2e/forwarder.rs"]
mod forwarder;
#[path = "e2e/mysql.rs"]
mod mysql;
#[path = "e2e/pg.rs"]
mod pg;
#[path = "e2e/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

/// The CPU everything is pinned to.
const CPU: &str = "0";

/// How long and how often each cell runs.
pub struct Opts {
    /// Seconds per cell and target.
    pub duration: u32,
    /// Interleaved rounds per cell.
    pub rounds: usize,
    /// pgbench clients / sysbench threads.
    pub clients: Vec<u32>,
    /// Run the PostgreSQL part.
    pub pg: bool,
    /// Run the MySQL part.
    pub mysql: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Re-executed as the MySQL part's null proxy (see `forwarder`).
    if let Some(spec) = args.iter().find_map(|a| a.strip_prefix(forwarder::ARG)) {
        if let Err(e) = forwarder::main(spec) {
            eprintln!("forwarder: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .find_map(|a| a.strip_prefix("--only="))
        .map(str::to_owned);
    if let Some(only) = &only {
        if only != "pg" && only != "mysql" {
            eprintln!("e2e bench: --only takes `pg` or `mysql`, not `{only}`");
            std::process::exit(2);
        }
    }
    let (duration, rounds) = if quick { (3, 1) } else { (10, 3) };
    // `--seconds=N` and `--rounds=N` override either.
    let number = |key: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(key))
            .map(|v| match v.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => {
                    eprintln!("e2e bench: {key} takes a positive number, not `{v}`");
                    std::process::exit(2);
                }
            })
    };
    let duration = number("--seconds=").unwrap_or(duration);
    let rounds = number("--rounds=").map_or(rounds, |r| r as usize);
    println!("airlock binary: {}", airlock_bin().display());
    let opts = Opts {
        duration,
        rounds,
        clients: vec![1, 8],
        pg: only.as_deref() != Some("mysql"),
        mysql: only.as_deref() != Some("pg"),
    };
    if let Err(e) = run(&opts) {
        eprintln!("e2e bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run(opts: &Opts) -> anyhow::Result<()> {
    // Pin this process first: the servers it starts inherit the affinity.
    pin(std::process::id());
    // Each part stops its servers before the next one starts.
    let pg = if opts.pg {
        Some(pg::run(opts).context("PostgreSQL part")?)
    } else {
        None
    };
    // A failed MySQL part still leaves the PostgreSQL results reported.
    let (sysbench, mysql_error) = if opts.mysql {
        match mysql::run(opts) {
            Ok(outcome) => (Some(outcome), None),
            Err(e) => (None, Some(e.context("MySQL part"))),
        }
    } else {
        (None, None)
    };

    report::print(pg.as_ref(), sysbench.as_ref());
    let json = report::json(pg.as_ref(), sysbench.as_ref());
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-e2e.json");
    std::fs::write(&out, json).with_context(|| format!("write {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    match mysql_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Pins every thread of `pid` to [`CPU`].
fn pin(pid: u32) {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", CPU, &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

/// A command prefixed with `taskset -c CPU`.
fn pinned(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", CPU]).arg(program);
    cmd
}

/// Runs `cmd`; its stdout, or an error with its stderr.
fn check(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `name` on `$PATH`.
fn which(name: &str) -> anyhow::Result<PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    anyhow::bail!("{name} not found")
}

/// A child process (airlock, PgBouncer) that is killed when dropped, also
/// when a step of the bench fails.
pub struct Proc(Child);

impl Proc {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first: airlock shuts down as it would in production (and
        // a build instrumented for profile-guided optimisation writes its
        // profile then; see benches/pgo-build.sh). Killed if it has not
        // ended within 5 s.
        let _ = Command::new("kill")
            .arg(self.0.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The airlock binary the bench runs: this build's, or the one
/// `AIRLOCK_BENCH_BIN` names (a profile-guided build, another commit's).
fn airlock_bin() -> PathBuf {
    std::env::var_os("AIRLOCK_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_airlock")))
}

/// Starts the airlock binary, pinned, with the config at `config`.
fn spawn_airlock(config: &Path) -> anyhow::Result<Proc> {
    let child = pinned(airlock_bin())
        .args(["serve", "--config"])
        .arg(config)
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("start airlock")?;
    Ok(Proc(child))
}

//! The PostgreSQL part: pgbench `select-only` and `tpcb-like` with
//! `-M simple|extended|prepared` at 1 and 8 clients, direct vs a null
//! proxy ([`super::forwarder`]) vs PgBouncer (session pooling, when
//! installed) vs airlock vs airlock writing every statement to its audit
//! log; `SELECT 1` latency p50/p99 for each; and
//! airlock's resident memory per idle client session.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use airlock::testkit::{PgOptions, PgServer};

use super::report::{record, Cells};
use super::{check, pinned, spawn_airlock, which, Opts, Proc};

/// Idle client sessions held open for the memory measurement.
pub const IDLE_CLIENTS: usize = 1000;

/// What the PostgreSQL part measured.
pub struct PgResults {
    /// tps per pgbench cell and target.
    pub tps: Cells,
    /// CPU time (user + system) the proxy process spent per transaction,
    /// in µs, per pgbench cell and proxy: what the hop costs, read from
    /// `/proc`, steadier than tps on a shared VM.
    pub cpu: Cells,
    /// How many times the proxy process's threads were put on the CPU per
    /// transaction, per pgbench cell and proxy (see `sched`).
    pub runs: Cells,
    /// Of those, the preemptions (involuntary context switches).
    pub preempted: Cells,
    /// `SELECT 1` (p50, p99) in µs per target.
    pub latency: BTreeMap<String, (f64, f64)>,
    /// airlock's RSS per idle client session, in KiB.
    pub rss: f64,
}

pub fn run(opts: &Opts) -> anyhow::Result<PgResults> {
    // Room for the idle-connection measurement (1,000 sessions upstream).
    let pg = PgOptions::new().max_connections(1200).start()?;
    let bin = pg.bin_dir().to_path_buf();
    let password = "bench-pw-0123456789";
    pg.create_user("bench", password)?;
    pg.create_database("bench", "bench")?;
    let dir = tempfile::tempdir()?;
    let direct = format!(
        "postgresql://bench:{password}@127.0.0.1:{}/bench",
        pg.port()
    );
    eprintln!("initialising pgbench tables (scale 10) ...");
    check(Command::new(bin.join("pgbench")).args(["-i", "-q", "-s", "10", &direct]))?;

    let airlock_port = airlock::testkit::process::free_port()?;
    let airlock = start_airlock(dir.path(), pg.port(), airlock_port, password, false)?;
    let via_airlock = format!("postgresql://agent:agent-pw@127.0.0.1:{airlock_port}/bench");
    // The same, also writing every statement to the audit log.
    let audited_port = airlock::testkit::process::free_port()?;
    let audited = start_airlock(dir.path(), pg.port(), audited_port, password, true)?;
    let via_audited = format!("postgresql://agent:agent-pw@127.0.0.1:{audited_port}/bench");
    // Listening before the next free port is picked: a port picked while
    // an airlock had yet to bind could be handed out twice (the once-seen
    // symptom: PgBouncer could not bind, and its URL reached an airlock,
    // which refused user "bench").
    wait_ready(&bin, &via_airlock)?;
    wait_ready(&bin, &via_audited)?;
    let bouncer = start_pgbouncer(dir.path(), &pg, password)?;

    // The floor any proxy process costs (see `forwarder`).
    let forward_port = airlock::testkit::process::free_port()?;
    let forwarder = super::forwarder::spawn(forward_port, pg.port())?;
    let via_forwarder = format!("postgresql://bench:{password}@127.0.0.1:{forward_port}/bench");

    // Each target with its proxy process, whose CPU time is measured.
    let mut targets: Vec<(&str, String, Option<u32>)> = vec![
        ("direct", direct.clone(), None),
        ("forwarder", via_forwarder, Some(forwarder.id())),
    ];
    if let Some((proc, url)) = &bouncer {
        targets.push(("pgbouncer", url.clone(), Some(proc.id())));
    }
    targets.push(("airlock", via_airlock.clone(), Some(airlock.id())));
    targets.push(("airlock+audit", via_audited.clone(), Some(audited.id())));

    let mut tps_cells = Cells::new();
    let mut cpu_cells = Cells::new();
    let mut runs_cells = Cells::new();
    let mut preempted_cells = Cells::new();
    for script in ["select-only", "tpcb-like"] {
        for mode in ["simple", "extended", "prepared"] {
            for &clients in &opts.clients {
                let cell = format!("{script} -M {mode} -c {clients}");
                for round in 0..opts.rounds {
                    for (name, url, pid) in &targets {
                        let before = pid.and_then(sched);
                        let (tps, txns) =
                            pgbench_tps(&bin, url, script, mode, clients, opts.duration)?;
                        let per_txn = match (before, pid.and_then(sched)) {
                            (Some(b), Some(a)) if txns > 0 => Some((
                                a.cpu_ns.saturating_sub(b.cpu_ns) as f64 / 1e3 / txns as f64,
                                a.runs.saturating_sub(b.runs) as f64 / txns as f64,
                                a.preempted.saturating_sub(b.preempted) as f64 / txns as f64,
                            )),
                            _ => None,
                        };
                        let cpu_note = per_txn.map_or(String::new(), |(c, r, p)| {
                            format!("  {c:>5.1} µs proxy CPU, {r:>5.2} proxy runs ({p:.2} preempted) per transaction")
                        });
                        eprintln!("{cell:<32} round {round} {name:<13} {tps:>9.0} tps{cpu_note}");
                        record(&mut tps_cells, &cell, name, tps);
                        if let Some((cpu, runs, preempted)) = per_txn {
                            record(&mut cpu_cells, &cell, name, cpu);
                            record(&mut runs_cells, &cell, name, runs);
                            record(&mut preempted_cells, &cell, name, preempted);
                        }
                    }
                }
            }
        }
    }

    let mut latency = BTreeMap::new();
    for (name, url, _) in &targets {
        latency.insert(
            (*name).to_owned(),
            select1_latency(&bin, url, dir.path(), opts.duration)?,
        );
    }

    let rss = idle_rss(airlock_port, airlock.id(), IDLE_CLIENTS)?;
    Ok(PgResults {
        tps: tps_cells,
        cpu: cpu_cells,
        runs: runs_cells,
        preempted: preempted_cells,
        latency,
        rss,
    })
}

fn start_airlock(
    dir: &Path,
    pg_port: u16,
    port: u16,
    password: &str,
    audit: bool,
) -> anyhow::Result<Proc> {
    std::fs::write(dir.join("upstream.pw"), password)?;
    std::fs::write(dir.join("rules.toml"), RULES)?;
    let verifier = airlock_protocol::pg::scram::make_verifier("agent-pw");
    let audit = if audit {
        format!("[audit]\npath = \"audit-{port}.db\"\n")
    } else {
        String::new()
    };
    let config = format!(
        "[listen]\npostgres = \"127.0.0.1:{port}\"\n\
         [policy]\nrules = \"rules.toml\"\n\
         {audit}\
         [targets.bench]\nhost = \"127.0.0.1\"\nport = {pg_port}\ndatabase = \"bench\"\nuser = \"bench\"\npassword_file = \"upstream.pw\"\n\
         [identities.agent]\nsecret = \"{verifier}\"\ntargets = [\"bench\"]\n"
    );
    let path = dir.join(format!("airlock-{port}.toml"));
    std::fs::write(&path, config)?;
    spawn_airlock(&path)
}

/// Guardrails judged on every statement; pgbench's tables are allowed.
const RULES: &str = r#"
[[policy]]
id = "bench"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "transaction", "session"]
allow_tables = ["public.pgbench_*", "pg_catalog.*"]
deny_tables = ["public.secrets"]
deny_columns = ["public.customers.ssn", "public.customers.card_number", "public.users.password_hash"]

# Three masked columns pgbench's tables do not have: every statement still
# gets a masking plan (from the plan cache once its shape has been seen).
[[mask]]
id = "bench-email"
columns = ["public.customers.email"]
strategy = "email"

[[mask]]
id = "bench-phone"
columns = ["public.customers.phone"]
strategy = "redact"

[[mask]]
id = "bench-card"
columns = ["*.card_number"]
strategy = "partial"
keep_last = 4
"#;

fn start_pgbouncer(
    dir: &Path,
    pg: &PgServer,
    password: &str,
) -> anyhow::Result<Option<(Proc, String)>> {
    let Ok(path) = which("pgbouncer") else {
        eprintln!("pgbouncer not installed (apt-get install pgbouncer): skipping it");
        return Ok(None);
    };
    let port = airlock::testkit::process::free_port()?;
    std::fs::write(
        dir.join("userlist.txt"),
        format!("\"bench\" \"{password}\"\n"),
    )?;
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]\nbench = host=127.0.0.1 port={} dbname=bench\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = scram-sha-256\n\
             auth_file = {}\npool_mode = session\nmax_client_conn = 2000\ndefault_pool_size = 50\n\
             unix_socket_dir =\nlogfile = {}\n",
            pg.port(),
            dir.join("userlist.txt").display(),
            dir.join("pgbouncer.log").display()
        ),
    )?;
    let mut cmd = pinned(path);
    cmd.arg(dir.join("pgbouncer.ini"));
    if unsafe { libc::geteuid() } == 0 {
        // pgbouncer refuses to run as root.
        cmd.args(["-u", "nobody"]);
        let _ = Command::new("chmod")
            .args(["-R", "a+rwx"])
            .arg(dir)
            .status();
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start pgbouncer")?;
    std::thread::sleep(Duration::from_millis(500));
    if let Some(status) = child.try_wait()? {
        let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
        anyhow::bail!("pgbouncer exited at start ({status}); its log:\n{log}");
    }
    Ok(Some((
        Proc(child),
        format!("postgresql://bench:{password}@127.0.0.1:{port}/bench"),
    )))
}

fn wait_ready(bin: &Path, url: &str) -> anyhow::Result<()> {
    for _ in 0..50 {
        if Command::new(bin.join("psql"))
            .args([url, "-XAtqc", "SELECT 1"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    anyhow::bail!("airlock did not come up")
}

fn pgbench_tps(
    bin: &Path,
    url: &str,
    script: &str,
    mode: &str,
    clients: u32,
    duration: u32,
) -> anyhow::Result<(f64, u64)> {
    let out = check(
        pinned(bin.join("pgbench"))
            .args(["-n", "-b", script, "-M", mode])
            .args([
                "-c",
                &clients.to_string(),
                "-j",
                "1",
                "-T",
                &duration.to_string(),
            ])
            .arg(url),
    )?;
    let tps = out
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output:\n{out}"))?;
    let txns = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok((tps, txns))
}

/// What the scheduler counted for process `pid`, summed over its threads
/// (`/proc/PID/task/*/schedstat`): CPU time in nanoseconds, the exact run
/// time rather than the tick-sampled utime and stime of `/proc/PID/stat`
/// (which at 100 Hz drift by a few percent over a 10 s cell), and how
/// many times a thread was put on a CPU (each a wake-up or a preemption:
/// what a proxy pays in context switches), and from
/// `/proc/PID/task/*/status` how many of its switches were preemptions. A
/// thread that exits during a cell takes its counts with it; airlock's
/// only short-lived threads parse statements above 8 KiB, which pgbench
/// does not send. `None` where the kernel keeps no schedstats (all zeros).
fn sched(pid: u32) -> Option<Sched> {
    let mut total = Sched::default();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let task_dir = task.ok()?.path();
        let path = task_dir.join("schedstat");
        // A thread that exited since the listing has nothing more to add.
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue;
        };
        let mut fields = stat.split_whitespace();
        total.cpu_ns += fields.next()?.parse::<u64>().ok()?;
        total.runs += fields.nth(1)?.parse::<u64>().ok()?;
        // Of those runs, the ones that began because another task took
        // the CPU from this thread (it was runnable, not waiting).
        let status = std::fs::read_to_string(task_dir.join("status")).unwrap_or_default();
        total.preempted += status
            .lines()
            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    (total.cpu_ns > 0).then_some(total)
}

/// See [`sched`].
#[derive(Debug, Default, Clone, Copy)]
struct Sched {
    cpu_ns: u64,
    runs: u64,
    /// Involuntary context switches (`/proc/PID/task/*/status`).
    preempted: u64,
}

/// p50 and p99 latency of `SELECT 1`, in microseconds, from pgbench's
/// per-transaction log.
fn select1_latency(bin: &Path, url: &str, dir: &Path, duration: u32) -> anyhow::Result<(f64, f64)> {
    let script = dir.join("select1.sql");
    std::fs::write(&script, "SELECT 1;\n")?;
    let logdir = tempfile::tempdir_in(dir)?;
    check(
        pinned(bin.join("pgbench"))
            .current_dir(logdir.path())
            .args([
                "-n",
                "-M",
                "prepared",
                "-c",
                "1",
                "-T",
                &duration.to_string(),
                "-l",
                "-f",
            ])
            .arg(&script)
            .arg(url),
    )?;
    let mut lat = Vec::new();
    for entry in std::fs::read_dir(logdir.path())? {
        let text = std::fs::read_to_string(entry?.path())?;
        lat.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2))
                .filter_map(|v| v.parse::<f64>().ok()),
        );
    }
    anyhow::ensure!(!lat.is_empty(), "no latency samples");
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    Ok((pct(0.50), pct(0.99)))
}

/// airlock's resident memory per idle, logged-in client session (each with
/// its upstream connection), in KiB, from `n` tokio-postgres connections.
fn idle_rss(port: u16, pid: u32, n: usize) -> anyhow::Result<f64> {
    let before = rss_kib(pid)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let after = rt.block_on(async {
        let url = format!("host=127.0.0.1 port={port} user=agent password=agent-pw dbname=bench");
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            clients.push(client);
        }
        // One query each, so every session has been through the relay.
        for c in &clients {
            c.simple_query("SELECT 1").await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid)?;
        drop(clients);
        anyhow::Ok(after)
    })?;
    Ok((after.saturating_sub(before)) as f64 / n as f64)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))
}

//! End-to-end benchmark: pgbench through airlock vs direct vs PgBouncer.
//!
//! Run with `cargo bench --bench e2e` (add `-- --quick` for a short run).
//! It starts a throwaway PostgreSQL with the test kit, PgBouncer (session
//! pooling, when installed) and the airlock binary with a realistic policy
//! (guardrails judged on every statement, masked columns that pgbench's
//! tables do not hit), then runs interleaved rounds (A B C A B C ...) so
//! that drift on this shared VM hits every target alike, and reports
//! medians and paired ratios. Everything is pinned to one CPU with
//! `taskset`: on a 2-core VM, cross-core loopback round trips otherwise vary
//! 3x between connections. Results go to stdout as a table and to
//! `target/bench-e2e.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use airlock::testkit::{PgOptions, PgServer};

const CPU: &str = "0";

struct Opts {
    duration: u32,
    rounds: usize,
    clients: Vec<u32>,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let opts = if quick {
        Opts {
            duration: 3,
            rounds: 1,
            clients: vec![1, 8],
        }
    } else {
        Opts {
            duration: 10,
            rounds: 3,
            clients: vec![1, 8],
        }
    };
    if let Err(e) = run(&opts) {
        eprintln!("e2e bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run(opts: &Opts) -> anyhow::Result<()> {
    // Pin this process first: the servers it starts inherit the affinity.
    pin(std::process::id());
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
    let mut airlock = start_airlock(dir.path(), pg.port(), airlock_port, password, false)?;
    let via_airlock = format!("postgresql://agent:agent-pw@127.0.0.1:{airlock_port}/bench");
    // The same, also writing every statement to the audit log.
    let audited_port = airlock::testkit::process::free_port()?;
    let mut audited = start_airlock(dir.path(), pg.port(), audited_port, password, true)?;
    let via_audited = format!("postgresql://agent:agent-pw@127.0.0.1:{audited_port}/bench");
    let mut bouncer = start_pgbouncer(dir.path(), &pg, password)?;

    let mut targets: Vec<(&str, String)> = vec![("direct", direct.clone())];
    if let Some((_, url)) = &bouncer {
        targets.push(("pgbouncer", url.clone()));
    }
    targets.push(("airlock", via_airlock.clone()));
    targets.push(("airlock+audit", via_audited.clone()));
    wait_ready(&bin, &via_airlock)?;
    wait_ready(&bin, &via_audited)?;

    let mut results: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for script in ["select-only", "tpcb-like"] {
        for mode in ["simple", "extended", "prepared"] {
            for &clients in &opts.clients {
                let cell = format!("{script} -M {mode} -c {clients}");
                for round in 0..opts.rounds {
                    for (name, url) in &targets {
                        let tps = pgbench_tps(&bin, url, script, mode, clients, opts.duration)?;
                        eprintln!("{cell:<32} round {round} {name:<9} {tps:>9.0} tps");
                        results
                            .entry(cell.clone())
                            .or_default()
                            .entry((*name).to_owned())
                            .or_default()
                            .push(tps);
                    }
                }
            }
        }
    }

    let mut latency = BTreeMap::new();
    for (name, url) in &targets {
        latency.insert(
            (*name).to_owned(),
            select1_latency(&bin, url, dir.path(), opts.duration)?,
        );
    }

    let rss = idle_rss(airlock_port, airlock.id(), IDLE_CLIENTS)?;

    print_report(&results, &latency, rss);
    let json = report_json(&results, &latency, rss);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-e2e.json");
    std::fs::write(&out, json)?;
    eprintln!("wrote {}", out.display());

    let _ = airlock.kill();
    let _ = audited.kill();
    if let Some((mut child, _)) = bouncer.take() {
        let _ = child.kill();
    }
    Ok(())
}

fn pin(pid: u32) {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", CPU, &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

fn check(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start_airlock(
    dir: &Path,
    pg_port: u16,
    port: u16,
    password: &str,
    audit: bool,
) -> anyhow::Result<Child> {
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
    let child = Command::new("taskset")
        .args([
            "-c",
            CPU,
            env!("CARGO_BIN_EXE_airlock"),
            "serve",
            "--config",
        ])
        .arg(&path)
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    Ok(child)
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
) -> anyhow::Result<Option<(Child, String)>> {
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
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", CPU])
        .arg(path)
        .arg(dir.join("pgbouncer.ini"));
    if unsafe { libc::geteuid() } == 0 {
        // pgbouncer refuses to run as root.
        cmd.args(["-u", "nobody"]);
        let _ = Command::new("chmod")
            .args(["-R", "a+rwx"])
            .arg(dir)
            .status();
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(Some((
        child,
        format!("postgresql://bench:{password}@127.0.0.1:{port}/bench"),
    )))
}

fn which(name: &str) -> anyhow::Result<PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    anyhow::bail!("{name} not found")
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
) -> anyhow::Result<f64> {
    let out = check(
        Command::new("taskset")
            .args(["-c", CPU])
            .arg(bin.join("pgbench"))
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
    out.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output:\n{out}"))
}

/// p50 and p99 latency of `SELECT 1`, in microseconds, from pgbench's
/// per-transaction log.
fn select1_latency(bin: &Path, url: &str, dir: &Path, duration: u32) -> anyhow::Result<(f64, f64)> {
    let script = dir.join("select1.sql");
    std::fs::write(&script, "SELECT 1;\n")?;
    let logdir = tempfile::tempdir_in(dir)?;
    check(
        Command::new("taskset")
            .current_dir(logdir.path())
            .args(["-c", CPU])
            .arg(bin.join("pgbench"))
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

/// airlock's resident memory per idle client connection, in KiB.
/// Idle client sessions held open for the memory measurement.
const IDLE_CLIENTS: usize = 1000;

/// airlock's resident memory per idle, logged-in client session (each with
/// its upstream connection), from `n` tokio-postgres connections.
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

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Median over rounds of `a[i] / b[i]`: the paired ratio, which cancels
/// drift that hits both targets of one round alike.
fn paired(a: Option<&Vec<f64>>, b: Option<&Vec<f64>>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    (!ratios.is_empty()).then(|| median(&ratios))
}

fn print_report(
    results: &BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    latency: &BTreeMap<String, (f64, f64)>,
    rss: f64,
) {
    println!(
        "\n| pgbench cell | direct tps | PgBouncer tps | airlock tps | airlock+audit tps | airlock / PgBouncer | airlock+audit / PgBouncer | airlock / direct |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let fmt = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    };
    for (cell, by) in results {
        let m = |k: &str| by.get(k).map(|v| median(v));
        println!(
            "| {cell} | {} | {} | {} | {} | {} | {} | {} |",
            fmt(m("direct"), 0),
            fmt(m("pgbouncer"), 0),
            fmt(m("airlock"), 0),
            fmt(m("airlock+audit"), 0),
            fmt(paired(by.get("airlock"), by.get("pgbouncer")), 2),
            fmt(paired(by.get("airlock+audit"), by.get("pgbouncer")), 2),
            fmt(paired(by.get("airlock"), by.get("direct")), 2),
        );
    }
    println!("\n| SELECT 1 latency | p50 µs | p99 µs |");
    println!("|---|---:|---:|");
    for (name, (p50, p99)) in latency {
        println!("| {name} | {p50:.0} | {p99:.0} |");
    }
    println!("\nairlock RSS per idle client connection ({IDLE_CLIENTS} sessions): {rss:.1} KiB");
}

fn report_json(
    results: &BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    latency: &BTreeMap<String, (f64, f64)>,
    rss: f64,
) -> String {
    let mut s = String::from("{\n  \"pgbench\": {\n");
    let cells: Vec<String> = results
        .iter()
        .map(|(cell, by)| {
            let inner: Vec<String> = by
                .iter()
                .map(|(k, v)| format!("\"{k}\": {:.1}", median(v)))
                .collect();
            format!("    \"{cell}\": {{{}}}", inner.join(", "))
        })
        .collect();
    s.push_str(&cells.join(",\n"));
    s.push_str("\n  },\n  \"select1_latency_us\": {");
    let lat: Vec<String> = latency
        .iter()
        .map(|(k, (p50, p99))| format!("\"{k}\": {{\"p50\": {p50:.1}, \"p99\": {p99:.1}}}"))
        .collect();
    s.push_str(&lat.join(", "));
    s.push_str(&format!(
        "}},\n  \"idle_rss_kib_per_connection\": {rss:.2}\n}}\n"
    ));
    s
}

//! Medians, paired ratios, the Markdown tables on stdout and the JSON
//! written to `target/bench-e2e.json`.

use std::collections::BTreeMap;

use super::mysql::{Outcome, SysbenchResults};
use super::pg::{PgResults, IDLE_CLIENTS};

/// Per cell (e.g. `select-only -M simple -c 1`), per target (`direct`,
/// `airlock`, ...): one measurement per round.
pub type Cells = BTreeMap<String, BTreeMap<String, Vec<f64>>>;

/// Adds one round's measurement of `target` in `cell`.
pub fn record(cells: &mut Cells, cell: &str, target: &str, value: f64) {
    cells
        .entry(cell.to_owned())
        .or_default()
        .entry(target.to_owned())
        .or_default()
        .push(value);
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

fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    }
}

/// Prints the tables of the parts that ran.
pub fn print(pg: Option<&PgResults>, sysbench: Option<&Outcome>) {
    if let Some(pg) = pg {
        print_pg(pg);
    }
    match sysbench {
        Some(Outcome::Ran(results)) => print_sysbench(results),
        Some(Outcome::Skipped(reason)) => println!("\nsysbench (MySQL): skipped: {reason}"),
        None => {}
    }
}

fn print_pg(pg: &PgResults) {
    println!(
        "\n| pgbench cell | direct tps | forwarder tps | PgBouncer tps | airlock tps | airlock+audit tps | airlock / PgBouncer | airlock+audit / PgBouncer | airlock / forwarder | PgBouncer / forwarder | airlock / direct |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (cell, by) in &pg.tps {
        let m = |k: &str| by.get(k).map(|v| median(v));
        println!(
            "| {cell} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt(m("direct"), 0),
            fmt(m("forwarder"), 0),
            fmt(m("pgbouncer"), 0),
            fmt(m("airlock"), 0),
            fmt(m("airlock+audit"), 0),
            fmt(paired(by.get("airlock"), by.get("pgbouncer")), 2),
            fmt(paired(by.get("airlock+audit"), by.get("pgbouncer")), 2),
            fmt(paired(by.get("airlock"), by.get("forwarder")), 2),
            fmt(paired(by.get("pgbouncer"), by.get("forwarder")), 2),
            fmt(paired(by.get("airlock"), by.get("direct")), 2),
        );
    }
    println!(
        "\n| pgbench cell | forwarder CPU µs/txn | PgBouncer CPU µs/txn | airlock CPU µs/txn | airlock+audit CPU µs/txn | airlock − PgBouncer µs | runs/txn: forwarder | PgBouncer | airlock | preempted/txn: forwarder | PgBouncer | airlock |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (cell, by) in &pg.cpu {
        let m = |k: &str| by.get(k).map(|v| median(v));
        // The runs and preemptions of the same cell and proxy.
        let of =
            |cells: &Cells, k: &str| cells.get(cell).and_then(|by| by.get(k)).map(|v| median(v));
        let runs = |k: &str| of(&pg.runs, k);
        let preempted = |k: &str| of(&pg.preempted, k);
        let diff = match (m("airlock"), m("pgbouncer")) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        println!(
            "| {cell} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt(m("forwarder"), 1),
            fmt(m("pgbouncer"), 1),
            fmt(m("airlock"), 1),
            fmt(m("airlock+audit"), 1),
            fmt(diff, 1),
            fmt(runs("forwarder"), 2),
            fmt(runs("pgbouncer"), 2),
            fmt(runs("airlock"), 2),
            fmt(preempted("forwarder"), 2),
            fmt(preempted("pgbouncer"), 2),
            fmt(preempted("airlock"), 2),
        );
    }
    println!("\n| SELECT 1 latency | p50 µs | p99 µs |");
    println!("|---|---:|---:|");
    for (name, (p50, p99)) in &pg.latency {
        println!("| {name} | {p50:.0} | {p99:.0} |");
    }
    println!(
        "\nairlock RSS per idle client connection ({IDLE_CLIENTS} sessions): {:.1} KiB",
        pg.rss
    );
}

fn print_sysbench(results: &SysbenchResults) {
    println!(
        "\n| sysbench cell | direct tps | forwarder tps | airlock tps | airlock qps | forwarder / direct | airlock / direct | airlock / forwarder |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (cell, tps) in &results.tps {
        let qps = results.qps.get(cell);
        let m = |by: Option<&BTreeMap<String, Vec<f64>>>, k: &str| {
            by.and_then(|by| by.get(k)).map(|v| median(v))
        };
        println!(
            "| {cell} | {} | {} | {} | {} | {} | {} | {} |",
            fmt(m(Some(tps), "direct"), 0),
            fmt(m(Some(tps), "forwarder"), 0),
            fmt(m(Some(tps), "airlock"), 0),
            fmt(m(qps, "airlock"), 0),
            fmt(paired(tps.get("forwarder"), tps.get("direct")), 2),
            fmt(paired(tps.get("airlock"), tps.get("direct")), 2),
            fmt(paired(tps.get("airlock"), tps.get("forwarder")), 2),
        );
    }
}

/// The JSON report: `pgbench`, `pgbench_proxy_cpu_us_per_txn`,
/// `pgbench_proxy_runs_per_txn`, `pgbench_proxy_preemptions_per_txn`,
/// `select1_latency_us` and
/// `idle_rss_kib_per_connection` from the PostgreSQL part, `sysbench` from
/// the MySQL part.
pub fn json(pg: Option<&PgResults>, sysbench: Option<&Outcome>) -> String {
    let mut entries = Vec::new();
    if let Some(pg) = pg {
        entries.extend(pg_json(pg));
    }
    match sysbench {
        Some(Outcome::Ran(results)) => entries.push(sysbench_json(results)),
        Some(Outcome::Skipped(reason)) => entries.push(format!(
            "  \"sysbench\": {{\"skipped\": {}}}",
            json_string(reason)
        )),
        None => {}
    }
    format!("{{\n{}\n}}\n", entries.join(",\n"))
}

fn pg_json(pg: &PgResults) -> [String; 6] {
    let cells_json = |cells: &Cells, digits: usize| -> Vec<String> {
        cells
            .iter()
            .map(|(cell, by)| {
                let inner: Vec<String> = by
                    .iter()
                    .map(|(k, v)| format!("\"{k}\": {:.digits$}", median(v)))
                    .collect();
                format!("    \"{cell}\": {{{}}}", inner.join(", "))
            })
            .collect()
    };
    let cells = cells_json(&pg.tps, 1);
    let cpu = cells_json(&pg.cpu, 2);
    let runs = cells_json(&pg.runs, 2);
    let preempted = cells_json(&pg.preempted, 2);
    let lat: Vec<String> = pg
        .latency
        .iter()
        .map(|(k, (p50, p99))| format!("\"{k}\": {{\"p50\": {p50:.1}, \"p99\": {p99:.1}}}"))
        .collect();
    [
        format!("  \"pgbench\": {{\n{}\n  }}", cells.join(",\n")),
        format!(
            "  \"pgbench_proxy_cpu_us_per_txn\": {{\n{}\n  }}",
            cpu.join(",\n")
        ),
        format!(
            "  \"pgbench_proxy_runs_per_txn\": {{\n{}\n  }}",
            runs.join(",\n")
        ),
        format!(
            "  \"pgbench_proxy_preemptions_per_txn\": {{\n{}\n  }}",
            preempted.join(",\n")
        ),
        format!("  \"select1_latency_us\": {{{}}}", lat.join(", ")),
        format!("  \"idle_rss_kib_per_connection\": {:.2}", pg.rss),
    ]
}

/// `"sysbench": {"<cell>": {"direct": {"tps": .., "qps": ..}, "airlock":
/// {..}, "forwarder": {..}, "airlock/direct": .., "forwarder/direct": ..,
/// "airlock/forwarder": ..}, ...}` (medians; the ratios are paired, on tps).
fn sysbench_json(results: &SysbenchResults) -> String {
    let cells: Vec<String> = results
        .tps
        .iter()
        .map(|(cell, tps)| {
            let qps = results.qps.get(cell);
            let mut inner: Vec<String> = tps
                .iter()
                .map(|(target, v)| {
                    let q = qps.and_then(|q| q.get(target)).map(|q| median(q));
                    format!(
                        "\"{target}\": {{\"tps\": {:.1}, \"qps\": {}}}",
                        median(v),
                        q.map_or("null".into(), |q| format!("{q:.1}"))
                    )
                })
                .collect();
            for (a, b) in [
                ("airlock", "direct"),
                ("forwarder", "direct"),
                ("airlock", "forwarder"),
            ] {
                if let Some(r) = paired(tps.get(a), tps.get(b)) {
                    inner.push(format!("\"{a}/{b}\": {r:.3}"));
                }
            }
            format!("    \"{cell}\": {{{}}}", inner.join(", "))
        })
        .collect();
    format!("  \"sysbench\": {{\n{}\n  }}", cells.join(",\n"))
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".into())
}

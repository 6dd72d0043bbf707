//! Process-wide counters for `/metrics`, in Prometheus text format.
//!
//! Plain atomics behind one static, so instrumenting a session is a
//! one-line call that costs an atomic add: connections by protocol,
//! statements by decision, a statement latency histogram and masked
//! values. Gauges that live elsewhere (audit queue depth, pending
//! approvals, active sessions) are passed to [`render`] at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::audit::AuditDecision;

/// Protocols counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres = 0,
    Mysql = 1,
}

const PROTOCOLS: [&str; 2] = ["postgres", "mysql"];
const DECISIONS: [AuditDecision; 5] = [
    AuditDecision::Allow,
    AuditDecision::Masked,
    AuditDecision::Block,
    AuditDecision::WouldBlock,
    AuditDecision::Approval,
];
/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct Metrics {
    connections_open: [AtomicU64; 2],
    connections_total: [AtomicU64; 2],
    statements: [AtomicU64; 5],
    /// Per bucket (not cumulative); the last slot is +Inf.
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    masked_values: AtomicU64,
    audit_waits: AtomicU64,
    approvals: [AtomicU64; 4],
    /// By protocol, then by [`CatalogLoad`].
    catalog_loads: [[AtomicU64; 3]; 2],
    /// Reloads of the config and rules: applied, rejected.
    reloads: [AtomicU64; 2],
    /// 1 when the last reload was applied (or none was tried), 0 when it
    /// was rejected and the rules in force are older than the files.
    last_reload_ok: AtomicU64,
    /// By protocol, then by [`LoginEnd`].
    logins: [[AtomicU64; 2]; 2],
}

static METRICS: Metrics = Metrics {
    connections_open: [const { AtomicU64::new(0) }; 2],
    connections_total: [const { AtomicU64::new(0) }; 2],
    statements: [const { AtomicU64::new(0) }; 5],
    latency: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64::new(0),
    masked_values: AtomicU64::new(0),
    audit_waits: AtomicU64::new(0),
    approvals: [const { AtomicU64::new(0) }; 4],
    catalog_loads: [const { [const { AtomicU64::new(0) }; 3] }; 2],
    reloads: [const { AtomicU64::new(0) }; 2],
    last_reload_ok: AtomicU64::new(1),
    logins: [const { [const { AtomicU64::new(0) }; 2] }; 2],
};

/// How a login that did not get in ended.
#[derive(Debug, Clone, Copy)]
pub enum LoginEnd {
    /// The credentials failed (wrong password, no such identity, a
    /// token refused, the server refused a relayed login).
    Failed = 0,
    /// Refused after the client proved who it is (a startup setting, the
    /// session limit, a target it may not use, no policy).
    Refused = 1,
}

const LOGIN_ENDS: [&str; 2] = ["failed", "refused"];

/// Counts a login that did not get in.
pub fn login(protocol: Protocol, end: LoginEnd) {
    METRICS.logins[protocol as usize][end as usize].fetch_add(1, Ordering::Relaxed);
}

/// Counts a reload of the config and rules: applied or rejected.
pub fn reload(applied: bool) {
    let m = &METRICS;
    m.reloads[usize::from(!applied)].fetch_add(1, Ordering::Relaxed);
    m.last_reload_ok
        .store(u64::from(applied), Ordering::Relaxed);
}

/// Counts an open connection until dropped.
pub struct ConnectionGuard(Protocol);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        METRICS.connections_open[self.0 as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client connection was accepted; hold the guard for its lifetime.
pub fn connection(protocol: Protocol) -> ConnectionGuard {
    METRICS.connections_open[protocol as usize].fetch_add(1, Ordering::Relaxed);
    METRICS.connections_total[protocol as usize].fetch_add(1, Ordering::Relaxed);
    ConnectionGuard(protocol)
}

/// A statement was judged.
pub fn statement(decision: AuditDecision) {
    let i = DECISIONS.iter().position(|d| *d == decision).unwrap_or(0);
    METRICS.statements[i].fetch_add(1, Ordering::Relaxed);
}

/// A value was rewritten by a masking rule.
pub fn masked_value() {
    METRICS.masked_values.fetch_add(1, Ordering::Relaxed);
}

/// A statement waited for room in the audit log's queue.
pub fn audit_wait() {
    METRICS.audit_waits.fetch_add(1, Ordering::Relaxed);
}

/// How a held statement ended.
#[derive(Debug, Clone, Copy)]
pub enum ApprovalEnd {
    Approved = 0,
    Denied = 1,
    TimedOut = 2,
    /// Released by an approval window, without asking.
    Window = 3,
}

const APPROVAL_ENDS: [&str; 4] = ["approved", "denied", "timed_out", "window"];

pub fn approval(end: ApprovalEnd) {
    METRICS.approvals[end as usize].fetch_add(1, Ordering::Relaxed);
}

/// What a load of a catalog snapshot for masking found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogLoad {
    /// Something plans depend on had changed: a new snapshot.
    Changed = 0,
    /// Nothing had: the snapshot in use, and the plans made against it,
    /// were kept.
    Unchanged = 1,
    Failed = 2,
}

const CATALOG_LOADS: [&str; 3] = ["changed", "unchanged", "failed"];

/// A catalog snapshot was loaded for masking (or failed to load).
pub fn catalog_load(protocol: Protocol, outcome: CatalogLoad) {
    METRICS.catalog_loads[protocol as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
}

/// Catalog loads so far, of `protocol` with `outcome`.
pub fn catalog_loads(protocol: Protocol, outcome: CatalogLoad) -> u64 {
    METRICS.catalog_loads[protocol as usize][outcome as usize].load(Ordering::Relaxed)
}

/// Records a statement's latency (request sent until the server is ready).
pub fn latency(d: Duration) {
    let secs = d.as_secs_f64();
    let i = BUCKETS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(BUCKETS.len());
    METRICS.latency[i].fetch_add(1, Ordering::Relaxed);
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    METRICS.latency_sum_us.fetch_add(us, Ordering::Relaxed);
}

/// Nanoseconds on the monotonic clock: a cheap timestamp that fits an
/// atomic (0 is never returned, so it can mean "unset"). Read with one
/// `clock_gettime(CLOCK_MONOTONIC)` (a vDSO call, no syscall): the
/// statement-latency histogram takes two per request, and going through
/// `Instant::now()` and `elapsed()` costs about twice the instructions.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is handed, which
    // lives for the whole call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // CLOCK_MONOTONIC is always there on Linux, and `Instant::now()`
    // panics the same way should it not be: a made-up timestamp would
    // quietly stop idle timeouts from ever firing.
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
        .max(1)
}

/// The instant a [`now_ns`] timestamp stands for: now, less how long ago
/// the timestamp was (now itself for a timestamp in the future, or one
/// further back than `Instant` can go).
pub fn instant_at(ns: u64) -> Instant {
    let ago = Duration::from_nanos(now_ns().saturating_sub(ns));
    let now = Instant::now();
    now.checked_sub(ago).unwrap_or(now)
}

/// Gauges owned by other parts of airlock, read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub audit_queue_depth: Option<usize>,
    pub audit_healthy: Option<bool>,
    pub approvals_pending: usize,
    pub sessions_active: usize,
}

/// Everything, in Prometheus text exposition format 0.0.4.
pub fn render(g: Gauges) -> String {
    let m = &METRICS;
    let mut out = String::with_capacity(4096);
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    header(
        &mut out,
        "airlock_connections_current",
        "gauge",
        "Open client connections.",
    );
    for (i, p) in PROTOCOLS.iter().enumerate() {
        let _ = writeln!(
            out,
            "airlock_connections_current{{protocol=\"{p}\"}} {}",
            get(&m.connections_open[i])
        );
    }
    header(
        &mut out,
        "airlock_connections_total",
        "counter",
        "Client connections accepted.",
    );
    for (i, p) in PROTOCOLS.iter().enumerate() {
        let _ = writeln!(
            out,
            "airlock_connections_total{{protocol=\"{p}\"}} {}",
            get(&m.connections_total[i])
        );
    }
    header(
        &mut out,
        "airlock_logins_rejected_total",
        "counter",
        "Logins that did not get in: credentials that failed, or refused after the client proved who it is.",
    );
    for (i, p) in PROTOCOLS.iter().enumerate() {
        for (j, result) in LOGIN_ENDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "airlock_logins_rejected_total{{protocol=\"{p}\",result=\"{result}\"}} {}",
                get(&m.logins[i][j])
            );
        }
    }
    header(
        &mut out,
        "airlock_statements_total",
        "counter",
        "Statements judged, by decision.",
    );
    for (i, d) in DECISIONS.iter().enumerate() {
        let _ = writeln!(
            out,
            "airlock_statements_total{{decision=\"{}\"}} {}",
            d.as_str(),
            get(&m.statements[i])
        );
    }
    header(
        &mut out,
        "airlock_statement_duration_seconds",
        "histogram",
        "Time from a request until the server was ready again.",
    );
    let mut cumulative = 0;
    for (i, b) in BUCKETS.iter().enumerate() {
        cumulative += get(&m.latency[i]);
        let _ = writeln!(
            out,
            "airlock_statement_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
        );
    }
    cumulative += get(&m.latency[BUCKETS.len()]);
    let _ = writeln!(
        out,
        "airlock_statement_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "airlock_statement_duration_seconds_sum {}",
        get(&m.latency_sum_us) as f64 / 1e6
    );
    let _ = writeln!(out, "airlock_statement_duration_seconds_count {cumulative}");
    header(
        &mut out,
        "airlock_config_reloads_total",
        "counter",
        "Reloads of the config and rules, by result (a rejected one leaves the running rules in force).",
    );
    for (i, result) in ["applied", "rejected"].iter().enumerate() {
        let _ = writeln!(
            out,
            "airlock_config_reloads_total{{result=\"{result}\"}} {}",
            get(&m.reloads[i])
        );
    }
    header(
        &mut out,
        "airlock_config_last_reload_ok",
        "gauge",
        "1 when the last reload was applied (or none was tried); 0 when it was rejected, so the rules in force are older than the files.",
    );
    let _ = writeln!(
        out,
        "airlock_config_last_reload_ok {}",
        get(&m.last_reload_ok)
    );
    header(
        &mut out,
        "airlock_masked_values_total",
        "counter",
        "Values rewritten by masking rules.",
    );
    let _ = writeln!(out, "airlock_masked_values_total {}", get(&m.masked_values));
    header(
        &mut out,
        "airlock_audit_waits_total",
        "counter",
        "Statements that waited for room in a full audit queue (backpressure).",
    );
    let _ = writeln!(out, "airlock_audit_waits_total {}", get(&m.audit_waits));
    header(
        &mut out,
        "airlock_approvals_total",
        "counter",
        "Held statements, by how they ended.",
    );
    for (i, e) in APPROVAL_ENDS.iter().enumerate() {
        let _ = writeln!(
            out,
            "airlock_approvals_total{{outcome=\"{e}\"}} {}",
            get(&m.approvals[i])
        );
    }
    header(
        &mut out,
        "airlock_catalog_loads_total",
        "counter",
        "Catalog snapshots loaded for masking (after DDL, a reload, or a statement naming a relation the snapshot lacked), by protocol and by whether anything had changed.",
    );
    for (i, p) in PROTOCOLS.iter().enumerate() {
        for (j, o) in CATALOG_LOADS.iter().enumerate() {
            let _ = writeln!(
                out,
                "airlock_catalog_loads_total{{protocol=\"{p}\",outcome=\"{o}\"}} {}",
                get(&m.catalog_loads[i][j])
            );
        }
    }
    header(
        &mut out,
        "airlock_approvals_pending",
        "gauge",
        "Statements waiting for a human.",
    );
    let _ = writeln!(out, "airlock_approvals_pending {}", g.approvals_pending);
    header(
        &mut out,
        "airlock_sessions_active",
        "gauge",
        "Sessions past login.",
    );
    let _ = writeln!(out, "airlock_sessions_active {}", g.sessions_active);
    if let Some(depth) = g.audit_queue_depth {
        header(
            &mut out,
            "airlock_audit_queue_depth",
            "gauge",
            "Audit events waiting for the writer.",
        );
        let _ = writeln!(out, "airlock_audit_queue_depth {depth}");
    }
    if let Some(healthy) = g.audit_healthy {
        header(
            &mut out,
            "airlock_audit_healthy",
            "gauge",
            "1 while the audit writer succeeds.",
        );
        let _ = writeln!(out, "airlock_audit_healthy {}", u8::from(healthy));
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_monotonic_and_map_back_to_instants() {
        let a = now_ns();
        let b = now_ns();
        assert!(a >= 1 && b >= a);
        let then = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let at = instant_at(now_ns() - 20_000_000);
        // 20 ms ago by the timestamp: at or after `then`, and not later
        // than now.
        assert!(at + Duration::from_millis(5) >= then, "{:?}", then - at);
        assert!(at <= Instant::now());
        // A timestamp from the future is now; one from before the clock
        // began is as far back as the clock goes, or now.
        let future = instant_at(u64::MAX);
        assert!(future <= Instant::now());
        let _ = instant_at(0);
    }

    #[test]
    fn renders_prometheus_text() {
        statement(AuditDecision::Block);
        latency(Duration::from_millis(3));
        let text = render(Gauges::default());
        assert!(text.contains("# TYPE airlock_statements_total counter"));
        assert!(text.contains("airlock_statement_duration_seconds_bucket{le=\"+Inf\"}"));
        let block = text
            .lines()
            .find(|l| l.starts_with("airlock_statements_total{decision=\"block\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        assert!(block.is_some_and(|n| n >= 1), "{text}");
    }
}

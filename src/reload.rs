//! Hot reload: on SIGHUP, and when the config file or a rule file changes.
//!
//! Changes are detected by polling every two seconds, which works on every
//! filesystem and needs no extra dependency. A file counts as changed when
//! its modification time or its content changed: a rewrite within one
//! clock tick of the last can keep the time (Linux stamps files from a
//! coarse clock). A change is reloaded once the files have stayed the same
//! for [`SETTLE`], so that a file caught halfway through being written
//! (`>`, `std::fs::write`: truncated, then written) is not loaded as it
//! stood (a bug found through a flaky test: a partial rule file could be
//! loaded, or fail, and the finished one, stamped with the same time, was
//! never seen). A reload that fails (a syntax error in a rule file, say) is
//! logged with the file, line and key, and the running version stays in
//! force; sessions are never dropped by a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::proxy::Proxy;

/// How often the rule and configuration files are looked at for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How long the files must stay the same before a change is reloaded.
const SETTLE: Duration = Duration::from_millis(250);

/// A change that keeps changing is reloaded after this many settle waits
/// anyway: a file rewritten without end is not left unloaded.
const MAX_SETTLE_WAITS: usize = 8;

/// One watched file: its path, modification time and content hash.
type Stamp = (PathBuf, Option<SystemTime>, Option<u64>);

/// The files whose changes trigger a reload, as they are now.
fn fingerprint(proxy: &Proxy) -> Vec<Stamp> {
    let config = proxy.config();
    let mut files = vec![config.source.clone()];
    if let Some(rules) = &config.policy.rules {
        // A directory that cannot be listed adds nothing: its reload fails
        // and says why.
        files.extend(crate::policy::rule_files::list(rules.get_ref()).unwrap_or_default());
    }
    files
        .into_iter()
        .map(|f| {
            let mtime = modified(&f);
            let content = std::fs::read(&f)
                .ok()
                .map(|b| crate::fasthash::hash64(&b[..]));
            (f, mtime, content)
        })
        .collect()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The fingerprint once two looks [`SETTLE`] apart agree (or after
/// [`MAX_SETTLE_WAITS`]), starting from `seen`.
async fn settled(proxy: &Proxy, mut seen: Vec<Stamp>) -> Vec<Stamp> {
    for _ in 0..MAX_SETTLE_WAITS {
        crate::timer_thread::sleep(SETTLE).await;
        let again = fingerprint(proxy);
        if again == seen {
            break;
        }
        seen = again;
    }
    seen
}

/// The same files, in the same order.
fn same_files(a: &[Stamp], b: &[Stamp]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0)
}

fn reload(proxy: &Proxy, why: &str) {
    tracing::info!(trigger = why, "reloading configuration");
    // Settings that need a restart are logged by `reload`.
    if let Err(e) = proxy.reload() {
        tracing::error!(error = %e, "reload rejected; the previous configuration stays in force");
    }
}

/// Runs until the process ends: reloads on SIGHUP and on file changes.
pub async fn watch(proxy: Arc<Proxy>) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP");
            None
        }
    };
    let mut last = fingerprint(&proxy);
    loop {
        tokio::select! {
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                reload(&proxy, "SIGHUP");
                last = fingerprint(&proxy);
            }
            // On the timer thread, like every timer: the runtime has none.
            () = crate::timer_thread::sleep(POLL_INTERVAL) => {
                if !proxy.config().policy.watch {
                    continue;
                }
                let now = fingerprint(&proxy);
                if now != last {
                    let loading = settled(&proxy, now).await;
                    reload(&proxy, "file change");
                    // What was loaded, so that a write during the reload is
                    // seen at the next poll; the files as they are now when
                    // the reload added or removed some.
                    let after = fingerprint(&proxy);
                    last = if same_files(&loading, &after) { loading } else { after };
                }
            }
        }
    }
}

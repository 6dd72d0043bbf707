//! Hot reload: on SIGHUP, and when the config file or a rule file changes.
//!
//! Changes are detected by polling modification times every two seconds,
//! which works on every filesystem and needs no extra dependency. A reload
//! that fails (a syntax error in a rule file, say) is logged with the file,
//! line and key, and the running version stays in force; sessions are never
//! dropped by a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::proxy::Proxy;

/// How often the rule and configuration files are looked at for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The files whose changes trigger a reload, with their modification times.
fn fingerprint(proxy: &Proxy) -> Vec<(PathBuf, Option<SystemTime>)> {
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
            (f, mtime)
        })
        .collect()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
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
                    reload(&proxy, "file change");
                    // Pick up files a successful reload added or removed.
                    last = fingerprint(&proxy);
                }
            }
        }
    }
}

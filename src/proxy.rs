//! State shared by every session of a running airlock: the loaded config
//! (swappable for hot reload), the policy gate, the cancel registry, the TLS
//! configs and the shutdown signal.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use airlock_protocol::pg::scram::ScramVerifier;

use crate::config::{Config, Identity};
use crate::foreign_keys::ForeignKeySlot;
use crate::masking::{load_masking_path, Masker};
use crate::metrics::{CatalogLoad, Protocol};
use crate::pg::cancel::CancelRegistry;
use crate::pg::catalog::CatalogSnapshot;
use crate::pg::opening::ClientTlsSettings;
use crate::policy::engine::Engine;
use crate::policy::rules::load_rules;
use crate::policy::{AllowAll, Gate};
use crate::tls;

/// Everything derived from one version of the config.
pub struct Loaded {
    pub config: Arc<Config>,
    verifiers: HashMap<String, ScramVerifier>,
    /// The iteration count of mock SCRAM verifiers for unknown names.
    scram_mock_iterations: u32,
    /// The verifier kinds of the mock MySQL secret for unknown names.
    mysql_mock_kinds: crate::mysql::client_auth::MockKinds,
    upstream_tls: HashMap<String, Option<Arc<rustls::ClientConfig>>>,
    gate: Arc<dyn Gate>,
    /// Masking rules; `None` when the rule files define none.
    pub masker: Option<Arc<Masker>>,
    /// Counts loads in this process: 1 at start, +1 per reload.
    pub version: u64,
    /// When this version was loaded, unix ms.
    pub loaded_ms: i64,
}

/// The last [`Loaded::version`] handed out.
static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Why a config could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // Transparent: the inner error's message once, not again as its
    // source in `airlock: {e:#}`.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Guardrail or masking rules (both read the same files).
    #[error(transparent)]
    Rules(#[from] crate::policy::rules::RulesError),
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("audit json_lines: {0}")]
    AuditJson(#[from] std::io::Error),
}

impl Loaded {
    /// Builds the derived state: parsed verifiers, upstream TLS configs and
    /// the policy engine from the rule files.
    pub fn new(config: Config) -> Result<Loaded, LoadError> {
        let verifiers: HashMap<String, ScramVerifier> = config
            .identities
            .iter()
            .filter_map(|(name, i)| {
                ScramVerifier::parse(i.secret.as_ref()?.get_ref())
                    .ok()
                    .map(|v| (name.clone(), v))
            })
            .collect();
        let mut upstream_tls = HashMap::new();
        for (name, t) in &config.targets {
            let ca = t.ca.as_ref().map(|c| c.get_ref().as_path());
            upstream_tls.insert(name.clone(), tls::client_config(t.tls, ca)?);
        }
        let (gate, masker): (Arc<dyn Gate>, _) = match &config.policy.rules {
            Some(path) => {
                let rules = load_rules(path.get_ref())?;
                let limits = rules.limits;
                let masking = load_masking_path(path.get_ref())?;
                // What `airlock check` warns about (a policy naming an
                // identity the config lacks, approvals without the admin
                // listener, ...), at every start and reload: a rule that
                // silently applies to nobody should not go unnoticed.
                for w in crate::policy::lint::warnings(&config, &rules, &masking) {
                    tracing::warn!(rules = %path.get_ref().display(), "{w}");
                }
                let masker = (!masking.rules.is_empty() || !masking.detectors.is_empty()).then(|| {
                    // The key matters only to the strategies that use it.
                    let keyed = masking.rules.iter().any(|r| {
                        matches!(r.strategy, crate::masking::Strategy::Hash | crate::masking::Strategy::Fake)
                    });
                    if keyed && masking.hash_key_env.as_deref().and_then(|v| std::env::var(v).ok()).is_none() {
                        tracing::warn!("no masking hash key set (masking.hash_key_env): hashes are stable only until airlock restarts");
                    }
                    Arc::new(Masker::from_env(masking, limits))
                });
                (Arc::new(Engine::new(rules)), masker)
            }
            None => (Arc::new(AllowAll), None),
        };
        let mysql_mock_kinds = crate::mysql::client_auth::mock_kinds(config.identities.values());
        let scram_mock_iterations = most_common_iterations(verifiers.values());
        Ok(Loaded {
            config: Arc::new(config),
            verifiers,
            scram_mock_iterations,
            mysql_mock_kinds,
            upstream_tls,
            gate,
            masker,
            version: VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            loaded_ms: crate::audit::now_ms(),
        })
    }
}

pub struct Proxy {
    loaded: ArcSwap<Loaded>,
    pub cancels: Arc<CancelRegistry>,
    pub client_tls: Option<Arc<ClientTlsSettings>>,
    /// Key for mock SCRAM verifiers of unknown identities.
    pub mock_secret: [u8; 32],
    pub shutdown: watch::Receiver<bool>,
    /// Catalog snapshots for masking, per target (Postgres), each with the
    /// target's catalog generation read before it was loaded: only one
    /// whose generation is still current is handed out.
    catalogs: dashmap::DashMap<String, (Arc<CatalogSnapshot>, u64)>,
    /// Held while a target's catalog loads: sessions that find the
    /// snapshot stale together (every masking session of the target, after
    /// a catalog change) wait for one load instead of each opening an
    /// upstream connection of its own. It keeps the last failed load.
    catalog_loads: dashmap::DashMap<String, Arc<tokio::sync::Mutex<Option<FailedLoad>>>>,
    /// Per-target counts of catalog changes, which make every session's
    /// snapshot of the target stale (both protocols).
    pub catalog_generations: crate::masking::Generations,
    /// The links of each target, for policies with rules on tables
    /// ([`crate::foreign_keys`]).
    foreign_keys: dashmap::DashMap<String, Arc<ForeignKeySlot>>,
    /// Ephemeral-credential brokers, one per `credentials = "ephemeral"` target.
    pub brokers: crate::credentials::Brokers,
    /// Open sessions per identity, for `identities.*.max_sessions`.
    sessions: Arc<dashmap::DashMap<String, usize>>,
    /// The config airlock started with: the settings read only at start
    /// keep its values ([`restart_only_changes`]).
    started: Arc<Config>,
    /// The audit log, when configured (not reloadable).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// Refuse statements while the audit log cannot record them.
    pub audit_fail_closed: bool,
    /// Statements held for human approval.
    pub approvals: Arc<crate::approvals::Approvals>,
    /// Sessions past login, for the admin API.
    pub live: Arc<crate::admin::live::LiveSessions>,
    /// Logins in progress per client address (both listeners).
    pub pending_logins: Arc<crate::pending_logins::PendingLogins>,
    /// The last reload tried, if any ([`Proxy::last_reload`]).
    last_reload: std::sync::Mutex<Option<ReloadOutcome>>,
}

/// How the last reload of the config and rules went: when, and why it was
/// rejected if it was (the running rules then stay, older than the files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// `None`: applied.
    pub error: Option<String>,
}

/// The rules in force, as one session sees them statement by statement.
///
/// [`Proxy::gate`] loads the shared pointer through arc-swap's debt list
/// and clones the `Arc` (two atomic read-modify-writes) every time. This
/// keeps the last version loaded and checks the shared pointer with one
/// atomic load: a reload is still seen at the session's next statement.
/// The price is that an idle session keeps the version it last saw alive
/// until its next statement or its end.
pub struct GateCache<'a>(arc_swap::Cache<&'a ArcSwap<Loaded>, Arc<Loaded>>);

impl GateCache<'_> {
    /// The gate in force now.
    pub fn gate(&mut self) -> &Arc<dyn Gate> {
        &self.0.load().gate
    }

    /// The version of the rules in force now ([`Loaded::version`]).
    #[inline]
    pub fn version(&mut self) -> u64 {
        self.0.load().version
    }

    /// The masking rules in force now.
    pub fn masker(&mut self) -> Option<&Arc<Masker>> {
        self.0.load().masker.as_ref()
    }
}

/// Counts a session against its identity's limit until dropped.
pub struct SessionSlot {
    sessions: Arc<dashmap::DashMap<String, usize>>,
    identity: String,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let none_left = match self.sessions.get_mut(&self.identity) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        // A name with no session left is not kept (one taken meanwhile
        // keeps it).
        if none_left {
            self.sessions.remove_if(&self.identity, |_, n| *n == 0);
        }
    }
}

impl Proxy {
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> Result<Proxy, LoadError> {
        let client_tls = match &config.tls {
            Some(t) => Some(Arc::new(ClientTlsSettings {
                acceptor: TlsAcceptor::from(tls::server_config(t.cert.get_ref(), t.key.get_ref())?),
                require: t.require,
            })),
            None => None,
        };
        let mock_secret = mock_secret(&config);
        let audit_fail_closed = config.audit.as_ref().is_none_or(|a| a.fail_closed);
        let audit = match &config.audit {
            Some(a) => Some(Arc::new(open_audit(a)?)),
            None => None,
        };
        let brokers =
            crate::credentials::Brokers::new(&crate::credentials::instance_id(&config.listen));
        let started = Arc::new(config.clone());
        let proxy = Proxy {
            started,
            last_reload: std::sync::Mutex::new(None),
            loaded: ArcSwap::from_pointee(Loaded::new(config)?),
            cancels: Arc::new(CancelRegistry::default()),
            client_tls,
            mock_secret,
            shutdown,
            catalogs: dashmap::DashMap::new(),
            catalog_loads: dashmap::DashMap::new(),
            catalog_generations: Default::default(),
            foreign_keys: dashmap::DashMap::new(),
            brokers,
            sessions: Arc::new(dashmap::DashMap::new()),
            audit,
            audit_fail_closed,
            approvals: Arc::default(),
            live: Arc::default(),
            pending_logins: Arc::default(),
        };
        proxy
            .brokers
            .sync(&proxy.config(), |t| proxy.upstream_tls(t));
        Ok(proxy)
    }

    /// Re-reads the config file and the rules it names. A valid new version
    /// takes effect for the next statement of every session; an invalid one
    /// is reported and the running version stays.
    ///
    /// Returns the settings that changed but apply only after a restart
    /// (listeners, TLS, the audit log, see [`restart_only_changes`]),
    /// which are also logged.
    pub fn reload(&self) -> Result<Vec<&'static str>, LoadError> {
        let result = self.reload_inner();
        crate::metrics::reload(result.is_ok());
        let outcome = ReloadOutcome {
            at_ms: crate::audit::now_ms(),
            error: result.as_ref().err().map(ToString::to_string),
        };
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(outcome);
        }
        result
    }

    /// The settings the config in force changed since start that apply
    /// only after a restart (empty when none).
    pub fn restart_required(&self) -> Vec<&'static str> {
        restart_only_changes(&self.started, &self.config())
    }

    /// How the last reload went (`None`: none was tried since start). A
    /// rejected one is what an operator must see: the files say one thing
    /// and the rules in force another.
    pub fn last_reload(&self) -> Option<ReloadOutcome> {
        self.last_reload.lock().ok().and_then(|l| l.clone())
    }

    fn reload_inner(&self) -> Result<Vec<&'static str>, LoadError> {
        let path = self.config().source.clone();
        let config = Config::load(&path)?;
        // Against what runs (read at start), not the last reload (review
        // finding: a second reload of the same change reported nothing).
        let pending = restart_only_changes(&self.started, &config);
        if !pending.is_empty() {
            tracing::warn!(settings = %pending.join(", "), "these settings changed but take effect only when airlock restarts; the running values stay");
        }
        let loaded = Loaded::new(config)?;
        let version = loaded.version;
        let rules = loaded
            .config
            .policy
            .rules
            .as_ref()
            .map(|r| r.get_ref().display().to_string());
        self.loaded.store(Arc::new(loaded));
        // Views may have changed along with the rules: re-read catalogs.
        self.catalogs.clear();
        for slot in self.foreign_keys.iter() {
            if let Ok(source) = self.foreign_key_source(slot.key()) {
                slot.set_source(source);
            }
        }
        self.catalog_generations.bump_all();
        self.brokers.sync(&self.config(), |t| self.upstream_tls(t));
        tracing::info!(config = %path.display(), rules = rules.as_deref().unwrap_or("none"), version, "configuration reloaded");
        Ok(pending)
    }

    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.loaded.load().config)
    }

    /// The version of the config and rules in force, and when it was loaded.
    pub fn version(&self) -> (u64, i64) {
        let l = self.loaded.load();
        (l.version, l.loaded_ms)
    }

    pub fn gate(&self) -> Arc<dyn Gate> {
        Arc::clone(&self.loaded.load().gate)
    }

    /// A session's handle on the rules in force, for the statement hot
    /// path (see [`GateCache`]).
    pub fn gate_cache(&self) -> GateCache<'_> {
        GateCache(arc_swap::Cache::new(&self.loaded))
    }

    /// The verifier of an identity, parsed when the config was loaded.
    pub fn verifier(&self, name: &str, _identity: &Identity) -> Option<ScramVerifier> {
        self.loaded.load().verifiers.get(name).cloned()
    }

    /// The iteration count of the mock SCRAM verifier an unknown name is
    /// checked against: the one most identities' verifiers have (red-team
    /// note: a mock always at 4096 told unknown names from identities whose
    /// verifiers use another count, in the server-first-message's `i=` and
    /// in the time a cleartext check takes).
    pub fn scram_mock_iterations(&self) -> u32 {
        self.loaded.load().scram_mock_iterations
    }

    /// The verifier kinds the mock secret of an unknown MySQL name has
    /// (see [`crate::mysql::client_auth::mock`]).
    pub fn mysql_mock_kinds(&self) -> crate::mysql::client_auth::MockKinds {
        self.loaded.load().mysql_mock_kinds
    }

    /// Takes a session slot for `identity`, or `None` when it is at `max`.
    pub fn session_slot(&self, identity: &str, max: Option<usize>) -> Option<SessionSlot> {
        let mut n = self.sessions.entry(identity.to_owned()).or_insert(0);
        if max.is_some_and(|m| *n >= m) {
            return None;
        }
        *n += 1;
        Some(SessionSlot {
            sessions: Arc::clone(&self.sessions),
            identity: identity.to_owned(),
        })
    }

    pub fn masker(&self) -> Option<Arc<Masker>> {
        self.loaded.load().masker.clone()
    }

    /// The catalog snapshot of a target, loaded on first use and again
    /// once the target's catalog generation moved, with the generation it
    /// was loaded at (read before loading it: a change made while it loads
    /// still counts as newer than it, so a load that raced with a change is
    /// never taken for a fresh one). A load that finds the same relations
    /// as the snapshot held returns that snapshot, with the new generation.
    pub async fn catalog(
        &self,
        target: &str,
    ) -> Result<(Arc<CatalogSnapshot>, u64), crate::pg::error::SessionError> {
        let generation = self.catalog_generations.of(target);
        let cached = |at: u64| {
            self.catalogs
                .get(target)
                .filter(|c| c.1 == at)
                .map(|c| (Arc::clone(&c.0), at))
        };
        if let Some(c) = cached(generation.current()) {
            return Ok(c);
        }
        // One load at a time per target; whoever waited for it takes its
        // snapshot when it is still current.
        let lock = self
            .catalog_loads
            .entry(target.to_owned())
            .or_default()
            .clone();
        let mut loading = lock.lock().await;
        let at = generation.current();
        if let Some(c) = cached(at) {
            return Ok(c);
        }
        // Those that waited for a load that has just failed fail with it,
        // rather than each trying in turn (an upstream that is down would
        // keep the last of them waiting for every connect timeout).
        if let Some(f) = loading
            .as_ref()
            .filter(|f| f.at == at && f.when.elapsed() < FAILED_LOAD_SHARED)
        {
            return Err(crate::pg::error::SessionError::Upstream {
                code: f.code,
                message: f.message.clone(),
            });
        }
        let config = self.config();
        let t =
            config
                .targets
                .get(target)
                .ok_or_else(|| crate::pg::error::SessionError::Upstream {
                    code: "3D000",
                    message: format!("database \"{target}\" does not exist"),
                })?;
        let loaded = match crate::pg::catalog::load(
            target,
            t,
            self.upstream_tls(target),
            config.limits.connect_timeout,
            config.limits.max_message_size.0,
        )
        .await
        {
            Ok(loaded) => loaded,
            Err(e) => {
                crate::metrics::catalog_load(Protocol::Postgres, CatalogLoad::Failed);
                *loading = Some(FailedLoad {
                    at,
                    when: std::time::Instant::now(),
                    code: e.sqlstate(),
                    message: e.to_string(),
                });
                return Err(e);
            }
        };
        // Nothing changed since the last snapshot: hand that one out again,
        // so that sessions keep the plans made against it (see
        // `CatalogSnapshot::same_content`).
        let previous = self
            .catalogs
            .get(target)
            .map(|c| Arc::clone(&c.0))
            .filter(|c| c.same_content(&loaded));
        crate::metrics::catalog_load(
            Protocol::Postgres,
            match previous {
                Some(_) => CatalogLoad::Unchanged,
                None => CatalogLoad::Changed,
            },
        );
        let snap = previous.unwrap_or_else(|| Arc::new(loaded));
        // Kept unless a snapshot loaded at a later generation is there
        // already; one loaded at an older generation than the current one
        // is never handed out (see above).
        self.catalogs
            .entry(target.to_owned())
            .and_modify(|c| {
                if c.1 <= at {
                    *c = (Arc::clone(&snap), at);
                }
            })
            .or_insert_with(|| (Arc::clone(&snap), at));
        Ok((snap, at))
    }

    /// The links of a target for the policy (see [`crate::foreign_keys`]):
    /// its slot, made at first use, whose map its users bring up to date
    /// ([`ForeignKeySlot::fresh`]) before they judge with it.
    pub fn foreign_keys(&self, target: &str) -> Result<Arc<ForeignKeySlot>, String> {
        if let Some(slot) = self.foreign_key_slot(target) {
            return Ok(slot);
        }
        let source = self.foreign_key_source(target)?;
        let generation = self.catalog_generations.of(target);
        Ok(Arc::clone(
            &self
                .foreign_keys
                .entry(target.to_owned())
                .or_insert_with(|| Arc::new(ForeignKeySlot::new(target, generation, source))),
        ))
    }

    /// The links of a Postgres target, up to date, for a session that logs
    /// in: a load runs on `conn`, the session's own connection, idle
    /// before its client is in (any role may read the catalogs; a
    /// passthrough target's configured user may not be able to log in).
    pub async fn pg_foreign_keys(
        &self,
        target: &str,
        conn: &mut crate::pg::conn::Conn,
    ) -> Result<Arc<crate::policy::foreign_keys::ForeignKeys>, String> {
        let slot = self.foreign_keys(target)?;
        let load = |at| async move {
            crate::pg::foreign_keys::load_on(conn, target, at)
                .await
                .map_err(|e| e.to_string())
        };
        Ok(slot.fresh_with(load, true).await)
    }

    /// The links of a target, if they have been loaded.
    pub fn foreign_key_slot(&self, target: &str) -> Option<Arc<ForeignKeySlot>> {
        self.foreign_keys.get(target).map(|s| Arc::clone(&s))
    }

    fn foreign_key_source(&self, target: &str) -> Result<crate::foreign_keys::Source, String> {
        let config = self.config();
        let t = config
            .targets
            .get(target)
            .ok_or_else(|| format!("target \"{target}\" is not configured"))?;
        Ok(crate::foreign_keys::Source::of(
            target,
            t,
            self.upstream_tls(target),
            config.limits.connect_timeout,
            config.limits.max_message_size.0,
        ))
    }

    /// Marks every snapshot of a target's catalog stale (a statement that
    /// may have changed it has run, in any session): every session reloads
    /// before planning its next statement.
    pub fn invalidate_catalog(&self, target: &str) {
        self.catalog_generations.of(target).bump();
    }

    pub fn upstream_tls(&self, target: &str) -> Option<Arc<rustls::ClientConfig>> {
        self.loaded
            .load()
            .upstream_tls
            .get(target)
            .cloned()
            .flatten()
    }
}

/// A catalog load that failed (see [`Proxy::catalog`]): the generation it
/// was for, when, and what the session that ran it was told.
struct FailedLoad {
    at: u64,
    when: std::time::Instant,
    code: &'static str,
    message: String,
}

/// How long after a failed catalog load the sessions that waited for it
/// are given its error instead of trying again.
const FAILED_LOAD_SHARED: std::time::Duration = std::time::Duration::from_secs(1);

/// The iteration count most of `verifiers` have; on a tie, Postgres's
/// default if it is among the most common, else the largest; the default
/// when there are none.
fn most_common_iterations<'a>(verifiers: impl Iterator<Item = &'a ScramVerifier>) -> u32 {
    use airlock_protocol::pg::scram::DEFAULT_ITERATIONS;
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for v in verifiers {
        *counts.entry(v.iterations).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(iterations, n)| (n, iterations == DEFAULT_ITERATIONS, iterations))
        .map_or(DEFAULT_ITERATIONS, |(iterations, _)| iterations)
}

/// The key for mock verifiers of unknown identities. It must be secret and
/// stable across restarts (a salt that changed on restart would set unknown
/// names apart from real ones), so it is derived from the identities'
/// verifiers, which only the operator knows, instead of being random.
fn mock_secret(config: &Config) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"airlock mock verifier key\0");
    for (name, identity) in &config.identities {
        h.update(name.as_bytes());
        h.update([0]);
        match (&identity.secret, &identity.mysql_secret) {
            (Some(secret), _) => h.update(secret.get_ref().as_bytes()),
            // A MySQL-only identity (the key is as before for the rest).
            (None, mysql) => {
                h.update(b"mysql\0");
                h.update(mysql.as_deref().unwrap_or_default().as_bytes());
            }
        }
        h.update([0]);
    }
    h.finalize().into()
}

fn open_audit(a: &crate::config::AuditConfig) -> Result<crate::audit::AuditLog, LoadError> {
    use crate::audit::AuditLog;
    let json: Option<Box<dyn std::io::Write + Send>> = match a.json_lines.as_deref() {
        None => None,
        Some("stdout") => Some(Box::new(std::io::stdout())),
        Some(file) => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)?,
        )),
    };
    Ok(AuditLog::with_retention(
        &a.path,
        a.queue,
        json,
        a.retention,
    )?)
}

/// The settings that differ between `old` and `new` but are read only when
/// airlock starts: the listeners and their connection limits, TLS for
/// clients, the audit log and the admin listener.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    // (Spanned values compare by value: a line added above them moves
    // their span, not what they are.)
    let listen = |c: &Config| (c.listen.postgres, c.listen.mysql);
    let tls = |c: &Config| {
        c.tls.as_ref().map(|t| {
            (
                t.cert.get_ref().clone(),
                t.key.get_ref().clone(),
                t.require,
                t.allow_cleartext_password,
            )
        })
    };
    let audit = |c: &Config| {
        c.audit.as_ref().map(|a| {
            (
                a.path.clone(),
                a.queue,
                a.fail_closed,
                a.json_lines.clone(),
                a.retention,
            )
        })
    };
    let admin_listen = |c: &Config| c.admin.as_ref().map(|a| *a.listen.get_ref());
    let checks = [
        ("listen", listen(old) != listen(new)),
        ("tls", tls(old) != tls(new)),
        ("audit", audit(old) != audit(new)),
        ("admin.listen", admin_listen(old) != admin_listen(new)),
        (
            "limits.max_client_connections",
            old.limits.max_client_connections != new.limits.max_client_connections,
        ),
        (
            "limits.shutdown_timeout",
            old.limits.shutdown_timeout != new.limits.shutdown_timeout,
        ),
        (
            "limits.max_pending_logins_per_address",
            old.limits.max_pending_logins_per_address != new.limits.max_pending_logins_per_address,
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_verifiers_take_the_most_common_iteration_count() {
        let v = |i| ScramVerifier::derive("pw", b"salt", i);
        let count = |is: &[u32]| {
            most_common_iterations(is.iter().map(|&i| v(i)).collect::<Vec<_>>().iter())
        };
        assert_eq!(count(&[]), 4096);
        assert_eq!(count(&[10_000, 10_000, 4096]), 10_000);
        // Ties: the default if it is among them, else the largest.
        assert_eq!(count(&[10_000, 4096]), 4096);
        assert_eq!(count(&[10_000, 20_000]), 20_000);
    }
}

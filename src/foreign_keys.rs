//! Each target's links for the policy (foreign keys, views' base tables,
//! partitions and inheritance children; see
//! [`crate::policy::foreign_keys`]), loaded over a connection of
//! airlock's own and shared by the target's sessions.
//!
//! The first session whose policy has rules on tables loads them, and its
//! login (Postgres, on the session's own connection) or first statement
//! (MySQL) waits for the load. Once
//! the target's catalog generation has moved (DDL through airlock by any
//! session, a config reload), the next statement judged waits for a
//! fresh load ([`ForeignKeySlot::fresh`]; one load at a time per target),
//! so a view or key made through airlock counts from the very next
//! statement; so does a map older than [`REFRESH_EVERY`], so a key a DBA
//! makes on the server counts within that.
//! Until a first load succeeds, and after a load fails, an empty map that
//! refuses every write is in force ([`ForeignKeys::unloaded`],
//! [`ForeignKeys::unreadable_copy`]), with a warning; the next try is
//! [`RETRY_AFTER`] later. Reads go on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::{Protocol, Target};
use crate::masking::Generation;
use crate::policy::foreign_keys::ForeignKeys;

/// After a failed load, how long statements are judged with the map there
/// was before the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The oldest map a statement is judged with: older, it is loaded again
/// first.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Where a target's links are read from.
#[derive(Clone)]
pub enum Source {
    Postgres(crate::pg::foreign_keys::Source),
    MySql {
        target: Target,
        timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

impl Source {
    /// The source for `target` (named `name`), by its protocol.
    pub fn of(
        name: &str,
        target: &Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
        max_message: usize,
    ) -> Source {
        match target.protocol {
            Protocol::Postgres => Source::Postgres(crate::pg::foreign_keys::Source {
                target_name: name.to_owned(),
                target: target.clone(),
                tls,
                timeout,
                max_message,
            }),
            Protocol::Mysql => Source::MySql {
                target: target.clone(),
                timeout,
                tls,
            },
        }
    }

    /// Loads the links, as of catalog generation `at`.
    pub async fn load(&self, at: u64) -> Result<ForeignKeys, String> {
        match self {
            Source::Postgres(s) => crate::pg::foreign_keys::load(s, at)
                .await
                .map_err(|e| e.to_string()),
            Source::MySql {
                target,
                timeout,
                tls,
            } => crate::mysql::foreign_keys::load(target, *timeout, tls.clone(), at)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// A target's links, shared by its sessions.
pub struct ForeignKeySlot {
    target: String,
    map: ArcSwap<ForeignKeys>,
    generation: Generation,
    source: Mutex<Source>,
    /// Held while a load runs: sessions that find the map stale together
    /// wait for one load.
    loading: tokio::sync::Mutex<()>,
    /// After a failed load: when, and the map in force until a load
    /// succeeds (one that refuses every write).
    failed: Mutex<Option<(Instant, Arc<ForeignKeys>)>>,
}

impl ForeignKeySlot {
    /// A slot whose links are read at first use ([`Self::fresh`]); until
    /// then its map refuses every write ([`ForeignKeys::unloaded`]).
    pub fn new(target: &str, generation: Generation, source: Source) -> Self {
        ForeignKeySlot {
            target: target.to_owned(),
            map: ArcSwap::from_pointee(ForeignKeys::unloaded()),
            generation,
            source: Mutex::new(source),
            loading: tokio::sync::Mutex::new(()),
            failed: Mutex::new(None),
        }
    }

    /// The map in force: the last one loaded, or, after a failed load, one
    /// that refuses every write.
    pub fn current(&self) -> Arc<ForeignKeys> {
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((_, refusing)) => Arc::clone(refusing),
            None => self.map.load_full(),
        }
    }

    /// Whether the catalog generation has moved since the map was loaded,
    /// or it was loaded more than [`REFRESH_EVERY`] ago (a key or view a
    /// DBA makes on the server counts within that, with no DDL through
    /// airlock), or it never was.
    pub fn stale(&self) -> bool {
        let map = self.map.load();
        map.loaded_at() != self.generation.current() || map.age() > REFRESH_EVERY
    }

    /// The map as of the current catalog generation: loaded again first
    /// when it is stale, unless a load failed less than [`RETRY_AFTER`]
    /// ago. After a failed load, one that refuses every write.
    pub async fn fresh(&self) -> Arc<ForeignKeys> {
        if !self.stale() {
            return self.current();
        }
        let source = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.fresh_with(|at| async move { source.load(at).await }, false)
            .await
    }

    /// [`Self::fresh`], loading with `load` (given the generation to load
    /// at) when the map is stale; `now`: even within [`RETRY_AFTER`] of a
    /// failed load (a session's own connection, at its login).
    pub async fn fresh_with<F, Fut>(&self, load: F, now: bool) -> Arc<ForeignKeys>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<ForeignKeys, String>>,
    {
        if !self.stale() {
            return self.current();
        }
        let _one = self.loading.lock().await;
        if !self.stale() {
            return self.current();
        }
        let failed_recently = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < RETRY_AFTER);
        if !now && failed_recently {
            return self.current();
        }
        let at = self.generation.current();
        let mut failed = match load(at).await {
            Ok(map) => {
                tracing::debug!(target = %self.target, links = map.len(), "foreign keys loaded");
                self.map.store(Arc::new(map));
                None
            }
            Err(e) => {
                tracing::warn!(target = %self.target, error = %e, "foreign keys not loaded: writes are refused until they are (tried again in 10 s)");
                Some((Instant::now(), Arc::new(self.map.load().unreadable_copy())))
            }
        };
        std::mem::swap(
            &mut *self.failed.lock().unwrap_or_else(|p| p.into_inner()),
            &mut failed,
        );
        self.current()
    }

    /// Where later loads read from (a config reload may have moved the
    /// target).
    pub fn set_source(&self, source: Source) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = source;
    }
}

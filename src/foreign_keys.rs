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
//!
//! A session asks at every statement whether its links are still good. So
//! that the question costs a few atomic loads rather than a clock read and
//! a lock, it keeps a [`LinksWatch`]: the slot's version it last put in
//! force, and an [`Alarm`] for when that map is due to be read again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::{Protocol, Target};
use crate::masking::Generation;
use crate::policy::foreign_keys::ForeignKeys;
use crate::timer_thread::Alarm;

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
    /// Moves whenever what [`Self::current`] returns may have changed: a
    /// load stored or failed ([`LinksWatch`]).
    version: AtomicU64,
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
            version: AtomicU64::new(0),
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
        self.version.fetch_add(1, Ordering::Release);
        self.current()
    }

    /// The map in force (as [`Self::current`]), the catalog generation the
    /// map was loaded at, and when it is due to be read again: its age
    /// past [`REFRESH_EVERY`], or [`RETRY_AFTER`] after a failed load.
    fn in_force(&self) -> (Arc<ForeignKeys>, u64, Instant) {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let map = self.map.load_full();
        let at = map.loaded_at();
        match &*failed {
            Some((when, refusing)) => (Arc::clone(refusing), at, *when + RETRY_AFTER),
            None => {
                let due = map.made() + REFRESH_EVERY;
                (map, at, due)
            }
        }
    }

    /// Where later loads read from (a config reload may have moved the
    /// target).
    pub fn set_source(&self, source: Source) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = source;
    }
}

/// What a session knows of its target's links, so that it can tell at
/// every statement, from a few atomic loads, whether they may need loading
/// again ([`Self::stale`]) and whether the slot has a map it has not put
/// in force yet ([`Self::changed`]).
pub struct LinksWatch {
    /// The slot's version when the session last took its map (`u64::MAX`:
    /// never).
    version: u64,
    /// The catalog generation that map was loaded at.
    loaded_at: u64,
    /// Rings when that map is due to be read again.
    due: Option<Alarm>,
    /// That map's id ([`ForeignKeys::id`]; 0: none): a session whose
    /// context no longer holds it (MySQL's COM_RESET_CONNECTION starts a
    /// new one) takes the map again.
    taken: u64,
}

impl Default for LinksWatch {
    fn default() -> Self {
        LinksWatch {
            version: u64::MAX,
            loaded_at: u64::MAX,
            due: None,
            taken: 0,
        }
    }
}

impl LinksWatch {
    /// Whether the statement at hand must wait for [`ForeignKeySlot::fresh`]:
    /// the map the session last took is due (its age, or a failed load's
    /// retry), the catalog generation has moved since it was loaded, or
    /// the session has not taken one yet. Call [`Self::changed`] first, so
    /// that a map another session loaded is taken without a wait.
    #[inline]
    pub fn stale(&self, slot: &ForeignKeySlot) -> bool {
        self.due.as_ref().is_none_or(Alarm::rang) || self.loaded_at != slot.generation.current()
    }

    /// The slot's map when it may differ from the one the session last
    /// took, that one is due, or the session's context holds another
    /// (`in_force`: [`crate::policy::SessionContext::foreign_keys_id`];
    /// 0 after [`ForeignKeySlot::fresh`] takes the map whatever the
    /// version says: a load another session has just stored may not have
    /// moved it yet); else `None`. The caller puts it in force.
    #[inline]
    pub fn changed(&mut self, slot: &ForeignKeySlot, in_force: u64) -> Option<Arc<ForeignKeys>> {
        let version = slot.version.load(Ordering::Acquire);
        if version == self.version
            && in_force == self.taken
            && self.due.as_ref().is_some_and(|d| !d.rang())
        {
            return None;
        }
        self.take(slot, version)
    }

    /// [`Self::changed`] when the map may have: out of line, so that the
    /// check at every statement stays a few instructions.
    #[cold]
    #[inline(never)]
    fn take(&mut self, slot: &ForeignKeySlot, version: u64) -> Option<Arc<ForeignKeys>> {
        let (map, loaded_at, due) = slot.in_force();
        self.version = version;
        self.loaded_at = loaded_at;
        self.due = Some(Alarm::at(due));
        self.taken = map.id();
        Some(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a session's context holds: the map the watch last took.
    fn taken_id(watch: &LinksWatch) -> u64 {
        watch.taken
    }

    fn slot(generation: &Generation) -> ForeignKeySlot {
        let target: Target =
            toml::from_str("host = \"h\"\ndatabase = \"d\"\nuser = \"u\"\n").expect("a target");
        let source = Source::MySql {
            target,
            timeout: Duration::from_secs(1),
            tls: None,
        };
        ForeignKeySlot::new("t", generation.clone(), source)
    }

    /// A session's watch takes the slot's map once, and again only when a
    /// load changed it; it says the links must be loaded again when they
    /// never were, when the catalog generation moves, and after a failed
    /// load (whose refusing map it takes without a wait).
    #[tokio::test]
    async fn a_watch_follows_the_slot_without_asking_it_each_time() {
        let generation = Generation::default();
        let slot = slot(&generation);
        let mut watch = LinksWatch::default();
        let first = watch
            .changed(&slot, taken_id(&watch))
            .expect("taken at first");
        assert!(first.is_unreadable());
        assert!(watch.stale(&slot), "never loaded");
        assert!(watch.changed(&slot, taken_id(&watch)).is_none());

        let at = generation.current();
        let loaded = slot
            .fresh_with(|at| async move { Ok(ForeignKeys::new(at, [], [])) }, true)
            .await;
        let taken = watch.changed(&slot, taken_id(&watch)).expect("a new map");
        assert!(Arc::ptr_eq(&taken, &loaded));
        assert_eq!(taken.loaded_at(), at);
        assert!(!watch.stale(&slot));
        assert!(watch.changed(&slot, taken_id(&watch)).is_none());

        generation.bump();
        assert!(watch.stale(&slot), "the catalog moved");
        slot.fresh_with(|_| async { Err("down".to_owned()) }, true)
            .await;
        let refusing = watch
            .changed(&slot, taken_id(&watch))
            .expect("the refusing map");
        assert!(refusing.is_unreadable());
        assert!(watch.stale(&slot), "still as of the old generation");
        assert!(
            watch.changed(&slot, taken_id(&watch)).is_none(),
            "due only after RETRY_AFTER"
        );

        // A context that lost its map (a reset) takes it again.
        let again = watch.changed(&slot, 0).expect("taken again");
        assert!(Arc::ptr_eq(&again, &refusing));

        let reloaded = slot
            .fresh_with(|at| async move { Ok(ForeignKeys::new(at, [], [])) }, true)
            .await;
        let taken = watch
            .changed(&slot, taken_id(&watch))
            .expect("loaded again");
        assert!(Arc::ptr_eq(&taken, &reloaded));
        assert!(!taken.is_unreadable());
        assert!(!watch.stale(&slot));
    }
}

//! Bounded plan cache: mutex-striped LRU shards keyed by a hash of
//! everything a plan depends on (active rules, detectors, dialect, search
//! path / current database, catalog version, SQL text). The full key is
//! stored and compared, so a hash collision is a miss, never a wrong plan.
//! Plans never depend on literal values (lineage looks at names, not at
//! constants), so texts with the same [shape](crate::policy::shape) share
//! one plan.
//! The rules version is implicit: a reload builds a new `Masker`.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::detect::DetectorSet;
use super::StatementPlan;
use crate::fasthash::hash64;
use crate::policy::{Dialect, SessionContext};

const SHARDS: usize = 16;

/// What a plan depends on, borrowed: a lookup builds and allocates
/// nothing; only a miss stores an owned [`Key`].
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    active: &'a [usize],
    detectors: DetectorSet,
    dialect: Dialect,
    /// The session context a plan depends on (search path or current
    /// database), compared by value on a hit.
    ctx: Context<'a>,
    catalog: u64,
    /// Whether `text` is a shape rather than the exact SQL.
    shaped: bool,
    text: &'a [u8],
}

/// The part of the session context a plan depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Context<'a> {
    SearchPath(&'a [String]),
    Database(Option<&'a str>),
}

/// [`Context`], stored.
#[derive(Debug, PartialEq, Eq)]
enum StoredContext {
    SearchPath(Box<[String]>),
    Database(Option<Box<str>>),
}

impl StoredContext {
    fn is(&self, c: &Context<'_>) -> bool {
        match (self, c) {
            (StoredContext::SearchPath(a), Context::SearchPath(b)) => **a == **b,
            (StoredContext::Database(a), Context::Database(b)) => a.as_deref() == *b,
            _ => false,
        }
    }
}

impl Context<'_> {
    fn stored(self) -> StoredContext {
        match self {
            Context::SearchPath(p) => StoredContext::SearchPath(p.into()),
            Context::Database(d) => StoredContext::Database(d.map(Into::into)),
        }
    }
}

impl<'a> KeyRef<'a> {
    /// `shape`: the statement's shape when it has one (see
    /// [`crate::policy::shape`]); plans never depend on literal values, so
    /// texts of one shape share a plan.
    pub fn new(
        active: &'a [usize],
        detectors: DetectorSet,
        dialect: Dialect,
        ctx: &'a SessionContext,
        catalog: u64,
        sql: &'a str,
        shape: Option<&'a [u8]>,
    ) -> Self {
        let ctx = match dialect {
            Dialect::Postgres => Context::SearchPath(&ctx.search_path),
            Dialect::MySql => Context::Database(ctx.current_database.as_deref()),
        };
        let (shaped, text) = match shape {
            Some(shape) => (true, shape),
            None => (false, sql.as_bytes()),
        };
        KeyRef {
            active,
            detectors,
            dialect,
            ctx,
            catalog,
            shaped,
            text,
        }
    }

    fn hash64(&self) -> u64 {
        hash64(&(
            self.active,
            self.detectors,
            self.dialect,
            self.ctx,
            self.catalog,
            self.shaped,
            self.text,
        ))
    }

    fn stored(self) -> Key {
        Key {
            active: self.active.into(),
            detectors: self.detectors,
            dialect: self.dialect,
            ctx: self.ctx.stored(),
            catalog: self.catalog,
            shaped: self.shaped,
            text: self.text.into(),
        }
    }
}

/// A stored [`KeyRef`].
#[derive(Debug)]
struct Key {
    active: Box<[usize]>,
    detectors: DetectorSet,
    dialect: Dialect,
    ctx: StoredContext,
    catalog: u64,
    shaped: bool,
    text: Box<[u8]>,
}

impl Key {
    fn is(&self, k: &KeyRef<'_>) -> bool {
        self.catalog == k.catalog
            && self.shaped == k.shaped
            && self.dialect == k.dialect
            && self.detectors == k.detectors
            && *self.active == *k.active
            && *self.text == *k.text
            && self.ctx.is(&k.ctx)
    }
}

/// Plans of one text, shared by every session that sends it.
pub type Plans = Arc<[Arc<StatementPlan>]>;

type Shard = Mutex<LruCache<u64, (Key, Plans)>>;

pub struct PlanCache {
    shards: Vec<Shard>,
}

impl PlanCache {
    /// `capacity` entries in total; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        let shards = match NonZeroUsize::new(capacity.div_ceil(SHARDS)) {
            Some(n) => (0..SHARDS).map(|_| Mutex::new(LruCache::new(n))).collect(),
            None => Vec::new(),
        };
        PlanCache { shards }
    }

    fn shard(&self, h: u64) -> Option<&Shard> {
        if self.shards.is_empty() {
            return None;
        }
        self.shards.get((h >> 59) as usize % self.shards.len())
    }

    pub fn get(&self, key: &KeyRef<'_>) -> Option<Plans> {
        let h = key.hash64();
        let mut g = self.shard(h)?.lock().unwrap_or_else(|p| p.into_inner());
        match g.get(&h) {
            Some((k, plans)) if k.is(key) => Some(Arc::clone(plans)),
            _ => None,
        }
    }

    pub fn put(&self, key: &KeyRef<'_>, plans: &Plans) {
        // Bounded by entries, each keeping its text: long texts are
        // planned every time (see the decision cache's limit).
        if key.text.len() > crate::policy::cache::MAX_CACHED_TEXT {
            return;
        }
        let h = key.hash64();
        let Some(shard) = self.shard(h) else { return };
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(h, (key.stored(), Arc::clone(plans)));
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

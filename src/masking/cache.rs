//! Bounded plan cache: mutex-striped LRU shards keyed by a hash of
//! everything a plan depends on (active rules, detectors, dialect, search
//! path / current database, catalog version, SQL text). The full key is
//! stored and compared, so a hash collision is a miss, never a wrong plan.
//! Plans never depend on literal values (lineage looks at names, not at
//! constants), so texts with the same [shape](crate::policy::shape) share
//! one plan.
//! The rules version is implicit: a reload builds a new `Masker`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::detect::DetectorSet;
use super::StatementPlan;
use crate::policy::{Dialect, SessionContext};

const SHARDS: usize = 16;

/// What a plan depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    active: Box<[usize]>,
    detectors: DetectorSet,
    dialect: Dialect,
    ctx: u64,
    catalog: u64,
    /// Whether `text` is a shape rather than the exact SQL.
    shaped: bool,
    text: Box<[u8]>,
}

impl Key {
    pub fn new(
        active: &[usize],
        detectors: DetectorSet,
        dialect: Dialect,
        ctx: &SessionContext,
        catalog: u64,
        sql: &str,
    ) -> Self {
        let mut h = DefaultHasher::new();
        match dialect {
            Dialect::Postgres => ctx.search_path.hash(&mut h),
            Dialect::MySql => ctx.current_database.hash(&mut h),
        }
        let (shaped, text) = match crate::policy::shape::of(sql.as_bytes()) {
            Some(shape) => (true, shape.into_boxed_slice()),
            None => (false, sql.as_bytes().into()),
        };
        Key {
            active: active.into(),
            detectors,
            dialect,
            ctx: h.finish(),
            catalog,
            shaped,
            text,
        }
    }

    fn hash64(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
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

    pub fn get(&self, key: &Key) -> Option<Plans> {
        let h = key.hash64();
        let mut g = self.shard(h)?.lock().unwrap_or_else(|p| p.into_inner());
        match g.get(&h) {
            Some((k, plans)) if k == key => Some(Arc::clone(plans)),
            _ => None,
        }
    }

    pub fn put(&self, key: Key, plans: &Plans) {
        let h = key.hash64();
        let Some(shard) = self.shard(h) else { return };
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(h, (key, Arc::clone(plans)));
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

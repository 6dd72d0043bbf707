//! Bounded decision cache: a fixed number of mutex-striped LRU shards,
//! keyed by a 64-bit hash of everything the decision depends on. The full
//! key is stored and compared on a hit, so a hash collision is a miss,
//! never a wrong answer.
//!
//! A decision is keyed either by the exact statement text or, when the
//! engine found that it does not depend on numeric literal values, by the
//! text's [shape](super::shape). The two live in separate key spaces.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::{Dialect, Judgement, Request, Source};
use crate::fasthash::hash64;

const SHARDS: usize = 32;
/// Texts longer than this are judged every time, not cached: the cache is
/// bounded by entries, and each keeps its text (DoS finding: distinct
/// 8 MiB statements, refused as too large, took 1.2 GB per hundred).
/// Agents' statements are far shorter; a long one costs its parse anyway.
pub const MAX_CACHED_TEXT: usize = 16 * 1024;

/// Which text a cache key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyText {
    /// The statement text as sent.
    Exact,
    /// Its literal-insensitive shape ([`super::shape::of`]).
    Shape,
}

struct Entry {
    policy: usize,
    dialect: Dialect,
    source: Source,
    ctx: u64,
    /// The context itself: a hit compares it, so two contexts whose
    /// hashes collide never share a decision.
    search_path: Box<[String]>,
    database: Option<Box<str>>,
    /// [`super::SessionContext::foreign_keys_id`].
    foreign_keys: u64,
    kind: KeyText,
    text: Box<[u8]>,
    judgement: Judgement,
}

pub struct DecisionCache {
    shards: Vec<Mutex<LruCache<u64, Entry>>>,
}

/// Hash of the context parts a decision depends on.
pub fn context_hash(req: &Request<'_>) -> u64 {
    let fk = req.session.foreign_keys_id();
    match req.dialect {
        Dialect::Postgres => hash64(&(&req.session.search_path, fk)),
        Dialect::MySql => hash64(&(&req.session.current_database, fk)),
    }
}

fn key_hash(policy: usize, req: &Request<'_>, ctx: u64, kind: KeyText, text: &[u8]) -> u64 {
    hash64(&(policy, req.dialect, req.source, ctx, kind, text))
}

impl DecisionCache {
    /// `capacity` entries in total; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        let per = capacity.div_ceil(SHARDS);
        let shards = match NonZeroUsize::new(per) {
            Some(n) => (0..SHARDS).map(|_| Mutex::new(LruCache::new(n))).collect(),
            None => Vec::new(),
        };
        DecisionCache { shards }
    }

    fn shard(&self, h: u64) -> Option<&Mutex<LruCache<u64, Entry>>> {
        if self.shards.is_empty() {
            return None;
        }
        self.shards.get((h >> 58) as usize % self.shards.len())
    }

    /// The decision cached for `text` (the request's SQL or its shape).
    pub fn get(
        &self,
        policy: usize,
        req: &Request<'_>,
        ctx: u64,
        kind: KeyText,
        text: &[u8],
    ) -> Option<Judgement> {
        let h = key_hash(policy, req, ctx, kind, text);
        let shard = self.shard(h)?;
        let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let e = guard.get(&h)?;
        if e.policy == policy
            && e.dialect == req.dialect
            && e.source == req.source
            && e.ctx == ctx
            && e.kind == kind
            && *e.text == *text
            && *e.search_path == *req.session.search_path
            && e.database.as_deref() == req.session.current_database.as_deref()
            && e.foreign_keys == req.session.foreign_keys_id()
        {
            Some(e.judgement.clone())
        } else {
            None
        }
    }

    pub fn put(
        &self,
        policy: usize,
        req: &Request<'_>,
        ctx: u64,
        kind: KeyText,
        text: &[u8],
        judgement: &Judgement,
    ) {
        if text.len() > MAX_CACHED_TEXT {
            return;
        }
        let h = key_hash(policy, req, ctx, kind, text);
        let Some(shard) = self.shard(h) else { return };
        let entry = Entry {
            policy,
            dialect: req.dialect,
            source: req.source,
            ctx,
            search_path: req.session.search_path.as_slice().into(),
            database: req.session.current_database.as_deref().map(Into::into),
            foreign_keys: req.session.foreign_keys_id(),
            kind,
            text: text.into(),
            judgement: judgement.clone(),
        };
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(h, entry);
    }

    /// Entries currently cached.
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

//! The catalog lineage analysis asks for `*` expansion and view bodies.
//!
//! Sessions implement [`Catalog`] from the database (information_schema /
//! pg_get_viewdef); tests use [`MemoryCatalog`].
//!
//! Snapshots go stale when the schema changes. [`Generations`] (one per
//! proxy, shared by both protocols) counts, per target, the statements run
//! through airlock that may have changed its catalog (DDL, by any session
//! and principal) and config reloads. A session notes the count before it
//! loads a snapshot and compares it before planning each statement (one
//! atomic load); when it moved, the session reloads before planning, and
//! plans made earlier (prepared statements) are made again. DDL run on the
//! server other than through airlock is not counted. Each [`Generation`]
//! also counts the target's sessions with DDL in a transaction that has
//! not ended (see [`crate::pg::ddl_fence`], "Other sessions' DDL").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a catalog gives as the "definition" of a name that means more
/// than one relation, because their names differ only in case (`vw` and
/// `"VW"`, which lineage, comparing names in lower case, cannot tell
/// apart): a string literal is not a statement, so lineage stops on it
/// with `mask.unanalyzable`, quoting it in the refusal. Such an entry has
/// no columns.
pub const AMBIGUOUS: &str = "'airlock: this name means more than one relation \
     (their names differ only in case)'";

/// Column lists and view definitions, by lower-case schema and table name
/// (MySQL: database and table).
pub trait Catalog: Sync {
    /// The relation's columns in order, or `None` when it is unknown.
    fn columns(&self, schema: &str, table: &str) -> Option<Vec<String>>;
    /// The view's defining `SELECT`, when the relation is a view.
    fn view_sql(&self, schema: &str, table: &str) -> Option<String>;
    /// The (lower-case) names of the relations the snapshot knows in
    /// `schema` (lower-case), in no particular order.
    fn relations(&self, schema: &str) -> Vec<String>;
    /// The tables the relation is a partition or inheritance child of,
    /// nearest first, each as lower-case (schema, name): reading the
    /// child reads rows of each of them, so their masks cover it (Postgres;
    /// none elsewhere).
    fn ancestors(&self, _schema: &str, _table: &str) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The partitions and inheritance children of the relation, at any
    /// depth, as lower-case (schema, name).
    fn descendants(&self, _schema: &str, _table: &str) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Whether a function of this name (lower-case) is defined on the
    /// server outside its own schemas (Postgres: not in `pg_catalog`;
    /// MySQL: a stored function outside `mysql` and `sys`):
    /// airlock cannot see what it does with its arguments, so masked data
    /// may not be passed to it (it may store it where it reads raw).
    fn server_function(&self, _name: &str) -> bool {
        false
    }
    /// Whether a function of this name (lower-case) is surely one of the
    /// server's own and none made on it (Postgres: in `pg_catalog`, and
    /// no function of that name elsewhere). Such a function computes what
    /// it returns from its arguments: as a table function
    /// (`unnest(...) x`, `generate_series(...) g`), its columns hold no
    /// data airlock does not see in the arguments. `false` when the
    /// catalog cannot tell (no live snapshot).
    fn builtin_function(&self, _name: &str) -> bool {
        false
    }
    /// Whether the server has casts made on it (Postgres): then any cast
    /// may run code made on the server.
    fn user_casts(&self) -> bool {
        false
    }
    /// The generated columns of `schema.table` (lower-case) and the
    /// expressions that compute them, as the server prints them: their
    /// values derive from the columns those name.
    fn generated(&self, _schema: &str, _table: &str) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Whether some of those casts are implicit (Postgres): then any
    /// operator or function given a value may run one.
    fn user_implicit_casts(&self) -> bool {
        false
    }
    /// Whether writing to `schema.table` (lower-case) runs code made on
    /// the server that sees the rows written: triggers, rules (Postgres),
    /// CHECK constraints calling such functions (Postgres), on it or on
    /// its partitions and children.
    fn runs_code_on_write(&self, _schema: &str, _table: &str) -> bool {
        false
    }
    /// The materialized views, as lower-case (schema, name) with their
    /// defining `SELECT`: their rows were computed, at their last
    /// refresh, by the definitions of what they read as those were then
    /// (Postgres).
    fn materialized_views(&self) -> Vec<(String, String, String)> {
        Vec::new()
    }
    /// Whether the catalog knows every user relation there was when it was
    /// read (a live snapshot), so that one it does not know was created
    /// since or is temporary (see
    /// [`crate::masking::lineage::Analyzer::unknown_relation`]). `false` for
    /// a catalog that knows only some (tests, `airlock explain`).
    fn complete(&self) -> bool {
        false
    }
    /// Whether `schema.name` (lower-case) is one of the server's own
    /// relations (Postgres: in `pg_catalog` or `information_schema`),
    /// which a snapshot names but does not describe.
    fn is_system_relation(&self, _schema: &str, _name: &str) -> bool {
        false
    }
    /// Changes whenever the catalog's answers may change (part of the plan
    /// cache key).
    fn version(&self) -> u64 {
        0
    }
}

/// The names of the relations in `schema` among the entries of a map keyed
/// by (schema, name): [`Catalog::relations`] for the catalogs kept so.
pub fn relations_in<'a, V: 'a>(
    keys: impl IntoIterator<Item = (&'a (String, String), V)>,
    schema: &str,
) -> Vec<String> {
    keys.into_iter()
        .filter(|((s, _), _)| s == schema)
        .map(|((_, t), _)| t.clone())
        .collect()
}

/// Every ancestor of `start` through `parents` (a relation's direct
/// parents), nearest first, each once. All of them, however many: the
/// root is the table rules name, and a snapshot is finite, so the walk
/// ends (Postgres has no cycles there; one in the data only repeats
/// names already taken).
pub fn ancestors_of<K: PartialEq>(start: K, parents: impl Fn(&K) -> Vec<K>) -> Vec<K> {
    let mut out: Vec<K> = Vec::new();
    let mut next = 0;
    let mut frontier = parents(&start);
    loop {
        for p in frontier {
            if p != start && !out.contains(&p) {
                out.push(p);
            }
        }
        let Some(k) = out.get(next) else {
            return out;
        };
        next += 1;
        frontier = parents(k);
    }
}

/// A catalog that knows nothing: every relation is unknown.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn columns(&self, _schema: &str, _table: &str) -> Option<Vec<String>> {
        None
    }

    fn view_sql(&self, _schema: &str, _table: &str) -> Option<String> {
        None
    }

    fn relations(&self, _schema: &str) -> Vec<String> {
        Vec::new()
    }
}

/// An in-memory catalog.
#[derive(Debug, Default, Clone)]
pub struct MemoryCatalog {
    tables: HashMap<(String, String), (Vec<String>, Option<String>)>,
    /// Each child's parent tables (partitions, inheritance).
    parents: HashMap<(String, String), Vec<(String, String)>>,
    pub version: u64,
    /// Answers [`Catalog::complete`].
    pub complete: bool,
    /// Answers [`Catalog::is_system_relation`]: (schema, name).
    pub system: Vec<(String, String)>,
}

impl MemoryCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a table.
    pub fn table(mut self, schema: &str, name: &str, columns: &[&str]) -> Self {
        self.tables.insert(
            (schema.to_lowercase(), name.to_lowercase()),
            (columns.iter().map(|c| c.to_lowercase()).collect(), None),
        );
        self
    }

    /// Makes `schema.name` a partition or inheritance child of
    /// `parent_schema.parent`.
    pub fn child_of(mut self, schema: &str, name: &str, parent_schema: &str, parent: &str) -> Self {
        self.parents
            .entry((schema.to_lowercase(), name.to_lowercase()))
            .or_default()
            .push((parent_schema.to_lowercase(), parent.to_lowercase()));
        self
    }

    /// Adds a view with its columns and defining query.
    pub fn view(mut self, schema: &str, name: &str, columns: &[&str], sql: &str) -> Self {
        self.tables.insert(
            (schema.to_lowercase(), name.to_lowercase()),
            (
                columns.iter().map(|c| c.to_lowercase()).collect(),
                Some(sql.to_string()),
            ),
        );
        self
    }
}

impl Catalog for MemoryCatalog {
    fn columns(&self, schema: &str, table: &str) -> Option<Vec<String>> {
        self.tables
            .get(&(schema.to_string(), table.to_string()))
            .map(|t| t.0.clone())
    }

    fn view_sql(&self, schema: &str, table: &str) -> Option<String> {
        self.tables
            .get(&(schema.to_string(), table.to_string()))
            .and_then(|t| t.1.clone())
    }

    fn relations(&self, schema: &str) -> Vec<String> {
        relations_in(&self.tables, schema)
    }

    fn ancestors(&self, schema: &str, table: &str) -> Vec<(String, String)> {
        ancestors_of((schema.to_owned(), table.to_owned()), |r| {
            self.parents.get(r).cloned().unwrap_or_default()
        })
    }

    fn descendants(&self, schema: &str, table: &str) -> Vec<(String, String)> {
        let me = (schema.to_owned(), table.to_owned());
        self.parents
            .keys()
            .filter(|child| self.ancestors(&child.0, &child.1).contains(&me))
            .cloned()
            .collect()
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn complete(&self) -> bool {
        self.complete
    }

    fn is_system_relation(&self, schema: &str, name: &str) -> bool {
        self.system.iter().any(|(s, n)| s == schema && n == name)
    }
}

/// Per-target catalog generations (see the module docs).
#[derive(Debug, Default)]
pub struct Generations(dashmap::DashMap<String, Generation>);

impl Generations {
    /// The generation counter of `target`, created at 0 on first use. A
    /// session takes it once and keeps it.
    pub fn of(&self, target: &str) -> Generation {
        if let Some(g) = self.0.get(target) {
            return g.clone();
        }
        self.0.entry(target.to_owned()).or_default().clone()
    }

    /// Marks every target's snapshots stale (a config reload).
    pub fn bump_all(&self) {
        for g in self.0.iter() {
            g.bump();
        }
    }
}

/// One target's catalog generation: moves whenever a snapshot of the
/// target's catalog may have gone stale. It also counts the target's
/// sessions with *unsettled* DDL: DDL forwarded or run in a transaction
/// airlock has not yet seen end (see [`crate::pg::ddl_fence`]). Masked
/// results are refused while another session's DDL is unsettled: the
/// statement may have waited for that DDL's lock and then run against its
/// definitions, which its plan did not know.
#[derive(Debug, Default, Clone)]
pub struct Generation(Arc<GenerationState>);

/// The counters behind a [`Generation`].
#[derive(Debug, Default)]
struct GenerationState {
    /// The generation.
    current: AtomicU64,
    /// Sessions with unsettled DDL. It may count one too many for a moment
    /// (never one too few), which only refuses a result needlessly.
    unsettled: AtomicU64,
    /// When [`Generation::bump_for_unknown`] last moved the generation, in
    /// milliseconds since [`epoch`] (0: never).
    unknown_at: AtomicU64,
    /// When [`Generation::bump_for_locked`] last moved it (likewise).
    locked_at: AtomicU64,
    /// The names that moved it, and when (bounded: cleared when full).
    unknown_names: std::sync::Mutex<HashMap<String, u64>>,
    /// The target's masking sessions' requests ([`Generation::register`]).
    sessions: std::sync::Mutex<Vec<std::sync::Weak<InFlight>>>,
}

/// One masking session's requests as other sessions' DDL sees them (see
/// [`Generation::register`]).
///
/// A write has no result that could be refused if it ran against
/// definitions its plan did not know, so a masking session refuses writes
/// while another session's DDL is unsettled. That check alone would leave
/// a race: a write checked just before the DDL is counted may reach the
/// server after the DDL has run (pipelined behind a slow statement, say).
/// So the two sides follow Dekker's pattern, with sequentially consistent
/// operations: a session publishes the request it is about to forward
/// ([`InFlight::checking`]) *before* it reads [`Generation::unsettled`],
/// and a session about to forward DDL counts it unsettled *before* it
/// looks for other sessions' requests in flight
/// ([`Generation::in_flight_besides`]). Either the write's check sees the
/// DDL (and refuses the write), or the DDL sees the write in flight and
/// waits until it has been answered ([`InFlightAt`]).
#[derive(Debug, Default)]
pub struct InFlight {
    /// The number of the request last checked (requests are numbered in
    /// the order they are sent; see [`Self::answered`]).
    checked: AtomicU64,
    /// How many requests have been answered.
    answered: AtomicU64,
}

impl InFlight {
    /// The request that will be answered as number `request` is about to
    /// be checked and forwarded: call it before reading
    /// [`Generation::unsettled`].
    pub fn checking(&self, request: u64) {
        self.checked.store(request, Ordering::SeqCst);
    }

    /// `done` requests have been answered.
    pub fn answered(&self, done: u64) {
        self.answered.store(done, Ordering::Release);
    }

    /// The request checked last, `request`, waits before it is forwarded
    /// (see [`InFlightAt`]): not in flight meanwhile, so that others' DDL
    /// need not wait for it; [`Self::checking`] it again before it goes.
    pub fn holding(&self, request: u64) {
        self.checked
            .store(request.saturating_sub(1), Ordering::SeqCst);
    }

    /// The session has ended: nothing of it is in flight any more.
    pub fn ended(&self) {
        self.answered.store(u64::MAX, Ordering::Release);
    }

    /// The request checked last, when it is unanswered.
    fn busy(&self) -> Option<u64> {
        let checked = self.checked.load(Ordering::SeqCst);
        (checked > self.answered.load(Ordering::Acquire)).then_some(checked)
    }
}

/// Requests of other masking sessions that were in flight when DDL was
/// counted ([`Generation::in_flight_besides`]): the DDL runs once they
/// have all been answered ([`InFlightAt::drained`]).
#[derive(Debug, Default)]
pub struct InFlightAt(Vec<(Arc<InFlight>, u64)>);

impl InFlightAt {
    /// Whether there were none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Waits (on the timer thread, polling every millisecond) until
    /// [`Self::drained`], at most `within`; returns whether it is.
    pub async fn wait_drained(&self, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.drained() {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            crate::timer_thread::sleep_until(now + std::time::Duration::from_millis(1)).await;
        }
    }

    /// Whether every one of them has been answered, or is held back
    /// ([`InFlight::holding`]: DDL waiting in its turn, which looks for
    /// DDL counted meanwhile before it goes, and so would not run beside
    /// this one; two sessions' DDL do not wait for each other). A session
    /// that held its request back still counts with the requests it sent
    /// before (what it publishes now, when lower): those may be writes
    /// pipelined ahead of its DDL and not yet answered (found while
    /// reading the fence: they were taken for answered as soon as the
    /// request after them was held back).
    pub fn drained(&self) -> bool {
        self.0.iter().all(|(s, request)| {
            let upto = (*request).min(s.checked.load(Ordering::SeqCst));
            s.answered.load(Ordering::Acquire) >= upto
        })
    }
}

/// Shortest time between two reloads asked for by statements that name a
/// relation the snapshot lacks, whatever the names: names that do not
/// exist, one after another, must not have the catalog read again and
/// again (each reload outdates the target's SQL-prepared statements).
pub const UNKNOWN_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Shortest time between two reloads asked for by one name: a misspelt
/// name in a loop is looked for again once a minute.
pub const UNKNOWN_NAME_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Shortest time between two reloads asked for by statements refused
/// for reading a view that was locked ([`Generation::bump_for_locked`]).
pub const LOCKED_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What a catalog snapshot gives as the definition of a view another
/// transaction held an exclusive lock on when it was read (Postgres: its
/// definition was not asked for, see `crate::pg::catalog`), quoted in the
/// refusal of the statements that read it; a string literal, like
/// [`AMBIGUOUS`], so that lineage stops on it.
pub const LOCKED_VIEW: &str = "airlock: this view is locked by another transaction \
     (its definition may be changing, or it is being refreshed): \
     run the statement again once that transaction has ended";

/// The rule a statement reading a [`LOCKED_VIEW`] is refused under: what
/// asks for a fresh snapshot ([`Generation::bump_for_locked`]), rather
/// than the message's text, which may quote what the client wrote
/// (review finding).
pub const LOCKED_RULE: &str = "mask.locked-view";

/// Names [`GenerationState::unknown_names`] keeps.
const UNKNOWN_NAMES: usize = 256;

/// The instant [`GenerationState::unknown_at`] counts from.
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

impl Generation {
    /// The count now. Read it before loading a snapshot: a change made
    /// while the snapshot loads then still counts as newer than it.
    pub fn current(&self) -> u64 {
        self.0.current.load(Ordering::Acquire)
    }

    /// Marks every snapshot of the target taken so far stale; call it when
    /// a statement that may have changed the catalog has run.
    pub fn bump(&self) {
        self.0.current.fetch_add(1, Ordering::AcqRel);
    }

    /// [`Self::bump`] for a statement that named relation `name`, which
    /// the snapshot lacks (see
    /// [`crate::masking::lineage::Analyzer::unknown_relation`]), so that
    /// the target's sessions read the catalog again before their next
    /// statement: at most once per [`UNKNOWN_RELOAD_EVERY`], and for one
    /// name once per [`UNKNOWN_NAME_RELOAD_EVERY`]. Returns whether it
    /// moved.
    pub fn bump_for_unknown(&self, name: &str) -> bool {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.bump_for_unknown_at(name, now.max(1))
    }

    /// [`Self::bump_for_unknown`] at `now` (milliseconds since [`epoch`]).
    fn bump_for_unknown_at(&self, name: &str, now: u64) -> bool {
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let Ok(mut names) = self.0.unknown_names.lock() else {
            return false;
        };
        if names
            .get(name)
            .is_some_and(|&at| now.saturating_sub(at) < millis(UNKNOWN_NAME_RELOAD_EVERY))
        {
            return false;
        }
        let last = self.0.unknown_at.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < millis(UNKNOWN_RELOAD_EVERY) {
            return false;
        }
        self.0.unknown_at.store(now, Ordering::Release);
        if names.len() >= UNKNOWN_NAMES {
            names.clear();
        }
        names.insert(name.to_owned(), now);
        drop(names);
        self.bump();
        true
    }

    /// [`Self::bump`] for a statement refused because a view it reads was
    /// locked by another transaction when the snapshot was read (see
    /// [`LOCKED_VIEW`]), so that the snapshot is read again once the lock
    /// may be gone: at most once per [`LOCKED_RELOAD_EVERY`]. The lock
    /// ends with that transaction, which airlock may not see (it ran
    /// outside airlock). Returns whether it moved.
    pub fn bump_for_locked(&self) -> bool {
        let now = u64::try_from(epoch().elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let every = u64::try_from(LOCKED_RELOAD_EVERY.as_millis()).unwrap_or(u64::MAX);
        let last = self.0.locked_at.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < every {
            return false;
        }
        if self
            .0
            .locked_at
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.bump();
        true
    }

    /// How many sessions of the target have unsettled DDL (see
    /// [`Self::count_unsettled`]). Read it before [`Self::current`]: a
    /// session settles its DDL only after bumping the generation, so a
    /// reader that sees it settled also sees the generation moved.
    pub fn unsettled(&self) -> u64 {
        self.0.unsettled.load(Ordering::SeqCst)
    }

    /// Counts one more session with unsettled DDL. Sessions count
    /// themselves at most once at a time: see
    /// [`crate::pg::ddl_fence::FenceSignal`], which keeps the increments
    /// and [`Self::settle_unsettled`]s balanced.
    pub fn count_unsettled(&self) {
        self.0.unsettled.fetch_add(1, Ordering::SeqCst);
    }

    /// A masking session of the target starts: its requests, which it
    /// keeps up to date, count for [`Self::in_flight_besides`] for as long
    /// as it holds them.
    pub fn register(&self) -> Arc<InFlight> {
        let me = Arc::new(InFlight::default());
        let mut sessions = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.retain(|s| s.strong_count() > 0);
        sessions.push(Arc::downgrade(&me));
        me
    }

    /// The requests of the target's masking sessions other than `me`
    /// that are checked and not yet answered (see [`InFlight`]): call it
    /// after counting DDL unsettled, before forwarding it.
    pub fn in_flight_besides(&self, me: &InFlight) -> InFlightAt {
        let sessions = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        InFlightAt(
            sessions
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .filter(|s| !std::ptr::eq(&**s, me))
                .filter_map(|s| s.busy().map(|request| (s, request)))
                .collect(),
        )
    }

    /// One session counted by [`Self::count_unsettled`] has settled its
    /// DDL (its transaction ended, or the session did).
    pub fn settle_unsettled(&self) {
        // Never below zero, even if a caller were out of step.
        let _ = self
            .0
            .unsettled
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod generation_tests {
    use super::*;

    #[test]
    fn ddl_held_back_still_counts_the_requests_sent_before_it() {
        let g = Generations::default().of("a");
        let (other, ddl) = (g.register(), g.register());
        // `other` pipelined a write (request 4) and then DDL (request 5),
        // and has had 3 answered.
        other.checking(5);
        other.answered(3);
        let waiting = g.in_flight_besides(&ddl);
        assert!(!waiting.drained());
        // Its DDL waits in its turn: request 5 is held back, but the
        // write before it is still in flight.
        other.holding(5);
        assert!(!waiting.drained(), "the write before the held DDL");
        other.answered(4);
        assert!(waiting.drained());
        // Answered outright, or the session ended: drained too.
        let (third, fourth) = (g.register(), g.register());
        third.checking(2);
        fourth.checking(7);
        let waiting = g.in_flight_besides(&ddl);
        assert!(!waiting.drained());
        third.answered(2);
        fourth.ended();
        assert!(waiting.drained());
    }

    #[test]
    fn generations_are_per_target_and_shared() {
        let g = Generations::default();
        let a1 = g.of("a");
        let a2 = g.of("a");
        let b = g.of("b");
        assert_eq!((a1.current(), b.current()), (0, 0));
        a1.bump();
        assert_eq!((a2.current(), b.current()), (1, 0));
        g.bump_all();
        assert_eq!((a1.current(), b.current()), (2, 1));
    }

    #[test]
    fn reloads_for_unknown_relations_are_spaced() {
        let g = Generation::default();
        let before = g.current();
        assert!(g.bump_for_unknown("a"));
        assert_eq!(g.current(), before + 1);
        // At once again: not moved, however many sessions ask, for that
        // name or another.
        assert!(!g.bump_for_unknown("a"));
        assert!(!g.bump_for_unknown("b"));
        assert_eq!(g.current(), before + 1);
        // Once the global spacing has passed, "a" still waits for its own.
        let later = u64::try_from((UNKNOWN_RELOAD_EVERY * 2).as_millis()).unwrap_or(u64::MAX);
        assert!(!g.bump_for_unknown_at("a", later));
        assert!(g.bump_for_unknown_at("b", later));
        assert_eq!(g.current(), before + 2);
        let much_later =
            u64::try_from((UNKNOWN_NAME_RELOAD_EVERY * 2).as_millis()).unwrap_or(u64::MAX);
        assert!(g.bump_for_unknown_at("a", much_later));
    }

    #[test]
    fn ancestors_are_followed_nearest_first_once_to_the_root() {
        let parents = |k: &u32| match k {
            1 => vec![2, 3],
            2 => vec![4],
            3 => vec![4],
            4 => vec![1], // a cycle: not in Postgres, but data
            _ => vec![],
        };
        assert_eq!(ancestors_of(1, parents), vec![2, 3, 4]);
        // A hundred levels: the root is there (a bound once dropped it).
        let chain = ancestors_of(0u32, |k: &u32| if *k < 100 { vec![k + 1] } else { vec![] });
        assert_eq!(chain.last(), Some(&100));
    }

    #[test]
    fn unsettled_counts_are_shared_and_never_negative() {
        let g = Generations::default();
        let a1 = g.of("a");
        let a2 = g.of("a");
        a1.count_unsettled();
        a2.count_unsettled();
        assert_eq!((a1.unsettled(), g.of("b").unsettled()), (2, 0));
        a1.settle_unsettled();
        a2.settle_unsettled();
        a2.settle_unsettled();
        assert_eq!(a1.unsettled(), 0);
    }
}

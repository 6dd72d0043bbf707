//! A session's memo of its last reusable judgements.
//!
//! Clients repeat themselves: a driver sends the same Parse text for every
//! execution, and a simple-protocol client the same query with other
//! numbers in it. The shared caches (the decision cache and masking's plan
//! cache) already spare the parse, but each lookup still hashes the text,
//! takes a shard lock and compares the stored key. The memo sits in front
//! of them, inside the session: a few entries, each checked with one
//! byte comparison.
//!
//! An entry serves a request only when everything its judgement depends on
//! is unchanged:
//!
//! - the gate, compared by address: a rule reload installs a new gate, so
//!   an entry from the old one never answers again (the memo keeps only a
//!   [`Weak`], so it cannot keep the old rules alive, and the address
//!   cannot be reused while it exists);
//! - the [`Source`] (a Query and a Parse of one text are judged apart);
//! - the session context the decision cache keys by (search path, current
//!   database), compared by value;
//! - the text: the same bytes, or, when the gate said the judgement never
//!   looked at a numeric literal ([`Reuse::Shape`]), the same shape, for a
//!   text no longer than the gate's size limit
//!   ([`Gate::max_shared_bytes`]: `1` padded with a megabyte of zeros has
//!   the shape of `1`).
//!
//! Callers remember only what is safe to replay as is: an allowed
//! statement that changes no session state and carries no observe-mode
//! report. The value kept beside it (for Postgres, the statement's masking
//! plans) must depend on nothing else either.

use std::sync::{Arc, Weak};

use super::shape::Shape;
use super::{Gate, Reuse, SessionContext, Source};

/// Entries kept: enough for the handful of statements a client repeats in
/// a loop (pgbench's TPC-B-like script has seven, sysbench's point select
/// one per table), few enough that a miss costs little to scan.
pub const ENTRIES: usize = 16;

/// Longer texts are not remembered: the memo must stay small beside the
/// session, and a long text is rarely sent again verbatim.
pub const MAX_TEXT: usize = 4096;

/// The last reusable judgements of one session, and what the session
/// derived from each (`V`).
pub struct Memo<V> {
    /// The gate and context every entry was judged under; a request under
    /// another gate or context clears the memo when it is remembered.
    gate: Option<Weak<dyn Gate>>,
    search_path: Vec<String>,
    database: Option<String>,
    /// [`SessionContext::foreign_keys_id`].
    foreign_keys: u64,
    /// The longest text a shape match may serve: the gate's
    /// [`Gate::max_shared_bytes`], at most [`MAX_TEXT`].
    shape_limit: usize,
    entries: Vec<Entry<V>>,
    /// The entry a new one replaces once the memo is full.
    next: usize,
}

struct Entry<V> {
    source: Source,
    /// [`Reuse::Exact`] or [`Reuse::Shape`].
    reuse: Reuse,
    sql: Box<[u8]>,
    shape: Option<Box<[u8]>>,
    /// Where the shape's markers are ([`super::shape::markers`]), for
    /// [`MemoView::templated`].
    markers: Box<[u16]>,
    value: V,
}

/// A [`Memo`] whose entries apply to the request at hand (see
/// [`Memo::view`]).
pub struct MemoView<'a, V> {
    memo: &'a Memo<V>,
    /// Held so the context the view was checked against cannot change.
    _ctx: &'a SessionContext,
}

impl<'a, V> MemoView<'a, V> {
    /// The value remembered for exactly this text. Needs no shape, so it
    /// is checked before one is worked out.
    pub fn exact(&self, source: Source, sql: &[u8]) -> Option<&'a V> {
        self.memo
            .entries
            .iter()
            .find(|e| e.source == source && *e.sql == *sql)
            .map(|e| &e.value)
    }

    /// The value remembered for another text of the same shape, if the
    /// judgement it came from may serve every text of that shape.
    pub fn shaped(&self, source: Source, sql: &[u8], shape: &Shape<'_>) -> Option<&'a V> {
        let theirs = shape.text_for(sql)?;
        self.shape_entry(source, sql, |e| e.shape.as_deref() == Some(theirs))
    }

    /// The value of the first shape entry for `source` that `fits`, if
    /// `sql` is short enough to be served by shape at all.
    fn shape_entry(
        &self,
        source: Source,
        sql: &[u8],
        fits: impl Fn(&Entry<V>) -> bool,
    ) -> Option<&'a V> {
        // One long run of digits is still one literal: a text over the
        // gate's size limit has the shape of a short one.
        if sql.len() > self.memo.shape_limit {
            return None;
        }
        self.memo
            .entries
            .iter()
            .find(|e| e.reuse == Reuse::Shape && e.source == source && fits(e))
            .map(|e| &e.value)
    }

    /// [`Self::shaped`] for a text whose shape has not been worked out:
    /// the value remembered for a text whose shape it fits
    /// ([`super::shape::fits_at`]), the same answer without the scan.
    pub fn templated(&self, source: Source, sql: &[u8]) -> Option<&'a V> {
        self.shape_entry(source, sql, |e| {
            e.shape
                .as_deref()
                .is_some_and(|shape| super::shape::fits_at(shape, &e.markers, sql))
        })
    }
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Memo {
            gate: None,
            search_path: Vec::new(),
            database: None,
            foreign_keys: 0,
            shape_limit: 0,
            entries: Vec::new(),
            next: 0,
        }
    }
}

impl<V> Memo<V> {
    /// Whether the entries were judged by `gate` in `ctx`.
    fn applies(&self, gate: &Arc<dyn Gate>, ctx: &SessionContext) -> bool {
        self.gate
            .as_ref()
            .is_some_and(|g| std::ptr::addr_eq(g.as_ptr(), Arc::as_ptr(gate)))
            && self.search_path == ctx.search_path
            && self.database == ctx.current_database
            && self.foreign_keys == ctx.foreign_keys_id()
    }

    /// The memo as it stands for a request judged by `gate` in `ctx`, or
    /// `None` when its entries were judged under another gate or context.
    /// Checked once per request: the view's lookups need no check of
    /// their own, and while the view lives neither the memo nor `ctx` can
    /// change under it.
    pub fn view<'a>(
        &'a self,
        gate: &Arc<dyn Gate>,
        ctx: &'a SessionContext,
    ) -> Option<MemoView<'a, V>> {
        (!self.entries.is_empty() && self.applies(gate, ctx)).then_some(MemoView {
            memo: self,
            _ctx: ctx,
        })
    }

    /// Keeps `value` for `sql` as judged by `gate` in `ctx` with the given
    /// reuse; [`Reuse::Never`] and texts over [`MAX_TEXT`] bytes are not
    /// kept.
    #[allow(clippy::too_many_arguments)]
    pub fn remember(
        &mut self,
        gate: &Arc<dyn Gate>,
        source: Source,
        ctx: &SessionContext,
        reuse: Reuse,
        sql: &[u8],
        shape: &Shape<'_>,
        value: V,
    ) {
        if reuse == Reuse::Never || sql.len() > MAX_TEXT {
            return;
        }
        if !self.applies(gate, ctx) {
            self.forget();
            self.gate = Some(Arc::downgrade(gate));
            self.search_path.clone_from(&ctx.search_path);
            self.database.clone_from(&ctx.current_database);
            self.foreign_keys = ctx.foreign_keys_id();
            self.shape_limit = gate.max_shared_bytes().min(MAX_TEXT);
        }
        let shape = shape.text_for(sql);
        let entry = Entry {
            source,
            reuse,
            sql: sql.into(),
            shape: shape.map(Into::into),
            markers: match (reuse, shape) {
                (Reuse::Shape, Some(shape)) => super::shape::markers(shape),
                _ => Box::default(),
            },
            value,
        };
        if self.entries.len() < ENTRIES {
            self.entries.push(entry);
        } else if let Some(slot) = self.entries.get_mut(self.next) {
            *slot = entry;
            self.next = (self.next + 1) % ENTRIES;
        }
    }

    /// Drops every entry.
    pub fn forget(&mut self) {
        self.entries.clear();
        self.next = 0;
        self.gate = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AllowAll, Judgement, Principal, Request};

    /// One-shot lookups, for the tests below.
    impl<V> Memo<V> {
        /// One [`MemoView::exact`] lookup.
        fn exact<'a>(
            &'a self,
            gate: &Arc<dyn Gate>,
            source: Source,
            ctx: &'a SessionContext,
            sql: &[u8],
        ) -> Option<&'a V> {
            self.view(gate, ctx)?.exact(source, sql)
        }

        /// One [`MemoView::shaped`] lookup, checked against
        /// [`MemoView::templated`], which must find the same entry without
        /// the shape whenever the shape is `sql`'s own.
        fn shaped<'a>(
            &'a self,
            gate: &Arc<dyn Gate>,
            source: Source,
            ctx: &'a SessionContext,
            sql: &[u8],
            shape: &Shape<'_>,
        ) -> Option<&'a V> {
            let view = self.view(gate, ctx)?;
            let found = view.shaped(source, sql, shape);
            if shape.text_for(sql).is_some() {
                let templated = view.templated(source, sql);
                assert!(
                    found.map(std::ptr::from_ref) == templated.map(std::ptr::from_ref),
                    "templated lookup disagrees for {:?}",
                    String::from_utf8_lossy(sql)
                );
            }
            found
        }
    }

    /// Lets everything through; shape matches up to `limit` bytes.
    struct Limited(usize);

    impl Gate for Limited {
        fn judge(&self, who: &Principal, request: &Request<'_>) -> Judgement {
            AllowAll.judge(who, request)
        }

        fn max_shared_bytes(&self) -> usize {
            self.0
        }
    }

    fn gate() -> Arc<dyn Gate> {
        Arc::new(Limited(1024))
    }

    fn ctx(path: &[&str]) -> SessionContext {
        SessionContext {
            search_path: path.iter().map(|s| s.to_string()).collect(),
            ..SessionContext::default()
        }
    }

    #[test]
    fn exact_entry_serves_only_the_same_text_source_context_and_gate() {
        let g = gate();
        let c = ctx(&["public"]);
        let sql = b"SELECT 1 FROM t WHERE a = 5";
        let mut m = Memo::default();
        m.remember(&g, Source::Parse, &c, Reuse::Exact, sql, &Shape::of(sql), 7);
        assert_eq!(m.exact(&g, Source::Parse, &c, sql), Some(&7));
        // Another literal: an exact entry does not serve its shape.
        let other = b"SELECT 1 FROM t WHERE a = 6";
        assert_eq!(
            m.shaped(&g, Source::Parse, &c, other, &Shape::of(other)),
            None
        );
        assert_eq!(m.exact(&g, Source::Query, &c, sql), None);
        assert_eq!(
            m.exact(&g, Source::Parse, &ctx(&["s", "public"]), sql),
            None
        );
        // A reload installs another gate.
        assert_eq!(m.exact(&gate(), Source::Parse, &c, sql), None);
        m.forget();
        assert_eq!(m.exact(&g, Source::Parse, &c, sql), None);
    }

    #[test]
    fn shape_entry_serves_other_literals_of_the_same_shape() {
        let g = gate();
        let c = ctx(&["public"]);
        let sql = b"SELECT b FROM t WHERE a = 5";
        let mut m = Memo::default();
        m.remember(&g, Source::Query, &c, Reuse::Shape, sql, &Shape::of(sql), 1);
        let other = b"SELECT b FROM t WHERE a = 600";
        assert_eq!(
            m.shaped(&g, Source::Query, &c, other, &Shape::of(other)),
            Some(&1)
        );
        // A shape must be the one worked out for that very text.
        assert_eq!(
            m.shaped(&g, Source::Query, &c, other, &Shape::of(sql)),
            None
        );
        let string = b"SELECT b FROM t WHERE a = '5'";
        assert_eq!(
            m.shaped(&g, Source::Query, &c, string, &Shape::of(string)),
            None
        );
        let column = b"SELECT c FROM t WHERE a = 5";
        assert_eq!(
            m.shaped(&g, Source::Query, &c, column, &Shape::of(column)),
            None
        );
        // The same shape, over the gate's size limit.
        let long = format!("SELECT b FROM t WHERE a = {}5", "0".repeat(1024));
        let long = long.as_bytes();
        assert!(Shape::of(long).text_for(long).is_some());
        assert_eq!(
            m.shaped(&g, Source::Query, &c, long, &Shape::of(long)),
            None
        );
    }

    #[test]
    fn a_gate_that_shares_no_shapes_gets_no_shape_matches() {
        let g: Arc<dyn Gate> = Arc::new(AllowAll);
        let c = ctx(&["public"]);
        let sql = b"SELECT b FROM t WHERE a = 5";
        let mut m = Memo::default();
        m.remember(&g, Source::Query, &c, Reuse::Shape, sql, &Shape::of(sql), 1);
        assert_eq!(m.exact(&g, Source::Query, &c, sql), Some(&1));
        let other = b"SELECT b FROM t WHERE a = 6";
        assert_eq!(
            m.shaped(&g, Source::Query, &c, other, &Shape::of(other)),
            None
        );
    }

    #[test]
    fn keeps_several_statements_and_replaces_the_oldest() {
        let g = gate();
        let c = ctx(&["public"]);
        let mut m = Memo::default();
        let texts: Vec<String> = (0..ENTRIES + 1)
            .map(|i| format!("SELECT c{i} FROM t"))
            .collect();
        for (i, t) in texts.iter().enumerate() {
            let t = t.as_bytes();
            m.remember(&g, Source::Query, &c, Reuse::Exact, t, &Shape::of(t), i);
        }
        // The first was replaced by the last; the others are all there.
        assert_eq!(m.exact(&g, Source::Query, &c, texts[0].as_bytes()), None);
        for (i, t) in texts.iter().enumerate().skip(1) {
            assert_eq!(m.exact(&g, Source::Query, &c, t.as_bytes()), Some(&i));
        }
        // Another context: nothing applies, and remembering under it
        // starts over.
        let other = ctx(&["s"]);
        let t = texts[1].as_bytes();
        assert_eq!(m.exact(&g, Source::Query, &other, t), None);
        m.remember(
            &g,
            Source::Query,
            &other,
            Reuse::Exact,
            t,
            &Shape::of(t),
            99,
        );
        assert_eq!(m.exact(&g, Source::Query, &other, t), Some(&99));
        assert_eq!(m.exact(&g, Source::Query, &c, texts[2].as_bytes()), None);
        assert_eq!(
            m.exact(&g, Source::Query, &other, texts[2].as_bytes()),
            None
        );
    }

    #[test]
    fn never_and_long_texts_are_not_kept_and_the_old_gate_is_not_kept_alive() {
        let g = gate();
        let c = ctx(&["public"]);
        let sql = b"SELECT 1";
        let mut m = Memo::default();
        m.remember(
            &g,
            Source::Query,
            &c,
            Reuse::Exact,
            sql,
            &Shape::none(sql),
            (),
        );
        let weak = Arc::downgrade(&g);
        drop(g);
        assert!(weak.upgrade().is_none());
        let g = gate();
        m.remember(
            &g,
            Source::Query,
            &c,
            Reuse::Never,
            sql,
            &Shape::none(sql),
            (),
        );
        assert_eq!(m.exact(&g, Source::Query, &c, sql), None);
        let long = format!("SELECT '{}'", "x".repeat(MAX_TEXT));
        let long = long.as_bytes();
        m.remember(
            &g,
            Source::Query,
            &c,
            Reuse::Exact,
            long,
            &Shape::none(long),
            (),
        );
        assert_eq!(m.exact(&g, Source::Query, &c, long), None);
        // The default gate promises nothing.
        let req = Request {
            dialect: crate::policy::Dialect::Postgres,
            source: Source::Query,
            sql,
            session: &c,
        };
        let who = Principal::default();
        let (j, reuse) = g.judge_reusable(&who, &req, &Shape::none(sql));
        assert_eq!((j, reuse), (Judgement::allow(), Reuse::Never));
    }
}

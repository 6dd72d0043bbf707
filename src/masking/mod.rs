//! PII masking, protocol-neutral: rules, strategies, value detectors and
//! result-column lineage. No sockets, no wire formats.
//!
//! Sessions build one [`Masker`] per rule version and, for every statement
//! they forward, ask [`Masker::plan`] what to do with each result column;
//! then they rewrite each value with [`Masker::apply`]. Error, notice and
//! notification text goes through [`detect::scrub`] with
//! [`Masker::detectors_for`].
//!
//! * [`rules`]: `[[mask]]` / `[masking]` tables of the rule files.
//! * [`strategy`]: how a value is replaced; [`types`]: which column types
//!   can hold a replacement string.
//! * [`detect`]: email, card, SSN, phone, IBAN and secret detectors.
//! * [`lineage`]: which output columns derive from masked columns.
//! * [`cache`]: the bounded plan cache.

use std::borrow::Cow;
use std::sync::Arc;

use crate::policy::parse::{self, Limits};
use crate::policy::{Dialect, Principal, SessionContext};

pub mod by_name;
pub mod cache;
pub mod catalog;
pub mod detect;
mod digits;
pub mod error_values;
pub mod hmac;
pub mod lineage;
pub mod rules;
mod secrets;
pub mod strategy;
pub mod taint;
#[cfg(test)]
mod tests;
pub mod types;

pub use catalog::{Catalog, Generation, Generations, MemoryCatalog, NoCatalog};
pub use detect::{DetectorSet, Finding, Kind};
pub use rules::{load_masking, load_masking_path, MaskError, MaskingRules, OnUnsafe};
pub use strategy::{MaskedValue, Strategy, TypeHint};

use hmac::HashKey;
use lineage::{Analyzer, Shape, Stop, UNANALYZABLE};
use taint::Taint;

/// Texts up to this size are analyzed on the caller's thread (as in the
/// guardrails engine).
const INLINE_BYTES: usize = crate::policy::engine::INLINE_PARSE_BYTES;

/// Runs `f` on a thread with a stack big enough for the syntax tree of a
/// long text; `None` if the thread could not start or panicked.
fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    crate::big_stack::run("airlock-mask", f)
}

/// What to do with one result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnMask {
    /// Pass through (constants, or no detectors configured).
    Clear,
    /// Derived from a masked column: replace every value.
    Mask { rule: String, strategy: Strategy },
    /// Unclassified: run the detectors on text values.
    Detect,
}

/// The plan for one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementPlan {
    /// Returns no rows. If rows come anyway, treat it as [`Self::Opaque`].
    NoResult,
    /// DDL: returns no rows (treated as [`Self::NoResult`]) and may change
    /// what later statements read. A session must not plan anything after
    /// it against the old catalog: until its transaction has ended, only
    /// transaction and session statements may follow
    /// ([`Masker::plan_after_ddl`]); then the catalog is loaded again.
    Ddl,
    /// One entry per result column, in order. A result with *fewer*
    /// columns than the plan means the analysis was wrong: fail closed.
    /// Columns *beyond* the list are ones the analysis never saw: Postgres
    /// sessions hide their values (`builtin.unknown-source`), MySQL ones
    /// refuse the result (red-team finding: such a column passed in clear
    /// on MySQL, and on Postgres went by its name alone).
    Columns(Vec<ColumnMask>),
    /// The listed columns, then any number that come from relations whose
    /// columns airlock does not know (`SELECT *` from a relation outside
    /// the catalog snapshot, such as `information_schema`): those go by
    /// their names and sources. Fewer columns than listed fail closed.
    OpenColumns(Vec<ColumnMask>),
    /// Rows airlock cannot attribute to columns (EXECUTE, FETCH, SHOW,
    /// EXPLAIN, unknown `SELECT *`): use [`Masker::mask_for_name`] per
    /// column.
    Opaque,
    /// Do not run the statement.
    Block {
        rule: String,
        message: String,
        /// The relation the statement names that the catalog snapshot
        /// lacks, when that is why (see [`unknown_relation`]): the session
        /// asks for a fresh snapshot.
        unknown_relation: Option<String>,
    },
}

/// The masking rules and detectors that apply to one principal, as worked
/// out by [`Masker::audience`].
#[derive(Debug, Clone)]
pub struct Audience {
    active: Box<[usize]>,
    detectors: DetectorSet,
}

/// Masking rules plus the hash key; cheap to share (`Arc`) across sessions.
pub struct Masker {
    rules: MaskingRules,
    key: HashKey,
    limits: Limits,
    cache: cache::PlanCache,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("rules", &self.rules.rules.len())
            .field("version", &self.rules.version)
            .finish()
    }
}

impl Masker {
    /// `key`: the `hash`/`fake` key (e.g. read from `rules.hash_key_env`);
    /// `None` uses a random per-process key. `limits`: the guardrails'
    /// parse limits.
    pub fn new(rules: MaskingRules, key: Option<&[u8]>, limits: Limits) -> Self {
        let key = key.map_or_else(HashKey::random, HashKey::new);
        let cache = cache::PlanCache::new(rules.cache_entries);
        Masker {
            rules,
            key,
            limits,
            cache,
        }
    }

    /// Reads the key from the env var the rules name (if any).
    pub fn from_env(rules: MaskingRules, limits: Limits) -> Self {
        let key = rules
            .hash_key_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|k| !k.is_empty());
        Masker::new(rules, key.as_deref().map(str::as_bytes), limits)
    }

    pub fn rules(&self) -> &MaskingRules {
        &self.rules
    }

    /// Whether any rule or detector could apply to `who` (sessions can skip
    /// all masking work otherwise).
    pub fn is_active_for(&self, who: &Principal) -> bool {
        self.has_rules_for(who) || !self.detectors_for(who).is_empty()
    }

    /// Whether a column rule applies to `who` (what makes masking refuse
    /// what it cannot follow, such as temporary tables).
    pub fn has_rules_for(&self, who: &Principal) -> bool {
        !self.rules.active_for(who).is_empty()
    }

    pub fn detectors_for(&self, who: &Principal) -> DetectorSet {
        self.rules.detectors_for(who)
    }

    /// Plans every statement in `sql` (one plan per statement; a text that
    /// does not parse yields one `Block`).
    pub fn plan(
        &self,
        who: &Principal,
        dialect: Dialect,
        sql: &str,
        ctx: &SessionContext,
        catalog: &dyn Catalog,
    ) -> Vec<StatementPlan> {
        self.plan_shared(who, dialect, sql, ctx, catalog)
            .iter()
            .map(|p| StatementPlan::clone(p))
            .collect()
    }

    /// [`Self::plan`] without copying: the cached plans themselves.
    pub fn plan_shared(
        &self,
        who: &Principal,
        dialect: Dialect,
        sql: &str,
        ctx: &SessionContext,
        catalog: &dyn Catalog,
    ) -> cache::Plans {
        let shape = crate::policy::shape::Shape::of(sql.as_bytes());
        self.plan_for(&self.audience(who), dialect, sql, &shape, ctx, catalog)
    }

    /// Which rules and detectors apply to `who`: fixed for a session (a
    /// rules reload builds a new `Masker`), so sessions work it out once.
    pub fn audience(&self, who: &Principal) -> Audience {
        Audience {
            active: self.rules.active_for(who).into(),
            detectors: self.detectors_for(who),
        }
    }

    /// [`Self::plan_shared`] for a session that has its [`Audience`] and the
    /// statement's shape (shared with the policy engine) at hand.
    pub fn plan_for(
        &self,
        audience: &Audience,
        dialect: Dialect,
        sql: &str,
        shape: &crate::policy::shape::Shape<'_>,
        ctx: &SessionContext,
        catalog: &dyn Catalog,
    ) -> cache::Plans {
        let active = &audience.active;
        let detectors = audience.detectors;
        let key = cache::KeyRef::new(
            active,
            detectors,
            dialect,
            ctx,
            catalog.version(),
            sql,
            shape.text_for(sql.as_bytes()),
        );
        if let Some(p) = self.cache.get(&key) {
            return p;
        }
        let plans = self.plan_uncached(audience, dialect, sql, ctx, catalog, Follows::Nothing);
        let plans: cache::Plans = plans.into_iter().map(Arc::new).collect();
        self.cache.put(&key, &plans);
        plans
    }

    /// Plans `sql` for a session while DDL has run in a transaction that
    /// has not ended yet (`whose`: the session's own, or another
    /// session's): the catalog airlock can read (from another connection)
    /// does not show that DDL, so only transaction and session statements
    /// are allowed; everything else is refused until the transaction ends.
    /// Rare, so not cached.
    pub fn plan_after_ddl(
        &self,
        audience: &Audience,
        dialect: Dialect,
        sql: &str,
        ctx: &SessionContext,
        catalog: &dyn Catalog,
        whose: UnseenDdl,
    ) -> Vec<StatementPlan> {
        let follows = match whose {
            UnseenDdl::Own => Follows::UnsettledDdl,
            UnseenDdl::Others => Follows::OthersDdl,
        };
        self.plan_uncached(audience, dialect, sql, ctx, catalog, follows)
    }

    /// The SQL-level prepared statements `sql` runs (`EXECUTE name`, also
    /// under EXPLAIN), named as [`crate::policy::classify::execute_name`]
    /// names them. `None` when that cannot be told: the text does not
    /// parse, or is too long to parse here (callers refuse).
    pub fn executed_statements(&self, dialect: Dialect, sql: &str) -> Option<Vec<String>> {
        if sql.len() > INLINE_BYTES {
            return None;
        }
        let parsed = parse::parse(dialect, sql, &self.limits).ok()?;
        let mut names = Vec::new();
        for p in &parsed {
            let _ = sqlparser::ast::visit_statements(&p.statement, |st| {
                if let sqlparser::ast::Statement::Execute { name, .. } = st {
                    names.push(crate::policy::classify::execute_name(
                        dialect,
                        name.as_ref(),
                    ));
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        Some(names)
    }

    /// What `sql` reads rows from by name (see [`by_name`]). `None` when
    /// that cannot be told: the text does not parse.
    pub fn reads_by_name(&self, dialect: Dialect, sql: &str) -> Option<Vec<by_name::ReadByName>> {
        if sql.len() <= INLINE_BYTES {
            return by_name::reads(dialect, sql, &self.limits);
        }
        on_big_stack(|| by_name::reads(dialect, sql, &self.limits)).flatten()
    }

    /// Plans `sql` without the cache: a long text on a thread with a stack
    /// big enough for its syntax tree.
    fn plan_uncached(
        &self,
        audience: &Audience,
        dialect: Dialect,
        sql: &str,
        ctx: &SessionContext,
        catalog: &dyn Catalog,
        follows: Follows,
    ) -> Vec<StatementPlan> {
        let (active, detectors) = (&audience.active, audience.detectors);
        if sql.len() <= INLINE_BYTES {
            return self.plan_parsed(active, detectors, dialect, sql, ctx, catalog, follows);
        }
        on_big_stack(|| self.plan_parsed(active, detectors, dialect, sql, ctx, catalog, follows))
            .unwrap_or_else(|| {
                vec![StatementPlan::Block {
                    rule: UNANALYZABLE.into(),
                    message: "statement could not be analyzed for masking".into(),
                    unknown_relation: None,
                }]
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_parsed(
        &self,
        active: &[usize],
        detectors: DetectorSet,
        dialect: Dialect,
        sql: &str,
        ctx: &SessionContext,
        catalog: &dyn Catalog,
        follows: Follows,
    ) -> Vec<StatementPlan> {
        let parsed = match parse::parse(dialect, sql, &self.limits) {
            Ok(p) => p,
            Err(b) => {
                return vec![StatementPlan::Block {
                    rule: b.rule.to_string(),
                    message: b.message,
                    unknown_relation: None,
                }]
            }
        };
        // Every statement of a request is planned before any runs, against
        // the catalog as it is now: after one that may change it (DDL:
        // `CREATE OR REPLACE VIEW v AS SELECT reverse(email) ...; SELECT *
        // FROM v`), the plans and write checks of the rest would follow the
        // old definitions. Only transaction and session statements may
        // follow DDL in one request, or while the session's own DDL is in a
        // transaction that has not ended.
        let mut after = follows;
        parsed
            .iter()
            .map(|p| {
                use crate::policy::facts::StatementClass;
                let class = crate::policy::classify::classify(&p.statement).0;
                // Beside another session's DDL, reads run too: a result that
                // starts while that DDL is unsettled is refused (40001, see
                // `crate::pg::ddl_fence`); a write has no result to refuse.
                let read_beside = after == Follows::OthersDdl
                    && class == StatementClass::Read
                    && lineage::plain_read(&p.statement, catalog);
                if after != Follows::Nothing && !read_beside && !may_follow_ddl(&p.statement, class)
                {
                    return after.refusal();
                }
                if class == StatementClass::Ddl && after == Follows::Nothing {
                    after = Follows::DdlInRequest;
                }
                let mut a = Analyzer::new(&self.rules, active, dialect, ctx, catalog, self.limits);
                let analyzed = a.statement(&p.statement);
                // Read, written, copied from or altered: whatever the
                // statement does with a relation it cannot know.
                if let (Ok(_), Some(name)) = (&analyzed, a.unknown_relation()) {
                    return unknown_relation(name);
                }
                match analyzed {
                    Ok(_) if class == StatementClass::Ddl => StatementPlan::Ddl,
                    Ok(Shape::NoResult) => StatementPlan::NoResult,
                    Ok(Shape::Opaque) => StatementPlan::Opaque,
                    Ok(Shape::Rows(out)) => self.finish(out, detectors),
                    Err(Stop { rule, message }) => StatementPlan::Block {
                        rule,
                        message,
                        unknown_relation: None,
                    },
                }
            })
            .collect()
    }

    fn finish(&self, out: taint::Out, detectors: DetectorSet) -> StatementPlan {
        if let Some(t) = out.open.filter(|t| t.rule().is_some()) {
            return StatementPlan::Block {
                rule: self.rule_id(t),
                message: "cannot tell which result columns hold masked data (a table's columns are unknown)".into(),
                unknown_relation: None,
            };
        }
        let open = out.open.is_some();
        let mut cols = Vec::with_capacity(out.cols.len());
        for c in &out.cols {
            cols.push(match c.taint {
                Taint::Const => ColumnMask::Clear,
                Taint::Column if detectors.is_empty() => ColumnMask::Clear,
                Taint::Column => ColumnMask::Detect,
                Taint::Masked(i) => {
                    let r = &self.rules.rules[i];
                    ColumnMask::Mask {
                        rule: r.id.clone(),
                        strategy: r.strategy,
                    }
                }
                Taint::Derived(i) => {
                    let r = &self.rules.rules[i];
                    ColumnMask::Mask {
                        rule: r.id.clone(),
                        strategy: r.strategy.for_derived(),
                    }
                }
                Taint::Unsafe(i) => {
                    let r = &self.rules.rules[i];
                    if r.on_unsafe == OnUnsafe::Null {
                        ColumnMask::Mask {
                            rule: r.id.clone(),
                            strategy: Strategy::Null,
                        }
                    } else {
                        return StatementPlan::Block {
                            rule: r.id.clone(),
                            message: format!(
                                "result column {:?} holds data masked by rule {} in a form that cannot be masked (a whole row or a JSON aggregate); select the columns you need instead",
                                c.name, r.id
                            ),
                            unknown_relation: None,
                        };
                    }
                }
            });
        }
        if open {
            StatementPlan::OpenColumns(cols)
        } else {
            StatementPlan::Columns(cols)
        }
    }

    fn rule_id(&self, t: Taint) -> String {
        t.rule()
            .and_then(|i| self.rules.rules.get(i))
            .map_or_else(|| UNANALYZABLE.to_string(), |r| r.id.clone())
    }

    /// For columns a plan does not cover: name patterns (`*.email`) by the
    /// result column's name, else `Detect` (or `Clear` without detectors).
    pub fn mask_for_name(&self, who: &Principal, column: &str) -> ColumnMask {
        let column = column.to_lowercase();
        for r in &self.rules.rules {
            if r.names.is_match(&column) && r.active_for(who) {
                return ColumnMask::Mask {
                    rule: r.id.clone(),
                    strategy: r.strategy,
                };
            }
        }
        if self.detectors_for(who).is_empty() {
            ColumnMask::Clear
        } else {
            ColumnMask::Detect
        }
    }

    /// The mask for a column known by its source (`schema.table.column`,
    /// e.g. from a RowDescription's table OID and attribute number), or
    /// `None` when no rule masks it for `who`.
    pub fn mask_for_column(
        &self,
        who: &Principal,
        schema: &str,
        table: &str,
        column: &str,
    ) -> Option<ColumnMask> {
        let full = format!("{schema}.{table}.{column}").to_lowercase();
        self.rules
            .rules
            .iter()
            .find(|r| r.active_for(who) && r.columns.is_match(&full))
            .map(|r| ColumnMask::Mask {
                rule: r.id.clone(),
                strategy: r.strategy,
            })
    }

    /// The replacement for one text-format value: `None` is NULL.
    /// `text_like`: the column's type can hold any string
    /// ([`types::pg_oid_is_text`], [`types::mysql_type_is_text`]).
    pub fn apply<'v>(
        &self,
        mask: &ColumnMask,
        value: Option<&'v [u8]>,
        text_like: bool,
        detectors: DetectorSet,
    ) -> Option<Cow<'v, [u8]>> {
        let v = value?;
        match mask {
            ColumnMask::Clear => Some(Cow::Borrowed(v)),
            ColumnMask::Mask { strategy, .. } => {
                match strategy::mask_text(
                    v,
                    *strategy,
                    TypeHint::from_text_like(text_like),
                    &self.key,
                ) {
                    MaskedValue::Text(t) => Some(Cow::Owned(t)),
                    MaskedValue::Null => None,
                }
            }
            ColumnMask::Detect if text_like => {
                Some(detect::scrub(v, detectors).map_or(Cow::Borrowed(v), Cow::Owned))
            }
            ColumnMask::Detect => Some(Cow::Borrowed(v)),
        }
    }
}

/// The rule of values whose source airlock cannot know: a column whose
/// RowDescription names a relation the catalog snapshot lacks, or a
/// statement naming one (see [`lineage::Analyzer::unknown_relation`]).
pub const UNKNOWN_SOURCE: &str = "builtin.unknown-source";

/// The refusal of a statement naming a relation the catalog does not know
/// (see [`lineage::Analyzer::unknown_relation`]).
fn unknown_relation(name: &str) -> StatementPlan {
    StatementPlan::Block {
        rule: UNKNOWN_SOURCE.into(),
        message: format!(
            "relation {name} is not in airlock's snapshot of this database's catalog: it does not exist, is temporary (temporary relations cannot be used while masking applies), or was created since other than through airlock, and may then hold masked data (a new partition of a masked table, say); airlock reads the catalog again (at most every {} s): if it exists, run the statement again",
            catalog::UNKNOWN_RELOAD_EVERY.as_secs()
        ),
        unknown_relation: Some(name.to_owned()),
    }
}

/// The relation named by [`unknown_relation`]'s refusal, after which the
/// session asks for a fresh snapshot; `None` for any other plan.
pub fn unknown_relation_name(plan: &StatementPlan) -> Option<&str> {
    match plan {
        StatementPlan::Block {
            unknown_relation, ..
        } => unknown_relation.as_deref(),
        _ => None,
    }
}

/// Whether `plan` is [`unknown_relation`]'s refusal.
pub fn is_unknown_relation(plan: &StatementPlan) -> bool {
    unknown_relation_name(plan).is_some()
}

/// Whether a statement may run after DDL that masking has not seen yet:
/// transaction statements, and session statements that read nothing.
/// Not `EXECUTE`, which runs a statement prepared against the old
/// definitions, nor a `SET` that computes its value from a table (MySQL's
/// `SET @x = (SELECT ...)`).
fn may_follow_ddl(
    statement: &sqlparser::ast::Statement,
    class: crate::policy::facts::StatementClass,
) -> bool {
    use crate::policy::facts::StatementClass;
    use std::ops::ControlFlow;
    match class {
        StatementClass::Transaction => true,
        StatementClass::Session => {
            !matches!(statement, sqlparser::ast::Statement::Execute { .. })
                && sqlparser::ast::visit_relations(statement, |_| ControlFlow::Break(()))
                    .is_continue()
        }
        _ => false,
    }
}

/// Whose DDL in a transaction that has not ended a statement is planned
/// beside (see [`Masker::plan_after_ddl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnseenDdl {
    /// The session's own.
    Own,
    /// Another session's, of the same target: a statement that waits for
    /// its locks runs against what it changed once it commits.
    Others,
}

/// What the statements being planned come after (see
/// [`Masker::plan_parsed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follows {
    /// Nothing that changed the catalog.
    Nothing,
    /// DDL earlier in the same request, which has not run yet.
    DdlInRequest,
    /// The session's own DDL, run in a transaction that has not ended.
    UnsettledDdl,
    /// Another session's DDL, in a transaction that has not ended.
    OthersDdl,
}

impl Follows {
    /// The plan of a statement that may not follow DDL: refused, with what
    /// to do instead.
    fn refusal(self) -> StatementPlan {
        let message = match self {
            Follows::UnsettledDdl => "while masking applies, only transaction and session statements may follow DDL until its transaction ends: COMMIT or ROLLBACK first (masking reads the catalog from another connection, which cannot see DDL that is not committed)",
            Follows::OthersDdl => "while masking applies, no write runs while another session's DDL is in a transaction that has not ended, nor anything but a plain query (a statement that waited for its locks would run against definitions masking has not seen, and keep what they compute: a write, a cursor, INTO, a function that keeps its arguments): run it again once that transaction has ended",
            _ => "while masking applies, only transaction and session statements may follow DDL in the same request: send the rest on its own, once the DDL has run",
        };
        StatementPlan::Block {
            rule: UNANALYZABLE.into(),
            message: message.into(),
            unknown_relation: None,
        }
    }
}

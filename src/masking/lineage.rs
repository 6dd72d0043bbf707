//! Lineage: which output columns of a statement derive from masked columns.
//!
//! Walks the sqlparser AST with scopes: every FROM item becomes a source
//! with its columns and their taints (base tables from the [`Catalog`] and
//! the rules, views by analyzing their SQL, derived tables, CTEs and
//! table functions recursively); every select-list expression is tainted
//! by the strongest of the columns it reads ([`super::taint`]). An
//! unqualified name that a source with unknown columns (a table outside
//! the catalog snapshot) may hold is also looked up in the outer queries,
//! as the server may resolve it there. Statements that would copy masked
//! data somewhere readable (INSERT … SELECT/SET, CREATE TABLE AS, SELECT
//! INTO, UPDATE … SET, upserts, MERGE, COPY … TO, cursors, SQL PREPARE)
//! stop with a [`Stop`]. A write may carry masked data only as an
//! unmodified copy into a column masked by the same rule, the destination
//! resolved through its qualifier among the tables the statement writes.

use sqlparser::ast::{
    Assignment, AssignmentTarget, CopySource, FromTable, JoinConstraint, JoinOperator, MergeAction,
    MergeInsertKind, MergeUpdateKind, OnConflict, OnConflictAction, OnInsert, Query, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor, TableObject,
    TableWithJoins, UpdateTableFromKind, WildcardAdditionalOptions,
};

use super::catalog::Catalog;
use super::rules::MaskingRules;
use super::taint::{object_parts, Col, Collect, Item, Out, Taint};
use crate::policy::extract;
use crate::policy::parse::{self, Limits};
use crate::policy::{Dialect, SessionContext};

/// A relation as (schema, name), lower-case.
type RelationKey = (String, String);

/// Where masked data given to code made on the server would go (see
/// [`Analyzer::expr`]).
const SERVER_CODE: &str = "passing it to a function defined on the server, or an operator or cast made there (airlock cannot see what it keeps of its arguments)";

/// Rule id of structural refusals (not attributable to one mask rule).
pub const UNANALYZABLE: &str = "mask.unanalyzable";

/// Why a statement must not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub rule: String,
    pub message: String,
}

/// What one statement produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    NoResult,
    Rows(Out),
    /// Rows airlock cannot attribute to columns (EXECUTE, FETCH, SHOW, ...).
    Opaque,
}

const MAX_DEPTH: usize = 200;
const MAX_VIEWS: usize = 64;
const MAX_VIEW_NESTING: usize = 8;
/// Rounds a recursive CTE's taints get to settle (see
/// [`Analyzer::recursive_cte`]).
const MAX_RECURSIVE_ROUNDS: usize = 32;

/// A relation in scope.
#[derive(Debug, Clone)]
struct Source {
    /// Alias, or the table name (lower case); empty when unnamed.
    name: String,
    schema: Option<String>,
    /// Candidate base tables, for columns the catalog does not list.
    tables: Vec<(String, String)>,
    out: Out,
    /// A table function that is surely one of the server's own
    /// ([`Catalog::builtin_function`]): its columns hold what its
    /// arguments hold, and nothing else airlock cannot see.
    builtin: bool,
}

struct Scope<'s> {
    sources: &'s [Source],
    parent: Option<&'s Scope<'s>>,
}

/// One analysis run.
pub struct Analyzer<'a> {
    pub rules: &'a MaskingRules,
    /// Indices of the rules active for the principal.
    pub active: &'a [usize],
    pub dialect: Dialect,
    pub ctx: &'a SessionContext,
    pub catalog: &'a dyn Catalog,
    pub limits: Limits,
    ctes: Vec<(String, Out)>,
    /// The select-list columns of the queries being analyzed, outermost
    /// first, each as far as its list has been read: MySQL lets a
    /// subquery name an alias of an enclosing select list (`SELECT phone
    /// AS p, (SELECT CONCAT(p, '')) FROM customers`).
    select_aliases: Vec<(String, Taint)>,
    /// Entries of the WITH RECURSIVE lists being analyzed that come after
    /// the one being analyzed (see [`Analyzer::query`]).
    later_ctes: Vec<String>,
    depth: usize,
    views: usize,
    view_nesting: usize,
    /// The first relation the statement reads, writes or alters that a
    /// complete catalog does not know ([`Self::unknown_relation`]).
    unknown: Option<String>,
    /// Masked data given to a function made on the server through
    /// Postgres's attribute notation (`c.keep` is `keep(c)`), met while
    /// resolving a name ([`Self::resolve_ref`]); [`Self::expr`] refuses it.
    attribute_call: std::cell::Cell<Option<Taint>>,
    /// [`Catalog::descendants`] of the relations met so far: asked for
    /// every column read ([`Self::column_taint`]), and a walk over the
    /// whole catalog on Postgres when any relation has a parent.
    descendants: std::cell::RefCell<std::collections::HashMap<RelationKey, Vec<RelationKey>>>,
}

fn stop<T>(rule: &str, message: impl Into<String>) -> Result<T, Stop> {
    Err(Stop {
        rule: rule.to_string(),
        message: message.into(),
    })
}

fn alias_names(a: &Option<TableAlias>) -> Vec<String> {
    a.as_ref()
        .map(|a| {
            a.columns
                .iter()
                .map(|c| c.name.value.to_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

fn alias_name(a: &Option<TableAlias>) -> Option<String> {
    a.as_ref().map(|a| a.name.value.to_lowercase())
}

impl<'a> Analyzer<'a> {
    pub fn new(
        rules: &'a MaskingRules,
        active: &'a [usize],
        dialect: Dialect,
        ctx: &'a SessionContext,
        catalog: &'a dyn Catalog,
        limits: Limits,
    ) -> Self {
        Analyzer {
            rules,
            active,
            dialect,
            ctx,
            catalog,
            limits,
            ctes: Vec::new(),
            select_aliases: Vec::new(),
            later_ctes: Vec::new(),
            depth: 0,
            views: 0,
            view_nesting: 0,
            unknown: None,
            attribute_call: std::cell::Cell::new(None),
            descendants: std::cell::RefCell::new(std::collections::HashMap::new()),
        }
    }

    /// A relation the statement reads, writes or alters that the catalog,
    /// which knew every relation there was when it was read
    /// ([`Catalog::complete`]), does not know: one created since other
    /// than through airlock (a partition a maintenance job made, a view),
    /// a temporary one (never in a snapshot: airlock cannot tell which
    /// temporary schema is the session's), or none at all. It may hold
    /// anything, masked data included (a new partition of a masked
    /// table), so the statement is refused (`builtin.unknown-source`) and
    /// the session asks for a fresh snapshot. Only while some masking
    /// rule is active for the principal.
    pub fn unknown_relation(&self) -> Option<&str> {
        self.unknown.as_deref()
    }

    // ---- rules -------------------------------------------------------

    /// The rule masking `schema.table.column`, joined with those of the
    /// same column of the tables it is a partition or inheritance child of
    /// (reading the child reads their rows, and they read the child's).
    /// When the tables that read the child's rows (it, and each ancestor
    /// with the column) do not all mask the column alike, as for a child
    /// of a masked and an unmasked table, it counts as computed
    /// (`Derived`): masked whole where read, and no copy of masked data
    /// into it is a same-rule copy, since the unmasked parent would show
    /// the copied rows as they are.
    fn column_taint(&self, schema: &str, table: &str, column: &str) -> Taint {
        let ancestors = self.catalog.ancestors(schema, table);
        let descendants = self.descendants_of(schema, table);
        if ancestors.is_empty() && descendants.is_empty() {
            return self.own_column_taint(schema, table, column);
        }
        let joined = self.read_as(schema, table, column);
        let alike = ancestors
            .iter()
            .filter(|(s, t)| {
                self.catalog
                    .columns(s, t)
                    .is_none_or(|cols| cols.iter().any(|c| c == column))
            })
            .all(|(s, t)| self.read_as(s, t, column) == joined);
        let mut t = match alike {
            true => joined,
            false => joined.derive(),
        };
        // A parent's rows include its children's (without ONLY): a rule
        // on a child counts when the parent is read, and rows masked by
        // different rules, or some not at all, are masked whole (second
        // re-audit finding: `SELECT phone FROM persons` showed the phones
        // a rule on its child `staff` masks).
        for (s, d) in &descendants {
            let dt = self.read_as(s, d, column);
            if dt != joined {
                t = t.join(dt).derive();
            }
        }
        t
    }

    /// [`Catalog::descendants`], once per relation and analysis.
    fn descendants_of(&self, schema: &str, table: &str) -> Vec<(String, String)> {
        let key = (schema.to_owned(), table.to_owned());
        if let Some(known) = self.descendants.borrow().get(&key) {
            return known.clone();
        }
        let found = self.catalog.descendants(schema, table);
        self.descendants.borrow_mut().insert(key, found.clone());
        found
    }

    /// How `schema.table` reads `column`: its own rule joined with its
    /// ancestors' ([`Self::column_taint`] without the check of alikeness).
    fn read_as(&self, schema: &str, table: &str, column: &str) -> Taint {
        self.catalog
            .ancestors(schema, table)
            .iter()
            .map(|(s, t)| self.own_column_taint(s, t, column))
            .fold(self.own_column_taint(schema, table, column), Taint::join)
    }

    fn own_column_taint(&self, schema: &str, table: &str, column: &str) -> Taint {
        let full = format!("{schema}.{table}.{column}");
        self.active
            .iter()
            .find(|&&i| self.rules.rules[i].columns.is_match(&full))
            .map_or(Taint::Column, |&i| Taint::Masked(i))
    }

    fn name_taint(&self, column: &str) -> Taint {
        self.active
            .iter()
            .find(|&&i| self.rules.rules[i].names.is_match(column))
            .map_or(Taint::Column, |&i| Taint::Masked(i))
    }

    /// The rule that may mask a column of `schema.table` (or of a table it
    /// is a partition or inheritance child of).
    fn table_taint(&self, schema: &str, table: &str) -> Taint {
        let own = self.own_table_taint(schema, table);
        if own.rule().is_some() {
            return own;
        }
        self.catalog
            .ancestors(schema, table)
            .iter()
            .map(|(s, t)| self.own_table_taint(s, t))
            .fold(own, Taint::join)
    }

    fn own_table_taint(&self, schema: &str, table: &str) -> Taint {
        let full = format!("{schema}.{table}");
        self.active
            .iter()
            .find(|&&i| self.rules.rules[i].tables.is_match(&full))
            .map_or(Taint::Column, |&i| Taint::Masked(i))
    }

    fn rule_id(&self, t: Taint) -> String {
        t.rule()
            .and_then(|i| self.rules.rules.get(i))
            .map_or_else(|| UNANALYZABLE.to_string(), |r| r.id.clone())
    }

    fn write_stop<T>(&self, t: Taint, what: &str) -> Result<T, Stop> {
        stop(
            &self.rule_id(t),
            format!(
                "{what} would copy masked data (rule {}) where it is no longer masked",
                self.rule_id(t)
            ),
        )
    }

    // ---- scopes ------------------------------------------------------

    fn lookup_in(&self, s: &Source, column: &str) -> Option<Taint> {
        // Names are compared in lower case, so `"EMAIL"` and `email` are
        // both `email` here: every column of the name counts.
        let named = s
            .out
            .cols
            .iter()
            .filter(|c| c.name == column)
            .map(|c| c.taint)
            .reduce(Taint::join);
        if named.is_some() {
            return named;
        }
        // A Postgres table's system columns (`ctid`, which GUI tools key
        // rows by, `xmin`, `tableoid`, ...) hold no table data: they were
        // hidden as unknown columns (client-compatibility finding).
        if self.dialect == Dialect::Postgres
            && !s.tables.is_empty()
            && PG_SYSTEM_COLUMNS.contains(&column)
        {
            return Some(Taint::Column);
        }
        let open = s.out.open?;
        let by_name = if s.tables.is_empty() {
            self.name_taint(column)
        } else {
            s.tables
                .iter()
                .map(|(sc, t)| self.column_taint(sc, t, column))
                .fold(Taint::Column, Taint::join)
        };
        Some(open.join(by_name))
    }

    fn whole_row(&self, s: &Source) -> Taint {
        let mut t = s.out.taint();
        if s.out.open.is_some() {
            for (sc, tb) in &s.tables {
                t = t.join(self.table_taint(sc, tb));
            }
            if s.tables.is_empty()
                && !s.builtin
                && self
                    .active
                    .iter()
                    .any(|&i| !self.rules.rules[i].names.is_empty())
            {
                t = t.join(Taint::Masked(self.active[0]));
            }
        }
        t.join(Taint::Column).escalate()
    }

    fn find_source<'s>(&self, scope: &'s Scope<'s>, qual: &[String]) -> Option<&'s Source> {
        find_sources_at(scope, qual).and_then(|(s, _)| s.first().copied())
    }

    /// Every column of every source in `scope` and the scopes around it
    /// (not escalated: these are values, not whole rows).
    fn visible_taint(&self, scope: &Scope<'_>) -> Taint {
        let mut t = Taint::Column;
        let mut level = Some(scope);
        while let Some(l) = level {
            for s in l.sources {
                t = t.join(s.out.taint());
            }
            level = l.parent;
        }
        t
    }

    /// The whole-row taint of the sources named `qual` (several when
    /// their names differ only in case: `c` and `"C"`).
    fn whole_rows(&self, scope: &Scope<'_>, qual: &[String]) -> Option<Taint> {
        let (sources, _) = find_sources_at(scope, qual)?;
        sources
            .iter()
            .map(|s| self.whole_row(s))
            .reduce(Taint::join)
    }

    fn resolve_ref(&self, scope: &Scope<'_>, parts: &[String]) -> Taint {
        let Some(col) = parts.last() else {
            return Taint::Const;
        };
        if parts.len() == 1 {
            // Candidates from the innermost scope outwards. A scope pins
            // the name when one of its sources lists the column; a source
            // with unknown columns (a table outside the catalog snapshot,
            // such as information_schema) only may hold it, and the server
            // may resolve it to an outer query's column instead: then the
            // outer candidates count too, and the strongest wins.
            let mut acc: Option<Taint> = None;
            let mut level = Some(scope);
            while let Some(l) = level {
                let found = l
                    .sources
                    .iter()
                    .filter_map(|s| self.lookup_in(s, col))
                    .reduce(Taint::join);
                if let Some(t) = found {
                    // A column of an unknown table, or a whole-row
                    // reference: assume the worse.
                    let open = l.sources.iter().any(|s| s.out.open.is_some());
                    let t = match self.whole_rows(scope, parts) {
                        Some(w) if open => t.join(w),
                        _ => t,
                    };
                    let t = acc.map_or(t, |a| a.join(t));
                    let known = l
                        .sources
                        .iter()
                        .any(|s| s.out.cols.iter().any(|c| &c.name == col));
                    if known {
                        return t;
                    }
                    acc = Some(t);
                }
                level = l.parent;
            }
            if let Some(t) = acc {
                return t;
            }
            if let Some(w) = self.whole_rows(scope, parts) {
                return w;
            }
            // No column of that name that airlock knows. It may be an
            // enclosing select list's alias (MySQL), or the name the
            // server gave a computed column (Postgres names `lower(email)`
            // `lower`, MySQL `lower(email)`; airlock calls it `?column?`),
            // or a VALUES column (MySQL names them after the first row):
            // every column in sight counts.
            if extract::is_niladic(col) {
                // `current_user` and the like: values, not names.
                return self.name_taint(col);
            }
            let aliases = self
                .select_aliases
                .iter()
                .map(|(_, a)| *a)
                .fold(self.name_taint(col), Taint::join);
            return self.visible_taint(scope).join(aliases);
        }
        let qual = &parts[..parts.len() - 1];
        // The innermost source of that name with the column. MySQL looks
        // further out when an inner source of the name lacks the column
        // (`(SELECT c.email FROM (SELECT 1 AS id) c) FROM customers c`
        // reads the outer `c`); Postgres reports an error then.
        let mut level = Some(scope);
        while let Some((sources, at)) = level.and_then(|l| find_sources_at(l, qual)) {
            let found = sources
                .iter()
                .filter_map(|s| self.lookup_in(s, col))
                .reduce(Taint::join);
            if let Some(t) = found {
                return t;
            }
            level = at.parent;
        }
        // A source of that name without the column: in Postgres `c.f` is
        // then `f(c)`, a function of the whole row (`c.to_json`,
        // `c.concat`), which may be one made on the server (re-audit
        // finding: `WHERE c.keep IS NOT NULL` gave `keep` whole rows).
        if let Some(w) = self.whole_rows(scope, qual) {
            if self.dialect == Dialect::Postgres
                && w.rule().is_some()
                && self.catalog.server_function(col)
            {
                let before = self.attribute_call.get().unwrap_or(Taint::Const);
                self.attribute_call.set(Some(before.join(w)));
            }
            return w.join(self.name_taint(col));
        }
        // `(composite).field` and the like: taint of the first part.
        let head = self.resolve_ref(scope, &parts[..1]);
        head.join(self.name_taint(col))
    }

    // ---- expressions -------------------------------------------------

    fn expr<V: sqlparser::ast::Visit>(
        &mut self,
        node: &V,
        scope: &Scope<'_>,
    ) -> Result<Taint, Stop> {
        let (t, all) = self.expr_taint(node, scope)?;
        if let Some(given) = self.attribute_call.take() {
            return self.write_stop(given, SERVER_CODE);
        }
        // MySQL `@var := expr` stores a value where masking cannot follow it.
        if all.rule().is_some() && assigns_variable(node) {
            return self.write_stop(all, "assigning to a user variable");
        }
        // So may a function defined on the server, which airlock cannot
        // see into (second re-check finding: `keep(t)` inserting its
        // argument into a table, `SELECT keep(secret) FROM people`), when
        // masked data reaches it: each such call (not in a subquery, which
        // is analyzed on its own) is judged by what it is given. Judging
        // `node` whole refused `SELECT email FROM customers WHERE id = 1`
        // once an extension (hstore, citext) had made an operator `=`
        // (client-compatibility finding).
        // MySQL resolves a name in HAVING, GROUP BY and ORDER BY to a
        // select-list alias first, which the per-call analysis does not
        // follow (re-audit finding: `SELECT email AS name FROM customers
        // HAVING keep(name)` gave `keep` the emails): there the statement
        // is still judged whole. (Operators and casts cannot be made on
        // MySQL: only stored functions count.)
        if all.rule().is_some()
            && self.dialect == Dialect::MySql
            && self.calls_server_function(node)
        {
            return self.write_stop(all, SERVER_CODE);
        }
        if all.rule().is_some() {
            for call in server_calls(node, self.catalog) {
                let (_, given) = self.expr_taint(&call, scope)?;
                if given.rule().is_some() {
                    return self.write_stop(given, SERVER_CODE);
                }
            }
        }
        // So do some functions (see `taint::keeps_arguments`): a masked
        // value passed to one is escalated to unsafe.
        if matches!(all, Taint::Unsafe(_)) && calls_keeping(node) {
            return self.write_stop(
                all,
                "passing it to a function that keeps its arguments (pg_notify, setval, set_config, setseed, advisory locks, large objects, GET_LOCK, LAST_INSERT_ID)",
            );
        }
        Ok(t)
    }

    /// What `node` yields (`.0`) and everything it reads, what only
    /// `count(...)` sees included (`.1`), without [`Self::expr`]'s checks
    /// of where that goes (subqueries are analyzed whole, checks and all).
    fn expr_taint<V: sqlparser::ast::Visit>(
        &mut self,
        node: &V,
        scope: &Scope<'_>,
    ) -> Result<(Taint, Taint), Stop> {
        let mut t = Taint::Const;
        // What `count(...)` reads: only a number comes out, but what it
        // assigns or passes on (`COUNT(@v := phone)`) still counts.
        let mut counted = Taint::Const;
        for item in Collect::of(node) {
            let (v, f) = match item {
                Item::Ref(parts, f) => (self.resolve_ref(scope, &parts), f),
                Item::Star(qual, f) => {
                    let v = match qual {
                        Some(q) => self.whole_rows(scope, &q).unwrap_or(Taint::Column),
                        None => scope
                            .sources
                            .iter()
                            .map(|s| self.whole_row(s))
                            .fold(Taint::Column, Taint::join),
                    };
                    (v, f)
                }
                Item::Sub(q, f) => (self.query(&q, Some(scope))?.taint(), f),
            };
            let v = if f.escalate { v.escalate() } else { v };
            match f.count {
                true => counted = counted.join(v),
                false => t = t.join(v),
            }
        }
        Ok((t, t.join(counted)))
    }

    // ---- queries -----------------------------------------------------

    fn enter(&mut self) -> Result<(), Stop> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return stop(
                UNANALYZABLE,
                "statement is too deeply nested to analyze for masking",
            );
        }
        Ok(())
    }

    /// Output columns of a query.
    fn query(&mut self, q: &Query, outer: Option<&Scope<'_>>) -> Result<Out, Stop> {
        self.enter()?;
        let saved = self.ctes.len();
        let r = self.query_inner(q, outer);
        self.ctes.truncate(saved);
        self.depth -= 1;
        r
    }

    fn query_inner(&mut self, q: &Query, outer: Option<&Scope<'_>>) -> Result<Out, Stop> {
        // The ORDER BY of a set operation, and LIMIT: analyzed only for
        // what they store (`ORDER BY (SELECT @v := phone ...)`).
        let unsorted = !matches!(q.body.as_ref(), SetExpr::Select(_));
        let order = q.order_by.as_ref().filter(|_| unsorted);
        if let Some(o) = order {
            self.stored_values(o, &[], outer)?;
        }
        if let Some(l) = &q.limit_clause {
            self.stored_values(l, &[], outer)?;
        }
        if let (Some(order), SetExpr::Select(s)) = (&q.order_by, q.body.as_ref()) {
            if stores_values(order) || self.calls_server_function(order) {
                // `ORDER BY (@x := email)`: evaluated over the select's sources.
                let mut sources = Vec::new();
                for twj in &s.from {
                    self.join_tree(twj, &mut sources, outer)?;
                }
                self.stored_values(order, &sources, outer)?;
            }
        }
        if let Some(with) = &q.with {
            // Under RECURSIVE an entry may read one listed after it, which
            // is not analyzed yet: such a read is refused, not taken for a
            // table of that name.
            let later_before = self.later_ctes.len();
            if with.recursive {
                let dialect = self.dialect;
                self.later_ctes.extend(
                    with.cte_tables
                        .iter()
                        .map(|c| extract::cte_key(dialect, &c.alias.name)),
                );
            }
            for cte in &with.cte_tables {
                let name = extract::cte_key(self.dialect, &cte.alias.name);
                if with.recursive {
                    if let Some(at) = self.later_ctes[later_before..]
                        .iter()
                        .position(|n| *n == name)
                    {
                        self.later_ctes.remove(later_before + at);
                    }
                }
                let names: Vec<String> = cte
                    .alias
                    .columns
                    .iter()
                    .map(|c| c.name.value.to_lowercase())
                    .collect();
                let out = if with.recursive {
                    self.recursive_cte(&name, &names, &cte.query, outer)?
                } else {
                    self.query(&cte.query, outer)?
                };
                self.ctes
                    .push((name, out.rename(names.iter().map(String::as_str))));
            }
            self.later_ctes.truncate(later_before);
        }
        self.set_expr(&q.body, outer)
    }

    fn recursive_cte(
        &mut self,
        name: &str,
        names: &[String],
        q: &Query,
        outer: Option<&Scope<'_>>,
    ) -> Result<Out, Stop> {
        let seed = match q.body.as_ref() {
            SetExpr::SetOperation { left, .. } if q.with.is_none() => self.set_expr(left, outer)?,
            _ => Out::unknown(Taint::Column),
        };
        let mut cur = seed.rename(names.iter().map(String::as_str));
        // Taints only grow, so this settles within (columns × taint
        // levels) rounds; a query that has not settled by then may still
        // move a masked value into any column: all of them get the
        // strongest taint seen.
        for _ in 0..MAX_RECURSIVE_ROUNDS {
            self.ctes.push((name.to_string(), cur.clone()));
            let next = self.query(q, outer);
            self.ctes.pop();
            let next = cur
                .clone()
                .union(next?)
                .rename(names.iter().map(String::as_str));
            if next == cur {
                return Ok(cur);
            }
            cur = next;
        }
        let all = cur.taint();
        for c in &mut cur.cols {
            c.taint = c.taint.join(all);
        }
        Ok(cur)
    }

    fn set_expr(&mut self, body: &SetExpr, outer: Option<&Scope<'_>>) -> Result<Out, Stop> {
        match body {
            SetExpr::Select(s) => {
                let mut sources = Vec::new();
                let mut star = Out::default();
                for twj in &s.from {
                    let e = self.join_tree(twj, &mut sources, outer)?;
                    star.extend(e);
                }
                let out = self.projection(&s.projection, &sources, &star, outer)?;
                // `WHERE (@x := email) ...`: any clause may assign (or keep
                // a value: `WHERE pg_notify('c', email) ...`).
                self.stored_values(s.as_ref(), &sources, outer)?;
                if s.into.is_some() {
                    let t = out.taint();
                    if t.rule().is_some() {
                        return self.write_stop(t, "SELECT INTO");
                    }
                }
                Ok(out)
            }
            SetExpr::Query(q) => self.query(q, outer),
            SetExpr::SetOperation { left, right, .. } => {
                let l = self.set_expr(left, outer)?;
                let r = self.set_expr(right, outer)?;
                let out = l.union(r);
                // MySQL's `... UNION SELECT ... INTO @v` stores the whole
                // result, not the branch's.
                if selects_into(body) {
                    let t = out.taint();
                    if t.rule().is_some() {
                        return self.write_stop(t, "SELECT INTO");
                    }
                }
                Ok(out)
            }
            SetExpr::Values(v) => {
                let scope = Scope {
                    sources: &[],
                    parent: outer,
                };
                let mut out = Out::default();
                for row in &v.rows {
                    let mut r = Out::default();
                    for (i, e) in row.iter().enumerate() {
                        let taint = self.expr(e, &scope)?;
                        r.push(Col {
                            // MySQL names them after the first row's values.
                            name: match self.dialect {
                                Dialect::Postgres => format!("column{}", i + 1),
                                Dialect::MySql => "?column?".to_string(),
                            },
                            // As in a select list: `(SELECT email ...)` or
                            // `concat(...)` is a computed value.
                            taint: if is_bare(e) { taint } else { taint.derive() },
                        });
                    }
                    out = if out.cols.is_empty() { r } else { out.union(r) };
                }
                Ok(out)
            }
            SetExpr::Insert(st)
            | SetExpr::Update(st)
            | SetExpr::Delete(st)
            | SetExpr::Merge(st) => self.dml(st, outer),
            // `TABLE x` is `SELECT * FROM x`: a CTE first, as in FROM.
            SetExpr::Table(t) => {
                let mut parts: Vec<String> =
                    t.schema_name.iter().map(|s| s.to_lowercase()).collect();
                parts.extend(t.table_name.iter().map(|s| s.to_lowercase()));
                // `TABLE ONLY x` keeps `ONLY` as the name (see the
                // policy's extractor).
                if self.dialect == Dialect::Postgres && parts == ["only"] {
                    return stop(UNANALYZABLE, "TABLE ONLY is not supported with masking");
                }
                let key = match (&t.schema_name, &t.table_name) {
                    (None, Some(n)) => extract::table_statement_cte_key(self.dialect, n),
                    _ => None,
                };
                Ok(self.named(&parts, key.as_deref())?.0)
            }
        }
    }

    fn projection(
        &mut self,
        items: &[SelectItem],
        sources: &[Source],
        star: &Out,
        outer: Option<&Scope<'_>>,
    ) -> Result<Out, Stop> {
        let scope = Scope {
            sources,
            parent: outer,
        };
        let mut out = Out::default();
        let plain = |o: &WildcardAdditionalOptions| {
            o.opt_ilike.is_none()
                && o.opt_exclude.is_none()
                && o.opt_except.is_none()
                && o.opt_replace.is_none()
                && o.opt_rename.is_none()
        };
        let aliases_before = self.select_aliases.len();
        let mut listed = 0;
        for item in items {
            for c in out.cols.get(listed..).unwrap_or_default() {
                self.select_aliases.push((c.name.clone(), c.taint));
            }
            listed = out.cols.len();
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = match e {
                        sqlparser::ast::Expr::Identifier(i) => i.value.to_lowercase(),
                        sqlparser::ast::Expr::CompoundIdentifier(v) => {
                            v.last().map(|i| i.value.to_lowercase()).unwrap_or_default()
                        }
                        _ => "?column?".to_string(),
                    };
                    let taint = self.expr(e, &scope)?;
                    let taint = if is_bare(e) { taint } else { taint.derive() };
                    out.push(Col { name, taint });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let taint = self.expr(expr, &scope)?;
                    let taint = if is_bare(expr) { taint } else { taint.derive() };
                    out.push(Col {
                        name: alias.value.to_lowercase(),
                        taint,
                    });
                }
                SelectItem::Wildcard(o) if plain(o) => out.extend(star.clone()),
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    o,
                ) if plain(o) => {
                    let parts = object_parts(n);
                    let level = Scope {
                        sources,
                        parent: None,
                    };
                    match find_sources_at(&level, &parts) {
                        Some((found, _)) if found.len() == 1 => out.extend(found[0].out.clone()),
                        Some(_) => {
                            return stop(
                                UNANALYZABLE,
                                format!(
                                "{n}.* names more than one relation (names differ only in case)"
                            ),
                            )
                        }
                        None => return stop(UNANALYZABLE, format!("unknown relation in {n}.*")),
                    }
                }
                other => {
                    return stop(
                        UNANALYZABLE,
                        format!("select item {other} is not supported with masking"),
                    )
                }
            }
        }
        self.select_aliases.truncate(aliases_before);
        Ok(out)
    }

    // ---- FROM --------------------------------------------------------

    fn join_tree(
        &mut self,
        twj: &TableWithJoins,
        sources: &mut Vec<Source>,
        outer: Option<&Scope<'_>>,
    ) -> Result<Out, Stop> {
        let mut joined = self.factor(&twj.relation, sources, outer)?;
        for j in &twj.joins {
            let exp = joined;
            let right = self.factor(&j.relation, sources, outer)?;
            let c = match &j.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c) => Some(c),
                JoinOperator::Semi(_)
                | JoinOperator::LeftSemi(_)
                | JoinOperator::RightSemi(_)
                | JoinOperator::Anti(_)
                | JoinOperator::LeftAnti(_)
                | JoinOperator::RightAnti(_) => {
                    return stop(
                        UNANALYZABLE,
                        "semi/anti joins are not supported with masking",
                    )
                }
                _ => None,
            };
            // MySQL turns `a RIGHT JOIN b` into `b LEFT JOIN a`: with
            // USING or NATURAL, `b`'s columns come first.
            let right_first = self.dialect == Dialect::MySql
                && matches!(
                    j.join_operator,
                    JoinOperator::Right(_) | JoinOperator::RightOuter(_)
                );
            let (mut exp, right) = match (right_first, c) {
                (true, Some(JoinConstraint::Using(_) | JoinConstraint::Natural)) => (right, exp),
                _ => (exp, right),
            };
            joined = match c {
                Some(JoinConstraint::Using(names)) => {
                    let names: Vec<String> =
                        names.iter().filter_map(|n| object_parts(n).pop()).collect();
                    merge_using(self.dialect, exp, right, &names)
                }
                Some(JoinConstraint::Natural) => {
                    if exp.open.is_some() || right.open.is_some() {
                        let mut e = exp;
                        e.extend(right);
                        Out::unknown(e.taint())
                    } else {
                        let names: Vec<String> = exp
                            .cols
                            .iter()
                            // A computed column's name is the server's to
                            // give (`?column?` here): never matched.
                            .filter(|c| c.name != "?column?")
                            .filter(|c| right.cols.iter().any(|r| r.name == c.name))
                            .map(|c| c.name.clone())
                            .collect();
                        merge_using(self.dialect, exp, right, &names)
                    }
                }
                _ => {
                    exp.extend(right);
                    exp
                }
            };
        }
        Ok(joined)
    }

    fn factor(
        &mut self,
        tf: &TableFactor,
        sources: &mut Vec<Source>,
        outer: Option<&Scope<'_>>,
    ) -> Result<Out, Stop> {
        // Whether this item is one of the server's own table functions
        // (`unnest(...) x`): a whole-row reference to it then holds only
        // what its arguments hold (see `whole_row`).
        let mut builtin = false;
        let (name, schema, tables, out) = match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let parts = object_parts(name);
                if args.is_some() {
                    let out = self.function_out(tf, alias, sources, outer)?;
                    self.no_server_function_in_from(&parts, &out)?;
                    builtin = self.builtin_function(&parts);
                    let n = alias_name(alias).or_else(|| parts.last().cloned());
                    (n.unwrap_or_default(), None, Vec::new(), out)
                } else {
                    let key = match &name.0[..] {
                        [one] => one.as_ident().map(|id| extract::cte_key(self.dialect, id)),
                        _ => None,
                    };
                    let (out, schema, tables) = self.named(&parts, key.as_deref())?;
                    let out = out.rename(alias_names(alias).iter().map(String::as_str));
                    let n = alias_name(alias).or_else(|| parts.last().cloned());
                    let schema = if alias.is_some() { None } else { schema };
                    (n.unwrap_or_default(), schema, tables, out)
                }
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                let out = if *lateral {
                    let scope = Scope {
                        sources,
                        parent: outer,
                    };
                    self.query(subquery, Some(&scope))?
                } else {
                    self.query(subquery, outer)?
                };
                let out = out.rename(alias_names(alias).iter().map(String::as_str));
                (alias_name(alias).unwrap_or_default(), None, Vec::new(), out)
            }
            TableFactor::Function { alias, name, .. } => {
                let out = self.function_out(tf, alias, sources, outer)?;
                let parts = object_parts(name);
                self.no_server_function_in_from(&parts, &out)?;
                builtin = self.builtin_function(&parts);
                let n = alias_name(alias).or_else(|| parts.last().cloned());
                (n.unwrap_or_default(), None, Vec::new(), out)
            }
            // Unqualified `unnest(...)` in FROM parses as this factor.
            TableFactor::UNNEST { alias, .. } => {
                let out = self.function_out(tf, alias, sources, outer)?;
                builtin = self.builtin_function(&["unnest".to_owned()]);
                (alias_name(alias).unwrap_or_default(), None, Vec::new(), out)
            }
            TableFactor::TableFunction { alias, .. } | TableFactor::JsonTable { alias, .. } => {
                let out = self.function_out(tf, alias, sources, outer)?;
                (alias_name(alias).unwrap_or_default(), None, Vec::new(), out)
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_none() {
                    return self.join_tree(table_with_joins, sources, outer);
                }
                let mut inner = Vec::new();
                let out = self.join_tree(table_with_joins, &mut inner, outer)?;
                let out = out.rename(alias_names(alias).iter().map(String::as_str));
                (alias_name(alias).unwrap_or_default(), None, Vec::new(), out)
            }
            other => {
                return stop(
                    UNANALYZABLE,
                    format!("FROM item {other} is not supported with masking"),
                )
            }
        };
        sources.push(Source {
            name,
            schema,
            tables,
            out: out.clone(),
            builtin,
        });
        Ok(out)
    }

    /// Whether the function named `parts` is surely one of the server's
    /// own: unqualified or in `pg_catalog`, and no function of its name
    /// made on the server ([`Catalog::builtin_function`]).
    fn builtin_function(&self, parts: &[String]) -> bool {
        let in_catalog = match parts {
            [_] => true,
            [schema, _] => schema == "pg_catalog",
            _ => false,
        };
        in_catalog
            && parts
                .last()
                .is_some_and(|name| self.catalog.builtin_function(name))
    }

    /// A table function in FROM made on the server may keep what it is
    /// given, as one in an expression may (re-audit finding: `FROM
    /// customers c, keep(c.email) k` gave `keep` the emails): masked data
    /// in its arguments (`out`'s taint) is refused.
    fn no_server_function_in_from(&self, parts: &[String], out: &Out) -> Result<(), Stop> {
        let t = out.taint();
        let made = parts
            .last()
            .is_some_and(|n| self.catalog.server_function(&n.to_lowercase()));
        if made && t.rule().is_some() {
            return self.write_stop(t, SERVER_CODE);
        }
        Ok(())
    }

    /// A table function: every output column carries the taint of the
    /// arguments (implicitly lateral).
    fn function_out(
        &mut self,
        tf: &TableFactor,
        alias: &Option<TableAlias>,
        sources: &[Source],
        outer: Option<&Scope<'_>>,
    ) -> Result<Out, Stop> {
        let scope = Scope {
            sources,
            parent: outer,
        };
        // What a function returns is computed from its arguments.
        let t = self.expr(tf, &scope)?.derive().join(Taint::Column);
        let names = alias_names(alias);
        if names.is_empty() {
            return Ok(Out::unknown(t));
        }
        Ok(Out {
            cols: names
                .into_iter()
                .map(|name| Col { name, taint: t })
                .collect(),
            // An alias list may name fewer columns than the function
            // returns (`unnest(a, b) AS u(x)` has `x` and `unnest`, `WITH
            // ORDINALITY` adds one): more may follow, and what comes after
            // them in a `*` cannot be placed.
            open: Some(t),
        })
    }

    /// What a name in FROM (or `TABLE name`) reads: the CTE in scope
    /// whose key ([`extract::cte_key`]) is `cte`, else the relation
    /// ([`Self::relation`]). `cte` is `None` for a name that cannot be a
    /// CTE's.
    #[allow(clippy::type_complexity)]
    fn named(
        &mut self,
        parts: &[String],
        cte: Option<&str>,
    ) -> Result<(Out, Option<String>, Vec<(String, String)>), Stop> {
        if let Some(one) = cte {
            if let Some(c) = self.ctes.iter().rev().find(|c| c.0 == one) {
                return Ok((c.1.clone(), None, Vec::new()));
            }
            if self.later_ctes.iter().any(|l| l == one) {
                return stop(
                    UNANALYZABLE,
                    format!(
                        "WITH RECURSIVE entry reads {one}, which comes after it; list the entries in the order they read each other"
                    ),
                );
            }
        }
        self.relation(parts)
    }

    /// A named relation: its columns from the catalog, tainted by the rules
    /// and, for views, by the view's own lineage. Returns the columns, the
    /// resolved schema and the candidate tables.
    #[allow(clippy::type_complexity)]
    fn relation(
        &mut self,
        parts: &[String],
    ) -> Result<(Out, Option<String>, Vec<(String, String)>), Stop> {
        let rel = extract::resolve(self.dialect, self.ctx, parts);
        // Two relations of the name along the search path airlock assumes
        // (`"$user", public`): a database's or role's default search_path,
        // which airlock does not read, may make the server read the other
        // one (read-route finding: with `ALTER DATABASE ... SET
        // search_path = public`, lineage took an unmasked
        // `<upstream user>.customers` for the masked `public.customers`).
        let found: Vec<&String> = rel
            .schemas
            .iter()
            .filter(|s| self.catalog.columns(s, &rel.name).is_some())
            .collect();
        if let [first, second, ..] = found.as_slice() {
            return stop(
                UNANALYZABLE,
                format!(
                    "{name} may be {first}.{name} or {second}.{name}, depending on the session's search_path (which a database or role default may set): write the schema",
                    name = rel.name
                ),
            );
        }
        for schema in &rel.schemas {
            let Some(cols) = self.catalog.columns(schema, &rel.name) else {
                continue;
            };
            let mut out = Out {
                cols: cols
                    .iter()
                    .map(|c| {
                        let c = c.to_lowercase();
                        Col {
                            taint: self.column_taint(schema, &rel.name, &c),
                            name: c,
                        }
                    })
                    .collect(),
                open: None,
            };
            // A generated column holds what its expression computes from
            // the row's other columns (read-route finding: a DBA's
            // `email_norm GENERATED ALWAYS AS (lower(email))` came back in
            // clear): it is tainted, derived, by every column it names.
            for (column, expr) in self.catalog.generated(schema, &rel.name) {
                let named = expression_words(&expr);
                let from = out
                    .cols
                    .iter()
                    .filter(|c| named.contains(&c.name))
                    .map(|c| c.taint)
                    .fold(Taint::Const, Taint::join);
                let column = column.to_lowercase();
                if from.rule().is_some() {
                    for c in out.cols.iter_mut().filter(|c| c.name == column) {
                        c.taint = c.taint.join(from.derive());
                    }
                }
            }
            if let Some(sql) = self.catalog.view_sql(schema, &rel.name) {
                let v = self.view(&sql)?;
                for (i, c) in out.cols.iter_mut().enumerate() {
                    let vt = match v.cols.get(i) {
                        Some(vc) => vc.taint,
                        None => v.open.unwrap_or(Taint::Column),
                    };
                    c.taint = c.taint.join(vt);
                }
            }
            return Ok((
                out,
                Some(schema.clone()),
                vec![(schema.clone(), rel.name.clone())],
            ));
        }
        // No rule active: a relation, however new, holds nothing masked.
        if self.catalog.complete()
            && self.unknown.is_none()
            && !self.active.is_empty()
            && !rel
                .schemas
                .iter()
                .any(|s| self.catalog.is_system_relation(s, &rel.name))
        {
            self.unknown = Some(parts.join("."));
        }
        let tables = rel
            .schemas
            .iter()
            .map(|s| (s.clone(), rel.name.clone()))
            .collect();
        Ok((Out::unknown(Taint::Column), None, tables))
    }

    fn view(&mut self, sql: &str) -> Result<Out, Stop> {
        self.views += 1;
        if self.views > MAX_VIEWS || self.view_nesting >= MAX_VIEW_NESTING {
            return stop(UNANALYZABLE, "views nest too deeply to analyze for masking");
        }
        // What a catalog gives in place of a definition it could not read
        // (see `crate::masking::catalog::AMBIGUOUS` and `LOCKED_VIEW`): a
        // string literal, refused with what it says.
        if let Some(said) = sql
            .trim()
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
        {
            let rule = match said == crate::masking::catalog::LOCKED_VIEW {
                true => crate::masking::catalog::LOCKED_RULE,
                false => UNANALYZABLE,
            };
            return stop(rule, said.to_owned());
        }
        let parsed = parse::parse(self.dialect, sql, &self.limits).map_err(|b| Stop {
            rule: UNANALYZABLE.into(),
            message: format!("a view's definition could not be analyzed: {}", b.message),
        })?;
        let [p] = parsed.as_slice() else {
            return stop(UNANALYZABLE, "a view's definition is not one query");
        };
        let Statement::Query(q) = &p.statement else {
            return stop(UNANALYZABLE, "a view's definition is not a query");
        };
        let ctes = std::mem::take(&mut self.ctes);
        self.view_nesting += 1;
        let r = self.query(q, None);
        self.view_nesting -= 1;
        self.ctes = ctes;
        r
    }

    // ---- statements ----------------------------------------------------

    /// What a statement returns, or why it must not run.
    pub fn statement(&mut self, st: &Statement) -> Result<Shape, Stop> {
        // A temporary table hides the table of its name for the session
        // (Postgres looks in the session's temporary schema first), and no
        // snapshot has it: masking would take its columns for those of the
        // table it knows (review finding: a temporary copy renamed to an
        // unmasked table's name; MySQL red-team finding: `CREATE TEMPORARY
        // TABLE accounts (phone text, id text)`, then `INSERT INTO accounts
        // SELECT id, phone FROM people` put phone in the `id` airlock took
        // for unmasked).
        if !self.active.is_empty() && creates_temporary(self.dialect, st) {
            return stop(
                super::UNKNOWN_SOURCE,
                "temporary tables and views cannot be made while masking applies: they are not in airlock's catalog snapshot, and one would be read under its name as the table airlock knows",
            );
        }
        match st {
            Statement::Query(q) => Ok(Shape::Rows(self.query(q, None)?)),
            Statement::Insert(i) => {
                let out = self.dml(st, None)?;
                Ok(if i.returning.is_some() { Shape::Rows(out) } else { Shape::NoResult })
            }
            Statement::Update(u) => {
                let out = self.dml(st, None)?;
                Ok(if u.returning.is_some() { Shape::Rows(out) } else { Shape::NoResult })
            }
            Statement::Delete(d) => {
                let out = self.dml(st, None)?;
                Ok(if d.returning.is_some() { Shape::Rows(out) } else { Shape::NoResult })
            }
            Statement::Merge(_) => {
                self.dml(st, None)?;
                Ok(Shape::Opaque)
            }
            Statement::CreateTable(ct) => {
                if let Some(q) = &ct.query {
                    let t = self.query(q, None)?.taint();
                    if t.rule().is_some() {
                        return self.write_stop(t, "CREATE TABLE AS");
                    }
                }
                self.created_columns_computed(ct)?;
                if reads_other_tables(ct) {
                    return stop(
                        UNANALYZABLE,
                        "a table whose engine reads other tables (MERGE's UNION=, FEDERATED, CONNECT, SPIDER) would show them under its own name, which masks do not follow",
                    );
                }
                Ok(Shape::NoResult)
            }
            Statement::AlterTable(at) => {
                self.alter_table(&object_parts(&at.name), &at.operations)?;
                Ok(Shape::NoResult)
            }
            // A procedure is made on the server: what it keeps of its
            // arguments cannot be seen (third re-check finding: MySQL
            // `CALL keepout((SELECT secret ...), @v)` set @v raw).
            Statement::Call(f) => {
                let scope = Scope {
                    sources: &[],
                    parent: None,
                };
                let t = self.expr(f, &scope)?;
                if t.rule().is_some() {
                    return self.write_stop(t, "passing it to a procedure");
                }
                Ok(Shape::Opaque)
            }
            Statement::RenameTable(renames) => {
                for r in renames {
                    self.keeps_masks(&object_parts(&r.old_name), None, "RENAME TABLE")?;
                }
                Ok(Shape::NoResult)
            }
            // Postgres renames a table with `ALTER INDEX t RENAME TO u` too.
            Statement::AlterIndex { name, .. } => {
                self.keeps_masks(&object_parts(name), None, "ALTER INDEX ... RENAME")?;
                Ok(Shape::NoResult)
            }
            Statement::AlterSchema(a) => {
                self.alter_schema(a)?;
                Ok(Shape::NoResult)
            }
            Statement::CreateView(cv) => {
                if cv.or_replace && !cv.materialized && !self.active.is_empty() {
                    self.read_by_materialized(&object_parts(&cv.name))?;
                }
                // A temporary view is not in the catalog snapshot (no
                // temporary relation is), so reads of it could not be
                // followed to what it reads.
                if cv.materialized || cv.temporary {
                    let t = self.query(&cv.query, None)?.taint();
                    if t.rule().is_some() {
                        let what = match cv.materialized {
                            true => "CREATE MATERIALIZED VIEW",
                            false => "CREATE TEMPORARY VIEW",
                        };
                        return self.write_stop(t, what);
                    }
                }
                Ok(Shape::NoResult)
            }
            Statement::Copy { source, to, .. } => {
                if !*to {
                    return Ok(Shape::NoResult);
                }
                let out = match source {
                    CopySource::Query(q) => self.query(q, None)?,
                    CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        let (all, _, tables) = self.relation(&object_parts(table_name))?;
                        if columns.is_empty() {
                            let mut all = all;
                            if all.open.is_some() {
                                for (s, t) in &tables {
                                    all.open = all.open.map(|o| o.join(self.table_taint(s, t)));
                                }
                            }
                            all
                        } else {
                            let src = Source {
                                name: String::new(),
                                schema: None,
                                tables,
                                out: all,
                                builtin: false,
                            };
                            let mut out = Out::default();
                            for c in columns {
                                let name = c.value.to_lowercase();
                                let taint = self.lookup_in(&src, &name).unwrap_or(Taint::Column);
                                out.push(Col { name, taint });
                            }
                            out
                        }
                    }
                };
                let t = out.taint();
                if t.rule().is_some() {
                    return self.write_stop(t, "COPY ... TO");
                }
                Ok(Shape::Rows(out))
            }
            Statement::Declare { stmts } => {
                for d in stmts {
                    if let Some(q) = &d.for_query {
                        let t = self.query(q, None)?.taint();
                        if t.rule().is_some() {
                            return stop(
                                &self.rule_id(t),
                                "cursors over masked data are not supported; run the query directly",
                            );
                        }
                    }
                }
                Ok(Shape::NoResult)
            }
            Statement::Prepare { statement, .. } => match self.statement(statement)? {
                Shape::Rows(out) if out.taint().rule().is_some() => stop(
                    &self.rule_id(out.taint()),
                    "SQL-level PREPARE of a statement that reads masked data is not supported; use the protocol's prepare",
                ),
                _ => Ok(Shape::NoResult),
            },
            Statement::Set(_) => {
                // `SET @x = (SELECT email ...)` would launder a masked value
                // through a variable that reads back unmasked.
                let scope = Scope {
                    sources: &[],
                    parent: None,
                };
                let t = self.expr(st, &scope)?;
                if t.rule().is_some() {
                    return self.write_stop(t, "SET of a variable");
                }
                Ok(Shape::NoResult)
            }
            Statement::Explain {
                statement,
                analyze,
                options,
                ..
            } => {
                if extract::explain_runs(*analyze, options.as_deref()) {
                    self.statement(statement)?;
                }
                // MySQL's plans print what single-row lookups read
                // (`t2.x = <cache>(hex('...'))`): values masking cannot
                // find in them.
                if self.dialect == Dialect::MySql && !self.active.is_empty() {
                    return stop(
                        UNANALYZABLE,
                        "EXPLAIN on MySQL prints values the optimizer read from tables; not available while masking applies",
                    );
                }
                Ok(Shape::Opaque)
            }
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Use(_)
            | Statement::CreateIndex(_)
            | Statement::CreateSchema { .. }
            | Statement::Drop { .. }
            | Statement::Truncate(_)
            | Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::Deallocate { .. }
            | Statement::Discard { .. } => Ok(Shape::NoResult),
            _ if !self.active.is_empty() && shows_diagnostics(st) => {
                let rule = &self.rules.rules[self.active[0]];
                stop(
                    &rule.id,
                    "SHOW WARNINGS and SHOW ERRORS quote values (`Truncated incorrect INTEGER value: '...'`) that may come from masked columns; they are not available while masking applies",
                )
            }
            _ => Ok(Shape::Opaque),
        }
    }

    /// Masking rules name tables and columns, so DDL must not move masked
    /// data out from under them: renaming a table with masked columns, or
    /// a masked column, and a generated column or a column default
    /// computed from masked data (`ADD COLUMN e2 AS (hex(email))`; MySQL
    /// fills existing rows with `ADD COLUMN e2 ... DEFAULT (reverse(email))`
    /// and `UPDATE ... SET e2 = DEFAULT` computes it), are refused. A column's new type
    /// (`ALTER COLUMN c TYPE t USING e`) rewrites it: see
    /// [`Self::type_change`].
    fn alter_table(
        &mut self,
        table: &[String],
        ops: &[sqlparser::ast::AlterTableOperation],
    ) -> Result<(), Stop> {
        use sqlparser::ast::{AlterColumnOperation, AlterTableOperation as Op};
        for op in ops {
            let (renamed, exprs) = match op {
                Op::RenameTable { .. } => {
                    self.keeps_masks(table, None, "renaming a table")?;
                    continue;
                }
                Op::AlterColumn {
                    column_name,
                    op:
                        AlterColumnOperation::SetDataType {
                            data_type, using, ..
                        },
                } => {
                    self.type_change(table, column_name, data_type, using.as_ref())?;
                    continue;
                }
                Op::AlterColumn {
                    op: AlterColumnOperation::SetDefault { value },
                    ..
                } => (None, vec![value.clone()]),
                Op::RenameColumn {
                    old_column_name, ..
                } => (Some(old_column_name), Vec::new()),
                Op::ChangeColumn {
                    old_name, options, ..
                } => (Some(old_name), computed_values(&mut options.iter())),
                Op::ModifyColumn { options, .. } => (None, computed_values(&mut options.iter())),
                Op::AddColumn { column_def, .. } => {
                    self.merges_masked_column(table, &column_def.name.value.to_lowercase())?;
                    (
                        None,
                        computed_values(&mut column_def.options.iter().map(|o| &o.option)),
                    )
                }
                _ => continue,
            };
            if let Some(col) = renamed {
                self.keeps_masks(table, Some(&col.value.to_lowercase()), "renaming a column")?;
            }
            if exprs.is_empty() {
                continue;
            }
            let sources = [self.table_source(table)?];
            self.stored_from_masked(&sources, &exprs)?;
        }
        Ok(())
    }

    /// `CREATE TABLE c … INHERITS (p, q)`: rows of c are rows of p and of
    /// q, so a column that p masks and q does not (or masks by another
    /// rule) would show p's masked data through q once it is in c, and
    /// writes through p reach c (review finding: `UPDATE p SET phone = …`
    /// landed in c, and `SELECT phone FROM q` showed it). Refused.
    fn parents_mask_alike(&self, outs: &[Out]) -> Result<(), Stop> {
        for (i, out) in outs.iter().enumerate() {
            for col in &out.cols {
                for other in outs.iter().skip(i + 1) {
                    let theirs = other
                        .cols
                        .iter()
                        .find(|c| c.name == col.name)
                        .map(|c| c.taint)
                        .or(other.open);
                    let Some(theirs) = theirs else { continue };
                    if theirs != col.taint {
                        let t = col.taint.join(theirs);
                        if t.rule().is_some() {
                            return stop(
                                &self.rule_id(t),
                                format!(
                                    "a table inheriting from tables that mask column {} differently would show masked data (rule {}) unmasked through one of them",
                                    col.name,
                                    self.rule_id(t)
                                ),
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `ALTER TABLE p ADD COLUMN c`: Postgres merges c into the column c
    /// that a partition or inheritance child of p already has. When that
    /// column is masked and p's would not be alike, p would then read the
    /// child's masked rows as they are (re-check finding: a mixed child
    /// made before its unmasked parent had the column). Refused.
    fn merges_masked_column(&mut self, table: &[String], column: &str) -> Result<(), Stop> {
        let rel = extract::resolve(self.dialect, self.ctx, table);
        for schema in &rel.schemas {
            let own = self.read_as(schema, &rel.name, column);
            for (s, t) in self.catalog.descendants(schema, &rel.name) {
                let has = self
                    .catalog
                    .columns(&s, &t)
                    .is_some_and(|cols| cols.iter().any(|c| c == column));
                if !has {
                    continue;
                }
                let theirs = self.column_taint(&s, &t, column);
                if theirs.rule().is_some() && theirs != own {
                    return stop(
                        &self.rule_id(theirs),
                        format!(
                            "adding column {column} would merge it with {s}.{t}.{column}, which rule {} masks there and would not be masked here",
                            self.rule_id(theirs)
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Refuses generated columns and defaults (`exprs`) over `sources`
    /// that compute a stored value from masked data.
    fn stored_from_masked(
        &mut self,
        sources: &[Source],
        exprs: &[sqlparser::ast::Expr],
    ) -> Result<(), Stop> {
        let scope = Scope {
            sources,
            parent: None,
        };
        for e in exprs {
            let t = self.expr(e, &scope)?;
            if t.rule().is_some() {
                return self.write_stop(t, "a generated column or a column default");
            }
        }
        Ok(())
    }

    /// `CREATE TABLE c (…)`: a generated column or a default computed
    /// from a column that masks cover in c would hold masked data
    /// unmasked. The new table's own columns are covered by the rules
    /// whose patterns match them (`*.ssn`: `CREATE TABLE c (ssn text, x
    /// text AS (reverse(ssn)))`, then a same-rule copy of ssn into c, showed
    /// x raw; red-team finding on MySQL), and with `INHERITS (p)` or
    /// `PARTITION OF p` also p's columns, which p's masks cover in c too
    /// (`g text GENERATED ALWAYS AS (phone) STORED`, then an INSERT of p's
    /// rows). Refused, as [`Self::alter_table`] refuses `ADD COLUMN` with
    /// one.
    fn created_columns_computed(&mut self, ct: &sqlparser::ast::CreateTable) -> Result<(), Stop> {
        let parents: Vec<Vec<String>> = ct
            .inherits
            .iter()
            .flatten()
            .chain(&ct.partition_of)
            .map(object_parts)
            .collect();
        let mut outs = Vec::with_capacity(parents.len());
        for p in &parents {
            outs.push(self.table_source(p)?.out);
        }
        self.parents_mask_alike(&outs)?;
        let exprs = computed_values(
            &mut ct
                .columns
                .iter()
                .flat_map(|c| c.options.iter().map(|o| &o.option)),
        );
        if exprs.is_empty() {
            return Ok(());
        }
        // The new table as its expressions see it, by its own name
        // (`c.phone` as well as `phone`): its parents' columns, then its
        // own except those a parent has, which Postgres merges into the
        // inherited one; each covered by the rules matching it in c too.
        let name = object_parts(&ct.name);
        let rel = extract::resolve(self.dialect, self.ctx, &name);
        let table = rel.name.to_lowercase();
        let own = |a: &Self, column: &str| {
            rel.schemas
                .iter()
                .map(|s| a.own_column_taint(&s.to_lowercase(), &table, column))
                .fold(a.name_taint(column), Taint::join)
        };
        let mut out = Out::default();
        for o in outs {
            out.extend(o);
        }
        for c in out.cols.iter_mut() {
            c.taint = c.taint.join(own(self, &c.name));
        }
        for c in &ct.columns {
            let name = c.name.value.to_lowercase();
            if out.open.is_none() && !out.cols.iter().any(|x| x.name == name) {
                let taint = own(self, &name);
                out.push(Col { name, taint });
            }
        }
        let child = Source {
            name: name.last().cloned().unwrap_or_default(),
            schema: (name.len() > 1).then(|| name[name.len() - 2].clone()),
            tables: Vec::new(),
            out,
            builtin: false,
        };
        self.stored_from_masked(&[child], &exprs)
    }

    /// `CREATE OR REPLACE VIEW v`: a materialized view that reads v
    /// (through views, at any depth) keeps the rows v's definition
    /// computed at its last refresh, while masking follows the current
    /// definition. Redefined to read masked data, refreshed (by a
    /// maintenance job), then redefined back, v would have it show masked
    /// data unmasked (red-team finding). Refused while masking applies,
    /// for a view of v's name in any schema.
    fn read_by_materialized(&mut self, view: &[String]) -> Result<(), Stop> {
        let Some(name) = view.last().map(|n| n.to_lowercase()) else {
            return Ok(());
        };
        for (schema, mv, sql) in self.catalog.materialized_views() {
            let mut read = std::collections::HashSet::new();
            if !self.names_read(&sql, 0, &mut read) {
                return stop(
                    UNANALYZABLE,
                    format!(
                        "airlock cannot tell which views materialized view {schema}.{mv} reads (its definition, or that of a view it reads, could not be read or analyzed; is it being refreshed?), and a materialized view keeps the rows a view's definition computed at its last refresh, which masking cannot follow: no view can be redefined while masking applies until it can"
                    ),
                );
            }
            if read.contains(&name) {
                return stop(
                    UNANALYZABLE,
                    format!(
                        "materialized view {schema}.{mv} reads view {name}, and keeps the rows the view's definition computed at its last refresh, which masking cannot follow: the view cannot be redefined while masking applies"
                    ),
                );
            }
        }
        Ok(())
    }

    /// Adds to `read` the lower-case names of the relations `sql` reads,
    /// and of those the views among them read, and so on. `false` when
    /// that cannot be told (a definition that does not parse, or views
    /// nested too deeply).
    fn names_read(
        &self,
        sql: &str,
        depth: usize,
        read: &mut std::collections::HashSet<String>,
    ) -> bool {
        use std::ops::ControlFlow;
        if depth > MAX_VIEW_NESTING {
            return false;
        }
        let Ok(parsed) = parse::parse(self.dialect, sql, &self.limits) else {
            return false;
        };
        let mut names = Vec::new();
        for p in &parsed {
            let _ = sqlparser::ast::visit_relations(&p.statement, |r| {
                names.push(object_parts(r));
                ControlFlow::<()>::Continue(())
            });
        }
        for parts in names {
            let Some(name) = parts.last().map(|n| n.to_lowercase()) else {
                continue;
            };
            if !read.insert(name.clone()) {
                continue;
            }
            let rel = extract::resolve(self.dialect, self.ctx, &parts);
            let schemas = rel.schemas.iter().map(|s| s.to_lowercase());
            for schema in schemas.chain(std::iter::once("public".to_owned())) {
                if let Some(def) = self.catalog.view_sql(&schema, &name) {
                    if !self.names_read(&def, depth + 1, read) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// The table an ALTER TABLE works on, as the one source its
    /// expressions read and its column changes write.
    fn table_source(&mut self, table: &[String]) -> Result<Source, Stop> {
        let (out, schema, tables) = self.relation(table)?;
        Ok(Source {
            name: table.last().cloned().unwrap_or_default(),
            schema,
            tables,
            out,
            builtin: false,
        })
    }

    /// `ALTER COLUMN c [SET DATA] TYPE t [USING e]` rewrites every row's
    /// `c` with `e` (or `c` itself) converted to `t`: a write, checked as
    /// `UPDATE ... SET c = e` is ([`Self::check_write`]), so masked data
    /// may go only as an unmodified copy into a column masked by the same
    /// rule. The conversion keeps the value unmodified only into a
    /// character type (Postgres converts as in an assignment, which
    /// refuses to cut a string short); into any other type the value
    /// counts as computed (`"char"` keeps one character, a number drops
    /// leading zeros).
    fn type_change(
        &mut self,
        table: &[String],
        column: &sqlparser::ast::Ident,
        data_type: &sqlparser::ast::DataType,
        using: Option<&sqlparser::ast::Expr>,
    ) -> Result<(), Stop> {
        use sqlparser::ast::{DataType, Expr};
        let column = column.value.to_lowercase();
        let sources = [self.table_source(table)?];
        let scope = Scope {
            sources: &sources,
            parent: None,
        };
        let own = Expr::Identifier(sqlparser::ast::Ident::new(column.clone()));
        let value = using.unwrap_or(&own);
        let t = self.expr(value, &scope)?;
        let kept = matches!(
            data_type,
            DataType::Text
                | DataType::Varchar(_)
                | DataType::CharacterVarying(_)
                | DataType::CharVarying(_)
                | DataType::Char(_)
                | DataType::Character(_)
        );
        let t = if kept && self.is_bare_write(value) {
            t
        } else {
            t.derive()
        };
        let dest = self.assignment_dest(&sources, std::slice::from_ref(&column));
        self.check_write(t, dest, false, "ALTER COLUMN ... TYPE ... USING")
    }

    /// `ALTER SCHEMA s RENAME TO x` renames every relation in `s`, out
    /// from under the masking rules that name `s`: refused when a rule may
    /// match a column of a table in `s` (`*.card_number` matches every
    /// schema's; [`MaskRule::may_cover_schema`]), or a relation of the
    /// catalog snapshot in `s` has masked columns (a view, through its
    /// lineage).
    ///
    /// [`MaskRule::may_cover_schema`]: super::rules::MaskRule::may_cover_schema
    fn alter_schema(&mut self, a: &sqlparser::ast::AlterSchema) -> Result<(), Stop> {
        use sqlparser::ast::AlterSchemaOperation;
        let renames = a
            .operations
            .iter()
            .any(|op| matches!(op, AlterSchemaOperation::Rename { .. }));
        let Some(schema) = object_parts(&a.name).pop().filter(|_| renames) else {
            return Ok(());
        };
        if let Some(&i) = self
            .active
            .iter()
            .find(|&&i| self.rules.rules[i].may_cover_schema(&schema))
        {
            let id = self.rules.rules[i].id.clone();
            return stop(
                &id,
                format!(
                    "renaming schema {schema} would move data masked by rule {id} out from under it"
                ),
            );
        }
        for table in self.catalog.relations(&schema) {
            self.keeps_masks(&[schema.clone(), table], None, "renaming a schema")?;
        }
        Ok(())
    }

    /// Refuses `what` on `table` (on its `column`, when given) if masking
    /// rules cover it: its columns in the catalog (views through their
    /// lineage), or, for a table the catalog does not know, any rule whose
    /// table (or column) pattern matches it.
    fn keeps_masks(
        &mut self,
        table: &[String],
        column: Option<&str>,
        what: &str,
    ) -> Result<(), Stop> {
        // A rename of a relation the snapshot lacks moves nothing its
        // masks cover (a new partition stays one under another name):
        // not refused as unknown (an index, say, is never in a snapshot).
        let unknown = self.unknown.take();
        let (out, known, tables) = self.relation(table)?;
        self.unknown = unknown;
        let mut taint = Taint::Column;
        if known.is_some() {
            for c in &out.cols {
                if column.is_none_or(|name| c.name == name) {
                    taint = taint.join(c.taint);
                }
            }
        } else {
            for (s, t) in &tables {
                taint = taint.join(match column {
                    Some(c) => self.column_taint(s, t, c).join(self.name_taint(c)),
                    None => self.table_taint(s, t),
                });
            }
        }
        match taint.rule() {
            Some(_) => stop(
                &self.rule_id(taint),
                format!(
                    "{what} would move masked data (rule {}) out from under its masking rule",
                    self.rule_id(taint)
                ),
            ),
            None => Ok(()),
        }
    }

    /// SET assignments (of an UPDATE, the UPDATE of an upsert or a MERGE,
    /// MySQL's INSERT ... SET) over `sources`, the first `writable` of
    /// which may be written: see [`Self::check_write`].
    fn set_assignments(
        &mut self,
        assignments: &[Assignment],
        sources: &[Source],
        writable: usize,
        outer: Option<&Scope<'_>>,
        what: &str,
    ) -> Result<(), Stop> {
        let written = sources.get(..writable).unwrap_or(sources);
        for a in assignments {
            let scope = Scope {
                sources,
                parent: outer,
            };
            let t = self.expr(&a.value, &scope)?;
            let t = if self.is_bare_write(&a.value) {
                t
            } else {
                t.derive()
            };
            if t.rule().is_none() {
                continue;
            }
            let targets: Vec<&sqlparser::ast::ObjectName> = match &a.target {
                AssignmentTarget::ColumnName(n) => vec![n],
                AssignmentTarget::Tuple(ns) => ns.iter().collect(),
            };
            if targets.len() != 1 {
                // `(a, b) = (...)`: which part goes where is not followed.
                return self.write_stop(t.derive(), what);
            }
            for n in targets {
                let parts = object_parts(n);
                let dest = self.assignment_dest(written, &parts);
                let same_column = self.same_column(sources, written, &parts, &a.value);
                self.check_write(t, dest, same_column, what)?;
                self.no_code_sees(t, written)?;
            }
        }
        Ok(())
    }

    /// Masked data may be written only as an unmodified copy into a
    /// column masked by the same rule: it then reads back exactly as
    /// masked as it was. Anything computed from masked data (`Derived`,
    /// which a weaker strategy of the destination would partly show), data
    /// of another rule, and a destination that is unmasked or cannot be
    /// pinned to one column (`None`) are refused.
    ///
    /// On MySQL the copy must also be of a rule whose mask shows nothing
    /// of a shortened value that it does not show of the whole one
    /// (`redact`, `null`): MariaDB and MySQL cut a value to the
    /// destination's length on `INSERT IGNORE` and `UPDATE IGNORE`, in
    /// a non-strict sql_mode, and past the first row into a
    /// non-transactional table, and airlock does not know column lengths.
    /// A `partial` mask of a card number copied into a `VARCHAR(8)` shows
    /// digits 5 to 8 (red-team finding); a `hash` or `fake` of a prefix is
    /// a codebook entry. Postgres refuses to cut a string short in an
    /// assignment.
    /// (A copy within one column, `same_column`, keeps its length.)
    fn check_write(
        &self,
        value: Taint,
        dest: Option<Taint>,
        same_column: bool,
        what: &str,
    ) -> Result<(), Stop> {
        match (value, dest) {
            (v, _) if v.rule().is_none() => Ok(()),
            (Taint::Masked(i), Some(Taint::Masked(j)))
                if i == j && (same_column || self.copy_keeps_mask(i)) =>
            {
                Ok(())
            }
            (Taint::Masked(i), Some(Taint::Masked(j))) if i == j => {
                let id = self.rule_id(value);
                stop(
                    &id,
                    format!(
                        "{what} would copy masked data (rule {id}) where MySQL may cut it short, and a shortened value's mask shows what the whole value's does not; only redact and null masks may be copied on MySQL"
                    ),
                )
            }
            (v, _) => self.write_stop(v, what),
        }
    }

    /// Masked data `t`, allowed into `written` as a same-rule copy, must
    /// not reach code made on the server that runs on the write (a
    /// trigger copying the new row into a table nothing masks, a rule, a
    /// CHECK calling such a function: third re-check finding), which sees
    /// the rows as they are.
    fn no_code_sees(&self, t: Taint, written: &[Source]) -> Result<(), Stop> {
        if t.rule().is_none() {
            return Ok(());
        }
        for s in written {
            for (schema, table) in &s.tables {
                if self.catalog.runs_code_on_write(schema, table) {
                    return stop(
                        &self.rule_id(t),
                        format!(
                            "{schema}.{table} has triggers, rules or checks made on the server, or passes what is written to it on (a view, a foreign key's ON UPDATE CASCADE), which would see or keep the masked data (rule {}) copied into it as it is",
                            self.rule_id(t)
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether an unmodified copy of data masked by rule `i` reads back as
    /// masked as the original even if the server cuts it short (see
    /// [`Self::check_write`]).
    fn copy_keeps_mask(&self, i: usize) -> bool {
        self.dialect != Dialect::MySql
            || self
                .rules
                .rules
                .get(i)
                .is_some_and(|r| r.strategy.for_derived() == r.strategy)
    }

    /// The taint of the column an assignment target names among the
    /// written tables; `None` when it cannot be pinned to exactly one
    /// column: an unknown qualifier (Postgres takes `x.y` as a field of
    /// column `x`), or an unqualified name that several tables (or one
    /// with unknown columns, beside others) may hold.
    fn assignment_dest(&self, written: &[Source], parts: &[String]) -> Option<Taint> {
        let (col, qual) = parts.split_last()?;
        if qual.is_empty() {
            let mut hits = written.iter().filter_map(|s| self.lookup_in(s, col));
            let first = hits.next()?;
            return match hits.next() {
                Some(_) => None,
                None => Some(first),
            };
        }
        let level = Scope {
            sources: written,
            parent: None,
        };
        let s = self.find_source(&level, qual)?;
        self.lookup_in(s, col)
    }

    /// Whether assignment `target = value` copies a column into itself:
    /// `value` is a bare column of the same name as `target`, and both
    /// resolve (among `sources`, and the `written` ones) only to sources
    /// of one and the same base table: `SET c = c`, `c.email = k.email`
    /// in a self-join, MySQL's `VALUES(c)`. Such a copy keeps its length.
    fn same_column(
        &self,
        sources: &[Source],
        written: &[Source],
        target: &[String],
        value: &sqlparser::ast::Expr,
    ) -> bool {
        let Some(value) = self.bare_parts(value) else {
            return false;
        };
        let (Some((vcol, vqual)), Some((tcol, tqual))) = (value.split_last(), target.split_last())
        else {
            return false;
        };
        if vcol != tcol {
            return false;
        }
        let table = |among: &[Source], qual: &[String]| -> Option<Vec<(String, String)>> {
            let candidates: Vec<Vec<(String, String)>> = match qual {
                [] => among
                    .iter()
                    .filter(|s| self.lookup_in(s, vcol).is_some())
                    .map(|s| s.tables.clone())
                    .collect(),
                q => {
                    let scope = Scope {
                        sources: among,
                        parent: None,
                    };
                    let found = find_sources_at(&scope, q)?.0;
                    found.iter().map(|s| s.tables.clone()).collect()
                }
            };
            let first = candidates.first()?;
            (first.len() == 1 && candidates.iter().all(|t| t == first)).then(|| first.clone())
        };
        table(written, tqual).is_some_and(|t| table(sources, vqual) == Some(t))
    }

    /// The (lower-cased) name parts of the column a written value is, when
    /// it is one ([`Self::is_bare_write`]).
    fn bare_parts(&self, e: &sqlparser::ast::Expr) -> Option<Vec<String>> {
        use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments};
        if !self.is_bare_write(e) {
            return None;
        }
        let mut e = e;
        loop {
            match e {
                Expr::Nested(inner) => e = inner,
                Expr::Identifier(i) => return Some(vec![i.value.to_lowercase()]),
                Expr::CompoundIdentifier(is) => {
                    return Some(is.iter().map(|i| i.value.to_lowercase()).collect())
                }
                Expr::Function(f) => match &f.args {
                    FunctionArguments::List(l) => match l.args.as_slice() {
                        [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] => e = a,
                        _ => return None,
                    },
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// A written value that is a column itself: a bare reference, or on
    /// MySQL `VALUES(col)` in `ON DUPLICATE KEY UPDATE` (the value the
    /// INSERT half carried for `col`, which passed the same checks).
    fn is_bare_write(&self, e: &sqlparser::ast::Expr) -> bool {
        use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments};
        if is_bare(e) {
            return true;
        }
        let Expr::Function(f) = e else {
            return false;
        };
        let plain_name = match f.name.0.as_slice() {
            [p] => p
                .as_ident()
                .is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case("values")),
            _ => false,
        };
        if self.dialect != Dialect::MySql
            || !plain_name
            || f.filter.is_some()
            || f.over.is_some()
            || !f.within_group.is_empty()
        {
            return false;
        }
        match &f.args {
            FunctionArguments::List(l) => match l.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] => {
                    l.duplicate_treatment.is_none() && l.clauses.is_empty() && is_bare(a)
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Where `node` assigns to a variable or passes to a function that
    /// keeps its arguments ([`stores_values`]), in any clause (`WHERE
    /// pg_notify('c', email) IS NULL`, `JOIN ... ON (@v := c.email)`), it
    /// is analyzed over `sources`: masked data stored so is refused (see
    /// [`Self::expr`]). Nothing is analyzed otherwise.
    fn stored_values<V: sqlparser::ast::Visit>(
        &mut self,
        node: &V,
        sources: &[Source],
        outer: Option<&Scope<'_>>,
    ) -> Result<(), Stop> {
        if stores_values(node) || self.calls_server_function(node) {
            let scope = Scope {
                sources,
                parent: outer,
            };
            self.expr(node, &scope)?;
        }
        Ok(())
    }

    /// Whether `node` calls a function defined on the server (see
    /// [`Catalog::server_function`]). On Postgres, also whether it may: `c.f` where `f` may be a
    /// function made on the server is `f(c)` when `c` has no column `f`,
    /// which only analysis tells ([`Self::resolve_ref`]).
    fn calls_server_function<V: sqlparser::ast::Visit>(&self, node: &V) -> bool {
        calls_server_function(node, self.catalog)
            || (self.dialect == Dialect::Postgres
                && any_expr(node, |e| {
                    matches!(e, sqlparser::ast::Expr::CompoundIdentifier(p)
                    if p.len() >= 2
                        && p.last().is_some_and(|f| {
                            self.catalog.server_function(&f.value.to_lowercase())
                        }))
                }))
    }

    /// INSERT/UPDATE/DELETE/MERGE: stops where masked data would be
    /// written unmasked; returns the RETURNING columns.
    fn dml(&mut self, st: &Statement, outer: Option<&Scope<'_>>) -> Result<Out, Stop> {
        match st {
            Statement::Insert(ins) => {
                let TableObject::TableName(name) = &ins.table else {
                    return stop(
                        UNANALYZABLE,
                        "INSERT into a table function is not supported",
                    );
                };
                let parts = object_parts(name);
                let (tout, schema, tables) = self.relation(&parts)?;
                let target = Source {
                    name: ins
                        .table_alias
                        .as_ref()
                        .map(|a| a.alias.value.to_lowercase())
                        .or_else(|| parts.last().cloned())
                        .unwrap_or_default(),
                    schema,
                    tables,
                    out: tout.clone(),
                    builtin: false,
                };
                if let Some(src) = &ins.source {
                    let sout = self.query(src, outer)?;
                    let dest: Vec<String> = if ins.columns.is_empty() {
                        tout.cols.iter().map(|c| c.name.clone()).collect()
                    } else {
                        ins.columns
                            .iter()
                            .filter_map(|c| object_parts(c).pop())
                            .collect()
                    };
                    for (i, c) in sout.cols.iter().enumerate() {
                        let d = dest.get(i).and_then(|d| self.lookup_in(&target, d));
                        self.check_write(c.taint, d, false, "INSERT ... SELECT")?;
                        if c.taint.rule().is_some() {
                            self.no_code_sees(c.taint, std::slice::from_ref(&target))?;
                        }
                    }
                    if let Some(t) = sout.open.filter(|t| t.rule().is_some()) {
                        return self.write_stop(t, "INSERT ... SELECT");
                    }
                }
                // MySQL `INSERT INTO t SET c = ...`: a reference names the
                // new row's column (set earlier in the list, or its default).
                self.set_assignments(
                    &ins.assignments,
                    std::slice::from_ref(&target),
                    1,
                    outer,
                    "INSERT ... SET",
                )?;
                // The UPDATE of an upsert: `ON CONFLICT ... DO UPDATE SET`
                // (Postgres) and `ON DUPLICATE KEY UPDATE` (MySQL) write
                // the existing row's values, as UPDATE ... SET does.
                let upsert = match &ins.on {
                    Some(OnInsert::DuplicateKeyUpdate(a)) => Some(a),
                    Some(OnInsert::OnConflict(OnConflict {
                        action: OnConflictAction::DoUpdate(d),
                        ..
                    })) => Some(&d.assignments),
                    _ => None,
                };
                if let Some(assignments) = upsert {
                    // `excluded.c` is the row that was to be inserted: it
                    // counts as masked where the target column is.
                    let excluded = Source {
                        name: "excluded".into(),
                        ..target.clone()
                    };
                    let mut sources = vec![target.clone(), excluded];
                    // MySQL's `VALUES (...) AS new [(a, b)]`: the same row.
                    if let Some(al) = &ins.insert_alias {
                        let out = match &al.col_aliases {
                            None => target.out.clone(),
                            Some(_) => Out::unknown(target.out.taint().join(Taint::Column)),
                        };
                        sources.push(Source {
                            name: object_parts(&al.row_alias).pop().unwrap_or_default(),
                            schema: None,
                            tables: target.tables.clone(),
                            out,
                            builtin: false,
                        });
                    }
                    self.set_assignments(
                        assignments,
                        &sources,
                        1,
                        outer,
                        "INSERT ... ON CONFLICT/DUPLICATE KEY UPDATE",
                    )?;
                    // `DO UPDATE SET ... WHERE keep(t.email)` (re-audit
                    // finding: never analyzed).
                    if let Some(OnInsert::OnConflict(OnConflict {
                        action: OnConflictAction::DoUpdate(d),
                        ..
                    })) = &ins.on
                    {
                        if let Some(w) = &d.selection {
                            self.stored_values(w, &sources, outer)?;
                        }
                    }
                }
                let star = target.out.clone();
                match &ins.returning {
                    Some(items) => self.projection(items, &[target], &star, outer),
                    None => Ok(Out::default()),
                }
            }
            Statement::Update(u) => {
                let mut sources = Vec::new();
                let mut star = self.join_tree(&u.table, &mut sources, outer)?;
                // The UPDATE's own tables (several in a MySQL multi-table
                // UPDATE) may be written; Postgres `FROM` ones are read.
                let writable = sources.len();
                if let Some(UpdateTableFromKind::BeforeSet(f) | UpdateTableFromKind::AfterSet(f)) =
                    &u.from
                {
                    for twj in f {
                        let e = self.join_tree(twj, &mut sources, outer)?;
                        star.extend(e);
                    }
                }
                self.set_assignments(&u.assignments, &sources, writable, outer, "UPDATE ... SET")?;
                self.stored_values(st, &sources, outer)?;
                match &u.returning {
                    Some(items) => self.projection(items, &sources, &star, outer),
                    None => Ok(Out::default()),
                }
            }
            Statement::Delete(d) => {
                let mut sources = Vec::new();
                let mut star = Out::default();
                let (FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f)) = &d.from;
                for twj in f.iter().chain(d.using.iter().flatten()) {
                    let e = self.join_tree(twj, &mut sources, outer)?;
                    star.extend(e);
                }
                self.stored_values(st, &sources, outer)?;
                match &d.returning {
                    Some(items) => self.projection(items, &sources, &star, outer),
                    None => Ok(Out::default()),
                }
            }
            Statement::Merge(m) => {
                // The source may carry no masked data at all (`UPDATE SET
                // *`, `INSERT ROW` copy it whole).
                let mut source = Vec::new();
                let t = self.factor(&m.source, &mut source, outer)?.taint();
                let t = source
                    .iter()
                    .map(|s| self.whole_row(s))
                    .fold(t, Taint::join);
                if t.rule().is_some() {
                    return self.write_stop(t, "MERGE");
                }
                // The target's own masked columns may be copied by the
                // clauses: they follow the rules of UPDATE ... SET and
                // INSERT.
                let mut sources = Vec::new();
                self.factor(&m.table, &mut sources, outer)?;
                let writable = sources.len();
                sources.extend(source);
                // `ON ... AND keep(t.email)`, `WHEN MATCHED AND ...`
                // (re-audit finding: never analyzed).
                self.stored_values(m.on.as_ref(), &sources, outer)?;
                for clause in &m.clauses {
                    if let Some(p) = &clause.predicate {
                        self.stored_values(p, &sources, outer)?;
                    }
                    match &clause.action {
                        MergeAction::Update(u) => {
                            if let MergeUpdateKind::Set(a) = &u.kind {
                                self.set_assignments(a, &sources, writable, outer, "MERGE")?;
                            }
                        }
                        MergeAction::Insert(ins) => {
                            let MergeInsertKind::Values(v) = &ins.kind else {
                                continue;
                            };
                            let scope = Scope {
                                sources: &sources,
                                parent: outer,
                            };
                            let written = sources.get(..writable).unwrap_or(&sources);
                            for row in &v.rows {
                                for (i, e) in row.iter().enumerate() {
                                    let t = self.expr(e, &scope)?;
                                    let t = if is_bare(e) { t } else { t.derive() };
                                    if t.rule().is_none() {
                                        continue;
                                    }
                                    let dest = match ins.columns.get(i) {
                                        Some(c) => self.assignment_dest(written, &object_parts(c)),
                                        None if ins.columns.is_empty() => written
                                            .first()
                                            .and_then(|s| s.out.cols.get(i))
                                            .map(|c| c.taint),
                                        None => None,
                                    };
                                    self.check_write(t, dest, false, "MERGE")?;
                                    self.no_code_sees(t, written)?;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Ok(Out::default())
            }
            _ => Ok(Out::default()),
        }
    }
}

/// The expressions among column options that compute a stored value:
/// generation expressions and defaults.
fn computed_values(
    options: &mut dyn Iterator<Item = &sqlparser::ast::ColumnOption>,
) -> Vec<sqlparser::ast::Expr> {
    use sqlparser::ast::ColumnOption;
    options
        .filter_map(|o| match o {
            ColumnOption::Generated {
                generation_expr: Some(e),
                ..
            }
            | ColumnOption::Default(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Whether `st` makes a temporary relation: `CREATE TEMP[ORARY]
/// TABLE`, and on Postgres also `CREATE TEMP VIEW`, a name in `pg_temp`,
/// `SELECT … INTO TEMP`.
fn creates_temporary(dialect: Dialect, st: &Statement) -> bool {
    if dialect != Dialect::Postgres {
        return matches!(st, Statement::CreateTable(ct) if ct.temporary);
    }
    let in_pg_temp = |name: &sqlparser::ast::ObjectName| {
        let parts = object_parts(name);
        parts.len() > 1 && parts[parts.len() - 2].starts_with("pg_temp")
    };
    fn into_temporary(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(s) => s.into.as_ref().is_some_and(|i| {
                // Any part naming pg_temp (`db.pg_temp.x`, quoted).
                i.temporary
                    || i.targets
                        .iter()
                        .any(|t| t.to_string().to_lowercase().contains("pg_temp"))
            }),
            SetExpr::SetOperation { left, right, .. } => {
                into_temporary(left) || into_temporary(right)
            }
            SetExpr::Query(q) => into_temporary(&q.body),
            _ => false,
        }
    }
    match st {
        Statement::CreateTable(ct) => ct.temporary || in_pg_temp(&ct.name),
        Statement::CreateView(cv) => cv.temporary || in_pg_temp(&cv.name),
        Statement::Query(q) => into_temporary(&q.body),
        _ => false,
    }
}

/// Whether `st` only reads and returns rows: a query that stores nothing
/// where masking cannot follow it (no `INTO`, no variable assignment, no
/// function that keeps its arguments). Beside another session's unsettled
/// DDL only these run: their rows are refused when they start (see
/// `crate::pg::ddl_fence`), and nothing else of them outlives them
/// (red-team findings: a cursor declared beside the DDL and fetched after
/// it, `SELECT ... INTO @v`, `setseed(...)` and `last_insert_id(...)` of a
/// value the new definitions computed).
pub fn plain_read(st: &Statement, catalog: &dyn Catalog) -> bool {
    /// Only SELECT (without INTO), VALUES, TABLE and set operations of
    /// them, in the body and in every WITH entry (second re-check
    /// finding: `WITH x AS (INSERT INTO loot SELECT name FROM w RETURNING
    /// 1) SELECT 1` is a Query whose INSERT ran beside the DDL).
    fn plain_query(q: &sqlparser::ast::Query) -> bool {
        q.with
            .as_ref()
            .is_none_or(|w| w.cte_tables.iter().all(|c| plain_query(&c.query)))
            && plain_body(&q.body)
    }
    fn plain_body(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(s) => s.into.is_none(),
            SetExpr::SetOperation { left, right, .. } => plain_body(left) && plain_body(right),
            SetExpr::Query(q) => plain_query(q),
            SetExpr::Values(_) | SetExpr::Table(_) => true,
            _ => false,
        }
    }
    matches!(st, Statement::Query(q) if plain_query(q))
        && !stores_values(st)
        && !calls_server_function(st, catalog)
}

/// Whether `node` runs code `catalog` says was made on the server (see
/// [`Catalog::server_function`]): a function call, an operator that is
/// not one of SQL's own (`a #~# b`, `OPERATOR(s.#~#)`), or a cast to a
/// type that is not (a domain whose CHECK calls a function, a type whose
/// cast does: third re-check findings).
fn calls_server_function<V: sqlparser::ast::Visit>(node: &V, catalog: &dyn Catalog) -> bool {
    any_expr(node, |e| is_server_call(e, catalog))
}

/// The calls of code made on the server ([`is_server_call`]) in `node`,
/// outside its subqueries, outermost first.
fn server_calls<V: sqlparser::ast::Visit>(
    node: &V,
    catalog: &dyn Catalog,
) -> Vec<sqlparser::ast::Expr> {
    struct Calls<'c> {
        catalog: &'c dyn Catalog,
        depth: usize,
        found: Vec<sqlparser::ast::Expr>,
    }
    impl sqlparser::ast::Visitor for Calls<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> std::ops::ControlFlow<()> {
            self.depth += 1;
            std::ops::ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> std::ops::ControlFlow<()> {
            self.depth -= 1;
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &sqlparser::ast::Expr) -> std::ops::ControlFlow<()> {
            if self.depth == 0 && is_server_call(e, self.catalog) {
                self.found.push(e.clone());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut calls = Calls {
        catalog,
        depth: 0,
        found: Vec::new(),
    };
    let _ = node.visit(&mut calls);
    calls.found
}

/// Whether `e` itself (not what it contains) runs code made on the
/// server (see [`calls_server_function`]).
fn is_server_call(e: &sqlparser::ast::Expr, catalog: &dyn Catalog) -> bool {
    use sqlparser::ast::{BinaryOperator, DataType, Expr};
    let made = |name: &str| catalog.server_function(&name.to_lowercase());
    // An operator spelled as one of SQL's own (`=`, `+`) may be a DBA's
    // for other types (fourth re-check finding: `CREATE OPERATOR =
    // (text, int)`): its symbol counts when one of that name was made.
    let symbol = |op: &BinaryOperator| {
        let s = op.to_string();
        !s.is_empty() && s.bytes().all(|b| b"+-*/<>=~!@#%^&|`?".contains(&b)) && made(&s)
    };
    fn custom_type(t: &DataType) -> Option<&sqlparser::ast::ObjectName> {
        match t {
            DataType::Custom(name, _) => Some(name),
            DataType::Array(sqlparser::ast::ArrayElemTypeDef::AngleBracket(t))
            | DataType::Array(sqlparser::ast::ArrayElemTypeDef::SquareBracket(t, _))
            | DataType::Array(sqlparser::ast::ArrayElemTypeDef::Parenthesis(t)) => custom_type(t),
            _ => None,
        }
    }
    // A type named as one of SQL's own may be a DBA's domain (`CREATE
    // DOMAIN string ...`, `tinytext`): sqlparser gives those built-in
    // `DataType`s, so the name as written counts (re-audit finding).
    // (The SQL spellings of built-in types are not names in the server's
    // catalog, and count as its own.)
    let type_made = |t: &DataType| {
        let written = t.to_string().to_lowercase();
        let base = written.split(['(', '[', ' ']).next().unwrap_or_default();
        custom_type(t).is_some_and(|n| made(&object_parts(n).pop().unwrap_or_default()))
            || (!SQL_TYPE_SPELLINGS.contains(&base) && made(base))
    };
    // An implicit cast made since initdb runs, with no syntax, on any
    // operand or argument of its source type (second re-audit finding:
    // `WHERE email = 5` ran a DBA's cast from text to int4): every
    // operator and function counts then.
    if catalog.user_implicit_casts()
        && matches!(
            e,
            Expr::Function(_)
                | Expr::BinaryOp { .. }
                | Expr::UnaryOp { .. }
                | Expr::AnyOp { .. }
                | Expr::AllOp { .. }
                | Expr::InList { .. }
                | Expr::InSubquery { .. }
                | Expr::Like { .. }
                | Expr::ILike { .. }
                | Expr::SimilarTo { .. }
                | Expr::Between { .. }
                | Expr::IsDistinctFrom(..)
                | Expr::IsNotDistinctFrom(..)
                | Expr::Case { .. }
                | Expr::Ceil { .. }
                | Expr::Floor { .. }
                | Expr::Substring { .. }
                | Expr::Overlay { .. }
                | Expr::Trim { .. }
                | Expr::Position { .. }
                | Expr::AtTimeZone { .. }
                | Expr::Extract { .. }
        )
    {
        return true;
    }
    match e {
        Expr::Function(f) => {
            // The SQL-syntax names only unquoted and unqualified (fourth
            // re-check finding: `public.coalesce(secret)`). They compare
            // with operators a DBA may have made (re-audit finding:
            // `nullif(email, 5)` ran a DBA's `=` for (text, int)).
            let syntax = match f.name.0.as_slice() {
                [part] => part
                    .as_ident()
                    .filter(|i| i.quote_style.is_none())
                    .map(|i| i.value.to_lowercase())
                    .filter(|n| SQL_SYNTAX_FUNCTIONS.contains(&n.as_str())),
                _ => None,
            };
            match syntax.as_deref() {
                Some("nullif") => made("="),
                Some("greatest" | "least") => made(">") || made("<"),
                Some(_) => false,
                None => made(&object_parts(&f.name).pop().unwrap_or_default()),
            }
        }
        // Syntax that runs operators or functions a DBA may have made for
        // other types (re-audit findings: each ran a DBA's function with
        // masked data): prefix operators, LIKE (`~~`), BETWEEN (`>=`,
        // `<=`), IS DISTINCT FROM and a simple CASE (`=`), and the
        // functions sqlparser parses as syntax (`ceil`, `substring`, ...).
        Expr::UnaryOp { op, .. } => {
            let s = op.to_string();
            s.bytes().all(|b| b"+-*/<>=~!@#%^&|`?".contains(&b)) && made(&s)
        }
        Expr::Like { .. } => made("~~") || made("!~~"),
        Expr::ILike { .. } => made("~~*") || made("!~~*"),
        Expr::SimilarTo { .. } => made("~") || made("!~"),
        // NOT BETWEEN is `<` and `>` (second re-audit finding).
        Expr::Between { .. } => made(">=") || made("<=") || made("<") || made(">"),
        Expr::IsDistinctFrom(..) | Expr::IsNotDistinctFrom(..) => made("="),
        Expr::Case {
            operand: Some(_), ..
        } => made("="),
        Expr::Ceil { .. } => made("ceil") || made("ceiling"),
        Expr::Floor { .. } => made("floor"),
        Expr::Substring { .. } => made("substring") || made("substr"),
        Expr::Overlay { .. } => made("overlay"),
        Expr::Trim { .. } => made("btrim") || made("ltrim") || made("rtrim"),
        Expr::Position { .. } => made("position") || made("strpos"),
        // `AT TIME ZONE` is `timezone()`, EXTRACT is `extract()` or
        // `date_part()` (second re-audit finding).
        Expr::AtTimeZone { .. } => made("timezone"),
        Expr::Extract { .. } => made("extract") || made("date_part"),

        Expr::BinaryOp {
            op: BinaryOperator::Custom(op),
            ..
        } => made(op),
        Expr::BinaryOp {
            op: BinaryOperator::PGCustomBinaryOperator(parts),
            ..
        } => parts.last().is_none_or(|op| made(op)),
        Expr::BinaryOp { op, .. } => symbol(op),
        Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => symbol(compare_op),
        // NOT IN (list) is `<>` for each item (second re-audit finding).
        Expr::InList { negated: true, .. } => made("<>") || made("="),
        Expr::InList { .. } | Expr::InSubquery { .. } => made("="),
        Expr::Cast { data_type, .. } => catalog.user_casts() || type_made(data_type),
        _ => false,
    }
}

/// How SQL spells built-in types whose catalog names differ (`integer` is
/// `int4`): sqlparser's `DataType` prints these.
const SQL_TYPE_SPELLINGS: &[&str] = &[
    "int",
    "integer",
    "smallint",
    "bigint",
    "real",
    "double",
    "float",
    "decimal",
    "dec",
    "boolean",
    "character",
    "national",
    "nchar",
    "timestamptz",
    "timetz",
];

/// Names sqlparser parses as function calls that are SQL syntax in
/// Postgres, not functions in its catalog.
const SQL_SYNTAX_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "grouping",
    "row",
    "xmlconcat",
    "xmlelement",
    "xmlforest",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmlexists",
];

/// MySQL's `CREATE TABLE ... ENGINE=MRG_MyISAM UNION=(t)` and the engines
/// that read a table elsewhere (red-team finding: a MERGE table over a
/// masked MyISAM table read it in clear, as the MySQL catalog now refuses
/// such tables made on the server).
fn reads_other_tables(ct: &sqlparser::ast::CreateTable) -> bool {
    use sqlparser::ast::{CreateTableOptions, SqlOption};
    let options = match &ct.table_options {
        CreateTableOptions::With(o)
        | CreateTableOptions::Options(o)
        | CreateTableOptions::Plain(o)
        | CreateTableOptions::TableProperties(o) => o.as_slice(),
        CreateTableOptions::None => &[],
    };
    const ENGINES: &[&str] = &["mrg_myisam", "merge", "federated", "connect", "spider"];
    options.iter().any(|o| match o {
        SqlOption::NamedParenthesizedList(l) => {
            let key = l.key.value.to_lowercase();
            key == "union"
                || (key == "engine"
                    && l.name
                        .as_ref()
                        .is_some_and(|n| ENGINES.contains(&n.value.to_lowercase().as_str())))
        }
        SqlOption::KeyValue { key, value } => {
            let key = key.value.to_lowercase();
            key == "union"
                || (key == "engine"
                    && ENGINES.contains(
                        &value
                            .to_string()
                            .trim_matches(['\'', '"', '`'])
                            .to_lowercase()
                            .as_str(),
                    ))
        }
        _ => false,
    })
}

/// The system columns every Postgres table has (no user column may be
/// named so).
const PG_SYSTEM_COLUMNS: &[&str] = &["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

/// The names an expression the server printed may refer to, lower-case:
/// its words and its quoted names (a name inside a string literal counts
/// too, which can only mask more).
fn expression_words(expr: &str) -> std::collections::HashSet<String> {
    let mut words = std::collections::HashSet::new();
    let mut word = String::new();
    let mut quoted: Option<char> = None;
    for ch in expr.chars() {
        match quoted {
            Some(q) if ch == q => {
                words.insert(std::mem::take(&mut word).to_lowercase());
                quoted = None;
            }
            Some(_) => word.push(ch),
            None if ch == '"' || ch == '`' => {
                if !word.is_empty() {
                    words.insert(std::mem::take(&mut word).to_lowercase());
                }
                quoted = Some(ch);
            }
            None if ch.is_alphanumeric() || ch == '_' || ch == '$' => word.push(ch),
            None => {
                if !word.is_empty() {
                    words.insert(std::mem::take(&mut word).to_lowercase());
                }
            }
        }
    }
    if !word.is_empty() {
        words.insert(word.to_lowercase());
    }
    words
}

/// Whether a branch of a set operation has `INTO`.
fn selects_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => s.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => selects_into(left) || selects_into(right),
        _ => false,
    }
}

/// Whether an expression stores a value where masking cannot follow it:
/// it assigns to a variable, or calls a function that keeps its arguments.
fn stores_values<V: sqlparser::ast::Visit>(node: &V) -> bool {
    assigns_variable(node) || calls_keeping(node)
}

/// Whether an expression calls a function that keeps its arguments (see
/// [`super::taint::keeps_arguments`]).
fn calls_keeping<V: sqlparser::ast::Visit>(node: &V) -> bool {
    any_expr(node, |e| {
        matches!(e, sqlparser::ast::Expr::Function(f)
            if super::taint::keeps_arguments(&object_parts(&f.name).pop().unwrap_or_default()))
    })
}

/// Whether an expression assigns to a variable (`@x := ...`).
fn assigns_variable<V: sqlparser::ast::Visit>(node: &V) -> bool {
    any_expr(node, |e| {
        matches!(
            e,
            sqlparser::ast::Expr::BinaryOp {
                op: sqlparser::ast::BinaryOperator::Assignment,
                ..
            }
        )
    })
}

/// Whether any expression in `node` (subqueries included) is one `pred`
/// picks.
fn any_expr<V: sqlparser::ast::Visit>(
    node: &V,
    pred: impl Fn(&sqlparser::ast::Expr) -> bool,
) -> bool {
    sqlparser::ast::visit_expressions(node, |e| match pred(e) {
        true => std::ops::ControlFlow::Break(()),
        false => std::ops::ControlFlow::Continue(()),
    })
    .is_break()
}

/// The sources named `qual` (`t` or `schema.t`) in the innermost scope
/// that has one, from `scope` outwards, with that scope. Several when
/// their names differ only in case (names are compared in lower case).
#[allow(clippy::type_complexity)]
fn find_sources_at<'s>(
    scope: &'s Scope<'s>,
    qual: &[String],
) -> Option<(Vec<&'s Source>, &'s Scope<'s>)> {
    let (name, schema) = match qual {
        [n] => (n, None),
        [.., s, n] => (n, Some(s)),
        [] => return None,
    };
    let mut level = Some(scope);
    while let Some(l) = level {
        let hits: Vec<&Source> = l
            .sources
            .iter()
            .filter(|s| {
                &s.name == name
                    && (schema.is_none() || s.schema.is_none() || s.schema.as_ref() == schema)
            })
            .collect();
        if !hits.is_empty() {
            return Some((hits, l));
        }
        level = l.parent;
    }
    None
}

/// `a JOIN b USING (k)`: the merged `k` first, then the rest of `a`, then
/// the rest of `b`. The merged columns come in the order of the `USING`
/// list in Postgres, and in `a`'s order in MySQL (where, for a RIGHT JOIN,
/// `a` is the right-hand table: the caller swaps them).
fn merge_using(dialect: Dialect, left: Out, right: Out, names: &[String]) -> Out {
    if left.open.is_some() || right.open.is_some() {
        let mut e = left;
        e.extend(right);
        return Out::unknown(e.taint());
    }
    let mut out = Out::default();
    let in_left_order: Vec<String>;
    let names = match dialect {
        Dialect::MySql => {
            in_left_order = left
                .cols
                .iter()
                .filter(|c| names.contains(&c.name))
                .map(|c| c.name.clone())
                .collect();
            // A USING name the left side lacks is an error on the server;
            // keep the list as given then.
            match in_left_order.len() == names.len() {
                true => &in_left_order[..],
                false => names,
            }
        }
        Dialect::Postgres => names,
    };
    // A name a side does not list (the server's name for a computed
    // column, say) may be any of its columns.
    let side = |o: &Out, n: &String| {
        o.cols
            .iter()
            .filter(|c| &c.name == n)
            .map(|c| c.taint)
            .reduce(Taint::join)
            .unwrap_or_else(|| o.taint())
    };
    for n in names {
        out.push(Col {
            name: n.clone(),
            taint: side(&left, n).join(side(&right, n)),
        });
    }
    for c in left.cols.into_iter().chain(right.cols) {
        if !names.contains(&c.name) {
            out.push(c);
        }
    }
    out
}

/// A select item that is a column itself (`email`, `c.email`, `(email)`),
/// not a value computed from one.
fn is_bare(e: &sqlparser::ast::Expr) -> bool {
    use sqlparser::ast::Expr;
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => true,
        Expr::Nested(inner) => is_bare(inner),
        _ => false,
    }
}

/// MySQL's `SHOW WARNINGS` / `SHOW ERRORS` (and `SHOW COUNT(*) ...`).
fn shows_diagnostics(st: &Statement) -> bool {
    let text = st.to_string().to_ascii_uppercase();
    text.starts_with("SHOW WARNINGS")
        || text.starts_with("SHOW ERRORS")
        || text.starts_with("SHOW COUNT")
}

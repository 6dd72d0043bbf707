//! Taint values and the expression walk that finds which columns an
//! expression reads.
//!
//! A value's taint is the strongest of its inputs':
//! `Const` < `Column` < `Masked(rule)` < `Derived(rule)` < `Unsafe(rule)`.
//! `Derived` marks a value computed from a masked column rather than the
//! column itself; `Unsafe` a value that holds masked data in a form that
//! cannot be masked in place (a whole row, a JSON aggregate). A value that
//! may be either of two columns masked by different rules (a UNION of
//! them) is `Derived`: neither rule's strategy fits the other's data.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Query, Visit, Visitor,
};

/// What an output value is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Taint {
    /// Only constants (or nothing airlock can see).
    #[default]
    Const,
    /// Some column no rule masks.
    Column,
    /// A column masked by the active rule with this index.
    Masked(usize),
    /// A value computed from such a column (`substr(card, 1, 8)`,
    /// `reverse(email)`): masked whole, whatever the rule's strategy. A
    /// strategy that keeps part of a value (partial, email) would keep a
    /// part the agent chose: four `substr` windows, each with its last four
    /// digits kept, are a whole card number.
    Derived(usize),
    /// Masked data that cannot be masked in place.
    Unsafe(usize),
}

impl Taint {
    /// The stronger of two taints; between equals, the first. Columns of
    /// two different rules join to `Derived` (masked whole): a `partial`
    /// strategy must not show card digits that arrived under `email`.
    pub fn join(self, other: Taint) -> Taint {
        use Taint::*;
        match (self, other) {
            (Unsafe(_), _) => self,
            (_, Unsafe(_)) => other,
            (Derived(_), _) => self,
            (_, Derived(_)) => other,
            (Masked(a), Masked(b)) if a != b => Derived(a),
            (Masked(_), _) => self,
            (_, Masked(_)) => other,
            (Column, _) | (_, Column) => Column,
            _ => Const,
        }
    }

    /// The rule index for `Masked`/`Derived`/`Unsafe`.
    pub fn rule(self) -> Option<usize> {
        match self {
            Taint::Masked(i) | Taint::Derived(i) | Taint::Unsafe(i) => Some(i),
            _ => None,
        }
    }

    /// What a whole-row or JSON-aggregate use of this value becomes.
    pub fn escalate(self) -> Taint {
        match self {
            Taint::Masked(i) | Taint::Derived(i) => Taint::Unsafe(i),
            t => t,
        }
    }

    /// What a value computed from this one is.
    pub fn derive(self) -> Taint {
        match self {
            Taint::Masked(i) => Taint::Derived(i),
            t => t,
        }
    }
}

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Col {
    pub name: String,
    pub taint: Taint,
}

/// A relation's columns: known ones in order, then (when `open` is set) an
/// unknown number of further columns with that taint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Out {
    pub cols: Vec<Col>,
    pub open: Option<Taint>,
}

impl Out {
    pub fn unknown(taint: Taint) -> Out {
        Out {
            cols: Vec::new(),
            open: Some(taint),
        }
    }

    pub fn push(&mut self, col: Col) {
        match self.open {
            Some(t) => self.open = Some(t.join(col.taint)),
            None => self.cols.push(col),
        }
    }

    pub fn extend(&mut self, other: Out) {
        for c in other.cols {
            self.push(c);
        }
        if let Some(t) = other.open {
            self.open = Some(self.open.map_or(t, |o| o.join(t)));
        }
    }

    /// The join of every column's taint.
    pub fn taint(&self) -> Taint {
        self.cols
            .iter()
            .fold(self.open.unwrap_or_default(), |t, c| t.join(c.taint))
    }

    /// Position-wise join (set operations, recursive CTEs).
    pub fn union(mut self, other: Out) -> Out {
        let n = self.cols.len().min(other.cols.len());
        let mut extra = self.open.into_iter().chain(other.open).collect::<Vec<_>>();
        for (i, c) in other.cols.into_iter().enumerate() {
            if i < n {
                self.cols[i].taint = self.cols[i].taint.join(c.taint);
            } else {
                extra.push(c.taint);
            }
        }
        for c in self.cols.drain(n..) {
            extra.push(c.taint);
        }
        self.open = extra.into_iter().reduce(Taint::join);
        self
    }

    /// Renames the first columns (`AS t(a, b)`).
    pub fn rename<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Out {
        for (c, n) in self.cols.iter_mut().zip(names) {
            c.name = n.to_lowercase();
        }
        self
    }
}

/// Flags of the context a reference appears in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    /// Inside a JSON aggregate (`json_agg`, ...) or a function that
    /// keeps its arguments where masking cannot reach them
    /// ([`keeps_arguments`]): a masked value there cannot be masked.
    pub escalate: bool,
    /// Inside `count(...)`: only a number comes out.
    pub count: bool,
}

/// Something an expression reads.
#[derive(Debug)]
pub enum Item {
    /// A column or whole-row reference, lower-cased parts.
    Ref(Vec<String>, Flags),
    /// `*` / `t.*` used as a value (a whole row).
    Star(Option<Vec<String>>, Flags),
    /// A subquery, analyzed in the expression's scope.
    Sub(Box<Query>, Flags),
}

/// Is this the name of an aggregate that builds JSON from its input?
pub fn is_json_agg(name: &str) -> bool {
    name.starts_with("json") && name.contains("agg")
}

/// Functions that keep what they are given where another statement, or
/// another session, can read it back unmasked: a notification's payload,
/// a sequence's value, a setting, an advisory or named lock's key (seen in
/// `pg_locks`, `performance_schema.metadata_locks`), a large object, the
/// seed of `random()` (its first value after `setseed(x)` is a codebook
/// entry for `x`), MySQL's `LAST_INSERT_ID(x)` (returned by the next
/// `LAST_INSERT_ID()`).
const KEEPS_ARGUMENTS: &[&str] = &[
    "pg_notify",
    "setval",
    "set_config",
    "setseed",
    "last_insert_id",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "lo_from_bytea",
    "lo_put",
    "lo_create",
    "lo_creat",
    "lowrite",
    "lo_import",
    "pg_logical_emit_message",
    "get_lock",
];

/// Whether masked data passed to function `name` would be kept beyond the
/// statement (see [`KEEPS_ARGUMENTS`]).
pub fn keeps_arguments(name: &str) -> bool {
    KEEPS_ARGUMENTS.contains(&name)
}

/// Collects the [`Item`]s of one expression (not descending into
/// subqueries, which are returned whole).
#[derive(Default)]
pub struct Collect {
    pub items: Vec<Item>,
    depth: usize,
    escalate: Vec<*const Expr>,
    count: Vec<*const Expr>,
}

impl Collect {
    pub fn of<V: Visit>(node: &V) -> Vec<Item> {
        let mut c = Collect::default();
        let _ = node.visit(&mut c);
        c.items
    }

    fn flags(&self) -> Flags {
        Flags {
            escalate: !self.escalate.is_empty(),
            count: !self.count.is_empty(),
        }
    }
}

fn lower(parts: &[sqlparser::ast::Ident]) -> Vec<String> {
    parts.iter().map(|i| i.value.to_lowercase()).collect()
}

pub fn object_parts(name: &sqlparser::ast::ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(id) => id.value.to_lowercase(),
            None => p.to_string().to_lowercase(),
        })
        .collect()
}

impl Visitor for Collect {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.depth == 0 {
            let f = self.flags();
            self.items.push(Item::Sub(Box::new(q.clone()), f));
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        let f = self.flags();
        match e {
            Expr::Identifier(id) => self.items.push(Item::Ref(vec![id.value.to_lowercase()], f)),
            Expr::CompoundIdentifier(ids) => self.items.push(Item::Ref(lower(ids), f)),
            Expr::Wildcard(_) => self.items.push(Item::Star(None, f)),
            Expr::QualifiedWildcard(n, _) => self.items.push(Item::Star(Some(object_parts(n)), f)),
            Expr::Function(func) => {
                let name = object_parts(&func.name).pop().unwrap_or_default();
                let is_count = name == "count";
                if is_json_agg(&name) || keeps_arguments(&name) {
                    self.escalate.push(e);
                }
                if is_count {
                    self.count.push(e);
                }
                let f = self.flags();
                if let FunctionArguments::List(list) = &func.args {
                    for a in &list.args {
                        let arg = match a {
                            FunctionArg::Named { arg, .. }
                            | FunctionArg::ExprNamed { arg, .. }
                            | FunctionArg::Unnamed(arg) => arg,
                        };
                        match arg {
                            FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => {
                                if !is_count {
                                    self.items.push(Item::Star(None, f));
                                }
                            }
                            FunctionArgExpr::QualifiedWildcard(n) => {
                                self.items.push(Item::Star(Some(object_parts(n)), f))
                            }
                            FunctionArgExpr::Expr(_) => {}
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        let p: *const Expr = e;
        if self.escalate.last() == Some(&p) {
            self.escalate.pop();
        }
        if self.count.last() == Some(&p) {
            self.count.pop();
        }
        ControlFlow::Continue(())
    }
}

//! AST → [`Facts`]: relations, columns, functions and flags.
//!
//! One pass with sqlparser's [`Visitor`], plus explicit handling of the
//! statement kinds whose relations the visitor does not report (COPY,
//! GRANT/REVOKE with their column lists and schemas, LOCK, TRUNCATE, DROP,
//! foreign keys, CREATE TABLE LIKE, index INCLUDE columns, triggers,
//! comments, FLUSH, Postgres VACUUM/ANALYZE, `TABLE t` in set operations). CTE
//! names shadow tables only where they are in scope: a non-recursive CTE's
//! body does not see itself or later CTEs.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, CopySource, Expr, FromTable, FunctionArgExpr, FunctionArguments,
    GrantObjects, Ident, JoinConstraint, JoinOperator, MergeAction, MergeUpdateKind, ObjectName,
    ObjectType, OnConflict, OnConflictAction, OnInsert, OrderBy, Query, Select, SelectItem,
    SetExpr, Statement, TableFactor, TableObject, TableWithJoins, UpdateTableFromKind, Visit,
    Visitor,
};

use super::builtin::ids;
use super::classify;
use super::facts::{ColumnLocation, ColumnRef, Facts, FunctionRef, Relation, StatementClass};
use super::{Dialect, SessionContext};

/// Extracts the facts of one statement.
pub fn extract(dialect: Dialect, ctx: &SessionContext, stmt: &Statement) -> Facts {
    extract_with(dialect, ctx, stmt, None)
}

/// [`extract`] of a parsed statement, with the tables and columns a
/// Postgres VACUUM or ANALYZE names: a VACUUM writes its tables (it
/// rewrites them, FULL under an exclusive lock), an ANALYZE reads them
/// (a sample of their rows), and the columns it names are named as a
/// COPY's are.
pub fn extract_parsed(dialect: Dialect, ctx: &SessionContext, p: &super::parse::Parsed) -> Facts {
    let mut facts = extract_with(dialect, ctx, &p.statement, p.maintenance.as_ref());
    facts.violations.extend(p.violations.iter().cloned());
    facts
}

fn extract_with(
    dialect: Dialect,
    ctx: &SessionContext,
    stmt: &Statement,
    maintenance: Option<&super::parse::Maintenance>,
) -> Facts {
    let mut x = Extractor {
        dialect,
        ctx,
        facts: Facts::default(),
        frames: Vec::new(),
        cte_bodies: HashMap::new(),
        skip: HashSet::new(),
        targets: HashSet::new(),
        rels: Vec::new(),
        ddl_into: false,
        rewrites_unbounded: Vec::new(),
    };
    let _ = stmt.visit(&mut x);
    if let Some(m) = maintenance {
        for t in &m.tables {
            if m.vacuum {
                x.add_write_parts(parts(&t.name));
            }
            if m.analyze {
                x.add_read_parts(parts(&t.name));
            }
            x.named_columns(&t.columns);
        }
    }
    let (mut class, kind) = classify::classify(stmt);
    if x.ddl_into {
        class = StatementClass::Ddl;
    }
    let rewrites_unbounded = std::mem::take(&mut x.rewrites_unbounded);
    let mut facts = x.finish();
    if rewrites_unbounded
        .iter()
        .any(|t| facts.reads.iter().any(|r| r.name == *t))
    {
        facts.unbounded_write = true;
    }
    facts.kind = kind;
    facts.class = Some(class);
    if facts.data_modifying_cte && class == StatementClass::Read {
        facts.class = Some(StatementClass::Write);
    }
    classify::session_facts(dialect, stmt, &mut facts);
    facts
}

struct Frame {
    names: Vec<String>,
    visible: usize,
    query: *const Query,
}

struct Extractor<'a> {
    dialect: Dialect,
    ctx: &'a SessionContext,
    facts: Facts,
    frames: Vec<Frame>,
    /// CTE body → (frame index, position, recursive).
    cte_bodies: HashMap<*const Query, (usize, usize, bool)>,
    /// Names that are table functions, not relations.
    skip: HashSet<*const ObjectName>,
    /// Names that are written.
    targets: HashSet<*const ObjectName>,
    rels: Vec<(*const ObjectName, Relation)>,
    ddl_into: bool,
    /// Tables an INSERT rewrites rows of from an unbounded query (see
    /// [`unbounded_rewrite`]): an unbounded write if the statement reads
    /// them too.
    rewrites_unbounded: Vec<String>,
}

/// An unquoted `@name`: a MySQL user variable (sqlparser reads it as an
/// identifier).
fn is_user_variable(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(id) if id.quote_style.is_none() && id.value.len() > 1 && id.value.starts_with('@') && !id.value.starts_with("@@"))
}

/// Lower-cased identifier value.
pub fn norm(id: &Ident) -> String {
    id.value.to_lowercase()
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(id) => norm(id),
            None => p.to_string().to_lowercase(),
        })
        .collect()
}

/// How the server names a CTE or a one-part table reference, for telling
/// whether one shadows the other. Postgres folds an unquoted name to lower
/// case (ASCII only, in UTF-8 databases) and keeps a quoted one as it is:
/// `WITH "Payments" AS (...) SELECT * FROM payments` reads the table
/// (red-team finding: every name was lower-cased, so that CTE hid the
/// table from the rules and from masking). MariaDB matches CTE names
/// without regard to case.
pub fn cte_key(dialect: Dialect, id: &Ident) -> String {
    match dialect {
        Dialect::Postgres if id.quote_style.is_some() => id.value.clone(),
        Dialect::Postgres => id.value.to_ascii_lowercase(),
        Dialect::MySql => id.value.to_lowercase(),
    }
}

/// [`cte_key`] for the name of a `TABLE x` statement, which sqlparser
/// keeps without its quotes: `None` (a table, not a CTE) when quoted and
/// unquoted would name different CTEs in Postgres.
pub fn table_statement_cte_key(dialect: Dialect, name: &str) -> Option<String> {
    match dialect {
        Dialect::Postgres => (*name == name.to_ascii_lowercase()).then(|| name.to_owned()),
        Dialect::MySql => Some(name.to_lowercase()),
    }
}

/// The setting, value and `is_local` of `set_config(name, value,
/// is_local)` (or `pg_catalog.set_config`) when the name is a string
/// constant, the value a string constant (or a parameter, for a setting
/// judged by its name alone) and `is_local` a boolean constant; anything
/// else is left to the function checks, which refuse
/// `set_config`.
fn constant_set_config(f: &sqlparser::ast::Function) -> Option<(ObjectName, &Expr, bool)> {
    use sqlparser::ast::{FunctionArg, Value};
    let p = parts(&f.name);
    let schema_ok = match p.as_slice() {
        [_] => true,
        [schema, _] => schema == "pg_catalog",
        _ => false,
    };
    if !schema_ok || p.last().map(String::as_str) != Some("set_config") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    let arg = |i: usize| match list.args.get(i)? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
        _ => None,
    };
    let (Some(name), Some(value), Some(local), None) = (arg(0), arg(1), arg(2), list.args.get(3))
    else {
        return None;
    };
    let Expr::Value(v) = name else { return None };
    let Value::SingleQuotedString(name) = &v.value else {
        return None;
    };
    let Expr::Value(v) = value else { return None };
    let name = ObjectName::from(vec![Ident::new(name)]);
    match &v.value {
        Value::SingleQuotedString(_) => {}
        // A parameter (asyncpg restores `jit` with `set_config('jit', $1,
        // false)` after reading a type): any value, so only for a setting
        // whose judgement does not depend on its value.
        Value::Placeholder(_) if !value_decides(&super::classify::setting_name(&name).0) => {}
        _ => return None,
    }
    let Expr::Value(v) = local else { return None };
    let Value::Boolean(local) = v.value else {
        return None;
    };
    Some((name, value, local))
}

/// Settings whose SET is judged by the value, not the name alone (see
/// `classify::assign_setting`): one set to a parameter is not judged as
/// a SET.
fn value_decides(setting: &str) -> bool {
    setting == "search_path"
        || super::builtin::is_read_only_setting(setting)
        || setting == "sql_mode"
        || setting == "character_set_results"
}

/// A function reference from its (possibly qualified) name.
pub fn function_ref(name: &ObjectName) -> FunctionRef {
    let mut p = parts(name);
    let last = p.pop().unwrap_or_default();
    FunctionRef {
        name: last,
        schema: p.pop(),
        constant_setting: false,
    }
}

/// Resolves a relation name against the session.
pub fn resolve(dialect: Dialect, ctx: &SessionContext, p: &[String]) -> Relation {
    let name = p.last().cloned().unwrap_or_default();
    if p.len() >= 2 {
        return Relation {
            schemas: vec![p[p.len() - 2].clone()],
            name,
        };
    }
    let schemas = match dialect {
        Dialect::Postgres => {
            let mut s = Vec::new();
            let catalog_listed = ctx
                .search_path
                .iter()
                .any(|e| e.eq_ignore_ascii_case("pg_catalog"));
            if super::builtin::may_be_pg_catalog(&name) && !catalog_listed {
                s.push("pg_catalog".to_string());
            }
            for e in &ctx.search_path {
                let e = e.trim().trim_matches('"').to_lowercase();
                if e.is_empty() || e == "$user" || s.contains(&e) {
                    continue;
                }
                if e == "pg_catalog" && !super::builtin::may_be_pg_catalog(&name) {
                    continue;
                }
                s.push(e);
            }
            if s.is_empty() || (s.len() == 1 && s[0] == "pg_catalog" && !catalog_listed) {
                s.push("public".to_string());
            }
            s
        }
        Dialect::MySql => vec![ctx
            .current_database
            .as_deref()
            .map(str::to_lowercase)
            .unwrap_or_default()],
    };
    Relation { schemas, name }
}

impl Extractor<'_> {
    fn cte_key(&self, id: &Ident) -> String {
        cte_key(self.dialect, id)
    }

    /// Whether a CTE in scope is named `key` (see [`cte_key`]).
    fn is_cte(&self, key: &str) -> bool {
        self.frames.iter().any(|f| {
            f.names[..f.visible.min(f.names.len())]
                .iter()
                .any(|n| n == key)
        })
    }

    /// The table `name` refers to, or `None` when it is a CTE in scope.
    /// The table an INSERT, UPDATE, DELETE or MERGE writes is a table
    /// even when a CTE has its name (red-team finding: `WITH payments AS
    /// (SELECT 1) DELETE FROM payments` deleted from the denied table).
    fn relation(&self, name: &ObjectName) -> Option<Relation> {
        if let [part] = &name.0[..] {
            if let Some(id) = part.as_ident() {
                let written = self.targets.contains(&(name as *const ObjectName));
                if !written && self.is_cte(&self.cte_key(id)) {
                    return None;
                }
            }
        }
        Some(resolve(self.dialect, self.ctx, &parts(name)))
    }

    fn add_write(&mut self, name: &ObjectName) {
        self.targets.insert(name as *const ObjectName);
        if let Some(r) = self.relation(name) {
            self.rels.push((name as *const ObjectName, r));
        }
    }

    /// A table a statement writes or defines by a name that is never a
    /// CTE's (DDL, COPY, `SELECT ... INTO`, MySQL's multi-table DELETE).
    fn add_write_parts(&mut self, p: Vec<String>) {
        let r = resolve(self.dialect, self.ctx, &p);
        self.facts.writes.insert(r);
    }

    /// A table a statement reads by a name that is never a CTE's (a
    /// foreign key's, `CREATE TABLE ... LIKE`'s, SHOW's, ANALYZE's).
    fn add_read_parts(&mut self, p: Vec<String>) {
        let r = resolve(self.dialect, self.ctx, &p);
        self.facts.reads.insert(r);
    }

    fn column(&mut self, e: &Expr, loc: ColumnLocation) {
        match e {
            Expr::Identifier(id) => {
                self.facts.columns.insert(ColumnRef {
                    qualifier: None,
                    name: norm(id),
                    location: loc,
                });
            }
            Expr::CompoundIdentifier(ids) if ids.len() >= 2 => {
                let qualifier = norm(&ids[ids.len() - 2]);
                let name = norm(&ids[ids.len() - 1]);
                // Postgres reads `c.f` as `f(c)` when `c` has no column
                // `f`: `c.row_to_json` is the whole row (review finding).
                // A whole-row use of `c`, as `c.*` is.
                if self.dialect == Dialect::Postgres && super::builtin::is_row_function(&name) {
                    self.whole_row_of(qualifier.clone(), loc);
                }
                self.facts.columns.insert(ColumnRef {
                    qualifier: Some(qualifier),
                    name,
                    location: loc,
                });
            }
            _ => {}
        }
    }

    /// A `set_config('name', 'value', is_local)` with constants, which is
    /// SET by another name (asyncpg sends `set_config('jit', 'off',
    /// false)` before reading a type): recorded, and judged, as that SET.
    /// `false` for any other call.
    fn set_config(&mut self, f: &sqlparser::ast::Function) -> bool {
        let Some((name, value, local)) = constant_set_config(f) else {
            return false;
        };
        self.facts.functions.insert(FunctionRef {
            constant_setting: true,
            ..function_ref(&f.name)
        });
        let scope = local.then_some(sqlparser::ast::ContextModifier::Local);
        classify::assign_setting(
            self.dialect,
            &mut self.facts,
            &name,
            scope.as_ref(),
            std::slice::from_ref(value),
        );
        true
    }

    /// `[schema.]table.column` (a column comment's, a sequence owner's):
    /// the table is written and the column named as its.
    fn written_column(&mut self, mut p: Vec<String>) {
        if let Some(column) = p.pop() {
            self.add_write_parts(p.clone());
            let qualifier = p.pop();
            self.facts.columns.insert(ColumnRef {
                qualifier,
                name: column,
                location: ColumnLocation::Target,
            });
        }
    }

    /// The columns `SET a = ..., (b, c) = ...` writes.
    fn assigned_columns(&mut self, assignments: &[sqlparser::ast::Assignment]) {
        for a in assignments {
            let names: Vec<&ObjectName> = match &a.target {
                AssignmentTarget::ColumnName(n) => vec![n],
                AssignmentTarget::Tuple(ns) => ns.iter().collect(),
            };
            for n in names {
                let p: Vec<Ident> = n.0.iter().filter_map(|p| p.as_ident().cloned()).collect();
                let e = match &p[..] {
                    [one] => Expr::Identifier(one.clone()),
                    _ => Expr::CompoundIdentifier(p),
                };
                self.column(&e, ColumnLocation::Target);
            }
        }
    }

    /// What an INSERT (or a MERGE's INSERT) writes besides its table: the
    /// columns it lists, or, with none listed, every column of `table`
    /// (red-team finding: `INSERT INTO users VALUES (1, 'a', 'pw')` wrote
    /// the denied column unseen).
    fn inserted_columns(&mut self, table: Option<&ObjectName>, columns: &[ObjectName]) {
        if columns.is_empty() {
            if let Some(last) = table.and_then(|t| parts(t).pop()) {
                self.whole_row_of(last, ColumnLocation::Target);
            }
        }
        for c in columns {
            if let Some(id) = c.0.last().and_then(|p| p.as_ident()) {
                self.column(&Expr::Identifier(id.clone()), ColumnLocation::Target);
            }
        }
    }

    /// Every column of what `qualifier` names (`q.*`), recorded as a
    /// column named `*` of it (see `engine::columns_denied`).
    fn whole_row_of(&mut self, qualifier: String, loc: ColumnLocation) {
        self.facts.columns.insert(ColumnRef {
            qualifier: Some(qualifier),
            name: "*".to_string(),
            location: loc,
        });
    }

    fn columns_in<V: Visit>(&mut self, node: &V, loc: ColumnLocation) {
        let mut found = Vec::new();
        let _ = sqlparser::ast::visit_expressions(node, |e: &Expr| {
            if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                found.push(e.clone());
            }
            ControlFlow::<()>::Continue(())
        });
        for e in &found {
            self.column(e, loc);
        }
    }

    fn select_items(&mut self, items: &[SelectItem], loc: ColumnLocation) {
        for item in items {
            match item {
                // `o.*` is every column of `o` only, a column named `*`
                // of that qualifier (ground-truth red team: `SELECT o.*,
                // c.name FROM orders o JOIN customers c …` was refused for
                // customers' denied column). A qualifier that names no
                // table or alias of the statement counts against every
                // table, as an unqualified column does.
                SelectItem::QualifiedWildcard(
                    sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) if !name.0.is_empty() => {
                    let qualifier = name.0.last().and_then(|p| p.as_ident()).map(norm);
                    match qualifier {
                        Some(q) => self.whole_row_of(q, loc),
                        None => self.facts.whole_row = true,
                    }
                }
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    self.facts.whole_row = true
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    self.columns_in(e, loc)
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }

    fn set_expr_tables(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Table(t) => {
                self.facts.whole_row = true;
                // `TABLE ONLY x`: sqlparser keeps `ONLY` as the name (and,
                // after a WITH clause, drops x), so x would go unjudged.
                if self.dialect == Dialect::Postgres
                    && t.schema_name.is_none()
                    && t.table_name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case("only"))
                {
                    self.facts.violations.push((
                        ids::UNPARSEABLE,
                        "TABLE ONLY is not supported; name the table without ONLY".into(),
                    ));
                }
                if let Some(name) = &t.table_name {
                    let cte = t.schema_name.is_none()
                        && table_statement_cte_key(self.dialect, name)
                            .is_some_and(|k| self.is_cte(&k));
                    if !cte {
                        let mut p = Vec::new();
                        if let Some(s) = &t.schema_name {
                            p.push(s.to_lowercase());
                        }
                        p.push(name.to_lowercase());
                        self.add_read_parts(p);
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr_tables(left);
                self.set_expr_tables(right);
            }
            _ => {}
        }
    }

    /// The existing columns an ALTER TABLE renames, changes or drops are
    /// targets (so denied ones are refused); renaming the table is a
    /// whole-row use of it, as [`Statement::RenameTable`] is.
    fn alter_table_operations(&mut self, ops: &[sqlparser::ast::AlterTableOperation]) {
        use sqlparser::ast::AlterTableOperation as Op;
        self.facts.row_changes.alters = true;
        for op in ops {
            // What changes where writes to the table go on to: a new key,
            // a rename, partitions, the table's rules and triggers.
            let relinks = match op {
                Op::AddConstraint { constraint, .. } => {
                    matches!(constraint, sqlparser::ast::TableConstraint::ForeignKey(_))
                }
                Op::AddColumn { column_def, .. } => column_def
                    .options
                    .iter()
                    .any(|o| matches!(o.option, sqlparser::ast::ColumnOption::ForeignKey(_))),
                Op::RenameTable { .. }
                | Op::AttachPartition { .. }
                | Op::DetachPartition { .. }
                | Op::EnableRule { .. }
                | Op::EnableAlwaysRule { .. }
                | Op::EnableReplicaRule { .. }
                | Op::EnableTrigger { .. }
                | Op::EnableAlwaysTrigger { .. }
                | Op::EnableReplicaTrigger { .. }
                | Op::SwapWith { .. } => true,
                _ => false,
            };
            if relinks {
                self.facts.row_changes.relinks = true;
            }
            match op {
                Op::AddConstraint { constraint, .. } => self.constraint(constraint),
                Op::AddColumn { column_def, .. } => self.column_options(column_def),
                _ => {}
            }
            let named: Vec<&Ident> = match op {
                Op::RenameColumn {
                    old_column_name, ..
                } => vec![old_column_name],
                Op::ChangeColumn { old_name, .. } => vec![old_name],
                Op::ModifyColumn { col_name, .. } => vec![col_name],
                Op::AlterColumn { column_name, .. } => vec![column_name],
                Op::DropColumn { column_names, .. } => column_names.iter().collect(),
                Op::RenameTable { .. } => {
                    self.facts.whole_row = true;
                    Vec::new()
                }
                _ => Vec::new(),
            };
            self.named_columns(named);
        }
    }

    /// Columns a statement names by bare identifier (a COPY's or a GRANT's
    /// column list, INCLUDE, ALTER TABLE ... COLUMN, VACUUM's), as targets.
    fn named_columns<'i>(&mut self, ids: impl IntoIterator<Item = &'i Ident>) {
        for id in ids {
            self.column(&Expr::Identifier(id.clone()), ColumnLocation::Target);
        }
    }

    /// The table constraint's columns that are not expressions (which the
    /// visitor sees): a key's INCLUDE columns, and what a foreign key
    /// references.
    fn constraint(&mut self, c: &sqlparser::ast::TableConstraint) {
        use sqlparser::ast::TableConstraint as C;
        let include = match c {
            C::ForeignKey(fk) => return self.foreign_key(fk),
            C::PrimaryKey(pk) => &pk.include,
            C::Unique(u) => &u.include,
            C::Exclude(x) => &x.include,
            _ => return,
        };
        self.named_columns(include);
    }

    /// A column definition's `REFERENCES t (c)`.
    fn column_options(&mut self, c: &sqlparser::ast::ColumnDef) {
        for o in &c.options {
            if let sqlparser::ast::ColumnOption::ForeignKey(fk) = &o.option {
                self.foreign_key(fk);
            }
        }
    }

    /// A foreign key reads the table it references: inserting into the
    /// referencing table succeeds only for values the referenced columns
    /// hold, so it tells whether a value is there. The referenced columns
    /// are named as the table's; none named means its primary key, which
    /// counts as all of them.
    fn foreign_key(&mut self, fk: &sqlparser::ast::ForeignKeyConstraint) {
        let mut p = parts(&fk.foreign_table);
        self.add_read_parts(p.clone());
        let qualifier = p.pop();
        let named: Vec<String> = fk.referred_columns.iter().map(norm).collect();
        let names = if named.is_empty() {
            vec!["*".to_owned()]
        } else {
            named
        };
        for name in names {
            self.facts.columns.insert(ColumnRef {
                qualifier: qualifier.clone(),
                name,
                location: ColumnLocation::Other,
            });
        }
    }

    /// GRANT and REVOKE: the tables they name (written: their privileges
    /// change), the columns of column privileges, and the schemas of
    /// `ALL TABLES IN SCHEMA s` (MySQL `s.*`, `*.*`), every table of which
    /// they name (see [`Facts::granted_schemas`]).
    fn granted(&mut self, privileges: &sqlparser::ast::Privileges, objects: Option<&GrantObjects>) {
        use sqlparser::ast::Action as A;
        if let sqlparser::ast::Privileges::Actions(actions) = privileges {
            for a in actions {
                if let A::Select { columns: Some(c) }
                | A::Insert { columns: Some(c) }
                | A::Update { columns: Some(c) }
                | A::References { columns: Some(c) } = a
                {
                    self.named_columns(c);
                }
            }
        }
        let schemas = match objects {
            Some(GrantObjects::Tables(names)) => {
                for n in names {
                    let mut p = parts(n);
                    // MySQL `db.*` and `*.*` (`*` alone: the current
                    // database, which the statement does not name).
                    if p.last().is_some_and(|t| t == "*") {
                        p.pop();
                        let schema = match p.pop() {
                            Some(s) => s,
                            None => self
                                .ctx
                                .current_database
                                .clone()
                                .unwrap_or_else(|| "*".into()),
                        };
                        self.facts.granted_schemas.insert(schema);
                    } else {
                        self.add_write_parts(p);
                    }
                }
                return;
            }
            Some(
                GrantObjects::AllTablesInSchema { schemas }
                | GrantObjects::AllViewsInSchema { schemas }
                | GrantObjects::AllMaterializedViewsInSchema { schemas }
                | GrantObjects::AllExternalTablesInSchema { schemas }
                | GrantObjects::FutureTablesInSchema { schemas }
                | GrantObjects::FutureViewsInSchema { schemas }
                | GrantObjects::FutureMaterializedViewsInSchema { schemas }
                | GrantObjects::FutureExternalTablesInSchema { schemas },
            ) => schemas,
            _ => return,
        };
        for s in schemas {
            self.facts.granted_schemas.extend(parts(s).pop());
        }
    }

    /// Runs `check`, marking the facts literal-sensitive if it looked at a
    /// literal's value (see [`const_truth`]).
    fn literal_checked<T>(&mut self, check: impl FnOnce() -> T) -> T {
        NUMBER_CONSULTED.with(|c| c.set(false));
        let out = check();
        if NUMBER_CONSULTED.with(|c| c.get()) {
            self.facts.literal_sensitive = true;
        }
        out
    }

    /// A write's WHERE; `others`: the names and aliases of the statement's
    /// tables that are only read (`UPDATE ... FROM`, `DELETE ... USING`,
    /// joins), whose columns do not bound the written rows (`DELETE FROM
    /// orders USING customers c WHERE c.id = 1` deletes every order).
    fn where_clause(&mut self, selection: Option<&Expr>, others: &[String]) {
        match selection {
            None => self.facts.unbounded_write = true,
            Some(e) => {
                self.facts.has_where = true;
                let (truth, constrains) =
                    self.literal_checked(|| (const_truth(e), constrains_rows_of(e, others)));
                if self.dialect == Dialect::MySql && has_double_pipe(e) {
                    // `||` is OR to MySQL (without PIPES_AS_CONCAT), with
                    // OR's low precedence; sqlparser reads concatenation,
                    // so `WHERE id = 0 || 1` looked bounded (red-team
                    // finding: it deleted every row). Not judged: taken
                    // for a WHERE that may hold for every row.
                    self.facts.double_pipe_where = true;
                    self.facts.unbounded_write = true;
                } else if truth == Some(true) {
                    self.facts.constant_true_where = true;
                    self.facts.unbounded_write = true;
                } else if !constrains {
                    // `WHERE $1`, `WHERE id = 1 OR $2`, `WHERE EXISTS
                    // (SELECT 1)`: true or false for all rows alike.
                    self.facts.unconstrained_where = true;
                    self.facts.unbounded_write = true;
                }
            }
        }
    }

    /// The columns a FROM item's joins compare: those of `ON`, the named
    /// ones of `USING (...)` (columns of both sides), and for `NATURAL`
    /// every column the sides share, which only the catalog knows.
    fn joins(&mut self, twj: &TableWithJoins) {
        for j in &twj.joins {
            self.columns_in(&j.join_operator, ColumnLocation::Join);
            match join_constraint(&j.join_operator) {
                Some(JoinConstraint::Using(names)) => {
                    for n in names {
                        if let Some(id) = n.0.last().and_then(|p| p.as_ident()) {
                            self.column(&Expr::Identifier(id.clone()), ColumnLocation::Join);
                        }
                    }
                }
                Some(JoinConstraint::Natural) => self.facts.implicit_columns = true,
                _ => {}
            }
        }
    }

    fn finish(mut self) -> Facts {
        let mut counts: HashMap<&Relation, (usize, usize)> = HashMap::new();
        for (ptr, r) in &self.rels {
            let c = counts.entry(r).or_default();
            if self.targets.contains(ptr) {
                c.1 += 1;
            } else {
                c.0 += 1;
            }
        }
        for (r, (reads, writes)) in counts {
            if reads > 0 {
                self.facts.reads.insert(r.clone());
            }
            if writes > 0 {
                self.facts.writes.insert(r.clone());
            }
        }
        // Whole-row references: a bare identifier naming a table or alias.
        let names: HashSet<String> = self
            .facts
            .aliases
            .iter()
            .map(|(a, _)| a.clone())
            .chain(self.facts.relations().map(|r| r.name.clone()))
            .collect();
        if self
            .facts
            .columns
            .iter()
            .any(|c| c.qualifier.is_none() && names.contains(&c.name))
        {
            self.facts.whole_row = true;
        }
        // Drop `Other` entries that also have a specific location.
        let specific: HashSet<(Option<String>, String)> = self
            .facts
            .columns
            .iter()
            .filter(|c| c.location != ColumnLocation::Other)
            .map(|c| (c.qualifier.clone(), c.name.clone()))
            .collect();
        self.facts.columns.retain(|c| {
            c.location != ColumnLocation::Other
                || !specific.contains(&(c.qualifier.clone(), c.name.clone()))
        });
        self.facts
    }
}

impl Visitor for Extractor<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let ptr = q as *const Query;
        if let Some(&(fi, i, rec)) = self.cte_bodies.get(&ptr) {
            if let Some(f) = self.frames.get_mut(fi) {
                f.visible = if rec { i + 1 } else { i };
            }
        }
        if let Some(with) = &q.with {
            let fi = self.frames.len();
            self.frames.push(Frame {
                names: with
                    .cte_tables
                    .iter()
                    .map(|c| self.cte_key(&c.alias.name))
                    .collect(),
                visible: 0,
                query: ptr,
            });
            for (i, cte) in with.cte_tables.iter().enumerate() {
                self.cte_bodies
                    .insert(&*cte.query as *const Query, (fi, i, with.recursive));
                if matches!(
                    *cte.query.body,
                    SetExpr::Insert(_)
                        | SetExpr::Update(_)
                        | SetExpr::Delete(_)
                        | SetExpr::Merge(_)
                ) {
                    self.facts.data_modifying_cte = true;
                }
            }
        }
        if !q.locks.is_empty() {
            self.facts.row_locks = true;
        }
        self.set_expr_tables(&q.body);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let ptr = q as *const Query;
        if self.frames.last().is_some_and(|f| f.query == ptr) {
            self.frames.pop();
        }
        if let Some(&(fi, i, _)) = self.cte_bodies.get(&ptr) {
            if let Some(f) = self.frames.get_mut(fi) {
                f.visible = i + 1;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        self.select_items(&s.projection, ColumnLocation::Output);
        if let Some(w) = &s.selection {
            self.columns_in(w, ColumnLocation::Where);
        }
        for twj in &s.from {
            self.joins(twj);
        }
        self.columns_in(&s.group_by, ColumnLocation::GroupBy);
        if let Some(into) = &s.into {
            // MySQL's `SELECT … INTO @a, @b` assigns user variables: a read
            // (masking's lineage refuses it when a masked value would go
            // into one). Anything else creates a table (Postgres) or is
            // not a plain user variable, and stays DDL.
            if self.dialect == Dialect::MySql
                && !into.targets.is_empty()
                && into.targets.iter().all(is_user_variable)
            {
                return ControlFlow::Continue(());
            }
            self.ddl_into = true;
            if let Some(name) = into.targets.first() {
                match name {
                    Expr::Identifier(id) => self.add_write_parts(vec![norm(id)]),
                    Expr::CompoundIdentifier(ids) => {
                        self.add_write_parts(ids.iter().map(norm).collect())
                    }
                    _ => {}
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_order_by(&mut self, o: &OrderBy) -> ControlFlow<()> {
        self.columns_in(o, ColumnLocation::OrderBy);
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        let ptr = name as *const ObjectName;
        if self.skip.contains(&ptr) {
            return ControlFlow::Continue(());
        }
        if let Some(r) = self.relation(name) {
            self.rels.push((ptr, r));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, .. } | TableFactor::Function { name, .. } = tf {
            if self.dialect == Dialect::Postgres && is_bare_only(name) {
                // Postgres reserves ONLY; sqlparser reads `FROM ONLY t` as
                // a table named "only" aliased t, which would hide t.
                self.facts.violations.push((
                    ids::UNPARSEABLE,
                    "ONLY in FROM, UPDATE, DELETE or MERGE is not supported; name the table without it".into(),
                ));
            }
        }
        match tf {
            // `t AS a(x, y)` and `(t JOIN u ...) AS a(x, y)` rename the
            // tables' columns by position. (A subquery's alias list renames
            // only what its own select list named.)
            TableFactor::Table {
                alias: Some(alias), ..
            } if !alias.columns.is_empty() => self.facts.implicit_columns = true,
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                    self.facts.implicit_columns = true;
                }
                // `(customers c JOIN orders o) AS j`: `j.ssn` and `j.*`
                // are columns of every table in the join (red-team finding:
                // the alias was not recorded, so with another table or
                // alias named `j` in the statement, `j.ssn` was taken for
                // that one's and customers' denied column was read).
                if let Some(alias) = alias {
                    let mut names = Vec::new();
                    join_tables(table_with_joins, &mut names);
                    for name in names {
                        if let Some(r) = self.relation(name) {
                            self.facts.aliases.push((norm(&alias.name), r));
                        }
                    }
                }
                self.joins(table_with_joins);
            }
            _ => {}
        }
        match tf {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => {
                self.skip.insert(name as *const ObjectName);
                self.facts.functions.insert(function_ref(name));
            }
            TableFactor::Table {
                name,
                alias: Some(alias),
                ..
            } => {
                if let Some(r) = self.relation(name) {
                    self.facts.aliases.push((norm(&alias.name), r));
                }
            }
            TableFactor::Function { name, .. } => {
                self.facts.functions.insert(function_ref(name));
            }
            TableFactor::Derived {
                alias: Some(alias), ..
            } => {
                self.facts.derived_aliases.insert(norm(&alias.name));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                self.column(e, ColumnLocation::Other)
            }
            Expr::Function(f) => {
                if self.dialect == Dialect::Postgres && self.set_config(f) {
                    return ControlFlow::Continue(());
                }
                self.facts.functions.insert(function_ref(&f.name));
                if let FunctionArguments::List(list) = &f.args {
                    for a in &list.args {
                        let arg = match a {
                            sqlparser::ast::FunctionArg::Named { arg, .. }
                            | sqlparser::ast::FunctionArg::ExprNamed { arg, .. }
                            | sqlparser::ast::FunctionArg::Unnamed(arg) => arg,
                        };
                        if matches!(arg, FunctionArgExpr::QualifiedWildcard(_)) {
                            self.facts.whole_row = true;
                        }
                    }
                }
            }
            Expr::QualifiedWildcard(..) => self.facts.whole_row = true,
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        match s {
            Statement::Insert(ins) => {
                self.facts.row_changes.inserts = true;
                if let TableObject::TableName(name) = &ins.table {
                    self.add_write(name);
                    if let Some(table) = self.literal_checked(|| unbounded_rewrite(ins, name)) {
                        self.rewrites_unbounded.push(table);
                    }
                }
                if let TableObject::TableFunction(f) = &ins.table {
                    self.facts.functions.insert(function_ref(&f.name));
                }
                let table = match &ins.table {
                    TableObject::TableName(name) => Some(name),
                    _ => None,
                };
                // `INSERT INTO t AS a` (Postgres) and MySQL's `VALUES (...)
                // AS new`: both name the target's row, in ON CONFLICT, ON
                // DUPLICATE KEY UPDATE and RETURNING (red-team finding:
                // `a.ssn` was taken for another table's column).
                if let Some(r) = table.and_then(|t| self.relation(t)) {
                    if let Some(a) = &ins.table_alias {
                        self.facts.aliases.push((norm(&a.alias), r.clone()));
                    }
                    if let Some(a) = &ins.insert_alias {
                        self.facts.aliases.push((parts(&a.row_alias).join("."), r));
                    }
                }
                // MySQL's `INSERT ... SET a = ...` lists its columns as
                // assignments.
                if ins.assignments.is_empty() {
                    // `DEFAULT VALUES` (no source) sets no column itself.
                    let written = if ins.source.is_some() { table } else { None };
                    self.inserted_columns(written, &ins.columns);
                } else {
                    self.assigned_columns(&ins.assignments);
                }
                // The upsert's update writes columns too.
                match &ins.on {
                    Some(OnInsert::DuplicateKeyUpdate(a)) => {
                        self.facts.row_changes.updates = true;
                        self.assigned_columns(a)
                    }
                    Some(OnInsert::OnConflict(OnConflict {
                        action: OnConflictAction::DoUpdate(u),
                        ..
                    })) => {
                        self.facts.row_changes.updates = true;
                        self.assigned_columns(&u.assignments)
                    }
                    _ => {}
                }
                // REPLACE deletes the row it replaces (foreign keys' ON
                // DELETE actions run).
                if ins.replace_into {
                    self.facts.row_changes.deletes = true;
                }
                if let Some(r) = &ins.returning {
                    self.select_items(r, ColumnLocation::Other);
                }
            }
            Statement::Update(u) => {
                self.facts.row_changes.updates = true;
                if let TableFactor::Table { name, .. } = &u.table.relation {
                    self.add_write(name);
                }
                self.joins(&u.table);
                if let Some(UpdateTableFromKind::BeforeSet(f) | UpdateTableFromKind::AfterSet(f)) =
                    &u.from
                {
                    for twj in f {
                        self.joins(twj);
                    }
                }
                self.assigned_columns(&u.assignments);
                // MySQL's multi-table UPDATE writes every table its SET
                // names (`UPDATE customers c JOIN regions r ... SET r.id =
                // 10`), and their foreign keys carry the update on.
                if !u.table.joins.is_empty() {
                    for a in &u.assignments {
                        let names: Vec<&ObjectName> = match &a.target {
                            AssignmentTarget::ColumnName(n) => vec![n],
                            AssignmentTarget::Tuple(ns) => ns.iter().collect(),
                        };
                        for n in names {
                            let p = parts(n);
                            let Some((_, table)) = p.split_last().filter(|(_, t)| !t.is_empty())
                            else {
                                continue;
                            };
                            let written = match table {
                                [alias] => aliased_table(std::slice::from_ref(&u.table), alias)
                                    .map(parts)
                                    .unwrap_or_else(|| table.to_vec()),
                                _ => table.to_vec(),
                            };
                            self.add_write_parts(written);
                        }
                    }
                }
                let mut read = Vec::new();
                for j in &u.table.joins {
                    factor_names(&j.relation, &mut read);
                }
                if let Some(UpdateTableFromKind::BeforeSet(f) | UpdateTableFromKind::AfterSet(f)) =
                    &u.from
                {
                    for twj in f {
                        twj_names(twj, &mut read);
                    }
                }
                let mut written = Vec::new();
                factor_names(&u.table.relation, &mut written);
                read.retain(|n| !written.contains(n));
                self.where_clause(u.selection.as_ref(), &read);
                if let Some(r) = &u.returning {
                    self.select_items(r, ColumnLocation::Other);
                }
            }
            Statement::Delete(d) => {
                self.facts.row_changes.deletes = true;
                let from = match &d.from {
                    FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
                };
                for twj in from.iter().chain(d.using.iter().flatten()) {
                    self.joins(twj);
                }
                if d.tables.is_empty() {
                    for twj in from {
                        if let TableFactor::Table { name, .. } = &twj.relation {
                            self.add_write(name);
                        }
                    }
                } else {
                    // `DELETE o FROM orders o`: the table behind the alias
                    // is written (its foreign keys carry the delete on).
                    for n in &d.tables {
                        let p = parts(n);
                        match p.as_slice() {
                            [alias] => match aliased_table(from, alias) {
                                Some(table) => self.add_write_parts(parts(table)),
                                None => self.add_write_parts(p),
                            },
                            _ => self.add_write_parts(p),
                        }
                    }
                }
                let mut read = Vec::new();
                for twj in from.iter().chain(d.using.iter().flatten()) {
                    twj_names(twj, &mut read);
                }
                let mut written = Vec::new();
                match d.tables.is_empty() {
                    true => {
                        if let Some(twj) = from.first() {
                            factor_names(&twj.relation, &mut written);
                        }
                    }
                    false => {
                        for n in &d.tables {
                            written.extend(parts(n).pop().map(|p| p.to_lowercase()));
                        }
                        // `DELETE o FROM orders o`: the table behind the alias.
                        for twj in from {
                            for f in std::iter::once(&twj.relation)
                                .chain(twj.joins.iter().map(|j| &j.relation))
                            {
                                let mut names = Vec::new();
                                factor_names(f, &mut names);
                                if names.iter().any(|n| written.contains(n)) {
                                    written.extend(names);
                                }
                            }
                        }
                    }
                }
                read.retain(|n| !written.contains(n));
                self.where_clause(d.selection.as_ref(), &read);
                if let Some(r) = &d.returning {
                    self.select_items(r, ColumnLocation::Other);
                }
            }
            Statement::Merge(m) => {
                let table = match &m.table {
                    TableFactor::Table { name, .. } => Some(name),
                    _ => None,
                };
                if let Some(name) = table {
                    self.add_write(name);
                }
                // The columns its WHEN clauses update and insert.
                for c in &m.clauses {
                    match &c.action {
                        MergeAction::Update(_) => self.facts.row_changes.updates = true,
                        MergeAction::Delete { .. } => self.facts.row_changes.deletes = true,
                        MergeAction::Insert(_) => self.facts.row_changes.inserts = true,
                        _ => {}
                    }
                    match &c.action {
                        MergeAction::Update(u) => match &u.kind {
                            MergeUpdateKind::Set(a) => self.assigned_columns(a),
                            _ => self.inserted_columns(table, &[]),
                        },
                        MergeAction::Insert(i) => self.inserted_columns(table, &i.columns),
                        _ => {}
                    }
                }
                // A WHEN MATCHED that updates or deletes is bounded by the
                // join condition or its own `AND ...`, as a WHERE is.
                let unbounded = self.literal_checked(|| {
                    m.clauses.iter().any(|c| {
                        matches!(
                            c.action,
                            MergeAction::Update(_) | MergeAction::Delete { .. }
                        ) && !bounds_rows(&m.on)
                            && !c.predicate.as_ref().is_some_and(bounds_rows)
                    })
                });
                if unbounded {
                    self.facts.unbounded_write = true;
                }
            }
            Statement::Truncate(t) => {
                self.facts.unbounded_write = true;
                self.facts.row_changes.truncates = true;
                if matches!(t.cascade, Some(sqlparser::ast::CascadeOption::Cascade)) {
                    self.facts.row_changes.truncates_cascade = true;
                }
                for n in &t.table_names {
                    self.add_write(&n.name);
                }
            }
            Statement::Copy {
                source:
                    CopySource::Table {
                        table_name,
                        columns,
                    },
                to,
                ..
            } => {
                if columns.is_empty() {
                    self.facts.whole_row = true;
                }
                self.named_columns(columns);
                if *to {
                    self.add_read_parts(parts(table_name));
                } else {
                    self.facts.row_changes.inserts = true;
                    self.add_write_parts(parts(table_name));
                }
            }
            Statement::Grant(g) => self.granted(&g.privileges, g.objects.as_ref()),
            Statement::Revoke(r) => self.granted(&r.privileges, r.objects.as_ref()),
            Statement::Lock(l) => {
                for t in &l.tables {
                    self.add_write_parts(parts(&t.name));
                }
            }
            Statement::LockTables { tables } => {
                for t in tables {
                    self.add_write_parts(vec![norm(&t.table)]);
                }
            }
            Statement::Drop {
                object_type,
                names,
                table,
                ..
            } => {
                if matches!(
                    object_type,
                    ObjectType::Table | ObjectType::View | ObjectType::MaterializedView
                ) {
                    for n in names {
                        self.add_write_parts(parts(n));
                    }
                }
                // MySQL `DROP INDEX i ON t`: not visited by sqlparser.
                if let Some(t) = table {
                    self.add_write_parts(parts(t));
                }
            }
            // A partition or inheritance child's rows are its parents'
            // rows: rows written to it are written to them (and read from
            // them). sqlparser visits `PARTITION OF` as a read only, and
            // `INHERITS` not at all.
            Statement::CreateTable(ct) => {
                self.add_write_parts(parts(&ct.name));
                for parent in ct.inherits.iter().flatten().chain(&ct.partition_of) {
                    self.add_read_parts(parts(parent));
                    self.add_write_parts(parts(parent));
                }
                // `(LIKE t)` copies t's definition: its defaults, checks
                // and indexes.
                if let Some(
                    sqlparser::ast::CreateTableLikeKind::Parenthesized(like)
                    | sqlparser::ast::CreateTableLikeKind::Plain(like),
                ) = &ct.like
                {
                    self.add_read_parts(parts(&like.name));
                }
                for c in &ct.columns {
                    self.column_options(c);
                    // MySQL `CREATE TABLE t (LIKE s)`, which sqlparser reads
                    // as a column `LIKE` of type `s` (LIKE is reserved: no
                    // column of that name is unquoted).
                    if let sqlparser::ast::DataType::Custom(like, _) = &c.data_type {
                        if c.name.quote_style.is_none() && c.name.value.eq_ignore_ascii_case("like")
                        {
                            self.add_read_parts(parts(like));
                        }
                    }
                }
                for c in &ct.constraints {
                    self.constraint(c);
                }
                // MySQL `ENGINE=MRG_MyISAM UNION=(t1, t2)`: the new table
                // reads and writes those (red-team finding: a MERGE table
                // over a denied table read it, and wrote it unapproved).
                if let sqlparser::ast::CreateTableOptions::Plain(options) = &ct.table_options {
                    for o in options {
                        if let sqlparser::ast::SqlOption::NamedParenthesizedList(l) = o {
                            if l.key.value.eq_ignore_ascii_case("union") {
                                for t in &l.values {
                                    self.add_read_parts(vec![norm(t)]);
                                    self.add_write_parts(vec![norm(t)]);
                                }
                            }
                        }
                    }
                }
            }
            Statement::AlterView { .. } => self.facts.row_changes.view_over = true,
            // A trigger changes what writes to its table do.
            Statement::CreateTrigger(t) => self.add_write_parts(parts(&t.table_name)),
            // (Refused as file access unless waived; then judged as the
            // write it is, review finding: a denied table was loaded.)
            Statement::LoadData { table_name, .. } => {
                self.facts.row_changes.inserts = true;
                self.add_write_parts(parts(table_name));
            }
            Statement::CreateView(cv) => {
                self.add_write_parts(parts(&cv.name));
                // Writes through the view will write what it reads.
                if !cv.materialized {
                    self.facts.row_changes.view_over = true;
                }
            }
            Statement::CreateIndex(ci) => {
                self.add_write_parts(parts(&ci.table_name));
                self.named_columns(&ci.include);
            }
            Statement::AlterTable(at) => {
                self.add_write_parts(parts(&at.name));
                self.alter_table_operations(&at.operations);
            }
            // Not visited as relations by sqlparser: the table a trigger
            // or a comment is on, the tables FLUSH closes or locks.
            Statement::DropTrigger(dt) => {
                if let Some(t) = &dt.table_name {
                    self.add_write_parts(parts(t));
                }
            }
            Statement::Comment {
                object_type,
                object_name,
                ..
            } => {
                use sqlparser::ast::CommentObject as C;
                match object_type {
                    C::Table | C::View | C::MaterializedView => {
                        self.add_write_parts(parts(object_name));
                    }
                    C::Column => self.written_column(parts(object_name)),
                    _ => {}
                }
            }
            Statement::Flush { tables, .. } => {
                for t in tables {
                    self.add_write_parts(parts(t));
                }
            }
            // `OWNED BY t.c` ties the sequence to a column: dropping the
            // table or column drops the sequence. (`OWNED BY NONE` has one
            // part and names nothing.)
            Statement::CreateSequence {
                owned_by: Some(owner),
                ..
            } => {
                let p = parts(owner);
                if p.len() >= 2 {
                    self.written_column(p);
                }
            }
            // Not visited as relations by sqlparser. Renaming moves the
            // data out from under rules that name the table or its
            // columns: it counts as a whole-row use of the table, so a
            // table with denied columns cannot be renamed.
            Statement::RenameTable(renames) => {
                self.facts.row_changes.relinks = true;
                for r in renames {
                    self.add_read_parts(parts(&r.old_name));
                    self.add_write_parts(parts(&r.old_name));
                    self.add_write_parts(parts(&r.new_name));
                }
                self.facts.whole_row = true;
            }
            // Postgres takes `ALTER INDEX x RENAME` for any relation, a
            // table too: counted as renaming the relation `x`.
            Statement::AlterIndex {
                name,
                operation: sqlparser::ast::AlterIndexOperation::RenameIndex { index_name },
            } => {
                self.facts.row_changes.relinks = true;
                self.add_read_parts(parts(name));
                self.add_write_parts(parts(name));
                self.add_write_parts(parts(index_name));
                self.facts.whole_row = true;
            }
            // Renaming a schema renames every table in it (which sqlparser
            // does not name): the engine checks the schema against the
            // table and column patterns of the rules.
            Statement::AlterSchema(a) => {
                for op in &a.operations {
                    if let sqlparser::ast::AlterSchemaOperation::Rename { name } = op {
                        self.facts.renamed_schemas.extend(parts(&a.name).pop());
                        self.facts.renamed_schemas.extend(parts(name).pop());
                    }
                }
            }
            Statement::Call(f) => {
                self.facts.functions.insert(function_ref(&f.name));
            }
            // Not visited as relations by sqlparser: a denied table's
            // definition (defaults, indexes) is the table's too.
            Statement::ShowCreate {
                obj_type:
                    sqlparser::ast::ShowCreateObject::Table | sqlparser::ast::ShowCreateObject::View,
                obj_name,
            } => self.add_read_parts(parts(obj_name)),
            // MySQL `SHOW [FULL] TABLES FROM db` (also Snowflake's SHOW
            // VIEWS and OBJECTS, which MySQL does not take): sqlparser
            // visits `db` as a table; it is a schema, listed.
            Statement::ShowTables { show_options, .. }
            | Statement::ShowViews { show_options, .. }
            | Statement::ShowObjects(sqlparser::ast::ShowObjects { show_options, .. }) => {
                if let Some(n) = show_options
                    .show_in
                    .as_ref()
                    .and_then(|i| i.parent_name.as_ref())
                {
                    self.skip.insert(n as *const ObjectName);
                    self.facts.listed_schemas.extend(parts(n).pop());
                }
            }
            // `SHOW [FULL] PROCESSLIST` is information_schema.processlist.
            Statement::ShowProcessList { .. } => self.facts.violations.push((
                ids::OTHER_SESSIONS,
                "SHOW PROCESSLIST shows the statements other sessions run".to_string(),
            )),
            // MySQL `SHOW INDEX|INDEXES|KEYS FROM|IN t [FROM|IN db]`, read
            // by sqlparser as a variable's name.
            Statement::ShowVariable { variable } => {
                let words: Vec<String> = variable.iter().map(|w| w.value.to_lowercase()).collect();
                // sqlparser reads the SHOW forms it does not know as a
                // list of names and skips everything else: a `WHERE`
                // filter's expression (subqueries included) would run
                // unjudged (red-team finding: `SHOW TRIGGERS FROM shop
                // WHERE extractvalue(1, (SELECT password ...))` showed the
                // password in the error).
                if variable
                    .iter()
                    .any(|w| w.quote_style.is_none() && w.value.eq_ignore_ascii_case("where"))
                {
                    self.facts.violations.push((
                        ids::UNPARSEABLE,
                        "this SHOW with WHERE cannot be judged; filter with LIKE, or query information_schema".to_string(),
                    ));
                }
                // MySQL `SHOW GRANTS` prints the hash of the password of
                // the account airlock logs in as (`IDENTIFIED BY PASSWORD
                // '*A27...'`), which can be cracked offline.
                // `SHOW ENGINE INNODB STATUS` prints the statements of
                // the transactions it lists.
                if words.first().is_some_and(|w| w == "engine") {
                    self.facts.violations.push((
                        ids::OTHER_SESSIONS,
                        "SHOW ENGINE shows the statements other sessions run".to_string(),
                    ));
                }
                // `SHOW BINLOG|RELAYLOG EVENTS` prints the statements every
                // session wrote, literals and all.
                if words
                    .first()
                    .is_some_and(|w| w == "binlog" || w == "relaylog")
                {
                    self.facts.violations.push((
                        ids::OTHER_SESSIONS,
                        "SHOW BINLOG EVENTS shows the statements other sessions ran".to_string(),
                    ));
                }
                // MariaDB `SHOW EXPLAIN|ANALYZE [FORMAT=…] FOR <thread>`
                // prints the plan of the statement another session is
                // running (ground-truth red team).
                if words
                    .first()
                    .is_some_and(|w| w == "explain" || w == "analyze")
                    && words.iter().any(|w| w == "for")
                {
                    self.facts.violations.push((
                        ids::OTHER_SESSIONS,
                        "SHOW EXPLAIN FOR shows what another session is running".to_string(),
                    ));
                }
                if words.first().is_some_and(|w| w == "grants") {
                    self.facts.violations.push((
                        ids::ADMIN,
                        "SHOW GRANTS shows the password hash of the account airlock logs in as"
                            .to_string(),
                    ));
                }
                // `SHOW TABLE STATUS|TRIGGERS|OPEN TABLES|EVENTS FROM db`.
                let listing = match words.as_slice() {
                    [a, b, rest @ ..] if a == "table" && b == "status" => Some(rest),
                    [a, b, rest @ ..] if a == "open" && b == "tables" => Some(rest),
                    [a, rest @ ..] if a == "triggers" || a == "events" => Some(rest),
                    _ => None,
                };
                if let Some([from, db, ..]) = listing {
                    if from == "from" || from == "in" {
                        self.facts.listed_schemas.insert(db.clone());
                    }
                }
                if let [kind, from, rest @ ..] = words.as_slice() {
                    if matches!(kind.as_str(), "index" | "indexes" | "keys")
                        && matches!(from.as_str(), "from" | "in")
                    {
                        let from_db = rest.iter().position(|w| w == "from" || w == "in");
                        let (table, db) = match from_db {
                            Some(i) => (&rest[..i], rest.get(i + 1..).unwrap_or_default()),
                            None => (rest, &[][..]),
                        };
                        let name: Vec<String> = db
                            .iter()
                            .chain(table)
                            .filter(|w| *w != ".")
                            .cloned()
                            .collect();
                        self.add_read_parts(name);
                    }
                }
            }
            Statement::Explain {
                analyze, options, ..
            } => {
                self.facts.explain = true;
                if explain_runs(*analyze, options.as_deref()) {
                    self.facts.explain_analyze = true;
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Whether an EXPLAIN runs its statement: `EXPLAIN ANALYZE`, or an
/// `ANALYZE` among options in parentheses (`EXPLAIN (ANALYZE) ...`,
/// `EXPLAIN (FORMAT JSON, ANALYZE true) ...`). Whatever value the option
/// is given: `ANALYZE false` is taken as running too (fail closed).
pub fn explain_runs(analyze: bool, options: Option<&[sqlparser::ast::UtilityOption]>) -> bool {
    analyze
        || options.is_some_and(|o| {
            o.iter()
                .any(|o| o.name.value.eq_ignore_ascii_case("analyze"))
        })
}

thread_local! {
    /// Set when [`const_truth`] looked at a numeric literal's value: the
    /// answer may then change with the number, so the decision must not be
    /// shared between texts that differ only in numbers (see
    /// [`super::shape`]).
    static NUMBER_CONSULTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn consulted_number() {
    NUMBER_CONSULTED.with(|c| c.set(true));
}

/// Whether `e` holds `||` anywhere, subqueries included (MySQL reads every
/// one of them as OR).
fn has_double_pipe(e: &Expr) -> bool {
    use sqlparser::ast::BinaryOperator;
    let found = sqlparser::ast::visit_expressions(e, |x| match x {
        Expr::BinaryOp {
            op: BinaryOperator::StringConcat,
            ..
        } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    found.is_break()
}

/// Folds an expression over constants: `Some(true)` when it is true for
/// every row (`1=1`, `TRUE`, `'a'='a'`, `x OR 1=1`, `NOT FALSE`, `id = id`).
pub fn const_truth(e: &Expr) -> Option<bool> {
    use sqlparser::ast::{BinaryOperator as B, UnaryOperator as U, Value};
    match e {
        Expr::Nested(inner) => const_truth(inner),
        Expr::Value(v) => match &v.value {
            Value::Boolean(b) => Some(*b),
            Value::Number(n, _) => {
                consulted_number();
                n.parse::<f64>().ok().map(|x| x != 0.0)
            }
            Value::SingleQuotedString(s) => match s.to_ascii_lowercase().as_str() {
                "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
                "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        },
        Expr::Cast { expr, .. } => const_truth(expr),
        Expr::UnaryOp { op: U::Not, expr } => const_truth(expr).map(|b| !b),
        Expr::IsTrue(x) | Expr::IsNotFalse(x) => const_truth(x),
        Expr::IsFalse(x) | Expr::IsNotTrue(x) => const_truth(x).map(|b| !b),
        Expr::IsNotNull(x) => const_value(x).map(|_| true),
        Expr::BinaryOp { left, op, right } => match op {
            B::Or => match (const_truth(left), const_truth(right)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            B::And => match (const_truth(left), const_truth(right)) {
                (Some(true), Some(true)) => Some(true),
                (Some(false), _) | (_, Some(false)) => Some(false),
                _ => None,
            },
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq | B::Spaceship => {
                if same_column(left, right) {
                    return Some(matches!(op, B::Eq | B::LtEq | B::GtEq | B::Spaceship));
                }
                let (l, r) = (const_value(left)?, const_value(right)?);
                let ord = match (l.parse::<f64>(), r.parse::<f64>()) {
                    (Ok(a), Ok(b)) => a.partial_cmp(&b)?,
                    _ => l.cmp(&r),
                };
                use std::cmp::Ordering::*;
                Some(match op {
                    B::Eq | B::Spaceship => ord == Equal,
                    B::NotEq => ord != Equal,
                    B::Lt => ord == Less,
                    B::LtEq => ord != Greater,
                    B::Gt => ord == Greater,
                    _ => ord != Less,
                })
            }
            _ => None,
        },
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let v = const_value(expr)?;
            let found = list
                .iter()
                .any(|x| const_value(x).as_deref() == Some(v.as_str()));
            if found {
                return Some(!negated);
            }
            // Numbers compare by value (`5 IN (5.0)`); other texts may
            // be equal in a way this does not see, so they stay unknown.
            let number = |x: &Expr| match strip(x) {
                Expr::Value(sqlparser::ast::ValueWithSpan {
                    value: Value::Number(..),
                    ..
                })
                | Expr::UnaryOp {
                    op: U::Minus | U::Plus,
                    ..
                } => const_value(x).and_then(|s| s.parse::<f64>().ok()),
                _ => None,
            };
            let v = number(expr)?;
            let items: Option<Vec<f64>> = list.iter().map(number).collect();
            Some(items?.contains(&v) != *negated)
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let (v, l, h) = (
                const_value(expr)?.parse::<f64>().ok()?,
                const_value(low)?.parse::<f64>().ok()?,
                const_value(high)?.parse::<f64>().ok()?,
            );
            Some((l <= v && v <= h) != *negated)
        }
        Expr::Like {
            negated,
            expr,
            pattern,
            ..
        }
        | Expr::ILike {
            negated,
            expr,
            pattern,
            ..
        } => {
            let _ = const_value(expr)?;
            let p = const_value(pattern)?;
            if !*negated && p.chars().all(|c| c == '%') && !p.is_empty() {
                Some(true)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn same_column(a: &Expr, b: &Expr) -> bool {
    match (strip(a), strip(b)) {
        (Expr::Identifier(x), Expr::Identifier(y)) => norm(x) == norm(y),
        (Expr::CompoundIdentifier(x), Expr::CompoundIdentifier(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| norm(p) == norm(q))
        }
        _ => false,
    }
}

/// The table that `alias` names in a FROM list (`orders o`), compared as
/// MySQL compares aliases (without case).
fn aliased_table<'a>(from: &'a [TableWithJoins], alias: &str) -> Option<&'a ObjectName> {
    from.iter()
        .flat_map(|twj| std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)))
        .find_map(|f| match f {
            TableFactor::Table {
                name,
                alias: Some(a),
                ..
            } if a.name.value.eq_ignore_ascii_case(alias) => Some(name),
            _ => None,
        })
}

/// The table name of `target` when the INSERT rewrites rows already there
/// (REPLACE, `ON DUPLICATE KEY UPDATE`, `ON CONFLICT DO UPDATE`) from a
/// query with nothing to bound its rows: a WHERE at the source's top level
/// that constrains rows. If the statement also reads that table (checked
/// by [`extract`] once every read is known, CTEs included), it rewrites
/// every row as `UPDATE t SET ...` without a WHERE does: `REPLACE INTO t
/// SELECT ... FROM t`.
fn unbounded_rewrite(ins: &sqlparser::ast::Insert, target: &ObjectName) -> Option<String> {
    use sqlparser::ast::{OnConflict, OnConflictAction, OnInsert};
    let rewrites = ins.replace_into
        || matches!(
            &ins.on,
            Some(OnInsert::DuplicateKeyUpdate(_))
                | Some(OnInsert::OnConflict(OnConflict {
                    action: OnConflictAction::DoUpdate(_),
                    ..
                }))
        );
    let source = ins.source.as_ref().filter(|_| rewrites)?;
    let bounded = match source.body.as_ref() {
        SetExpr::Select(s) => s.selection.as_ref().is_some_and(bounds_rows),
        _ => false,
    };
    let table = target.0.last().and_then(|p| p.as_ident())?;
    (!bounded).then(|| norm(table))
}

/// Whether a condition bounds the rows a write touches, as a WHERE must
/// for [`ids::UNBOUNDED_WRITE`]: not always true, and able to tell rows
/// apart.
fn bounds_rows(e: &Expr) -> bool {
    const_truth(e) != Some(true) && constrains_rows(e)
}

/// Whether a WHERE clause can tell rows apart: every branch of an OR (and
/// one side of each AND) must refer to some column or be always false.
/// One that refers to none (parameters, constants, `current_user`, an
/// uncorrelated EXISTS) is true for every row or for none, whatever its
/// value.
fn constrains_rows(e: &Expr) -> bool {
    constrains_rows_of(e, &[])
}

/// [`constrains_rows`], counting no column of the tables named in
/// `others` (lower case).
fn constrains_rows_of(e: &Expr, others: &[String]) -> bool {
    use sqlparser::ast::BinaryOperator as B;
    if const_truth(e) == Some(false) {
        // Selects no row at all (`1 = 2`, the `0` of `0 OR id = 3`).
        return true;
    }
    match e {
        Expr::Nested(inner) => constrains_rows_of(inner, others),
        Expr::BinaryOp {
            left,
            op: B::And,
            right,
        } => constrains_rows_of(left, others) || constrains_rows_of(right, others),
        Expr::BinaryOp {
            left,
            op: B::Or | B::Xor,
            right,
        } => constrains_rows_of(left, others) && constrains_rows_of(right, others),
        _ => refers_to_column_of(e, others),
    }
}

/// The tables named directly in a join, nested joins included (a derived
/// table's own select list is judged where it stands).
fn join_tables<'a>(twj: &'a TableWithJoins, out: &mut Vec<&'a ObjectName>) {
    let factors = std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation));
    for f in factors {
        match f {
            TableFactor::Table {
                name, args: None, ..
            } => out.push(name),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => join_tables(table_with_joins, out),
            _ => {}
        }
    }
}

/// The names and aliases a FROM item's relations go by, lower case.
fn twj_names(twj: &TableWithJoins, out: &mut Vec<String>) {
    factor_names(&twj.relation, out);
    for j in &twj.joins {
        factor_names(&j.relation, out);
    }
}

/// The name (last part) and alias of a table factor, lower case.
fn factor_names(f: &TableFactor, out: &mut Vec<String>) {
    match f {
        TableFactor::Table { name, alias, .. } => {
            out.extend(parts(name).pop().map(|p| p.to_lowercase()));
            out.extend(alias.as_ref().map(|a| a.name.value.to_lowercase()));
        }
        TableFactor::Derived { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. } => {
            out.extend(alias.as_ref().map(|a| a.name.value.to_lowercase()));
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => twj_names(table_with_joins, out),
        _ => {}
    }
}

/// Whether `e` (subqueries included) names a column, not counting
/// columns qualified by a table named in `others` (lower case).
fn refers_to_column_of(e: &Expr, others: &[String]) -> bool {
    // MySQL's `@user` and `@@system` variables parse as names too.
    let variable = |id: &Ident| id.quote_style.is_none() && id.value.starts_with('@');
    let other =
        |ids: &[Ident]| ids.len() >= 2 && others.contains(&ids[ids.len() - 2].value.to_lowercase());
    let found = sqlparser::ast::visit_expressions(e, |x: &Expr| match x {
        Expr::Identifier(id)
            if id.quote_style.is_some() || !(is_niladic(&id.value) || variable(id)) =>
        {
            ControlFlow::Break(())
        }
        Expr::CompoundIdentifier(ids) if !ids.first().is_some_and(variable) && !other(ids) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    found.is_break()
}

/// SQL's value keywords that parse like column names.
pub fn is_niladic(word: &str) -> bool {
    [
        "current_user",
        "session_user",
        "user",
        "current_role",
        "current_catalog",
        "current_schema",
        "current_date",
        "current_time",
        "current_timestamp",
        "localtime",
        "localtimestamp",
        "true",
        "false",
        "null",
    ]
    .iter()
    .any(|k| word.eq_ignore_ascii_case(k))
}

/// The constraint of a join, for the operators that have one.
fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::Semi(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::Anti(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::StraightJoin(c)
        | JoinOperator::AsOf { constraint: c, .. } => Some(c),
        JoinOperator::CrossApply
        | JoinOperator::OuterApply
        | JoinOperator::ArrayJoin
        | JoinOperator::LeftArrayJoin
        | JoinOperator::InnerArrayJoin => None,
    }
}

/// An unquoted one-part name `only`: the keyword ONLY, misread as a name.
fn is_bare_only(name: &ObjectName) -> bool {
    matches!(
        name.0.as_slice(),
        [p] if p.as_ident().is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case("only"))
    )
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(x) => strip(x),
        Expr::Cast { expr, .. } => strip(expr),
        _ => e,
    }
}

fn const_value(e: &Expr) -> Option<String> {
    use sqlparser::ast::Value;
    match strip(e) {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => {
                consulted_number();
                Some(n.clone())
            }
            Value::SingleQuotedString(s)
            | Value::DoubleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::DollarQuotedString(sqlparser::ast::DollarQuotedString { value: s, .. }) => {
                Some(s.clone())
            }
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => const_value(expr).map(|v| format!("-{v}")),
        _ => None,
    }
}

/// In [`schemas_made`]: a schema named as the session's user, whoever
/// that is (`CREATE SCHEMA AUTHORIZATION CURRENT_USER`).
pub const CURRENT_USER_SCHEMA: &str = "\u{0}current_user";

/// The schemas `sql` creates or renames (either name), as the server
/// names them (`norm`): for the Postgres session's check that an agent
/// does not make a schema named as the upstream user, which `"$user"` in
/// every search_path would put first for every agent sharing that user
/// (red-team finding: their unqualified writes went to the agent's
/// look-alike tables). Empty when the text does not have the word
/// `schema` (the keyword cannot be spelt otherwise; `current_schemas(…)`
/// in pgbench's opening query is not it) or does not parse (the gate
/// refuses what does not parse).
pub fn schemas_made(dialect: Dialect, sql: &str) -> Vec<String> {
    let word = |b: Option<&u8>| {
        b.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$') || !b.is_ascii())
    };
    let bytes = sql.as_bytes();
    let says_schema = bytes.windows(6).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(b"schema")
            && !word(i.checked_sub(1).and_then(|j| bytes.get(j)))
            && !word(bytes.get(i + 6))
    });
    if !says_schema {
        return Vec::new();
    }
    if sql.len() > super::engine::INLINE_PARSE_BYTES {
        return crate::big_stack::run("airlock-parse", || schemas_made_inline(dialect, sql))
            .unwrap_or_default();
    }
    schemas_made_inline(dialect, sql)
}

fn schemas_made_inline(dialect: Dialect, sql: &str) -> Vec<String> {
    let Ok(parsed) = super::parse::parse(dialect, sql, &super::parse::Limits::default()) else {
        return Vec::new();
    };
    let ctx = SessionContext::default();
    let mut out = Vec::new();
    for p in &parsed {
        if let Statement::CreateSchema { schema_name, .. } = &p.statement {
            use sqlparser::ast::SchemaName;
            match schema_name {
                SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => {
                    out.extend(parts(name).pop());
                }
                // `CREATE SCHEMA AUTHORIZATION alice` makes schema alice;
                // `AUTHORIZATION CURRENT_USER` one named as the session's
                // user (re-audit finding), which [`CURRENT_USER_SCHEMA`]
                // stands for.
                SchemaName::UnnamedAuthorization(id)
                    if id.quote_style.is_none()
                        && ["current_user", "current_role", "session_user"]
                            .iter()
                            .any(|k| id.value.eq_ignore_ascii_case(k)) =>
                {
                    out.push(CURRENT_USER_SCHEMA.to_owned())
                }
                SchemaName::UnnamedAuthorization(id) => out.push(norm(id)),
            }
        }
        out.extend(extract_parsed(dialect, &ctx, p).renamed_schemas);
    }
    out
}

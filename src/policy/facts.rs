//! Facts: what a statement does, independent of any policy.
//!
//! [`crate::policy::extract`] fills these in from the AST; the engine judges
//! them against a policy. Names are normalized (lower-case, unquoted) and
//! relations are resolved to `schema.table`.

use std::collections::BTreeSet;
use std::fmt;

/// Broad statement class; policies allow or deny whole classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatementClass {
    /// SELECT, SHOW, TABLE, COPY ... TO STDOUT, VALUES, FETCH.
    Read,
    /// INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY FROM, LOCK, data-modifying CTEs.
    Write,
    /// CREATE / ALTER / DROP / COMMENT / RENAME, SELECT INTO, CREATE TABLE AS.
    Ddl,
    /// GRANT, REVOKE, roles and users.
    Dcl,
    /// SET, RESET, USE, DISCARD, DEALLOCATE, PREPARE bookkeeping.
    Session,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SET TRANSACTION.
    Transaction,
    /// Everything else: CALL, VACUUM, ANALYZE, LISTEN/NOTIFY, KILL, ...
    Other,
}

impl StatementClass {
    pub const ALL: [StatementClass; 7] = [
        StatementClass::Read,
        StatementClass::Write,
        StatementClass::Ddl,
        StatementClass::Dcl,
        StatementClass::Session,
        StatementClass::Transaction,
        StatementClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatementClass::Read => "read",
            StatementClass::Write => "write",
            StatementClass::Ddl => "ddl",
            StatementClass::Dcl => "dcl",
            StatementClass::Session => "session",
            StatementClass::Transaction => "transaction",
            StatementClass::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<StatementClass> {
        StatementClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for StatementClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A relation after name resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Relation {
    /// Candidate schemas in resolution order (one when schema-qualified).
    /// Unqualified names may resolve to any of them; the engine denies if
    /// any candidate is denied and allows only if every candidate is allowed.
    pub schemas: Vec<String>,
    pub name: String,
}

impl Relation {
    /// `schema.name` for the first candidate schema.
    pub fn display_name(&self) -> String {
        match self.schemas.first() {
            Some(s) if !s.is_empty() => format!("{s}.{}", self.name),
            _ => self.name.clone(),
        }
    }

    /// Every `schema.name` this relation may resolve to.
    pub fn candidates(&self) -> impl Iterator<Item = String> + '_ {
        self.schemas
            .iter()
            .map(move |s| format!("{s}.{}", self.name))
    }
}

/// Where a column is referenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ColumnLocation {
    Output,
    Where,
    Join,
    GroupBy,
    OrderBy,
    /// INSERT column lists, UPDATE SET targets, COPY column lists.
    Target,
    /// Anywhere else (function arguments, HAVING, RETURNING, ...).
    Other,
}

/// A column reference. `qualifier` is the table name or alias as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnRef {
    pub qualifier: Option<String>,
    pub name: String,
    pub location: ColumnLocation,
}

/// A function call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionRef {
    /// Lower-case, unquoted, schema stripped.
    pub name: String,
    /// The schema it was qualified with, if any (lower-case).
    pub schema: Option<String>,
    /// A `set_config` with constant arguments, judged as the `SET` it is
    /// (see `extract::constant_set_config`): not a dangerous function,
    /// though `deny_functions` and `allow_functions` still see it.
    pub constant_setting: bool,
}

/// What one statement does.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub class: Option<StatementClass>,
    /// Short statement kind for messages and explain (e.g. "SELECT", "COPY").
    pub kind: String,
    pub reads: BTreeSet<Relation>,
    pub writes: BTreeSet<Relation>,
    pub columns: BTreeSet<ColumnRef>,
    pub functions: BTreeSet<FunctionRef>,
    /// Names used as table aliases, mapped to what they alias (lower-case).
    pub aliases: Vec<(String, Relation)>,
    /// Aliases of subqueries in FROM (lower-case): their columns are what
    /// their own select lists name, which are judged where they stand.
    pub derived_aliases: BTreeSet<String>,
    pub has_where: bool,
    pub constant_true_where: bool,
    /// A WHERE clause that refers to no column (`WHERE $1`, `WHERE
    /// EXISTS (SELECT 1)`): it selects every row or none.
    pub unconstrained_where: bool,
    /// A MySQL WHERE holding `||`, which MySQL reads as OR and airlock's
    /// parser as concatenation: not judged, taken for unbounded.
    pub double_pipe_where: bool,
    /// Some fact above depends on a numeric literal's value (`WHERE 1=1`
    /// versus `WHERE 1=2`), so the decision must not be cached by shape.
    pub literal_sensitive: bool,
    /// UPDATE/DELETE without WHERE or with a constant-true WHERE, TRUNCATE.
    pub unbounded_write: bool,
    /// How the statement changes rows of the tables it writes, for the
    /// foreign keys that carry those changes on
    /// ([`super::foreign_keys`]).
    pub row_changes: super::foreign_keys::RowChanges,
    /// The writes among `writes` that the catalog's links carry the
    /// statement on to, rather than its text naming them (for refusal
    /// messages).
    pub reached: BTreeSet<Relation>,
    pub data_modifying_cte: bool,
    /// `*`, `t.*`, whole-row references (`SELECT c FROM customers c`),
    /// `TABLE t`, `COPY t` without a column list.
    pub whole_row: bool,
    /// Columns referenced by position or implicitly, not by name: a table
    /// alias with a column list (`customers AS c(a, b)`), a NATURAL join.
    pub implicit_columns: bool,
    /// Schemas renamed (`ALTER SCHEMA s RENAME TO x`: both names). Every
    /// table in them moves, and no one can list those tables, so rules
    /// that could match one of them count (see
    /// [`super::rules::may_cover_schema`]).
    pub renamed_schemas: BTreeSet<String>,
    /// Schemas every table of which a GRANT or REVOKE names (`ON ALL
    /// TABLES IN SCHEMA s`, MySQL `ON s.*`; `*` for `*.*`): judged as
    /// [`Self::renamed_schemas`] are.
    pub granted_schemas: BTreeSet<String>,
    /// Schemas whose tables a MySQL `SHOW TABLES|TABLE STATUS|TRIGGERS|
    /// OPEN TABLES|EVENTS FROM s` lists: names and metadata, no rows.
    pub listed_schemas: BTreeSet<String>,
    /// SELECT ... FOR UPDATE / FOR SHARE.
    pub row_locks: bool,
    pub explain: bool,
    pub explain_analyze: bool,
    /// Set by the engine for multi-statement requests.
    pub multi_statement: bool,
    /// Built-in violations found while extracting (rule id, message).
    pub violations: Vec<(&'static str, String)>,
    /// Session-level facts (SET/RESET targets, transaction modes, ...).
    pub session: SessionFacts,
}

/// Facts about session and transaction statements.
#[derive(Debug, Clone, Default)]
pub struct SessionFacts {
    /// Variables set (normalized names). RESETs are not listed: they
    /// restore what the session started with, which is what airlock set.
    pub sets: Vec<String>,
    /// The timeouts among `sets` (statement and idle-in-transaction), with
    /// the value each is set to when it is a constant duration above 0:
    /// a policy that sets a timeout lets a session lower it.
    pub timeouts: Vec<(String, Option<std::time::Duration>)>,
    /// Turns writes back on (READ WRITE, read_only = off, ...).
    pub enables_writes: bool,
    /// `SET LOCAL` / transaction-scoped assignment.
    pub local: bool,
    pub search_path: Option<Vec<String>>,
    pub use_database: Option<String>,
    pub prepare: Option<String>,
    pub execute: Option<String>,
    pub deallocate: Option<String>,
    pub deallocate_all: bool,
    /// `DECLARE name CURSOR ...`: the cursor's name as the server names
    /// it, and whether it is held across transactions (`WITH HOLD`).
    pub declare: Option<(String, bool)>,
    /// `CLOSE name` (`Some(name)`) or `CLOSE ALL` (`None`).
    pub close: Option<Option<String>>,
    /// `ROLLBACK TO SAVEPOINT`: portals opened since the savepoint close.
    pub rollback_to_savepoint: bool,
}

impl Facts {
    /// Every relation read or written.
    pub fn relations(&self) -> impl Iterator<Item = &Relation> {
        self.reads.iter().chain(self.writes.iter())
    }
}

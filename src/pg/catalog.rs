//! A snapshot of an upstream database's catalog, for masking.
//!
//! Masking needs to know which table a result column comes from
//! (RowDescription carries the table OID and attribute number), what `*`
//! expands to, what a view is defined as, and which tables a partition or
//! inheritance child belongs to (their masks cover it). airlock loads all of that in
//! one query over its own upstream connection, per target, and shares the
//! snapshot ([`crate::proxy::Proxy::catalog`]) while the target's catalog
//! generation ([`crate::masking::catalog`]) stays where it was read before
//! the load. DDL run through airlock by any session of the target (masked
//! or not; counted once its transaction has ended) and a config reload
//! move it: every masking session then takes a fresh snapshot before it
//! plans, binds or executes its next statement, and plans again the
//! prepared statements and portals planned against the old one. DDL run
//! on the server other than through airlock is not seen until then, except
//! that a statement naming a relation the snapshot lacks is refused and
//! moves the generation ([`crate::masking::Generation::bump_for_unknown`]).
//! The snapshot also keeps the names of the server's own relations, which
//! it does not describe ([`SYSTEM_QUERY`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use airlock_protocol::pg::backend;

use super::error::SessionError;
use super::upstream;
use crate::config::Target;

/// One relation (table, view, materialized view, partitioned or foreign table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// (attnum, name, type oid), in attnum order.
    pub columns: Vec<(i16, String, u32)>,
    /// For views: the definition, as `pg_get_viewdef` prints it.
    pub view_sql: Option<String>,
    /// The OIDs of the tables this one is directly a partition or
    /// inheritance child of (`pg_inherits`).
    pub parents: Vec<u32>,
    /// A materialized view (`view_sql` is then its definition).
    pub materialized: bool,
    /// Generated columns and their expressions (`pg_get_expr`), by name.
    pub generated: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct CatalogSnapshot {
    by_name: HashMap<(String, String), Arc<Relation>>,
    /// Lower-case (schema, name) keys that more than one relation has:
    /// their quoted names differ only in case (`vw` and `"VW"`), which
    /// lineage cannot tell apart. Statements naming them are refused (see
    /// [`crate::masking::catalog::AMBIGUOUS`]).
    ambiguous: std::collections::HashSet<(String, String)>,
    by_oid: HashMap<u32, Arc<Relation>>,
    /// Distinct for every snapshot loaded (part of plan cache keys).
    generation: u64,
    /// Whether any relation has a parent (most databases have none, and
    /// then lineage need not look for ancestors).
    any_parents: bool,
    /// The (lower-case) schema and name of every relation in `pg_catalog`
    /// and `information_schema` ([`SYSTEM_QUERY`]): not described, but
    /// known to be there (see
    /// [`crate::masking::catalog::Catalog::is_system_relation`]).
    system: std::collections::HashSet<(String, String)>,
    /// The (lower-case) names of the functions, procedures, operators
    /// and types made on the server since initdb (OID 16384 and up,
    /// whatever their schema: [`FUNCTIONS_QUERY`]): they may keep what
    /// they are given (see
    /// [`crate::masking::catalog::Catalog::server_function`]).
    functions: std::collections::HashSet<String>,
    /// The (lower-case) names of the server's own functions, operators
    /// and types (below OID 16384): any other name is taken for one made
    /// since, even one made after this snapshot was read.
    builtins: std::collections::HashSet<String>,
    /// The OIDs of the relations whose writes run code made on the server
    /// ([`WRITE_CODE_QUERY`]).
    write_code: std::collections::HashSet<u32>,
    /// The server has casts with functions made since initdb
    /// ([`CASTS_QUERY`]).
    user_casts: bool,
    /// Some of them are implicit: they run on an operator's operands and a
    /// function's arguments, with no cast written ([`CASTS_QUERY`]).
    user_implicit_casts: bool,
}

/// The relations with triggers, with rules other than a view's SELECT,
/// with CHECK constraints that call functions made since initdb, or with
/// columns of a domain whose CHECK does: writing to them runs code that
/// sees the rows written.
///
/// Also (fourth re-check findings): tables with generated columns (a DBA's
/// `g GENERATED ALWAYS AS (card_number) STORED` held the copy raw),
/// indexes whose expressions or predicates call such functions,
/// constraints using such operators, and, following the code: tables
/// that cascade a key update into one of them, and views written through
/// to one of them. Every table when the server has casts made since
/// initdb (an implicit cast runs on assignment): see [`CASTS_QUERY`].
///
/// Also (red-team findings) every view, which writes what it is given
/// into its base table's columns, under other names (`CREATE VIEW vv AS
/// SELECT notes AS card_number FROM loot` took a same-rule copy of card
/// numbers into `loot.notes`), and every table whose key a foreign key
/// `ON UPDATE CASCADE` copies into another table's columns. And (re-audit
/// findings) every foreign table (it writes elsewhere, under other
/// names), indexes with operator classes made since initdb (their support
/// functions see the values), and tables with row-level security
/// policies (their checks may call such functions).
const WRITE_CODE_QUERY: &str = "WITH RECURSIVE code (rel) AS ( \
       SELECT tgrelid FROM pg_trigger WHERE NOT tgisinternal \
       UNION SELECT ev_class FROM pg_rewrite WHERE ev_type <> '1' \
       UNION SELECT CASE WHEN c.contypid = 0 THEN c.conrelid ELSE a.attrelid END \
         FROM pg_constraint c JOIN pg_depend d \
           ON d.classid = 'pg_constraint'::regclass AND d.objid = c.oid \
           AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass) \
         LEFT JOIN pg_attribute a ON c.contypid <> 0 AND a.atttypid = c.contypid \
           AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE d.refobjid >= 16384 AND (c.contypid = 0 OR a.attrelid IS NOT NULL) \
       UNION SELECT attrelid FROM pg_attribute WHERE attgenerated <> '' AND NOT attisdropped \
       UNION SELECT oid FROM pg_class WHERE relkind IN ('v', 'f') \
       UNION SELECT confrelid FROM pg_constraint WHERE contype = 'f' AND confupdtype = 'c' \
       UNION SELECT i.indrelid FROM pg_index i JOIN pg_depend d \
           ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid \
           AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass, \
             'pg_opclass'::regclass, 'pg_opfamily'::regclass) \
         WHERE d.refobjid >= 16384 \
       UNION SELECT polrelid FROM pg_policy \
       UNION SELECT x.rel FROM code CROSS JOIN LATERAL ( \
           SELECT f.confrelid AS rel FROM pg_constraint f \
             WHERE f.conrelid = code.rel AND f.contype = 'f' \
             AND f.confupdtype IN ('c', 'n', 'd') \
           UNION ALL SELECT r.ev_class FROM pg_rewrite r JOIN pg_depend d \
             ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid \
             AND d.refclassid = 'pg_class'::regclass \
             WHERE d.refobjid = code.rel AND r.ev_type = '1' \
         ) x \
     ) SELECT rel FROM code";

/// How many casts with a function the server has that were made since
/// initdb: with any, every cast, and every write (an implicit cast runs on
/// assignment), counts as running code made on the server (fourth
/// re-check finding: `CREATE CAST (text AS bigint) WITH FUNCTION keep
/// AS IMPLICIT`).
const CASTS_QUERY: &str = "SELECT count(*), count(*) FILTER (WHERE castcontext = 'i') \
     FROM pg_cast WHERE oid >= 16384 AND castfunc <> 0";

/// How long the catalog query waits for a lock before it gives up.
/// `pg_get_viewdef` takes a share lock on each view: behind another
/// transaction's `CREATE OR REPLACE VIEW`, `ALTER`, `DROP` or `REFRESH
/// MATERIALIZED VIEW` it would wait until that transaction ends, and with
/// it every masking session of the target, which share one load (found
/// while bounding the load: an open migration held them all). [`QUERY`]
/// leaves out the views locked when it starts; for a lock taken while it
/// runs, or one on a catalog table, it gives up after this long and is
/// tried again ([`LOCK_RETRIES`]); when that gives up too, the statement
/// that needed the snapshot is refused (55P03) while the session goes on.
const LOCK_TIMEOUT_MS: u32 = 2_000;

/// The settings the load makes first ([`super::upstream::OWN_SEARCH_PATH`]
/// and [`LOCK_TIMEOUT_MS`]), as statements
/// rather than a startup parameter (a pooler in front of the server may
/// refuse those), and `LOCAL` to the load's one implicit transaction
/// (behind a transaction pooler, a session setting would stay on the
/// server connection for its next client; review finding). They return
/// no rows. The query as a whole has no time limit: a catalog that takes
/// long to read (thousands of large views) must still load, if slowly;
/// a limit made every load of such a catalog fail, and with it every
/// masked statement and login of the target (red-team finding: an agent
/// allowed DDL can make the catalog that slow).
const BOUNDS_STATEMENTS: usize = 2;

/// The catalog generation of a snapshot that was never loaded (a masking
/// session that logged in while the catalog could not be read): never a
/// target's current generation, so the snapshot is always stale, and the
/// server side refuses any result planned against it.
pub const NOT_LOADED: u64 = u64::MAX;

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Every user relation with its columns, and view definitions. Not
/// temporary ones: a session's temporary schema (`pg_temp_N`) comes first
/// on its search path, but airlock cannot tell which one is the session's,
/// so masking could resolve neither a temporary view (to see what it
/// computes) nor a temporary table shadowing a masked one (whose copied
/// data it would take for the table's own). Left out, a statement naming
/// one is refused while masking applies (see
/// [`crate::masking::lineage::Analyzer::unknown_relation`]), and a column
/// whose RowDescription names one is redacted as of an unknown source.
/// Sequences are in, for what they read as tables.
///
/// The last column lists, comma-separated, the OIDs of the tables the
/// relation is directly a partition or inheritance child of.
///
/// `pg_get_viewdef` takes a share lock on the view and on every relation
/// its definition names. A view another transaction holds (or waits for)
/// an exclusive lock on (`CREATE OR REPLACE VIEW`, `ALTER`, `DROP` or
/// `REFRESH MATERIALIZED VIEW` in an open transaction), or on one of
/// those relations (`ALTER TABLE`, `TRUNCATE`, `VACUUM FULL` of a table
/// it reads; review finding), is not asked for: its "definition" is a string
/// literal, which lineage stops on, quoting it (as for
/// [`crate::masking::catalog::AMBIGUOUS`]), so that statements reading it
/// are refused and the rest run. A lock taken between the two is what
/// [`LOCK_TIMEOUT_MS`] bounds.
const QUERY: &str = "WITH locked AS MATERIALIZED (SELECT relation FROM pg_locks \
       WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock' \
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) \
     SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, a.atttypid, \
     CASE WHEN c.relkind IN ('v','m') AND a.attnum = 1 THEN \
       CASE WHEN c.oid IN (SELECT relation FROM locked) OR EXISTS (SELECT 1 FROM pg_rewrite r \
         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid \
           AND d.refclassid = 'pg_class'::regclass \
         WHERE r.ev_class = c.oid AND d.refobjid IN (SELECT relation FROM locked)) THEN '''airlock: this view is locked by another transaction \
         (its definition may be changing, or it is being refreshed): \
         run the statement again once that transaction has ended''' \
       ELSE pg_get_viewdef(c.oid) END END, \
     i.parents, c.relkind = 'm', \
     CASE WHEN a.attgenerated <> '' THEN pg_get_expr(ad.adbin, ad.adrelid) END \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
     LEFT JOIN (SELECT inhrelid, string_agg(inhparent::text, ',' ORDER BY inhseqno) AS parents \
       FROM pg_inherits GROUP BY inhrelid) i ON i.inhrelid = c.oid \
     WHERE c.relkind IN ('r','v','m','p','f','S') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_toast%' \
       AND c.relpersistence <> 't' \
     ORDER BY c.oid, a.attnum";

/// The names of the functions, operators and types, and whether each is
/// the server's own (made at initdb, below OID 16384; a superuser's
/// function in `pg_catalog` is not) or made since: (name, made since).
const FUNCTIONS_QUERY: &str = "SELECT proname, oid >= 16384 FROM pg_proc \
     UNION SELECT oprname, oid >= 16384 FROM pg_operator \
     UNION SELECT typname, oid >= 16384 FROM pg_type WHERE typtype IN ('b', 'd', 'e', 'r', 'm')";

/// The server's own relations, by schema and name.
const SYSTEM_QUERY: &str = "SELECT n.nspname, c.relname FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname IN ('pg_catalog', 'information_schema')";

impl CatalogSnapshot {
    /// Whether `schema.name` (any case) is one of the server's own
    /// relations.
    pub fn is_system_relation(&self, schema: &str, name: &str) -> bool {
        self.system
            .contains(&(schema.to_lowercase(), name.to_lowercase()))
    }

    /// A relation by (case-insensitive) schema and name.
    pub fn relation(&self, schema: &str, name: &str) -> Option<&Arc<Relation>> {
        self.by_name
            .get(&(schema.to_lowercase(), name.to_lowercase()))
    }

    /// Whether more than one relation has this (case-insensitive) schema
    /// and name.
    pub fn ambiguous(&self, schema: &str, name: &str) -> bool {
        !self.ambiguous.is_empty()
            && self
                .ambiguous
                .contains(&(schema.to_lowercase(), name.to_lowercase()))
    }

    /// The (lower-case) names of the relations in `schema` (lower-case).
    pub fn relations_in(&self, schema: &str) -> Vec<String> {
        crate::masking::catalog::relations_in(&self.by_name, schema)
    }

    pub fn by_oid(&self, oid: u32) -> Option<&Arc<Relation>> {
        self.by_oid.get(&oid)
    }

    /// The tables `rel` is a partition or inheritance child of, nearest
    /// first, as lower-case (schema, name) (see
    /// [`crate::masking::catalog::Catalog::ancestors`]).
    pub fn ancestors_of(&self, rel: &Relation) -> Vec<(String, String)> {
        if rel.parents.is_empty() {
            return Vec::new();
        }
        self.ancestor_oids(rel.oid)
            .into_iter()
            .filter_map(|oid| self.by_oid.get(&oid))
            .map(|r| (r.schema.to_lowercase(), r.name.to_lowercase()))
            .collect()
    }

    /// The OIDs of every table `oid` is a partition or inheritance child
    /// of, nearest first.
    fn ancestor_oids(&self, oid: u32) -> Vec<u32> {
        crate::masking::catalog::ancestors_of(oid, |oid| {
            self.by_oid
                .get(oid)
                .map(|r| r.parents.clone())
                .unwrap_or_default()
        })
    }

    /// [`Self::ancestors_of`] the relation named (case-insensitively)
    /// `schema.table`; none for an ambiguous name.
    pub fn ancestors_by_name(&self, schema: &str, table: &str) -> Vec<(String, String)> {
        if !self.any_parents || self.ambiguous(schema, table) {
            return Vec::new();
        }
        self.relation(schema, table)
            .map(|r| self.ancestors_of(r))
            .unwrap_or_default()
    }

    /// The partitions and inheritance children, at any depth, of the
    /// relation named (case-insensitively) `schema.table`, as lower-case
    /// (schema, name). A walk of every relation: for the rare DDL that
    /// needs it.
    pub fn descendants_by_name(&self, schema: &str, table: &str) -> Vec<(String, String)> {
        let Some(me) = self.relation(schema, table).map(|r| r.oid) else {
            return Vec::new();
        };
        if !self.any_parents {
            return Vec::new();
        }
        let mut out: Vec<(String, String)> = self
            .by_oid
            .values()
            .filter(|r| !r.parents.is_empty() && self.ancestor_oids(r.oid).contains(&me))
            .map(|r| (r.schema.to_lowercase(), r.name.to_lowercase()))
            .collect();
        out.sort();
        out
    }

    /// The materialized views, as lower-case (schema, name) with their
    /// definitions.
    pub fn materialized_views(&self) -> Vec<(String, String, String)> {
        self.by_oid
            .values()
            .filter(|r| r.materialized)
            .filter_map(|r| {
                let sql = r.view_sql.clone()?;
                Some((r.schema.to_lowercase(), r.name.to_lowercase(), sql))
            })
            .collect()
    }

    /// The column a RowDescription field points at.
    pub fn column(&self, table_oid: u32, attnum: i16) -> Option<(&Relation, &str)> {
        let rel = self.by_oid.get(&table_oid)?;
        let (_, name, _) = rel.columns.iter().find(|(n, _, _)| *n == attnum)?;
        Some((rel, name.as_str()))
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `other` describes the same relations and system names as
    /// this snapshot (whatever their generations). Everything else a
    /// snapshot holds is worked out from those, so plans made against one
    /// hold for the other: a reload that finds nothing changed (DDL that
    /// touched no relation, `CREATE INDEX` or `GRANT`, say, or a reload
    /// asked for by a name that does not exist) keeps the snapshot in use
    /// (see [`crate::proxy::Proxy::catalog`]).
    pub fn same_content(&self, other: &CatalogSnapshot) -> bool {
        self.by_oid == other.by_oid
            && self.system == other.system
            && self.functions == other.functions
            && self.builtins == other.builtins
            && self.write_code == other.write_code
            && self.user_casts == other.user_casts
            && self.user_implicit_casts == other.user_implicit_casts
    }

    /// Whether the server has casts with functions made since initdb.
    pub fn user_casts(&self) -> bool {
        self.user_casts
    }

    /// Whether some of those casts are implicit.
    pub fn user_implicit_casts(&self) -> bool {
        self.user_implicit_casts
    }

    /// Whether writing to the relation named (case-insensitively)
    /// `schema.table` runs code made on the server (see
    /// [`WRITE_CODE_QUERY`]), on it or on a partition or child a row may
    /// be routed to. An ambiguous name counts.
    pub fn runs_code_on_write(&self, schema: &str, table: &str) -> bool {
        if self.user_casts {
            return true;
        }
        if self.write_code.is_empty() {
            return false;
        }
        if self.ambiguous(schema, table) {
            return true;
        }
        let Some(rel) = self.relation(schema, table) else {
            return false;
        };
        self.write_code.contains(&rel.oid)
            || self
                .descendants_by_name(schema, table)
                .iter()
                .any(|(s, t)| {
                    self.relation(s, t)
                        .is_some_and(|r| self.write_code.contains(&r.oid))
                })
    }

    /// Whether a function, operator or type of this (any case) name was
    /// made on the server since initdb, or is none of the server's own
    /// (made after this snapshot was read). A snapshot that lists no
    /// built-ins (none read: tests) knows of none.
    pub fn server_function(&self, name: &str) -> bool {
        if self.builtins.is_empty() {
            return false;
        }
        let name = name.to_lowercase();
        self.functions.contains(&name) || !self.builtins.contains(&name)
    }

    /// Whether a function of this (any case) name is surely the server's
    /// own: a built-in, and none of that name made since. A snapshot that
    /// lists no built-ins knows of none.
    pub fn builtin_function(&self, name: &str) -> bool {
        !self.builtins.is_empty() && !self.server_function(name)
    }

    pub fn len(&self) -> usize {
        self.by_oid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_oid.is_empty()
    }

    /// Builds a snapshot from rows of [`QUERY`] (text values).
    fn from_rows(rows: Vec<Vec<Option<String>>>) -> Self {
        let mut building: Vec<Relation> = Vec::new();
        for row in rows {
            let get = |i: usize| row.get(i).cloned().flatten();
            let (Some(oid), Some(schema), Some(name), Some(attnum), Some(attname), Some(typ)) = (
                get(0).and_then(|v| v.parse::<u32>().ok()),
                get(1),
                get(2),
                get(3).and_then(|v| v.parse::<i16>().ok()),
                get(4),
                get(5).and_then(|v| v.parse::<u32>().ok()),
            ) else {
                continue;
            };
            let generated = get(9).map(|expr| (attname.clone(), expr));
            match building.last_mut() {
                Some(r) if r.oid == oid => {
                    r.columns.push((attnum, attname, typ));
                    r.generated.extend(generated);
                }
                _ => building.push(Relation {
                    oid,
                    schema,
                    name,
                    columns: vec![(attnum, attname, typ)],
                    view_sql: get(6),
                    parents: get(7)
                        .map(|p| p.split(',').filter_map(|o| o.parse().ok()).collect())
                        .unwrap_or_default(),
                    materialized: get(8).as_deref() == Some("t"),
                    generated: generated.into_iter().collect(),
                }),
            }
        }
        let mut snap = CatalogSnapshot {
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ..Default::default()
        };
        snap.any_parents = building.iter().any(|r| !r.parents.is_empty());
        for r in building {
            let r = Arc::new(r);
            let key = (r.schema.to_lowercase(), r.name.to_lowercase());
            if snap.by_name.insert(key.clone(), Arc::clone(&r)).is_some() {
                snap.ambiguous.insert(key);
            }
            snap.by_oid.insert(r.oid, r);
        }
        snap
    }
}

/// How many times a load that gave up on a lock ([`LOCK_TIMEOUT_MS`]) is
/// tried again at once. A lock taken on a view after the query read
/// `pg_locks` (a migration starting while airlock reads the catalog, or
/// an agent's `LOCK TABLE` timed to land there: red-team finding) is in
/// `pg_locks` when the next try reads it, so that try leaves the view
/// out rather than waiting for it; only a lock on a catalog table, or a
/// fresh lock for every try, makes the load fail.
const LOCK_RETRIES: u32 = 1;

/// Loads a snapshot over a fresh upstream connection, trying again
/// ([`LOCK_RETRIES`]) when the load gave up on a lock.
pub async fn load(
    target_name: &str,
    target: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    max_message: usize,
) -> Result<CatalogSnapshot, SessionError> {
    let mut tries = 0;
    loop {
        match load_once(target_name, target, tls.clone(), timeout, max_message).await {
            Err(LoadFailure::Refused(body)) => {
                let error = load_error(&body);
                if error.sqlstate() != "55P03" || tries == LOCK_RETRIES {
                    return Err(error);
                }
                tries += 1;
                tracing::info!(
                    target = target_name,
                    "catalog load gave up on a lock; trying again (a lock taken since it read pg_locks is left out now)"
                );
            }
            Err(LoadFailure::Session(e)) => return Err(e),
            Ok(snapshot) => return Ok(snapshot),
        }
    }
}

/// Why one try at the catalog failed: the server's ErrorResponse body, or
/// the connection.
enum LoadFailure {
    Refused(Vec<u8>),
    Session(SessionError),
}

impl From<SessionError> for LoadFailure {
    fn from(e: SessionError) -> Self {
        LoadFailure::Session(e)
    }
}

impl From<super::conn::ConnError> for LoadFailure {
    fn from(e: super::conn::ConnError) -> Self {
        LoadFailure::Session(e.into())
    }
}

impl From<std::io::Error> for LoadFailure {
    fn from(e: std::io::Error) -> Self {
        LoadFailure::Session(e.into())
    }
}

/// One try at the catalog, over its own connection.
async fn load_once(
    target_name: &str,
    target: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    max_message: usize,
) -> Result<CatalogSnapshot, LoadFailure> {
    let params = upstream::own_params("airlock catalog");
    let up = upstream::connect(target_name, target, tls, &params, timeout, max_message).await?;
    let mut conn = up.conn;
    let mut out = BytesMut::new();
    frontend::query(
        &format!(
            "{}SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}; {QUERY}; {SYSTEM_QUERY}; {FUNCTIONS_QUERY}; {WRITE_CODE_QUERY}; {CASTS_QUERY}",
            upstream::OWN_SEARCH_PATH
        ),
        &mut out,
    )?;
    frontend::terminate(&mut out);
    conn.write_all(&out).await?;
    let mut rows = Vec::new();
    let mut system = std::collections::HashSet::new();
    let mut functions = std::collections::HashSet::new();
    let mut builtins = std::collections::HashSet::new();
    let mut write_code = std::collections::HashSet::new();
    let mut user_casts = false;
    let mut user_implicit_casts = false;
    // Which result is streaming (counted by CommandComplete; the
    // setting of `BOUNDS_STATEMENTS` comes first and return none).
    let mut completed: usize = 0;
    loop {
        let frame = conn.read_frame().await?;
        let result = completed.saturating_sub(BOUNDS_STATEMENTS);
        match frame.tag() {
            backend::DATA_ROW if result == 0 => rows.push(text_fields(frame.body())),
            backend::DATA_ROW if result == 4 => {
                let counts = text_fields(frame.body());
                let nonzero = |i: usize| !matches!(counts.get(i), Some(Some(n)) if n == "0");
                user_casts = nonzero(0);
                user_implicit_casts = nonzero(1);
            }
            backend::DATA_ROW if result == 3 => {
                if let [Some(oid)] = text_fields(frame.body()).as_slice() {
                    if let Ok(oid) = oid.parse::<u32>() {
                        write_code.insert(oid);
                    }
                }
            }
            backend::DATA_ROW if result == 2 => {
                if let [Some(name), Some(since)] = text_fields(frame.body()).as_slice() {
                    match since.as_str() {
                        "t" => functions.insert(name.to_lowercase()),
                        _ => builtins.insert(name.to_lowercase()),
                    };
                }
            }
            backend::DATA_ROW => {
                if let [Some(schema), Some(name)] = text_fields(frame.body()).as_slice() {
                    system.insert((schema.to_lowercase(), name.to_lowercase()));
                }
            }
            backend::COMMAND_COMPLETE => completed += 1,
            backend::ERROR_RESPONSE => return Err(LoadFailure::Refused(frame.body().to_vec())),
            backend::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    let mut snapshot = CatalogSnapshot::from_rows(rows);
    snapshot.system = system;
    snapshot.functions = functions;
    snapshot.builtins = builtins;
    snapshot.write_code = write_code;
    snapshot.user_casts = user_casts;
    snapshot.user_implicit_casts = user_implicit_casts;
    Ok(snapshot)
}

/// Why a load failed, from the server's ErrorResponse: what an operator
/// needs to know, and the SQLSTATE a refused statement is answered with.
fn load_error(body: &[u8]) -> SessionError {
    let field = |kind: u8| {
        backend::error_fields(body)
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let said = field(b'M').unwrap_or_default();
    let (code, message) = match field(b'C').as_deref() {
        Some("55P03") => (
            "55P03",
            format!(
                "airlock could not read the catalog for masking: a relation it reads is locked by another transaction (a schema change in progress; lock_timeout {LOCK_TIMEOUT_MS} ms, {} tries): {said}",
                1 + LOCK_RETRIES
            ),
        ),
        _ => (
            "58000",
            format!("airlock could not read the catalog for masking: {said}"),
        ),
    };
    SessionError::Upstream { code, message }
}

/// The fields of a text-format DataRow.
pub fn text_fields(body: &[u8]) -> Vec<Option<String>> {
    let mut fields = Vec::new();
    let Some(n) = body.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
        return fields;
    };
    let mut pos = 2usize;
    for _ in 0..n.max(0) {
        let Some(len) = body
            .get(pos..pos + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            break;
        };
        pos += 4;
        if len < 0 {
            fields.push(None);
            continue;
        }
        let end = pos + len as usize;
        let Some(v) = body.get(pos..end) else { break };
        fields.push(Some(String::from_utf8_lossy(v).into_owned()));
        pos = end;
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of [`QUERY`]: a table `t` (columns `id`, `col`) and a view.
    fn rows(col: &str, view: &str, parents: Option<&str>) -> Vec<Vec<Option<String>>> {
        let s = |v: &str| Some(v.to_owned());
        vec![
            vec![
                s("10"),
                s("public"),
                s("t"),
                s("1"),
                s("id"),
                s("23"),
                None,
                None,
            ],
            vec![
                s("10"),
                s("public"),
                s("t"),
                s("2"),
                s(col),
                s("25"),
                None,
                None,
            ],
            vec![
                s("11"),
                s("public"),
                s("v"),
                s("1"),
                s("a"),
                s("25"),
                s(view),
                None,
            ],
            vec![
                s("12"),
                s("public"),
                s("t1"),
                s("1"),
                s("id"),
                s("23"),
                None,
                parents.map(str::to_owned),
            ],
        ]
    }

    /// The query's stand-in for a locked view's definition is the one
    /// lineage and the reload look for.
    #[test]
    fn locked_views_are_marked_as_masking_expects() {
        let marker = format!("'{}'", crate::masking::catalog::LOCKED_VIEW);
        assert!(QUERY.replace("''", "'").contains(&marker), "{QUERY}");
    }

    /// Two loads of the same relations are the same content (so a reload
    /// keeps the snapshot in use, and the plans made against it); any
    /// difference a plan could depend on is not.
    #[test]
    fn same_content_compares_relations_not_generations() {
        let a =
            CatalogSnapshot::from_rows(rows("email", " SELECT t.email AS a FROM t;", Some("10")));
        let b =
            CatalogSnapshot::from_rows(rows("email", " SELECT t.email AS a FROM t;", Some("10")));
        assert_ne!(a.generation(), b.generation());
        assert!(a.same_content(&b));
        for (what, other) in [
            (
                "a column renamed",
                rows("mail", " SELECT t.email AS a FROM t;", Some("10")),
            ),
            (
                "a view redefined",
                rows("email", " SELECT reverse(t.email) AS a FROM t;", Some("10")),
            ),
            (
                "a partition detached",
                rows("email", " SELECT t.email AS a FROM t;", None),
            ),
        ] {
            assert!(
                !a.same_content(&CatalogSnapshot::from_rows(other)),
                "{what}"
            );
        }
        let mut system =
            CatalogSnapshot::from_rows(rows("email", " SELECT t.email AS a FROM t;", Some("10")));
        system
            .system
            .insert(("pg_catalog".into(), "pg_class".into()));
        assert!(!a.same_content(&system), "other system relations");
    }
}

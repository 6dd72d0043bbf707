//! Masking on the MySQL wire: what a session needs to mask, and how one
//! column and one row are treated. The reply walk is in
//! [`super::reply_mask`]; binary rows are decoded in [`super::binary_row`].
//!
//! * COM_QUERY and COM_STMT_PREPARE text is planned with [`Masker::plan`]
//!   against the session's catalog snapshot ([`super::catalog`]); a `Block`
//!   plan refuses the statement. Each result (OK or result set) of a reply
//!   consumes the next statement's plan; results beyond the plans are
//!   opaque. A prepared statement keeps its plan for its executions while
//!   the catalog generation it was planned at is current; once it moved
//!   (DDL through airlock by any session, a reload: see
//!   [`crate::masking::catalog`]), the next COM_STMT_EXECUTE plans the
//!   statement's text again against a fresh snapshot first (the server
//!   re-prepares it too), and is refused if that plan refuses.
//! * Each result set's column definitions are parsed; a column's mask comes
//!   from the plan (or [`Masker::mask_for_name`] for opaque and extra
//!   columns), and [`Masker::mask_for_column`] on the definition's
//!   `schema.org_table.org_name` overrides an unmasked verdict (source
//!   attribution, defense in depth).
//! * Text and binary rows of a result with a masked column are rewritten;
//!   rows that do not change are forwarded as received. A masked value of a
//!   text-like column becomes the strategy's string; of any other type it
//!   becomes NULL (valid for every type), as in text rows, so column
//!   definitions never need to change.
//! * ERR messages are scrubbed by the principal's value detectors, and
//!   lose the values they quote (`crate::masking::error_values`).

use std::sync::Arc;

use bytes::BytesMut;

use airlock_protocol::mysql::frame::MAX_PAYLOAD;
use airlock_protocol::mysql::packets;
use airlock_protocol::mysql::wire::{self, Reader};

use super::binary_row::{self, Change};
use super::catalog::MyCatalog;
use super::reply_mask::{Plans, ReplyMask};
use super::response::Expect;
use super::stmt_ids::IdMap;
use crate::fasthash::FastMap;
use crate::masking::{
    detect, types, Audience, Catalog, ColumnMask, DetectorSet, Generation, Masker, NoCatalog,
    StatementPlan,
};
use crate::policy::shape::Shape;
use crate::policy::{Dialect, Principal, SessionContext};

/// What a session needs to mask.
pub struct MyMask {
    pub masker: Arc<Masker>,
    pub principal: Principal,
    pub detectors: DetectorSet,
    /// The upstream catalog snapshot, once loaded.
    pub catalog: Option<Arc<MyCatalog>>,
    /// The target's catalog generation (shared by all its sessions).
    generation: Generation,
    /// This session's commands, as other sessions' DDL sees them (see
    /// [`crate::masking::catalog::InFlight`]), and how many it has
    /// checked.
    in_flight: Arc<crate::masking::catalog::InFlight>,
    commands: u64,
    /// [`Generation::current`] as read just before `catalog` was loaded.
    loaded_at: u64,
    /// What plans are tagged with: `loaded_at` as it was when the snapshot
    /// or the rules last changed. A reload that found neither changed
    /// leaves it, and the plans made before hold.
    plans_at: u64,
    /// The rules changed since the snapshot was loaded ([`Self::set_masker`]).
    rules_moved: bool,
    /// Plans of the prepared statements airlock allowed, by statement id.
    pub statements: IdMap<StmtMask>,
    /// What each column definition seen in this session means for masking,
    /// by the definition's exact bytes (see [`ColInfo`]).
    columns: FastMap<Box<[u8]>, Arc<ColInfo>>,
    /// The actions of a result with no masked column (shared, so a clear
    /// result costs no allocation).
    clear: Arc<Vec<Action>>,
    /// The rules and detectors that apply to `principal`, worked out once.
    audience: Audience,
}

/// A result whose columns are not the ones the masking plan was made for.
const MISMATCH: &str =
    "airlock: the result does not match the masking analysis; refusing to pass it";
const MULTI_OPAQUE: &str = "airlock: blocked by rule builtin.masking-multi-statement: a multi-statement text may not hold a statement whose results airlock cannot attribute (CALL, SHOW, ...) while masking applies; send it on its own";
const MULTI_DDL: &str = "airlock: blocked by rule builtin.masking-multi-statement: a multi-statement text may not change the schema while masking applies; send DDL on its own";

/// Most distinct column definitions [`MyMask`] remembers; past this the
/// memory starts over.
const COLUMN_CACHE: usize = 4096;

/// What masking needs of one column definition: worked out once per
/// session and definition, as it depends only on the definition, the
/// principal and the rules (all fixed for a [`MyMask`]).
#[derive(Debug)]
pub struct ColInfo {
    /// [`Masker::mask_for_name`] on the column's name: for columns the
    /// plan does not cover.
    pub by_name: ColumnMask,
    /// [`MyMask::source_mask`]: overrides an unmasked verdict.
    pub by_source: Option<ColumnMask>,
    pub text_like: bool,
    pub type_code: u8,
    /// A column of a table in `information_schema` or
    /// `performance_schema`, which no one can create and which hold no
    /// user data: past an open plan's columns, it goes by name.
    pub system: bool,
}

/// A command in flight (see [`MyMask::checking`]): answered when dropped.
pub struct CommandInFlight {
    in_flight: Arc<crate::masking::catalog::InFlight>,
    command: u64,
}

impl Drop for CommandInFlight {
    fn drop(&mut self) {
        self.in_flight.answered(self.command);
    }
}

/// What masking keeps per prepared statement.
#[derive(Debug, Clone, Default)]
pub struct StmtMask {
    /// The statement's plan (`None`: opaque).
    pub plan: Option<Arc<StatementPlan>>,
    /// The text it was planned from (vetted, as judged), to plan it again.
    sql: Box<[u8]>,
    /// What `plan` was tagged with when made ([`MyMask::plans_at`]).
    planned_at: u64,
    /// The actions and column types of its open cursor (COM_STMT_FETCH
    /// replies carry rows only).
    pub cursor: Option<super::reply_mask::Cursor>,
}

/// The parts of a column definition (protocol 4.1) masking looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnDef {
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    pub charset: u16,
    pub type_code: u8,
}

/// Parses a column definition packet.
pub fn parse_column_def(p: &[u8]) -> Option<ColumnDef> {
    let mut r = Reader::new(p);
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let _catalog = r.lenenc_str()?;
    let schema = s(r.lenenc_str()?);
    let table = s(r.lenenc_str()?);
    let org_table = s(r.lenenc_str()?);
    let name = s(r.lenenc_str()?);
    let org_name = s(r.lenenc_str()?);
    let _fixed = r.lenenc()?;
    let charset = r.u16()?;
    let _length = r.u32()?;
    let type_code = r.u8()?;
    Some(ColumnDef {
        schema,
        table,
        org_table,
        name,
        org_name,
        charset,
        type_code,
    })
}

/// One column's treatment.
#[derive(Debug, Clone)]
pub struct Action {
    pub mask: ColumnMask,
    pub text_like: bool,
}

impl Action {
    pub fn is_clear(&self) -> bool {
        self.mask == ColumnMask::Clear
    }
}

impl MyMask {
    /// `generation`: the target's (see [`crate::masking::catalog`]).
    pub fn new(
        masker: Arc<Masker>,
        principal: Principal,
        detectors: DetectorSet,
        generation: Generation,
    ) -> Self {
        MyMask {
            audience: masker.audience(&principal),
            masker,
            principal,
            detectors,
            catalog: None,
            in_flight: generation.register(),
            commands: 0,
            generation,
            loaded_at: 0,
            plans_at: 0,
            rules_moved: false,
            statements: IdMap::default(),
            columns: FastMap::default(),
            clear: Arc::new(Vec::new()),
        }
    }

    /// A reload replaced the masking rules: plans and column meanings
    /// made from now on follow them. (A reload also moves every catalog
    /// generation, so prepared statements are planned again before they
    /// next run.)
    pub fn set_masker(&mut self, masker: Arc<Masker>) {
        if Arc::ptr_eq(&self.masker, &masker) {
            return;
        }
        self.audience = masker.audience(&self.principal);
        self.detectors = masker.detectors_for(&self.principal);
        self.masker = masker;
        self.columns.clear();
        self.rules_moved = true;
    }

    /// Whether the snapshot must be (re)loaded before the next plan: none
    /// yet, or the target's catalog generation moved since it was loaded.
    /// One atomic load.
    pub fn catalog_stale(&self) -> bool {
        self.catalog.is_none() || self.generation.current() != self.loaded_at
    }

    /// Whether a result starting now may not match its plan: the catalog
    /// moved since the snapshot it was planned against, or another session
    /// of the target runs a statement that may change it (`own`: this
    /// session's command is one, and counts itself). Two atomic loads.
    pub fn schema_moved(&self, own: bool) -> bool {
        self.generation.unsettled() > u64::from(own)
            || (self.catalog.is_some() && self.generation.current() != self.loaded_at)
    }

    /// Reloads the snapshot over the session's idle upstream connection
    /// when it is stale.
    pub async fn refresh_catalog(
        &mut self,
        conn: &mut super::conn::PacketConn,
    ) -> Result<(), super::error::MyError> {
        if self.catalog_stale() {
            // Read first: a change made during the load still counts as
            // newer than this snapshot.
            let at = self.generation.current();
            use crate::metrics::{catalog_load, CatalogLoad, Protocol};
            let fresh = match super::catalog::load(conn).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    catalog_load(Protocol::Mysql, CatalogLoad::Failed);
                    return Err(e);
                }
            };
            // Nothing changed (DDL that touched no relation, say): the
            // snapshot in use and the plans made against it hold.
            let same = !self.rules_moved
                && self
                    .catalog
                    .as_ref()
                    .is_some_and(|c| c.same_content(&fresh));
            catalog_load(
                Protocol::Mysql,
                if same {
                    CatalogLoad::Unchanged
                } else {
                    CatalogLoad::Changed
                },
            );
            if !same {
                self.catalog = Some(Arc::new(fresh));
                self.plans_at = at;
            }
            self.rules_moved = false;
            self.loaded_at = at;
        }
        Ok(())
    }

    /// A command that may run a statement is about to be checked (before
    /// anything reads [`Generation::unsettled`] for it) and forwarded: in
    /// flight, as other sessions' DDL sees it, until the guard is dropped
    /// once it has been answered (see
    /// [`crate::masking::catalog::InFlight`]).
    pub fn checking(&mut self) -> CommandInFlight {
        self.commands += 1;
        self.in_flight.checking(self.commands);
        CommandInFlight {
            in_flight: Arc::clone(&self.in_flight),
            command: self.commands,
        }
    }

    /// For this session's DDL, counted unsettled: the commands other
    /// masking sessions of the target have in flight, checked before it.
    pub fn others_in_flight(&self) -> crate::masking::catalog::InFlightAt {
        self.generation.in_flight_besides(&self.in_flight)
    }

    /// The command being checked waits (its DDL, for others' commands in
    /// flight): not in flight meanwhile.
    pub fn holding(&self) {
        self.in_flight.holding(self.commands);
    }

    /// The command that waited goes on: in flight again. Returns whether
    /// another session's catalog change was counted meanwhile (this
    /// session's own DDL is counted: more than one), or the catalog moved
    /// since the command was planned: then it must not run.
    pub fn resuming(&self) -> bool {
        self.in_flight.checking(self.commands);
        self.generation.unsettled() > 1 || self.catalog_stale()
    }

    /// The snapshot, or none yet.
    fn catalog(&self) -> &dyn Catalog {
        match &self.catalog {
            Some(c) => c.as_ref(),
            None => &NoCatalog,
        }
    }

    /// While another session's catalog change runs (see
    /// [`Self::schema_moved`]; this session runs one command at a time, so
    /// its own has ended), the refusal of a statement that may not run
    /// beside it: anything but reads, transaction and session statements.
    /// A write has no result to refuse, and one that waited for that
    /// change's locks would copy what the new definitions compute
    /// (red-team finding on Postgres: `INSERT INTO loot SELECT id, name
    /// FROM w` behind another session's `CREATE OR REPLACE VIEW w AS
    /// SELECT id, phone AS name ...`). One atomic load when none runs.
    pub fn beside_ddl_refusal(&self, sql: &str, ctx: &SessionContext) -> Option<String> {
        if self.generation.unsettled() == 0 {
            return None;
        }
        let plans = self.masker.plan_after_ddl(
            &self.audience,
            Dialect::MySql,
            sql,
            ctx,
            self.catalog(),
            crate::masking::UnseenDdl::Others,
        );
        plans.iter().find_map(|p| match p {
            StatementPlan::Block { rule, message, .. } => {
                Some(format!("airlock: blocked by rule {rule}: {message}"))
            }
            _ => None,
        })
    }

    /// [`Self::beside_ddl_refusal`] for prepared statement `id`'s text.
    pub fn beside_ddl_refusal_of(&self, id: u32, ctx: &SessionContext) -> Option<String> {
        if self.generation.unsettled() == 0 {
            return None;
        }
        let sql = self.statements.get(&id)?;
        match std::str::from_utf8(&sql.sql) {
            Ok(text) => self.beside_ddl_refusal(text, ctx),
            Err(_) => Some(
                "airlock: blocked by rule builtin.unparseable: statement is not valid UTF-8".into(),
            ),
        }
    }

    /// Remembers an allowed prepare's plan and text under its statement
    /// id; the plan was made against the current snapshot.
    pub fn prepared(&mut self, id: u32, plans: Option<&Plans>, sql: &[u8]) {
        let plan = plans.and_then(|p| p.get(0)).cloned();
        self.statements.insert(
            id,
            StmtMask {
                plan,
                sql: sql.into(),
                planned_at: self.plans_at,
                cursor: None,
            },
        );
    }

    /// The text of prepared statement `id` when its plan was made against
    /// an older snapshot than the current one (call after
    /// [`Self::refresh_catalog`]): it must be planned again.
    pub fn outdated(&self, id: u32) -> Option<Box<[u8]>> {
        self.statements
            .get(&id)
            .filter(|s| s.planned_at != self.plans_at)
            .map(|s| s.sql.clone())
    }

    /// Replaces statement `id`'s plan with one made against the current
    /// snapshot.
    pub fn replanned(&mut self, id: u32, plans: Option<&Plans>) {
        let at = self.plans_at;
        if let Some(s) = self.statements.get_mut(&id) {
            s.plan = plans.and_then(|p| p.get(0)).cloned();
            s.planned_at = at;
        }
    }

    /// Whether prepared statement `id` was planned as DDL.
    pub fn runs_ddl(&self, id: u32) -> bool {
        self.statements
            .get(&id)
            .and_then(|s| s.plan.as_deref())
            .is_some_and(|p| matches!(p, StatementPlan::Ddl))
    }

    /// The masking state for the reply to a command on statement `id`.
    pub fn reply_for(&self, id: u32, expect: Expect) -> ReplyMask {
        let stmt = self.statements.get(&id);
        match expect {
            Expect::Fetch => {
                ReplyMask::new(expect, Plans::None, stmt.and_then(|s| s.cursor.clone()))
            }
            _ => ReplyMask::new(expect, Plans::One(stmt.and_then(|s| s.plan.clone())), None),
        }
    }

    /// What a column definition means for masking; `None` when it is
    /// malformed.
    pub fn column(&mut self, def: &[u8]) -> Option<Arc<ColInfo>> {
        if let Some(c) = self.columns.get(def) {
            return Some(Arc::clone(c));
        }
        let c = parse_column_def(def)?;
        let info = Arc::new(ColInfo {
            by_name: self.masker.mask_for_name(&self.principal, &c.name),
            by_source: self.source_mask(&c),
            text_like: types::mysql_type_is_text(c.type_code, c.charset),
            type_code: c.type_code,
            system: !c.org_table.is_empty()
                && (c.schema.eq_ignore_ascii_case("information_schema")
                    || c.schema.eq_ignore_ascii_case("performance_schema")),
        });
        if self.columns.len() >= COLUMN_CACHE {
            self.columns.clear();
        }
        self.columns.insert(def.into(), Arc::clone(&info));
        Some(info)
    }

    /// After an execute: keeps what the statement's cursor fetches need
    /// (`opened`: the reply opened a cursor). An execute that opened none
    /// closed any earlier cursor of the statement: fetches then have
    /// nothing to mask by, and their rows are refused.
    pub fn executed(&mut self, id: u32, expect: Expect, reply: &mut ReplyMask, opened: bool) {
        if expect != Expect::Execute {
            return;
        }
        if !opened {
            if let Some(s) = self.statements.get_mut(&id) {
                s.cursor = None;
            }
            return;
        }
        let cursor = match reply.cursor(self) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(statement = id, reason = %e, "cursor rows will be refused");
                None
            }
        };
        if let Some(s) = self.statements.get_mut(&id) {
            s.cursor = cursor;
        }
    }

    /// Plans a statement text; `Err` is the refusal message.
    /// `shape` is `sql`'s (see [`Shape::of`]), shared with the decision
    /// cache.
    pub fn plan(
        &self,
        sql: &[u8],
        shape: &Shape<'_>,
        ctx: &SessionContext,
    ) -> Result<Plans, String> {
        let Ok(sql) = std::str::from_utf8(sql) else {
            return Err(
                "airlock: blocked by rule builtin.unparseable: statement is not valid UTF-8".into(),
            );
        };
        if let Some(refusal) = self.beside_ddl_refusal(sql, ctx) {
            return Err(refusal);
        }
        let plans = self.masker.plan_for(
            &self.audience,
            Dialect::MySql,
            sql,
            shape,
            ctx,
            self.catalog(),
        );
        for p in plans.iter() {
            if let StatementPlan::Block { rule, message, .. } = p.as_ref() {
                return Err(format!("airlock: blocked by rule {rule}: {message}"));
            }
        }
        // In a multi-statement text, each result is matched to its
        // statement's plan in order, against the catalog as it was before
        // the text ran. A statement with an opaque reply (CALL can return
        // several results) would shift later results onto the wrong plans,
        // and DDL (CREATE VIEW ...) would leave later statements planned
        // against a stale catalog: refuse both, rather than mask wrongly.
        if plans.len() > 1 {
            if plans
                .iter()
                .any(|p| matches!(p.as_ref(), StatementPlan::Opaque))
            {
                return Err(MULTI_OPAQUE.into());
            }
            if super::catalog::may_change_catalog(sql.as_bytes()) {
                return Err(MULTI_DDL.into());
            }
        }
        Ok(Plans::Text(plans))
    }

    /// The source-attributed mask of a column definition, if any.
    pub fn source_mask(&self, c: &ColumnDef) -> Option<ColumnMask> {
        if c.org_table.is_empty() || c.org_name.is_empty() {
            return None;
        }
        self.masker
            .mask_for_column(&self.principal, &c.schema, &c.org_table, &c.org_name)
    }

    /// The actions for one result set; [`Self::clear`]'s shared empty
    /// list when no column is masked.
    pub fn actions(
        &self,
        plan: Option<&StatementPlan>,
        cols: &[Arc<ColInfo>],
    ) -> Result<Arc<Vec<Action>>, String> {
        let planned = match plan {
            Some(StatementPlan::Columns(c)) => {
                // More columns than planned are columns airlock did not
                // analyze (red-team finding: an extra one passed in clear).
                if cols.len() != c.len() {
                    return Err(MISMATCH.into());
                }
                Some(c)
            }
            // Past the columns it knows, a plan over a relation whose
            // columns airlock does not know (`SELECT *` from
            // information_schema) takes only system tables' columns, by
            // name: anything else is a column it did not analyze
            // (compatibility finding: `SELECT * FROM information_schema.columns`
            // was refused).
            Some(StatementPlan::OpenColumns(c)) => {
                if cols.len() < c.len() || cols[c.len()..].iter().any(|x| !x.system) {
                    return Err(MISMATCH.into());
                }
                Some(c)
            }
            _ => None,
        };
        fn mask_of<'m>(
            planned: Option<&'m [ColumnMask]>,
            i: usize,
            c: &'m ColInfo,
        ) -> &'m ColumnMask {
            let mask = planned.and_then(|p| p.get(i)).unwrap_or(&c.by_name);
            match (mask, &c.by_source) {
                (ColumnMask::Mask { .. }, _) | (_, None) => mask,
                (_, Some(source)) => source,
            }
        }
        let planned = planned.map(Vec::as_slice);
        let clear = cols
            .iter()
            .enumerate()
            .all(|(i, c)| *mask_of(planned, i, c) == ColumnMask::Clear);
        if clear {
            return Ok(Arc::clone(&self.clear));
        }
        Ok(Arc::new(
            cols.iter()
                .enumerate()
                .map(|(i, c)| Action {
                    mask: mask_of(planned, i, c).clone(),
                    text_like: c.text_like,
                })
                .collect(),
        ))
    }

    /// Rewrites a text row; `Ok(None)` when nothing changes.
    pub fn rewrite_row(&self, actions: &[Action], row: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let mut r = Reader::new(row);
        let mut out = BytesMut::with_capacity(row.len());
        let mut changed = false;
        for a in actions {
            let value = if r.remaining().first() == Some(&wire::NULL) {
                r.u8();
                None
            } else {
                Some(r.lenenc_str().ok_or("malformed text row")?)
            };
            let new = match (&a.mask, value) {
                (ColumnMask::Clear, v) | (_, v @ None) => v.map(std::borrow::Cow::Borrowed),
                (mask, Some(v)) => {
                    let n = self
                        .masker
                        .apply(mask, Some(v), a.text_like, self.detectors);
                    if !matches!(n, Some(std::borrow::Cow::Borrowed(_))) {
                        changed = true;
                    }
                    n
                }
            };
            match new {
                None => out.extend_from_slice(&[wire::NULL]),
                Some(v) => wire::put_lenenc_str(&mut out, &v),
            }
        }
        if !r.is_empty() {
            return Err("text row has more values than columns".into());
        }
        if !changed {
            return Ok(None);
        }
        if out.len() >= MAX_PAYLOAD {
            return Err("a masked row would exceed 16 MiB".into());
        }
        Ok(Some(out.to_vec()))
    }

    /// Rewrites a binary row (`types`: the column type codes); `Ok(None)`
    /// when nothing changes. Masked values of text-like columns become the
    /// strategy's string, of other columns NULL; detectors look at
    /// text-like values only.
    pub fn rewrite_binary_row(
        &self,
        actions: &[Action],
        types: &[u8],
        row: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        let out = binary_row::rewrite(row, types, |i, value| {
            let (Some(a), Some(v)) = (actions.get(i), value) else {
                return Change::Keep;
            };
            match &a.mask {
                ColumnMask::Clear => Change::Keep,
                ColumnMask::Detect if !a.text_like => Change::Keep,
                ColumnMask::Mask { .. } if !a.text_like => Change::Null,
                mask => match self.masker.apply(mask, Some(v), true, self.detectors) {
                    Some(std::borrow::Cow::Borrowed(_)) => Change::Keep,
                    Some(std::borrow::Cow::Owned(new)) => Change::Text(new),
                    None => Change::Null,
                },
            }
        })
        .map_err(|e| e.to_string())?;
        if out.as_ref().is_some_and(|o| o.len() >= MAX_PAYLOAD) {
            return Err("a masked row would exceed 16 MiB".into());
        }
        Ok(out)
    }

    /// A scrubbed ERR payload, when the message held something detectable
    /// or quotes a data value (see [`crate::masking::error_values`]).
    pub fn scrub_err(&self, payload: &[u8]) -> Option<Vec<u8>> {
        scrub_err(payload, self.detectors)
    }
}

/// An ERR payload with what the detectors find scrubbed and, for errors
/// that may quote a data value, the quoted values withheld (see
/// [`crate::masking::error_values`]); `None` when nothing changes. Used
/// by masking sessions ([`MyMask::scrub_err`], with their detectors) and
/// by sessions whose policy denies columns (no detectors: a denied
/// column's value must not come back quoted in an error either).
pub fn scrub_err(payload: &[u8], detectors: DetectorSet) -> Option<Vec<u8>> {
    use crate::masking::error_values::{mysql_may_quote_data, withhold_quoted};
    let (code, state, message) = packets::parse_err(payload)?;
    let scrubbed = detect::scrub(message.as_bytes(), detectors);
    let text = scrubbed.as_deref().unwrap_or(message.as_bytes());
    let withheld = if mysql_may_quote_data(code) {
        withhold_quoted(text, b'\'')
    } else {
        None
    };
    let clean = withheld.or(scrubbed)?;
    let state = if state.is_empty() { "HY000" } else { &state };
    let mut p = BytesMut::new();
    packets::err(&mut p, code, state, &String::from_utf8_lossy(&clean));
    Some(p.to_vec())
}

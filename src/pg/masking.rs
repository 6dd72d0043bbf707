//! Masking on the Postgres wire: planning on the client side, rewriting on
//! the server side.
//!
//! * The client side asks [`Masker::plan`] about every statement it forwards
//!   (Query text, Parse text) and records what each request will produce in
//!   the [`Expectations`] queue (see [`super::results`]). A plan that says
//!   *block* refuses the statement like a guardrail would. Plans of Parse
//!   and Bind are kept ([`PlanBook`]) with their text and the catalog
//!   generation they were made at; after the catalog changed (see
//!   [`super::catalog`]) they are made again at the next Bind or Execute,
//!   which is refused when the new plan refuses.
//! * The server side follows the replies with a [`Tracker`]. For a result
//!   with a masked column it works out, once per result, what to do with
//!   each column (from the plan, and from the RowDescription's table OID and
//!   attribute number through the catalog snapshot, so a column the AST
//!   analysis did not attribute is still caught), then rebuilds each DataRow.
//!   Results with nothing to mask pass through as the bytes they came as.
//! * Error, notice and notification text is scrubbed by the value detectors.
//!
//! Values are masked in text format, and in binary format for text-like
//! types (whose binary form is the text itself). A masked value of any other
//! type in binary format becomes NULL: a NULL is valid for every type.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::{BufMut, BytesMut};

use airlock_protocol::pg::backend;
use airlock_protocol::pg::frame::encode;
use airlock_protocol::pg::frontend::FormatCodes;

use super::catalog::CatalogSnapshot;
use super::error::SessionError;
use super::named::Named;
use super::relay::Verdict;
use super::results::{fields, Active, Expect, Expectations, Origin, Plans, Tracker};
use super::rewrite::{rewrite_data_row, Change};
use crate::fasthash::FastMap;
use crate::masking::by_name::{self, ReadByName};
use crate::masking::{
    types, Audience, Catalog, ColumnMask, DetectorSet, Generation, Masker, StatementPlan,
};
use crate::policy::shape::Shape;
use crate::policy::{Dialect, Principal, SessionContext};

/// What a session needs to mask: the rules, the catalog and who is asking.
/// Shared by the session's two sides; the client side replaces the catalog
/// snapshot when the target's catalog generation moved (see
/// [`crate::masking::catalog`]), and the server side reads the current one.
pub struct MaskContext {
    /// The masking rules in force, as they apply to `principal`: replaced
    /// when a reload changed them ([`MaskContext::set_masker`]).
    rules: ArcSwap<MaskRules>,
    /// The session's catalog snapshot.
    catalog: ArcSwap<CatalogSnapshot>,
    /// The target's catalog generation (shared by all its sessions).
    generation: Generation,
    /// [`Generation::current`] as read before `catalog` was loaded. Written
    /// by the client side only.
    loaded_at: AtomicU64,
    /// What plans are tagged with ([`Self::plans_at`]): `loaded_at` as it
    /// was when the snapshot or the rules last changed. A reload that
    /// found neither changed leaves it, and the plans made before hold.
    plans_at: AtomicU64,
    pub principal: Principal,
}

/// The masking rules and what of them applies to one principal.
pub struct MaskRules {
    pub masker: Arc<Masker>,
    pub detectors: DetectorSet,
    /// The rules and detectors that apply to the principal, worked out once.
    audience: Audience,
}

impl MaskRules {
    fn new(masker: Arc<Masker>, principal: &Principal) -> Self {
        MaskRules {
            detectors: masker.detectors_for(principal),
            audience: masker.audience(principal),
            masker,
        }
    }
}

/// Plans for the statements of one request, or the refusal.
pub type Planned = Result<Plans<StatementPlan>, String>;

impl MaskContext {
    /// `catalog`: a snapshot of the target's catalog and the generation of
    /// `generation` it was loaded at.
    pub fn new(
        masker: Arc<Masker>,
        catalog: (Arc<CatalogSnapshot>, u64),
        generation: Generation,
        principal: Principal,
    ) -> Self {
        MaskContext {
            rules: ArcSwap::from_pointee(MaskRules::new(masker, &principal)),
            catalog: ArcSwap::new(catalog.0),
            generation,
            loaded_at: AtomicU64::new(catalog.1),
            plans_at: AtomicU64::new(catalog.1),
            principal,
        }
    }

    /// The masking rules in force.
    pub fn rules(&self) -> arc_swap::Guard<Arc<MaskRules>> {
        self.rules.load()
    }

    /// A reload replaced the masking rules: plans made from now on follow
    /// them. (A reload also moves every catalog generation, so prepared
    /// statements are planned again before they next run.)
    pub fn set_masker(&self, masker: Arc<Masker>) {
        if !Arc::ptr_eq(&self.rules.load().masker, &masker) {
            self.rules
                .store(Arc::new(MaskRules::new(masker, &self.principal)));
        }
    }

    /// The current catalog snapshot.
    pub fn catalog(&self) -> Arc<CatalogSnapshot> {
        self.catalog.load_full()
    }

    /// Whether the target's catalog may have changed since the snapshot was
    /// loaded: it must be reloaded before the next plan. One atomic load
    /// of the shared generation.
    pub fn catalog_stale(&self) -> bool {
        self.generation.current() != self.loaded_at()
    }

    /// The target's catalog generation (shared by all its sessions).
    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    /// The generation the current snapshot was loaded at.
    pub fn loaded_at(&self) -> u64 {
        self.loaded_at.load(Ordering::Relaxed)
    }

    /// What plans made now are tagged with: the generation at which the
    /// snapshot in use, or the rules, were last installed changed. A plan
    /// tagged otherwise was made against another snapshot or other rules.
    pub fn plans_at(&self) -> u64 {
        self.plans_at.load(Ordering::Relaxed)
    }

    /// Installs the snapshot loaded at generation `at`. Returns whether
    /// anything plans depend on changed: the snapshot (a reload that found
    /// nothing new hands out the same one, see
    /// [`crate::proxy::Proxy::catalog`]) or the masking rules (`masker`,
    /// the rules in force, when there are any). When nothing did, plans
    /// made so far keep their tag.
    pub fn set_catalog(
        &self,
        catalog: Arc<CatalogSnapshot>,
        at: u64,
        masker: Option<Arc<Masker>>,
    ) -> bool {
        let same_catalog = Arc::ptr_eq(&self.catalog.load(), &catalog);
        // With no masking rules left at all, the old ones stay until the
        // session ends: it masks more, not less.
        let same_rules = masker
            .as_ref()
            .is_none_or(|m| Arc::ptr_eq(&self.rules.load().masker, m));
        if let Some(m) = masker {
            self.set_masker(m);
        }
        self.catalog.store(catalog);
        self.loaded_at.store(at, Ordering::Relaxed);
        let changed = !(same_catalog && same_rules);
        if changed {
            self.plans_at.store(at, Ordering::Relaxed);
        }
        changed
    }

    /// Plans a Query's or Parse's statements. `shape`: the statement's
    /// shape, as the policy engine was given it.
    pub fn plan(&self, sql: &[u8], shape: &Shape<'_>, ctx: &SessionContext) -> Planned {
        let text = utf8(sql)?;
        let rules = self.rules();
        let plans = rules.masker.plan_for(
            &rules.audience,
            Dialect::Postgres,
            text,
            shape,
            ctx,
            &**self.catalog.load(),
        );
        self.reload_if_unknown(plans.iter().map(|p| &**p));
        admitted(plans.iter().cloned())
    }

    /// After a plan refused for naming a relation the snapshot lacks, or
    /// for reading a view that was locked when the snapshot was read: the
    /// target's sessions read the catalog again before their next
    /// statement (at most every few seconds, see
    /// [`crate::masking::Generation::bump_for_unknown`] and
    /// [`crate::masking::Generation::bump_for_locked`]).
    fn reload_if_unknown<'p>(&self, plans: impl Iterator<Item = &'p StatementPlan>) {
        for plan in plans {
            if let Some(name) = crate::masking::unknown_relation_name(plan) {
                if self.generation().bump_for_unknown(name) {
                    tracing::info!(relation = name, "a statement named a relation airlock's catalog snapshot lacks; reading the catalog again");
                }
                return;
            }
            if matches!(plan, StatementPlan::Block { rule, .. } if rule == crate::masking::catalog::LOCKED_RULE)
            {
                if self.generation().bump_for_locked() {
                    tracing::info!("a statement read a view that was locked when airlock read the catalog; reading it again");
                }
                return;
            }
        }
    }

    /// Plans a statement while the session's own DDL, or another
    /// session's (`whose`), is in a transaction that has not ended (see
    /// [`super::ddl_fence`]): only transaction and session statements are
    /// allowed.
    pub fn plan_after_ddl(
        &self,
        sql: &[u8],
        ctx: &SessionContext,
        whose: crate::masking::UnseenDdl,
    ) -> Planned {
        let text = utf8(sql)?;
        let rules = self.rules();
        let plans = rules.masker.plan_after_ddl(
            &rules.audience,
            Dialect::Postgres,
            text,
            ctx,
            &**self.catalog.load(),
            whose,
        );
        self.reload_if_unknown(plans.iter());
        admitted(plans.into_iter().map(Arc::new))
    }
}

/// Replaces `$user` in the search_path masking plans with by the database
/// user airlock logged in as, as Postgres does: a schema of that name
/// comes first, and an agent that may create one could otherwise put a
/// view there that masking would look for under `public`. Masking looks a
/// name up in the catalog schema by schema, so a schema that does not
/// exist costs nothing. (The guardrails keep `$user`, which their name
/// resolution skips: with no catalog they would have to count both
/// schemas, and `allow_tables = ["public.*"]` would refuse every
/// unqualified name; an object in the user's schema is judged when it is
/// made.)
pub fn name_user_schema(search_path: &mut [String], user: &str) {
    for entry in search_path {
        if entry.trim().trim_matches('"') == "$user" {
            *entry = user.to_owned();
        }
    }
}

/// A statement's text, which masking plans only as UTF-8.
fn utf8(sql: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(sql).map_err(|_| {
        "airlock: blocked by rule builtin.unparseable: statement is not valid UTF-8".into()
    })
}

/// A request's plans, or the refusal of the first statement masking blocks.
fn admitted(plans: impl ExactSizeIterator<Item = Arc<StatementPlan>>) -> Planned {
    let mut out = Vec::with_capacity(plans.len());
    for p in plans {
        if let StatementPlan::Block { rule, message, .. } = p.as_ref() {
            return Err(format!("airlock: blocked by rule {rule}: {message}"));
        }
        out.push(Some(p));
    }
    Ok(out.into())
}

impl Catalog for CatalogSnapshot {
    fn columns(&self, schema: &str, table: &str) -> Option<Vec<String>> {
        if self.ambiguous(schema, table) {
            return Some(Vec::new());
        }
        self.relation(schema, table)
            .map(|r| r.columns.iter().map(|(_, n, _)| n.to_lowercase()).collect())
    }

    fn view_sql(&self, schema: &str, table: &str) -> Option<String> {
        if self.ambiguous(schema, table) {
            return Some(crate::masking::catalog::AMBIGUOUS.to_owned());
        }
        self.relation(schema, table)
            .and_then(|r| r.view_sql.clone())
    }

    fn relations(&self, schema: &str) -> Vec<String> {
        self.relations_in(schema)
    }

    fn ancestors(&self, schema: &str, table: &str) -> Vec<(String, String)> {
        self.ancestors_by_name(schema, table)
    }

    fn descendants(&self, schema: &str, table: &str) -> Vec<(String, String)> {
        self.descendants_by_name(schema, table)
    }

    fn complete(&self) -> bool {
        true
    }

    fn materialized_views(&self) -> Vec<(String, String, String)> {
        self.materialized_views()
    }

    fn server_function(&self, name: &str) -> bool {
        self.server_function(name)
    }

    fn builtin_function(&self, name: &str) -> bool {
        self.builtin_function(name)
    }

    fn runs_code_on_write(&self, schema: &str, table: &str) -> bool {
        self.runs_code_on_write(schema, table)
    }

    fn user_casts(&self) -> bool {
        self.user_casts()
    }

    fn user_implicit_casts(&self) -> bool {
        self.user_implicit_casts()
    }

    fn generated(&self, schema: &str, table: &str) -> Vec<(String, String)> {
        self.relation(schema, table)
            .map(|r| r.generated.clone())
            .unwrap_or_default()
    }

    fn is_system_relation(&self, schema: &str, name: &str) -> bool {
        self.is_system_relation(schema, name)
    }

    fn version(&self) -> u64 {
        self.generation()
    }
}

/// One column's treatment in the result now streaming.
#[derive(Debug, Clone)]
struct Action {
    mask: ColumnMask,
    /// The replacement must be valid text for this type and format.
    text_like: bool,
    /// Binary format of a non-text type: only NULL is a safe replacement.
    binary_opaque: bool,
}

/// The server side's masking state.
pub struct RowMasking {
    pub ctx: Arc<MaskContext>,
    pub expect: Arc<Expectations<StatementPlan>>,
    tracker: Tracker<StatementPlan>,
    /// Actions of the active result, worked out at its first row and
    /// dropped when the result starts or ends.
    actions: Option<Arc<Vec<Action>>>,
    /// What the masking rules say of a server-reported source column
    /// (catalog generation, table OID, attribute number): rule matching
    /// formats and glob-matches names, so it is done once per column per
    /// session rather than once per result.
    by_source: FastMap<(u64, u32, i16), Option<ColumnMask>>,
    /// The actions of the last result and what they were worked out from:
    /// the next result of the same statement (same plan, RowDescription,
    /// formats, catalog generation and width) reuses them.
    last: Option<LastActions>,
    /// The last actions worked out met a source the catalog snapshot
    /// lacks, and the catalog could not be read again yet (at most every
    /// few seconds: [`crate::masking::Generation::bump_for_unknown`]):
    /// they are not kept for later results, which try again.
    reload_refused: bool,
}

/// See [`RowMasking::last`].
struct LastActions {
    /// Held (not just its address) so that it cannot be freed and another
    /// plan allocated at the same address.
    plan: Arc<StatementPlan>,
    row_description: Option<Arc<Vec<u8>>>,
    formats: Arc<Vec<i16>>,
    generation: u64,
    columns: usize,
    actions: Arc<Vec<Action>>,
}

impl LastActions {
    fn fits(&self, active: &Active<StatementPlan>, generation: u64, columns: usize) -> bool {
        Arc::ptr_eq(&self.plan, &active.plan)
            && self.generation == generation
            && self.columns == columns
            && (Arc::ptr_eq(&self.formats, &active.formats) || self.formats == active.formats)
            && match (&self.row_description, &active.row_description) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                (None, None) => true,
                _ => false,
            }
    }
}

/// Postgres gives objects made after initdb OIDs from here on; system
/// catalogs and `information_schema` (which the snapshot leaves out) are
/// below it.
const FIRST_NORMAL_OID: u32 = 16384;

// The rule id of a column from a relation the catalog snapshot does not
// know.
use crate::masking::UNKNOWN_SOURCE;

fn unknown_source() -> ColumnMask {
    ColumnMask::Mask {
        rule: UNKNOWN_SOURCE.into(),
        strategy: crate::masking::Strategy::Redact,
    }
}

/// Actions that let nothing of `columns` columns pass: NULL is valid for
/// every type and format.
fn hide_all(columns: usize) -> Vec<Action> {
    (0..columns)
        .map(|_| Action {
            mask: unknown_source(),
            text_like: false,
            binary_opaque: true,
        })
        .collect()
}

/// Bound on [`RowMasking::by_source`]; cleared when full.
const BY_SOURCE_MAX: usize = 4096;

impl RowMasking {
    pub fn new(ctx: Arc<MaskContext>, expect: Arc<Expectations<StatementPlan>>) -> Self {
        RowMasking {
            ctx,
            expect,
            tracker: Tracker::default(),
            actions: None,
            by_source: FastMap::default(),
            last: None,
            reload_refused: false,
        }
    }

    /// Handles one server message; returns what to send the client.
    /// Requests answered so far (see [`Tracker::requests_done`]).
    pub fn requests_done(&self) -> u64 {
        self.tracker.requests_done()
    }

    pub fn on_frame(&mut self, frame: &[u8]) -> Result<Verdict, SessionError> {
        let tag = frame[0];
        let body = &frame[5..];
        self.tracker
            .on_message(&self.expect, tag, body)
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        // Actions belong to one result: a new RowDescription or the end of
        // the result means the next rows may be another statement's.
        if !matches!(
            tag,
            backend::DATA_ROW
                | backend::NOTICE_RESPONSE
                | backend::NOTIFICATION_RESPONSE
                | backend::PARAMETER_STATUS
        ) {
            self.actions = None;
        }
        match tag {
            backend::DATA_ROW => self.mask_row(body),
            backend::ERROR_RESPONSE | backend::NOTICE_RESPONSE => Ok(self.scrub_fields(tag, body)),
            backend::NOTIFICATION_RESPONSE => Ok(self.scrub_notification(body)),
            backend::PARAMETER_STATUS => Ok(self.scrub_parameter_status(body)),
            _ => Ok(Verdict::Pass),
        }
    }

    fn mask_row(&mut self, body: &[u8]) -> Result<Verdict, SessionError> {
        if self.tracker.active.is_none() {
            return Ok(Verdict::Pass);
        }
        if self.actions.is_none() {
            self.actions = Some(self.actions_for_result(body)?);
        }
        let Some(actions) = self.actions.clone() else {
            return Ok(Verdict::Pass);
        };
        if actions.iter().all(|a| a.mask == ColumnMask::Clear) {
            return Ok(Verdict::Pass);
        }
        let rules = self.ctx.rules();
        let masker = &rules.masker;
        let detectors = rules.detectors;
        let rewritten = rewrite_data_row(body, |i, value| {
            let Some(a) = actions.get(i) else {
                return Change::Keep;
            };
            match (&a.mask, value) {
                (ColumnMask::Clear, _) | (_, None) => Change::Keep,
                (ColumnMask::Mask { .. }, Some(_)) if a.binary_opaque => Change::Set(None),
                (ColumnMask::Detect, Some(_)) if a.binary_opaque => Change::Keep,
                (mask, Some(v)) => match masker.apply(mask, Some(v), a.text_like, detectors) {
                    Some(std::borrow::Cow::Borrowed(_)) => Change::Keep,
                    Some(std::borrow::Cow::Owned(new)) => Change::Set(Some(new)),
                    None => Change::Set(None),
                },
            }
        })
        .map_err(|e| SessionError::Protocol(e.to_string()))?;
        Ok(match rewritten {
            Some(bytes) => Verdict::Replace(bytes),
            None => Verdict::Pass,
        })
    }

    /// The actions for the active result, from its first row: those of the
    /// last result when it was the same statement's, else worked out anew
    /// from its plan, its RowDescription (when known) and the catalog.
    fn actions_for_result(&mut self, first_row: &[u8]) -> Result<Arc<Vec<Action>>, SessionError> {
        let columns = first_row
            .get(..2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]).max(0) as usize)
            .unwrap_or(0);
        let Some(active) = &self.tracker.active else {
            return Ok(Arc::new(Vec::new()));
        };
        let generation = self.ctx.catalog.load().generation();
        if let Some(last) = self
            .last
            .as_ref()
            .filter(|l| l.fits(active, generation, columns))
        {
            return Ok(Arc::clone(&last.actions));
        }
        let plan = Arc::clone(&active.plan);
        let row_description = active.row_description.clone();
        let formats = Arc::clone(&active.formats);
        self.reload_refused = false;
        let actions = Arc::new(self.actions_for_active(columns)?);
        self.last = (!self.reload_refused).then(|| LastActions {
            plan,
            row_description,
            formats,
            generation,
            columns,
            actions: Arc::clone(&actions),
        });
        Ok(actions)
    }

    fn actions_for_active(&mut self, columns: usize) -> Result<Vec<Action>, SessionError> {
        let Some(active) = &self.tracker.active else {
            return Ok(Vec::new());
        };
        let described: Vec<_> = active
            .row_description
            .as_ref()
            .map(|rd| fields(rd).collect())
            .unwrap_or_default();
        let (plan_cols, open) = match active.plan.as_ref() {
            StatementPlan::Columns(c) => (Some(c), false),
            StatementPlan::OpenColumns(c) => (Some(c), true),
            _ => (None, false),
        };
        if let Some(c) = plan_cols {
            if columns < c.len() {
                // Fewer columns than the analysis found: a table lost a
                // column on the server other than through airlock (a
                // migration), after the snapshot was read. Which planned
                // column is which is lost, so nothing passes: every value
                // is hidden, and the target's sessions read the catalog
                // again. The server side then refuses the result as of a
                // schema that changed while it ran ("run it again"), and
                // the statement run again is planned against the new
                // catalog. (This ended the session, and every later
                // `SELECT *` of the table did, until DDL through airlock.)
                let oid = described
                    .iter()
                    .map(|f| f.table_oid)
                    .find(|&o| o != 0)
                    .unwrap_or(0);
                let moved = self
                    .ctx
                    .generation()
                    .bump_for_unknown(&format!("columns of {oid}"));
                self.reload_refused |= !moved;
                if moved {
                    tracing::info!(
                        table_oid = oid,
                        planned = c.len(),
                        columns,
                        "a result has fewer columns than airlock's catalog snapshot says (a table changed outside airlock?); its values are hidden, and the catalog is read again"
                    );
                }
                return Ok(hide_all(columns));
            }
        }
        if active.row_description.is_none() {
            // No RowDescription of these rows went by (the client side
            // refuses an Execute that nothing described; this is what is
            // left, e.g. a description pushed out of the tracker's few):
            // nothing to check the columns against, so nothing passes.
            // NULL is valid for every type and format.
            return Ok(hide_all(columns));
        }
        let ctx = &self.ctx;
        let catalog = ctx.catalog();
        let mut actions = Vec::with_capacity(columns);
        for i in 0..columns {
            let field = described.get(i);
            let format = match active.formats.len() {
                0 => 0,
                1 => active.formats[0],
                _ => active.formats.get(i).copied().unwrap_or(0),
            };
            let mut mask = match plan_cols.and_then(|c| c.get(i)) {
                Some(m) => m.clone(),
                // A column beyond a closed plan: the analysis never saw
                // it. A computed one holds what airlock cannot know, and
                // its values are hidden (it once went by its name alone;
                // MySQL refuses such a result). A table's column (a table
                // changed behind airlock's back) and one beyond an open
                // plan (a relation whose columns airlock does not know)
                // go by name, and by the source the server names below.
                None if plan_cols.is_some() && !open && field.is_none_or(|f| f.table_oid == 0) => {
                    unknown_source()
                }
                None => field
                    .map(|f| {
                        let name = String::from_utf8_lossy(f.name).to_lowercase();
                        ctx.rules().masker.mask_for_name(&ctx.principal, &name)
                    })
                    .unwrap_or(ColumnMask::Clear),
            };
            // Defense in depth: the column the server says this is.
            if let Some(f) = field.filter(|f| f.table_oid != 0) {
                let key = (catalog.generation(), f.table_oid, f.attnum);
                let by_source = match self.by_source.get(&key) {
                    Some(m) => m.clone(),
                    None => {
                        let mut keep = true;
                        let m = match catalog.column(f.table_oid, f.attnum) {
                            // The table's own rule, else that of a table
                            // it is a partition or inheritance child of.
                            Some((rel, col)) => {
                                let masker = &ctx.rules().masker;
                                let own = masker.mask_for_column(
                                    &ctx.principal,
                                    &rel.schema,
                                    &rel.name,
                                    col,
                                );
                                own.or_else(|| {
                                    catalog.ancestors_of(rel).iter().find_map(|(s, t)| {
                                        masker.mask_for_column(&ctx.principal, s, t, col)
                                    })
                                })
                            }
                            // A user relation (or column) newer than this
                            // session's catalog snapshot, e.g. a view made
                            // in this session over a masked column: what it
                            // holds is unknown, so its values are hidden.
                            // Or a table made again on the server other
                            // than through airlock (a migration's DROP and
                            // CREATE): same name, new OID. Either way the
                            // target's sessions read the catalog again, so
                            // that the statement run again is described by
                            // the new one (its values used to stay hidden
                            // until the next DDL through airlock).
                            None if f.table_oid >= FIRST_NORMAL_OID && f.attnum > 0 => {
                                let key = format!("oid {}", f.table_oid);
                                let moved = ctx.generation().bump_for_unknown(&key);
                                // Not kept: the next result tries again.
                                keep = moved;
                                if moved {
                                    tracing::info!(
                                        table_oid = f.table_oid,
                                        "a result came from a relation airlock's catalog snapshot lacks (made or made again outside airlock?); its values are hidden, and the catalog is read again"
                                    );
                                }
                                Some(unknown_source())
                            }
                            None => None,
                        };
                        if !keep {
                            self.reload_refused = true;
                        } else {
                            if self.by_source.len() >= BY_SOURCE_MAX {
                                self.by_source.clear();
                            }
                            self.by_source.insert(key, m.clone());
                        }
                        m
                    }
                };
                match by_source {
                    // A rule that matched by lineage (or name) stands: it
                    // knows a computed value from a copy, which a source
                    // column (possibly from an outdated description of a
                    // statement since replaced) does not.
                    Some(_) if matches!(mask, ColumnMask::Mask { .. }) => {}
                    Some(m) => mask = m,
                    None => {}
                }
            }
            let text_like = field.is_none_or(|f| types::pg_oid_is_text(f.type_oid));
            actions.push(Action {
                mask,
                text_like,
                binary_opaque: format == 1 && !text_like,
            });
        }
        Ok(actions)
    }

    /// Scrubs the human-readable fields of an ErrorResponse/NoticeResponse.
    fn scrub_fields(&self, tag: u8, body: &[u8]) -> Verdict {
        if self.ctx.rules().detectors.is_empty() {
            return Verdict::Pass;
        }
        let mut changed = false;
        let mut fields_out: Vec<(u8, Vec<u8>)> = Vec::new();
        for (code, value) in backend::error_fields(body) {
            let scrubbed = match code {
                b'M' | b'D' | b'H' | b'W' => {
                    crate::masking::detect::scrub(value, self.ctx.rules().detectors)
                }
                _ => None,
            };
            changed |= scrubbed.is_some();
            fields_out.push((code, scrubbed.unwrap_or_else(|| value.to_vec())));
        }
        if !changed {
            return Verdict::Pass;
        }
        let mut out = BytesMut::new();
        encode(tag, &mut out, |b| {
            for (code, v) in &fields_out {
                b.put_u8(*code);
                b.put_slice(v);
                b.put_u8(0);
            }
            b.put_u8(0);
        });
        Verdict::Replace(out.freeze())
    }

    /// Scrubs a ParameterStatus value (e.g. an application_name someone set
    /// to a value read from a masked column).
    fn scrub_parameter_status(&self, body: &[u8]) -> Verdict {
        if self.ctx.rules().detectors.is_empty() {
            return Verdict::Pass;
        }
        let Some(name_end) = memchr::memchr(0, body) else {
            return Verdict::Pass;
        };
        let value = &body[name_end + 1..];
        let value = value.strip_suffix(&[0]).unwrap_or(value);
        let Some(clean) = crate::masking::detect::scrub(value, self.ctx.rules().detectors) else {
            return Verdict::Pass;
        };
        let mut out = BytesMut::new();
        encode(backend::PARAMETER_STATUS, &mut out, |b| {
            b.put_slice(&body[..=name_end]);
            b.put_slice(&clean);
            b.put_u8(0);
        });
        Verdict::Replace(out.freeze())
    }

    /// Scrubs a NotificationResponse payload.
    fn scrub_notification(&self, body: &[u8]) -> Verdict {
        if self.ctx.rules().detectors.is_empty() || body.len() < 4 {
            return Verdict::Pass;
        }
        let rest = &body[4..];
        let Some(ch_end) = memchr::memchr(0, rest) else {
            return Verdict::Pass;
        };
        let payload = &rest[ch_end + 1..];
        let payload = payload.strip_suffix(&[0]).unwrap_or(payload);
        let Some(clean) = crate::masking::detect::scrub(payload, self.ctx.rules().detectors) else {
            return Verdict::Pass;
        };
        let mut out = BytesMut::new();
        encode(backend::NOTIFICATION_RESPONSE, &mut out, |b| {
            b.put_slice(&body[..4]);
            b.put_slice(&rest[..=ch_end]);
            b.put_slice(&clean);
            b.put_u8(0);
        });
        Verdict::Replace(out.freeze())
    }
}

/// The client side's bookkeeping of statement and portal plans. Each plan
/// is tagged with the catalog generation it was made at
/// ([`MaskContext::loaded_at`]) and kept with the text it was made from, so
/// that a plan made against an older snapshot is made again before use.
#[derive(Default)]
pub struct PlanBook {
    statements: Named<Prepared>,
    portals: Named<Bound>,
    /// The oldest generation a plan with a text was made at (`None`:
    /// none yet). Generations only grow, so while it is the current one
    /// no plan is outdated and Bind and Execute skip the lookups.
    oldest: Option<u64>,
    /// Portals the server may still hold that the book no longer
    /// describes (a Close or Bind it skipped, a Bind airlock refused, see
    /// [`super::book_sync`]): they cannot be read by name.
    gone: Vec<Box<[u8]>>,
    /// More than [`MAX_GONE`] of them: no portal the book does not
    /// describe can be read by name.
    gone_overflow: bool,
    /// The last id handed to a Parse or a Bind (see [`Origin`]).
    last_id: u64,
}

/// Most portal names kept in [`PlanBook::gone`].
const MAX_GONE: usize = 256;

/// An allowed Parse: its plan, the text it was made from (`None`: the
/// statement was not prepared by an allowed Parse, e.g. SQL PREPARE) and
/// the catalog generation it was made at.
#[derive(Clone)]
struct Prepared {
    /// This Parse's id (see [`Origin`]).
    id: u64,
    /// A Describe of the statement went upstream since this Parse.
    described: bool,
    plan: Option<Arc<StatementPlan>>,
    sql: Option<Arc<[u8]>>,
    planned_at: u64,
    /// Its text may read rows by name (see [`crate::masking::by_name`]):
    /// each Execute checks what the names are bound to then.
    by_name: bool,
}

/// Whether a statement planned `plan` from `sql` may read rows by name:
/// only opaque plans can (EXECUTE, FETCH), and only texts that spell the
/// keyword.
fn reads_by_name(plan: Option<&StatementPlan>, sql: &[u8]) -> bool {
    by_name::plans_may_read(plan, sql)
}

/// A bound portal: its statement's name and plan, and Bind's result formats.
/// The name is shared with each Execute's expectation, not copied.
struct Bound {
    /// This Bind's id (see [`Origin`]).
    id: u64,
    /// A Describe of the portal went upstream since this Bind.
    described: bool,
    statement: Arc<[u8]>,
    prepared: Prepared,
    formats: Arc<Vec<i16>>,
}

impl PlanBook {
    /// Notes a plan with a text made at generation `at`.
    fn planned_at(&mut self, at: u64) {
        self.oldest = Some(self.oldest.map_or(at, |o| o.min(at)));
    }

    /// Records an allowed Parse of `sql`, planned at generation `at`.
    pub fn parsed(&mut self, name: &[u8], plan: Option<Arc<StatementPlan>>, sql: &[u8], at: u64) {
        self.last_id += 1;
        let id = self.last_id;
        match self.statements.get_mut(name) {
            Some(p) => {
                p.id = id;
                p.described = false;
                // Clients parse the same text again and again: keep its copy.
                if p.sql.as_deref() != Some(sql) {
                    p.sql = Some(Arc::from(sql));
                }
                p.by_name = reads_by_name(plan.as_deref(), sql);
                p.plan = plan;
                p.planned_at = at;
                self.planned_at(at);
            }
            None => {
                self.planned_at(at);
                let prepared = Prepared {
                    id,
                    described: false,
                    by_name: reads_by_name(plan.as_deref(), sql),
                    plan,
                    sql: Some(Arc::from(sql)),
                    planned_at: at,
                };
                self.statements.insert(name, prepared);
            }
        }
    }

    /// The text of statement `name` when its plan was made at another
    /// generation than `at`: it must be planned again before it is bound.
    pub fn statement_outdated(&self, name: &[u8], at: u64) -> Option<Arc<[u8]>> {
        if self.oldest.is_none_or(|o| o == at) {
            return None;
        }
        let p = self.statements.get(name)?;
        p.sql.clone().filter(|_| p.planned_at != at)
    }

    /// Replaces statement `name`'s plan with one made at generation `at`.
    pub fn statement_replanned(&mut self, name: &[u8], plan: Option<Arc<StatementPlan>>, at: u64) {
        if let Some(p) = self.statements.get_mut(name) {
            p.by_name = p
                .sql
                .as_deref()
                .is_some_and(|sql| reads_by_name(plan.as_deref(), sql));
            p.plan = plan;
            p.planned_at = at;
        }
    }

    /// The text portal `name` was bound from when its plan was made at
    /// another generation than `at`: it must be planned again before it
    /// is executed.
    pub fn portal_outdated(&self, name: &[u8], at: u64) -> Option<Arc<[u8]>> {
        if self.oldest.is_none_or(|o| o == at) {
            return None;
        }
        let b = self.portals.get(name)?;
        b.prepared
            .sql
            .clone()
            .filter(|_| b.prepared.planned_at != at)
    }

    /// Replaces portal `name`'s plan with one made at generation `at`.
    pub fn portal_replanned(&mut self, name: &[u8], plan: Option<Arc<StatementPlan>>, at: u64) {
        if let Some(b) = self.portals.get_mut(name) {
            b.prepared.by_name = b
                .prepared
                .sql
                .as_deref()
                .is_some_and(|sql| reads_by_name(plan.as_deref(), sql));
            b.prepared.plan = plan;
            b.prepared.planned_at = at;
        }
    }

    /// Records a Bind; unknown statements (SQL PREPARE) execute as opaque.
    pub fn bound(&mut self, portal: &[u8], statement: &[u8], formats: FormatCodes<'_>) {
        let prepared = self
            .statements
            .get(statement)
            .cloned()
            .unwrap_or_else(|| Prepared {
                id: 0,
                described: false,
                plan: Some(Arc::new(StatementPlan::Opaque)),
                sql: None,
                planned_at: 0,
                by_name: false,
            });
        self.last_id += 1;
        let id = self.last_id;
        // Clients rebind the same (usually unnamed) portal for every
        // execution: update the entry in place rather than allocate anew.
        if let Some(b) = self.portals.get_mut(portal) {
            b.id = id;
            b.described = false;
            if *b.statement != *statement {
                b.statement = Arc::from(statement);
            }
            b.prepared = prepared;
            if !formats.equals(&b.formats) {
                b.formats = Arc::new(formats.to_vec());
            }
            return;
        }
        self.portals.insert(
            portal,
            Bound {
                id,
                described: false,
                statement: Arc::from(statement),
                prepared,
                formats: Arc::new(formats.to_vec()),
            },
        );
    }

    /// The text statement `name` was parsed from, if an allowed Parse
    /// made it.
    pub fn statement_sql(&self, name: &[u8]) -> Option<Arc<[u8]>> {
        self.statements.get(name)?.sql.clone()
    }

    /// The text portal `name`'s statement was parsed from, likewise.
    /// Whether portal `name`'s plan is DDL.
    pub fn portal_runs_ddl(&self, name: &[u8]) -> bool {
        self.portals
            .get(name)
            .and_then(|b| b.prepared.plan.as_deref())
            .is_some_and(|p| matches!(p, StatementPlan::Ddl))
    }

    pub fn portal_sql(&self, name: &[u8]) -> Option<Arc<[u8]>> {
        self.portals.get(name)?.prepared.sql.clone()
    }

    /// The text of portal `name`'s statement when it may read rows by
    /// name: to be checked at each Execute, against what the names are
    /// bound to then.
    pub fn portal_reads_by_name(&self, name: &[u8]) -> Option<Arc<[u8]>> {
        let b = self.portals.get(name)?;
        b.prepared.sql.clone().filter(|_| b.prepared.by_name)
    }

    /// Portal `name` is no longer described by the book, but the server
    /// may still hold it: forgotten, and not readable by name until the
    /// session is idle ([`Self::forget_gone`]).
    pub fn portal_gone(&mut self, name: &[u8]) {
        self.portals.remove(name);
        if name.is_empty() || self.gone.iter().any(|g| **g == *name) {
            return;
        }
        if self.gone.len() < MAX_GONE {
            self.gone.push(name.into());
        } else {
            self.gone_overflow = true;
        }
    }

    /// Whether [`Self::portal_gone`] noted any portal.
    pub fn has_gone(&self) -> bool {
        !self.gone.is_empty() || self.gone_overflow
    }

    /// The session is idle (no transaction, nothing in flight): the
    /// server holds no portals.
    pub fn forget_gone(&mut self) {
        self.gone.clear();
        self.gone_overflow = false;
    }

    /// Whether reading `read` by name would bypass masking: it names a
    /// statement or portal made through the protocol whose plan masks
    /// columns, or that itself reads by name (see
    /// [`by_name::guards_rows`]), or a portal the server may hold that
    /// the book no longer describes ([`Self::portal_gone`]).
    pub fn guards(&self, read: &ReadByName) -> bool {
        // (A statement that reads by name has an opaque plan: guarded.)
        let guarded = Self::guarded;
        match read {
            ReadByName::Statement(names) => names
                .iter()
                .any(|n| self.statements.get(n.as_bytes()).is_some_and(guarded)),
            ReadByName::Portal(names) => names.iter().any(|n| {
                let n = n.as_bytes();
                match self.portals.get(n) {
                    Some(b) => guarded(&b.prepared),
                    None => self.gone_overflow || self.gone.iter().any(|g| **g == *n),
                }
            }),
        }
    }

    pub fn execute(&self, portal: &[u8]) -> Expect<StatementPlan> {
        match self.portals.get(portal) {
            Some(b) => Expect::Execute {
                plan: b.prepared.plan.clone(),
                statement: Arc::clone(&b.statement),
                formats: Arc::clone(&b.formats),
                origin: Origin {
                    parse: b.prepared.id,
                    bind: b.id,
                },
            },
            None => Expect::Execute {
                plan: Some(Arc::new(StatementPlan::Opaque)),
                statement: Arc::from(&b""[..]),
                formats: Arc::new(Vec::new()),
                origin: Origin::default(),
            },
        }
    }

    /// A Describe of statement `name` goes upstream: the id of the Parse
    /// it describes (0: not one the book knows).
    pub fn describe_statement(&mut self, name: &[u8]) -> u64 {
        match self.statements.get_mut(name) {
            Some(p) => {
                p.described = true;
                p.id
            }
            None => 0,
        }
    }

    /// A Describe of portal `name` goes upstream: its expectation, with
    /// the ids of the Bind it describes and of the Parse its statement
    /// came from (0: not one the book knows). The statement counts as
    /// described too, while it still holds that Parse: every portal bound
    /// from it returns the same columns.
    pub fn describe_portal(&mut self, name: &[u8]) -> Expect<StatementPlan> {
        let Some(b) = self.portals.get_mut(name) else {
            return Expect::DescribePortal {
                bind: 0,
                parse: 0,
                statement: None,
            };
        };
        b.described = true;
        let parse = b.prepared.id;
        let same_parse = match self.statements.get_mut(&b.statement) {
            Some(p) if p.id == parse && parse != 0 => {
                p.described = true;
                true
            }
            _ => false,
        };
        Expect::DescribePortal {
            bind: b.id,
            parse: if same_parse { parse } else { 0 },
            statement: same_parse.then(|| Arc::clone(&b.statement)),
        }
    }

    /// Whether an Execute of portal `name` returns rows the client has not
    /// had described (neither the portal since its Bind nor its statement
    /// since that Parse): airlock would see no RowDescription of them,
    /// which masking checks each column against (the relation the server
    /// says it comes from, a relation newer than the catalog snapshot).
    pub fn undescribed_rows(&self, name: &[u8]) -> bool {
        let Some(b) = self.portals.get(name) else {
            return false;
        };
        let rows = matches!(
            b.prepared.plan.as_deref(),
            Some(StatementPlan::Columns(_) | StatementPlan::OpenColumns(_) | StatementPlan::Opaque)
        );
        let statement_described = || {
            b.prepared.described
                || self
                    .statements
                    .get(&b.statement)
                    .is_some_and(|p| p.id == b.prepared.id && p.described)
        };
        rows && !b.described && !statement_described()
    }

    pub fn closed_statement(&mut self, name: &[u8]) {
        self.statements.remove(name);
    }

    /// `DEALLOCATE ALL` / `DISCARD ALL`: no statement the book knows is
    /// left on the server.
    pub fn closed_all_statements(&mut self) {
        self.statements = Named::default();
    }

    /// The transaction ended: the server holds no portal any more. The
    /// named ones are forgotten (the unnamed one's entry is reused by the
    /// next Bind), and so are the names of those it no longer described.
    pub fn transaction_ended(&mut self) {
        self.portals.clear_named();
        self.gone = Vec::new();
        self.gone_overflow = false;
    }

    /// `CLOSE ALL`: no portal the book knows is left on the server.
    pub fn closed_all_portals(&mut self) {
        self.portals = Named::default();
    }

    pub fn closed_portal(&mut self, name: &[u8]) {
        self.portals.remove(name);
    }

    /// A SQL statement closes portal `name` if the server carries it out:
    /// one that reads masked data is [`Self::portal_gone`] (not readable
    /// by name until the session is idle), others are forgotten.
    pub fn portal_closed_by_sql(&mut self, name: &[u8]) {
        match self.portals.get(name) {
            Some(b) if Self::guarded(&b.prepared) => self.portal_gone(name),
            _ => self.closed_portal(name),
        }
    }

    /// [`Self::portal_closed_by_sql`] for every portal.
    pub fn all_portals_closed_by_sql(&mut self) {
        let guarded: Vec<Box<[u8]>> = self
            .portals
            .names()
            .filter(|n| {
                self.portals
                    .get(n)
                    .is_some_and(|b| Self::guarded(&b.prepared))
            })
            .map(Box::from)
            .collect();
        for name in guarded {
            self.portal_gone(&name);
        }
        self.closed_all_portals();
    }

    /// Whether rows of a statement with this plan must not be read by
    /// name (see [`Self::guards`]).
    fn guarded(p: &Prepared) -> bool {
        p.plan.as_deref().is_some_and(by_name::guards_rows)
    }
}

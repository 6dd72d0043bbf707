//! Masking on the MySQL wire (text protocol).
//!
//! * COM_QUERY text is planned with [`Masker::plan`]; a `Block` plan refuses
//!   the statement. Each result (OK or result set) of the reply consumes the
//!   next statement's plan; results beyond the plans are opaque.
//! * Each result set's column definitions are parsed; a column's mask comes
//!   from the plan (or [`Masker::mask_for_name`] for opaque and extra
//!   columns), and [`Masker::mask_for_column`] on the definition's
//!   `schema.org_table.org_name` overrides an unmasked verdict (source
//!   attribution, defense in depth).
//! * Text rows of a result with a masked column are rewritten; rows that do
//!   not change are forwarded as received.
//! * ERR messages are scrubbed by the principal's value detectors.
//! * Server-side prepared statements (binary rows) whose plan or columns
//!   need masking are refused at COM_STMT_PREPARE.

use std::sync::Arc;

use bytes::BytesMut;

use airlock_protocol::mysql::frame::MAX_PAYLOAD;
use airlock_protocol::mysql::packets;
use airlock_protocol::mysql::wire::{self, Reader};

use crate::masking::{detect, types, ColumnMask, DetectorSet, Masker, NoCatalog, StatementPlan};
use crate::policy::{Dialect, Principal, SessionContext};

/// What a session needs to mask.
pub struct MyMask {
    pub masker: Arc<Masker>,
    pub principal: Principal,
    pub detectors: DetectorSet,
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

impl MyMask {
    /// Plans a statement text; `Err` is the refusal message.
    pub fn plan(&self, sql: &[u8], ctx: &SessionContext) -> Result<Vec<StatementPlan>, String> {
        let Ok(sql) = std::str::from_utf8(sql) else {
            return Err(
                "airlock: blocked by rule builtin.unparseable: statement is not valid UTF-8".into(),
            );
        };
        let plans = self
            .masker
            .plan(&self.principal, Dialect::MySql, sql, ctx, &NoCatalog);
        for p in &plans {
            if let StatementPlan::Block { rule, message } = p {
                return Err(format!("airlock: blocked by rule {rule}: {message}"));
            }
        }
        Ok(plans)
    }

    /// Whether a prepared statement with these plans would need masking
    /// (its binary rows cannot be masked yet).
    pub fn prepared_needs_masking(&self, plans: &[StatementPlan]) -> bool {
        plans.iter().any(|p| match p {
            StatementPlan::NoResult => false,
            StatementPlan::Columns(c) => c.iter().any(|m| *m != ColumnMask::Clear),
            StatementPlan::Opaque | StatementPlan::Block { .. } => true,
        })
    }

    /// The source-attributed mask of a column definition, if any.
    pub fn source_mask(&self, c: &ColumnDef) -> Option<ColumnMask> {
        if c.org_table.is_empty() || c.org_name.is_empty() {
            return None;
        }
        self.masker
            .mask_for_column(&self.principal, &c.schema, &c.org_table, &c.org_name)
    }

    /// The actions for one result set.
    pub fn actions(
        &self,
        plan: Option<&StatementPlan>,
        cols: &[ColumnDef],
    ) -> Result<Vec<Action>, String> {
        let planned = match plan {
            Some(StatementPlan::Columns(c)) => {
                if cols.len() < c.len() {
                    return Err(
                        "airlock: the result does not match the masking analysis; refusing to pass it"
                            .into(),
                    );
                }
                Some(c)
            }
            _ => None,
        };
        Ok(cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut mask = planned
                    .and_then(|p| p.get(i).cloned())
                    .unwrap_or_else(|| self.masker.mask_for_name(&self.principal, &c.name));
                if !matches!(mask, ColumnMask::Mask { .. }) {
                    if let Some(m) = self.source_mask(c) {
                        mask = m;
                    }
                }
                Action {
                    mask,
                    text_like: types::mysql_type_is_text(c.type_code, c.charset),
                }
            })
            .collect())
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

    /// A scrubbed ERR payload, when the message held something detectable.
    pub fn scrub_err(&self, payload: &[u8]) -> Option<Vec<u8>> {
        if self.detectors.is_empty() {
            return None;
        }
        let (code, state, message) = packets::parse_err(payload)?;
        let clean = detect::scrub(message.as_bytes(), self.detectors)?;
        let state = if state.is_empty() { "HY000" } else { &state };
        let mut p = BytesMut::new();
        packets::err(&mut p, code, state, &String::from_utf8_lossy(&clean));
        Some(p.to_vec())
    }
}

//! Reading the store: filtered queries for `airlock log` and a session's
//! records for `airlock replay`. Read-only connections.

use std::path::Path;

use rusqlite::types::Value;

use super::store::{from_row, open_ro, COLUMNS};
use super::{AuditError, AuditRecord};

/// Which records to show. Empty filter: everything (up to `limit`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only what was refused or held: decisions `block`, `approval` and
    /// (observe mode) `would_block`, and failed logins.
    pub blocked: bool,
    pub identity: Option<String>,
    /// The person the agent acts for (the identity's `user`).
    pub user: Option<String>,
    /// Matches the configured or the declared model.
    pub model: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    pub session: Option<u64>,
    pub rule: Option<String>,
    /// The most recent `limit` matching records (still shown oldest first).
    pub limit: Option<usize>,
}

/// Records matching `filter`, oldest first.
pub fn query(path: &Path, filter: &Filter) -> Result<Vec<AuditRecord>, AuditError> {
    let conn = open_ro(path)?;
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if filter.blocked {
        clauses.push("(decision IN ('block', 'approval', 'would_block') OR kind = 'auth_failed')");
    }
    if let Some(identity) = &filter.identity {
        clauses.push("identity = ?");
        args.push(Value::Text(identity.clone()));
    }
    if let Some(user) = &filter.user {
        clauses.push("user = ?");
        args.push(Value::Text(user.clone()));
    }
    if let Some(model) = &filter.model {
        // A model the client declared counts only where the identity has
        // none configured: it cannot put an identity's records under
        // another's model (red-team finding).
        clauses.push("(model = ? OR (model IS NULL AND declared_model = ?))");
        args.push(Value::Text(model.clone()));
        args.push(Value::Text(model.clone()));
    }
    if let Some(since) = filter.since {
        clauses.push("time_ms >= ?");
        args.push(Value::Integer(since));
    }
    if let Some(session) = filter.session {
        clauses.push("session = ?");
        args.push(Value::Integer(session as i64));
    }
    if let Some(rule) = &filter.rule {
        // A rule's id, or a policy's: `demo-agent` also finds the rules
        // it holds (`demo-agent.deny-columns`, `demo-agent.orders-write`).
        clauses.push("(rule = ? OR substr(rule, 1, ?) = ?)");
        args.push(Value::Text(rule.clone()));
        args.push(Value::Integer(rule.chars().count() as i64 + 1));
        args.push(Value::Text(format!("{rule}.")));
    }
    let mut sql = format!("SELECT {COLUMNS} FROM audit");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY seq DESC");
    if let Some(limit) = filter.limit {
        sql.push_str(" LIMIT ?");
        args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    }
    let mut stmt = conn.prepare(&sql)?;
    let mut out = stmt
        .query_map(rusqlite::params_from_iter(args), from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    out.reverse();
    Ok(out)
}

/// Every record of one session, in order.
pub fn session_records(path: &Path, session: u64) -> Result<Vec<AuditRecord>, AuditError> {
    query(
        path,
        &Filter {
            session: Some(session),
            ..Filter::default()
        },
    )
}

//! The JSON API handlers, plus `/healthz` and `/metrics`.
//!
//! Errors are `{"error": "..."}` with a fitting status. Request bodies are
//! JSON objects (an empty body means `{}`), whatever the content type.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AdminState;
use crate::approvals::ApprovalError;
use crate::audit::Filter;

/// Records `/api/audit` returns when no `limit` is given.
const DEFAULT_AUDIT_LIMIT: usize = 500;
/// Most records one `/api/audit` response holds, whatever `limit` asks
/// (each with at most `API_STATEMENT` bytes of statement):
/// one request must not build a response of gigabytes (DoS finding).
const MAX_AUDIT_LIMIT: usize = 1000;
/// Bytes of each statement an `/api/audit` response holds: enough for a
/// reviewer's screen; `airlock log --json` and the JSON lines have the
/// whole stored text.
const API_STATEMENT: usize = 8 * 1024;

/// An error response.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// `GET /healthz`: the process answers (liveness).
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: whether airlock serves statements now (readiness): 503
/// with the reason while it is shutting down, or while a fail-closed
/// audit log cannot record and statements are refused (operator finding:
/// `/healthz` said `ok` then, and only a metric told).
pub async fn readyz(State(st): State<AdminState>) -> Response {
    let p = &st.proxy;
    let not_ready = if *p.shutdown.borrow() {
        Some("shutting down")
    } else if p.audit_fail_closed && p.audit.as_ref().is_some_and(|a| !a.is_healthy()) {
        // (`audit_fail_closed` as sessions use it: read at start; review
        // finding: a reloaded file's value, which applies only after a
        // restart, answered otherwise than sessions behave.)
        Some("the audit log cannot record (fail_closed): statements are refused")
    } else {
        None
    };
    match not_ready {
        None => "ready\n".into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

pub async fn metrics(State(st): State<AdminState>) -> Response {
    let p = &st.proxy;
    let gauges = crate::metrics::Gauges {
        audit_queue_depth: p.audit.as_ref().map(|a| a.queue_depth()),
        audit_healthy: p.audit.as_ref().map(|a| a.is_healthy()),
        approvals_pending: p.approvals.pending_count(),
        sessions_active: p.live.count(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(gauges),
    )
        .into_response()
}

/// The filters of `airlock log`, as query parameters.
#[derive(Debug, Default, Deserialize)]
pub struct AuditParams {
    blocked: Option<String>,
    identity: Option<String>,
    /// The person the agent acts for.
    user: Option<String>,
    model: Option<String>,
    /// A duration ("1h", "30m") back from now.
    since: Option<String>,
    session: Option<String>,
    rule: Option<String>,
    limit: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl AuditParams {
    fn filter(self) -> Result<Filter, String> {
        let blocked = match non_empty(self.blocked).as_deref() {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(other) => return Err(format!("blocked={other:?}: expected true or false")),
        };
        let since = match non_empty(self.since) {
            Some(s) => {
                let d = humantime::parse_duration(&s)
                    .map_err(|e| format!("since={s:?}: {e} (write e.g. 1h, 30m, 2d)"))?;
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                Some(crate::audit::now_ms().saturating_sub(ms))
            }
            None => None,
        };
        let session = match non_empty(self.session) {
            Some(s) => Some(
                s.trim_start_matches('s')
                    .parse::<u64>()
                    .map_err(|_| format!("session={s:?}: expected a session number"))?,
            ),
            None => None,
        };
        let limit = match non_empty(self.limit) {
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| format!("limit={s:?}: expected a number"))?
                .min(MAX_AUDIT_LIMIT),
            None => DEFAULT_AUDIT_LIMIT,
        };
        Ok(Filter {
            blocked,
            identity: non_empty(self.identity),
            user: non_empty(self.user),
            model: non_empty(self.model),
            since,
            session,
            rule: non_empty(self.rule),
            limit: Some(limit),
        })
    }
}

/// `GET /api/audit`: matching records, oldest first, as a JSON array of
/// the objects `airlock log --json` prints.
pub async fn audit(State(st): State<AdminState>, Query(params): Query<AuditParams>) -> Response {
    let filter = match params.filter() {
        Ok(f) => f,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let Some(path) = st.proxy.config().audit.as_ref().map(|a| a.path.clone()) else {
        return error(
            StatusCode::NOT_FOUND,
            "no audit log configured ([audit] path)",
        );
    };
    let result = tokio::task::spawn_blocking(move || crate::audit::query(&path, &filter)).await;
    match result {
        Ok(Ok(mut records)) => {
            for r in &mut records {
                if let Some(s) = r
                    .event
                    .statement
                    .as_deref()
                    .filter(|s| s.len() > API_STATEMENT)
                {
                    let mut at = API_STATEMENT;
                    while !s.is_char_boundary(at) {
                        at -= 1;
                    }
                    let cut = format!(
                        "{}… [{} bytes in the log: airlock log --json]",
                        &s[..at],
                        s.len()
                    );
                    r.event.statement = Some(cut.into());
                }
            }
            let body: Vec<String> = records
                .iter()
                .map(crate::audit::format::record_json)
                .collect();
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!("[{}]", body.join(",")),
            )
                .into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /api/approvals`: the pending requests, oldest first.
pub async fn approvals(State(st): State<AdminState>) -> Response {
    Json(st.proxy.approvals.list()).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// An approval window, e.g. "10m".
    #[serde(rename = "for")]
    window: Option<String>,
    /// Who decides (shown to the client and audited).
    by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    reason: Option<String>,
    by: Option<String>,
}

fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &Bytes) -> Result<T, Box<Response>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {e}"),
        ))
    })
}

fn reviewer(by: Option<String>) -> String {
    non_empty(by).unwrap_or_else(|| "admin".into())
}

fn decision_error(e: ApprovalError) -> Response {
    let status = match e {
        ApprovalError::NotFound(_) => StatusCode::NOT_FOUND,
        ApprovalError::WindowTooLong(_) | ApprovalError::NoReason => StatusCode::BAD_REQUEST,
    };
    error(status, &e.to_string())
}

/// `POST /api/approvals/{id}/approve` with `{"for": "10m", "by": "alice"}`
/// (both optional).
pub async fn approve(State(st): State<AdminState>, Path(id): Path<u64>, bytes: Bytes) -> Response {
    let b: ApproveBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let window = match non_empty(b.window) {
        Some(w) => match humantime::parse_duration(&w) {
            Ok(d) => Some(d),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("for={w:?}: {e} (write e.g. 10m)"),
                )
            }
        },
        None => None,
    };
    let by = reviewer(b.by);
    match st.proxy.approvals.approve(id, &by, window) {
        Ok(info) => {
            tracing::info!(request = id, by = %by, window = ?window.map(fmt_duration), rule = %info.rule, "approval granted");
            Json(json!({
                "approved": info,
                "by": by,
                "for": window.map(fmt_duration),
            }))
            .into_response()
        }
        Err(e) => decision_error(e),
    }
}

/// `POST /api/approvals/{id}/deny` with `{"reason": "...", "by": "alice"}`.
pub async fn deny(State(st): State<AdminState>, Path(id): Path<u64>, bytes: Bytes) -> Response {
    let b: DenyBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let by = reviewer(b.by);
    let reason = b.reason.unwrap_or_default();
    match st.proxy.approvals.deny(id, &by, &reason) {
        Ok(info) => {
            tracing::info!(request = id, by = %by, reason = %reason, rule = %info.rule, "approval denied");
            Json(json!({ "denied": info, "by": by, "reason": reason.trim() })).into_response()
        }
        Err(e) => decision_error(e),
    }
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `GET /api/sessions`: live sessions, oldest first.
pub async fn sessions(State(st): State<AdminState>) -> Response {
    Json(st.proxy.live.list()).into_response()
}

/// `POST /api/sessions/{id}/terminate`: ends the session (its client gets
/// a FATAL error).
pub async fn terminate(State(st): State<AdminState>, Path(id): Path<u64>) -> Response {
    match st.proxy.live.terminate(id) {
        Some(info) => {
            tracing::warn!(session = id, identity = %info.identity, "session terminated by an administrator");
            Json(json!({ "terminated": info })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, &format!("no live session {id}")),
    }
}

fn rules_json(st: &AdminState) -> Value {
    let (version, loaded_ms) = st.proxy.version();
    let config = st.proxy.config();
    // The last reload tried: a rejected one means the files say one
    // thing and the rules in force another (operator finding: it showed
    // only on airlock's stderr).
    let last_reload = st.proxy.last_reload().map(|r| {
        json!({
            "at": crate::audit::rfc3339(r.at_ms),
            "applied": r.error.is_none(),
            "error": r.error,
        })
    });
    json!({
        "version": version,
        "loaded_at": crate::audit::rfc3339(loaded_ms),
        "config": config.source.display().to_string(),
        "rules": config.policy.rules.as_ref().map(|r| r.get_ref().display().to_string()),
        "last_reload": last_reload,
        // Until the process restarts (operator finding: only the reload's
        // own answer said so, and a dashboard polling GET never saw it).
        "restart_required": st.proxy.restart_required(),
    })
}

/// `GET /api/rules`: the version of the config and rules in force.
pub async fn rules(State(st): State<AdminState>) -> Response {
    Json(rules_json(&st)).into_response()
}

/// `POST /api/rules/reload`: re-reads the config and rules; on error the
/// running version stays and the error is returned.
pub async fn reload(State(st): State<AdminState>) -> Response {
    let proxy = std::sync::Arc::clone(&st.proxy);
    match tokio::task::spawn_blocking(move || proxy.reload()).await {
        Ok(Ok(_pending)) => Json(rules_json(&st)).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reload requested through the admin API failed; keeping the running rules");
            error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

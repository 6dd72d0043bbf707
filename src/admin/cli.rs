//! `airlock approvals`, `airlock approve ID [--for 10m]` and `airlock deny
//! ID --reason ...`: the admin API of a running airlock, from a terminal.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::client::{request, HttpResponse};

/// Where the admin API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Admin {
    /// e.g. `http://127.0.0.1:9187`.
    pub url: String,
    pub token: Option<String>,
}

impl Admin {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<HttpResponse> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let token = self.token.as_deref().filter(|t| !t.is_empty());
        let resp = rt
            .block_on(request(method, &self.url, path, token, body.as_ref()))
            .with_context(|| format!("admin API at {}", self.url))?;
        if resp.is_success() {
            return Ok(resp);
        }
        let message = resp
            .json()
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| resp.text());
        match resp.status {
            401 if token.is_none() => {
                bail!("the admin API wants a token: set AIRLOCK_ADMIN_TOKEN ({message})")
            }
            401 => bail!("the admin API refused the token in AIRLOCK_ADMIN_TOKEN ({message})"),
            status => bail!("{message} (HTTP {status})"),
        }
    }
}

/// `airlock approvals`: the pending requests.
pub fn list(admin: &Admin, json_out: bool) -> anyhow::Result<()> {
    let resp = admin.call("GET", "/api/approvals", None)?;
    let items = resp.json();
    let items = items.as_array().cloned().unwrap_or_default();
    if json_out {
        for i in &items {
            println!("{i}");
        }
        return Ok(());
    }
    print!("{}", format_pending(&items));
    Ok(())
}

/// The pending requests as text, one block each.
pub fn format_pending(items: &[Value]) -> String {
    if items.is_empty() {
        return "no pending approval requests\n".into();
    }
    // Every field written by a client (identity, user, model, statement)
    // with control and bidi characters escaped: a terminal must not be
    // made to draw a fake request or reorder what it shows.
    let s = |v: &Value, k: &str| {
        crate::audit::format::printable(v.get(k).and_then(Value::as_str).unwrap_or("-"))
    };
    let mut out = String::new();
    for i in items {
        let id = i.get("id").and_then(Value::as_u64).unwrap_or(0);
        let session = i.get("session").and_then(Value::as_u64).unwrap_or(0);
        let _ = writeln!(
            out,
            "#{id}  {}  session s{session}  identity {}  user {}  model {}  target {}",
            s(i, "requested_at"),
            s(i, "identity"),
            s(i, "user"),
            s(i, "model"),
            s(i, "target"),
        );
        let _ = writeln!(out, "    rule {}: {}", s(i, "rule"), s(i, "message"));
        // What runs, as airlock parsed it, before the text the agent wrote
        // (which can be made to read otherwise, or padded to push the rest
        // out of sight).
        let _ = writeln!(
            out,
            "    runs (as parsed; numbers as ?, strings as '?'): {}",
            s(i, "parsed")
        );
        let _ = writeln!(out, "    text: {}", statement_lines(i));
    }
    out
}

/// `airlock approve ID [--for 10m]`.
pub fn approve(admin: &Admin, id: u64, window: Option<&str>, by: &str) -> anyhow::Result<()> {
    if let Some(w) = window {
        humantime::parse_duration(w).map_err(|e| anyhow::anyhow!("--for {w:?}: {e}"))?;
    }
    let body = json!({ "for": window, "by": by });
    let resp = admin.call("POST", &format!("/api/approvals/{id}/approve"), Some(body))?;
    let v = resp.json();
    let rule = v["approved"]["rule"].as_str().unwrap_or("-");
    let identity = v["approved"]["identity"].as_str().unwrap_or("-");
    match window {
        Some(w) => println!(
            "approved request {id} ({rule}, identity {identity}); the same statement from {identity} passes without asking for {w}"
        ),
        None => println!("approved request {id} ({rule}, identity {identity})"),
    }
    Ok(())
}

/// `airlock deny ID --reason ...`.
pub fn deny(admin: &Admin, id: u64, reason: &str, by: &str) -> anyhow::Result<()> {
    if reason.trim().is_empty() {
        bail!("--reason must not be empty: the agent is told why");
    }
    let body = json!({ "reason": reason, "by": by });
    let resp = admin.call("POST", &format!("/api/approvals/{id}/deny"), Some(body))?;
    let v = resp.json();
    let rule = v["denied"]["rule"].as_str().unwrap_or("-");
    println!("denied request {id} ({rule}): {}", reason.trim());
    Ok(())
}

/// The agent wrote the statement: escape control characters (carriage
/// returns, ANSI escapes) so that a terminal shows what would run, not
/// what the agent wants a reviewer to see. Newlines are kept.
/// A request's statement, its lines indented, each escaped as
/// [`crate::audit::format::printable`] does.
fn statement_lines(item: &Value) -> String {
    let text = item.get("statement").and_then(Value::as_str).unwrap_or("-");
    text.split('\n')
        .map(crate::audit::format::printable)
        .collect::<Vec<_>>()
        .join("\n          ")
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn control_characters_cannot_hide_the_statement() {
        let item = serde_json::json!({
            "statement": "DELETE FROM orders /*\r\x1b[2K SELECT 1 */ -- \u{202e}1 = di",
            "identity": "agent\r\x1b]0;title\x07#9",
        });
        let shown = super::format_pending(&[item]);
        for hidden in ['\r', '\x1b', '\x07', '\u{202e}'] {
            assert!(!shown.contains(hidden), "{shown}");
        }
        assert!(shown.contains("DELETE FROM orders"), "{shown}");
        let two = serde_json::json!({"statement": "a\nb"});
        assert!(super::format_pending(&[two]).contains("    text: a\n          b"));
        let parsed = serde_json::json!({"statement": "x", "parsed": "UPDATE t SET a = ?\r"});
        assert!(super::format_pending(&[parsed]).contains(
            "    runs (as parsed; numbers as ?, strings as '?'): UPDATE t SET a = ?\\u{d}\n    text: x"
        ));
    }
}

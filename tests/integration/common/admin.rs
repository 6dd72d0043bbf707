//! Test helpers for the admin listener: config snippets, an API client
//! with the bearer token.
#![allow(dead_code)]

use std::path::Path;

use airlock::admin::client::{request, HttpResponse};
use serde_json::Value;

use super::wait_for;

pub const TOKEN: &str = "test-admin-token-0123456789";

/// `[admin]` on a free loopback port with a token file in `dir`, the
/// approval timeout, and an audit store at `dir/audit.db`.
pub fn admin_toml(dir: &Path, timeout: &str) -> String {
    let token = dir.join("admin.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n\n[approvals]\ntimeout = \"{timeout}\"\n\n[audit]\npath = \"{}\"\n",
        token.display(),
        dir.join("audit.db").display()
    )
}

/// The admin API of a running airlock.
pub struct AdminApi {
    pub url: String,
    pub token: Option<String>,
}

impl AdminApi {
    pub fn new(addr: std::net::SocketAddr) -> AdminApi {
        AdminApi {
            url: format!("http://{addr}"),
            token: Some(TOKEN.into()),
        }
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        request("GET", &self.url, path, self.token.as_deref(), None)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn post(&self, path: &str, body: Value) -> HttpResponse {
        request("POST", &self.url, path, self.token.as_deref(), Some(&body))
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// The pending approval requests.
    pub async fn pending(&self) -> Vec<Value> {
        let r = self.get("/api/approvals").await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().as_array().cloned().unwrap_or_default()
    }

    /// Waits until a request from `identity` is pending, and returns it.
    pub async fn wait_pending(&self, identity: &str) -> Value {
        wait_for(&format!("a pending approval from {identity}"), || async {
            self.pending()
                .await
                .into_iter()
                .find(|p| p["identity"] == identity)
        })
        .await
    }

    /// Audit records matching the query string (e.g. "identity=agent").
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/audit?{query}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().as_array().cloned().unwrap_or_default()
    }

    /// Waits until an audit record matching the query has `reason`
    /// containing `needle`.
    pub async fn wait_audit_reason(&self, query: &str, needle: &str) -> Value {
        wait_for(&format!("an audit record with {needle:?}"), || async {
            self.audit(query).await.into_iter().find(|r| {
                r["reason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains(needle))
            })
        })
        .await
    }
}

//! A MySQL/MariaDB target's links for the policy
//! ([`crate::policy::foreign_keys`]): foreign keys and views' base tables,
//! read over a connection of airlock's own as the target's configured
//! user (see [`crate::foreign_keys`], which shares them). With ephemeral
//! credentials that is the broker, which sees every table's keys; a
//! session's own user would see only those of the tables it may use,
//! while a key acts on tables whatever the writer may use (red-team
//! finding: a template role granted only `customers` saw no keys, and a
//! DELETE cascaded into a denied table).
//!
//! MariaDB keeps no list of a view's tables: its definition (which
//! `information_schema.VIEWS` shows with every name qualified) is parsed.
//! A view whose definition the user may not see, or that does not parse,
//! is kept as opaque: writes through it are refused.

use std::sync::Arc;
use std::time::Duration;

use super::error::MyError;
use crate::config::Target;
use crate::credentials::mysql::wire;
use crate::policy::foreign_keys::{view_links, Action, ForeignKeys, Link, LinkRow};
use crate::policy::Dialect;

/// Every foreign key: the referenced table, the referencing one, and what
/// a delete and an update of a referenced row do to the referencing rows.
pub const KEYS: &str = "SELECT UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME, \
    CONSTRAINT_SCHEMA, TABLE_NAME, DELETE_RULE, UPDATE_RULE \
    FROM information_schema.REFERENTIAL_CONSTRAINTS";

/// Every view that may be written through, with its definition.
pub const VIEWS: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION \
    FROM information_schema.VIEWS \
    WHERE TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema')";

/// Loads the target's links, as of catalog generation `at`.
pub async fn load(
    target: &Target,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    at: u64,
) -> Result<ForeignKeys, MyError> {
    let work = async {
        let mut conn = wire::connect(target, timeout, tls).await?;
        let keys = conn.query(KEYS).await?;
        let views = conn.query(VIEWS).await?;
        conn.quit().await;
        for reply in [&keys, &views] {
            if let Some((code, message)) = &reply.error {
                return Err(MyError::Upstream(format!(
                    "airlock could not read the foreign keys (information_schema): {code} {message}"
                )));
            }
        }
        let mut rows: Vec<LinkRow> = keys
            .rows
            .iter()
            .filter_map(|r| match r.as_slice() {
                [Some(ps), Some(p), Some(cs), Some(c), Some(del), Some(upd)] => Some(LinkRow {
                    from: (ps.clone(), p.clone()),
                    to: (cs.clone(), c.clone()),
                    link: Link::Key {
                        on_delete: Action::from_mysql(del),
                        on_update: Action::from_mysql(upd),
                    },
                }),
                _ => None,
            })
            .collect();
        let mut opaque = Vec::new();
        for r in &views.rows {
            let [Some(schema), Some(name), definition] = r.as_slice() else {
                continue;
            };
            let definition = definition.as_deref().unwrap_or("");
            match view_links(Dialect::MySql, schema, name, definition) {
                Some(links) => rows.extend(links),
                None => opaque.push((schema.clone(), name.clone())),
            }
        }
        Ok(ForeignKeys::new(at, rows, opaque))
    };
    match crate::timer_thread::timeout(timeout.saturating_mul(2), work).await {
        Ok(r) => r,
        Err(_) => Err(MyError::Upstream(
            "airlock timed out reading the foreign keys (information_schema)".into(),
        )),
    }
}

//! A Postgres target's links for the policy
//! ([`crate::policy::foreign_keys`]): foreign keys, views' base tables,
//! and partitions and inheritance children, read over a connection of
//! airlock's own (see [`crate::foreign_keys`], which shares them).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use airlock_protocol::pg::backend;

use super::catalog::text_fields;
use super::conn::Conn;
use super::error::SessionError;
use super::upstream;
use crate::config::Target;
use crate::policy::foreign_keys::{Action, ForeignKeys, Link, LinkRow};

/// Every link, as (from schema, from name, to schema, to name, kind,
/// delete action, update action):
/// - `k`: a foreign key of `to` referencing `from` (partitions' own
///   copies of a partitioned table's keys are listed too);
/// - `v`: `from` is a view over `to` (its rewrite rule depends on it);
/// - `r`: a rule on `from` (`ON INSERT|UPDATE|DELETE ... DO ...`, a DBA's)
///   names `to`;
/// - `p`: `to` is a partition of `from`; `i`: an inheritance child.
///
/// Every name, operator and cast is qualified with `pg_catalog`: the first
/// load may run on a session's own connection, whose search_path its
/// agent may have filled with look-alikes.
pub const QUERY: &str = "SELECT pn.nspname, p.relname, cn.nspname, c.relname, 'k', \
    k.confdeltype::pg_catalog.text, k.confupdtype::pg_catalog.text \
    FROM pg_catalog.pg_constraint k \
    JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) k.confrelid \
    JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) p.relnamespace \
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) k.conrelid \
    JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) c.relnamespace \
    WHERE k.contype OPERATOR(pg_catalog.=) 'f'::pg_catalog.\"char\" \
    UNION \
    SELECT vn.nspname, v.relname, tn.nspname, t.relname, 'v', NULL, NULL \
    FROM pg_catalog.pg_rewrite r \
    JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) r.ev_class \
    JOIN pg_catalog.pg_namespace vn ON vn.oid OPERATOR(pg_catalog.=) v.relnamespace \
    JOIN pg_catalog.pg_depend d \
      ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
      AND d.objid OPERATOR(pg_catalog.=) r.oid \
      AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
    JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) d.refobjid \
    JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.relnamespace \
    WHERE v.relkind OPERATOR(pg_catalog.=) 'v'::pg_catalog.\"char\" \
      AND r.ev_type OPERATOR(pg_catalog.=) '1'::pg_catalog.\"char\" \
      AND t.oid OPERATOR(pg_catalog.<>) v.oid \
    UNION \
    SELECT vn.nspname, v.relname, tn.nspname, t.relname, 'r', NULL, NULL \
    FROM pg_catalog.pg_rewrite r \
    JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) r.ev_class \
    JOIN pg_catalog.pg_namespace vn ON vn.oid OPERATOR(pg_catalog.=) v.relnamespace \
    JOIN pg_catalog.pg_depend d \
      ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
      AND d.objid OPERATOR(pg_catalog.=) r.oid \
      AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
    JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) d.refobjid \
    JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.relnamespace \
    WHERE r.ev_type OPERATOR(pg_catalog.<>) '1'::pg_catalog.\"char\" \
      AND t.oid OPERATOR(pg_catalog.<>) v.oid \
    UNION \
    SELECT pn.nspname, p.relname, cn.nspname, c.relname, \
      CASE WHEN p.relkind OPERATOR(pg_catalog.=) 'p'::pg_catalog.\"char\" THEN 'p' ELSE 'i' END, \
      NULL, NULL \
    FROM pg_catalog.pg_inherits i \
    JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) i.inhparent \
    JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) p.relnamespace \
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid \
    JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) c.relnamespace";

/// Where to load a target's links from.
#[derive(Clone)]
pub struct Source {
    pub target_name: String,
    pub target: Target,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub timeout: Duration,
    pub max_message: usize,
}

/// Loads the target's links over a connection of airlock's own, as of
/// catalog generation `at`.
pub async fn load(source: &Source, at: u64) -> Result<ForeignKeys, SessionError> {
    let work = async {
        let params = upstream::own_params("airlock foreign keys");
        let up = upstream::connect(
            &source.target_name,
            &source.target,
            source.tls.clone(),
            &params,
            source.timeout,
            source.max_message,
        )
        .await?;
        let mut conn = up.conn;
        let map = load_on(&mut conn, &source.target_name, at).await?;
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = conn.write_all(&out).await;
        Ok(map)
    };
    // Past the connect's own timeout: a server that stops answering.
    match crate::timer_thread::timeout(source.timeout.saturating_mul(2), work).await {
        Ok(r) => r,
        Err(_) => Err(upstream::upstream_err(format!(
            "airlock timed out reading the foreign keys of \"{}\"",
            source.target_name
        ))),
    }
}

/// Loads the target's links over `conn`, a logged-in connection that is
/// idle (a session's own, before its client is in), as of catalog
/// generation `at`. Any role may read these catalogs.
pub async fn load_on(
    conn: &mut Conn,
    target_name: &str,
    at: u64,
) -> Result<ForeignKeys, SessionError> {
    let mut out = BytesMut::new();
    frontend::query(QUERY, &mut out)?;
    conn.write_all(&out).await?;
    let mut rows: Vec<LinkRow> = Vec::new();
    let mut refused = None;
    loop {
        let frame = conn.read_frame().await?;
        match frame.tag() {
            backend::DATA_ROW => rows.extend(link_row(&text_fields(frame.body()))),
            backend::ERROR_RESPONSE => {
                refused = Some(
                    backend::error_fields(frame.body())
                        .find(|(k, _)| *k == b'M')
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default(),
                );
            }
            backend::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match refused {
        Some(said) => Err(SessionError::Upstream {
            code: "58000",
            message: format!(
                "airlock could not read the foreign keys of \"{target_name}\": {said}"
            ),
        }),
        None => Ok(ForeignKeys::new(at, rows, [])),
    }
}

/// One row of [`QUERY`].
fn link_row(fields: &[Option<String>]) -> Option<LinkRow> {
    let [Some(fs), Some(f), Some(ts), Some(t), Some(kind), del, upd] = fields else {
        return None;
    };
    let action = |a: &Option<String>| Action::from_pg(a.as_deref().unwrap_or(""));
    let link = match kind.as_str() {
        "k" => Link::Key {
            on_delete: action(del),
            on_update: action(upd),
        },
        "v" => Link::View,
        "r" => Link::Rule,
        "p" => Link::Partition,
        _ => Link::Child,
    };
    Some(LinkRow {
        from: (fs.clone(), f.clone()),
        to: (ts.clone(), t.clone()),
        link,
    })
}

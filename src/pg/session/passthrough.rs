//! Admission to a `credentials = "passthrough"` target: the client's own
//! database login is relayed to the server, and the database user becomes
//! the session's identity.
//!
//! The principal is the database user (person, model and groups from
//! `targets.<name>.passthrough`, see [`crate::config::Passthrough`]); the
//! policy's session settings go into the startup packet as for any session,
//! which is possible because they depend only on that name. The startup
//! rules are judged after the server accepted the login, so a client that
//! cannot log in learns nothing about the policy.
//!
//! Before the login is relayed a client has proved nothing, so it takes no
//! session slot of the user it names (that comes after the server accepted
//! it), only one of the target's `max_pending_logins`.

use std::net::SocketAddr;
use std::sync::Arc;

use airlock_protocol::pg::startup::StartupMessage;

use super::{
    judge_startup, mask_context, record_identity, upstream_params, Admitted, Conn, SessionError,
};
use crate::config::Target;
use crate::pg::client_auth::passthrough::relay_login;
use crate::pg::upstream;
use crate::policy::Principal;
use crate::proxy::Proxy;

pub(super) async fn admit<'a>(
    proxy: &Arc<Proxy>,
    conn: &mut Conn,
    startup: &StartupMessage,
    database: &str,
    target: &'a Target,
    session_id: u64,
    peer: SocketAddr,
) -> Result<Admitted<'a>, SessionError> {
    let config = proxy.config();
    let user = startup.param("user").unwrap_or_default();
    // Postgres cuts a startup user name to its first 63 bytes: a longer
    // one would be mapped, limited and audited by airlock as one user
    // and log in as another. Refused.
    if user.len() > airlock_protocol::pg::frontend::NAME_KEY_LEN {
        return Err(SessionError::Upstream {
            code: "42602",
            message: format!(
                "airlock: user names longer than {} bytes are not accepted (the server would cut them)",
                airlock_protocol::pg::frontend::NAME_KEY_LEN
            ),
        });
    }
    let (person, model, groups) = target.passthrough.describe(user);
    let principal = Principal {
        identity: user.to_owned(),
        user: person,
        model,
        groups,
        target: database.to_owned(),
    };
    // Logins in progress through the target, each holding a server
    // connection for a client that has proved nothing yet (red-team
    // finding: 100 clients with no password filled the server's
    // max_connections, and every target on it refused logins). The name
    // starts with NUL, which no startup user name can hold.
    let pending_limit = Some(target.passthrough.max_pending_logins).filter(|n| *n > 0);
    let pending = proxy
        .session_slot(&format!("\0pending-logins@{database}"), pending_limit)
        .ok_or_else(|| SessionError::Upstream {
            code: "53300",
            message: format!(
                "too many logins in progress through \"{database}\" (targets.{database}.passthrough.max_pending_logins)"
            ),
        })?;
    let gate = proxy.gate();
    let settings = gate.session_settings(&principal);
    let params = upstream_params(&startup.params, &settings);

    // The client's login deadline (limits.login_timeout from its
    // arrival) bounds the relayed login too (re-check finding: a startup
    // packet sent just in time had connect_timeout more).
    let time_left = conn
        .login_deadline
        .map(|d| d.saturating_duration_since(std::time::Instant::now()));
    let login = async {
        let mut server = upstream::open(
            database,
            target,
            proxy.upstream_tls(database),
            user,
            &params,
            config.limits.max_message_size.0,
        )
        .await?;
        relay_login(
            conn,
            &mut server,
            user,
            database,
            target.passthrough.allow_trust,
        )
        .await?;
        upstream::finish_startup(server, None).await
    };
    let relayed = upstream::within(config.limits.connect_timeout, database, login);
    let relayed = match time_left {
        Some(left) => crate::timer_thread::timeout(left, relayed)
            .await
            .unwrap_or(Err(SessionError::LoginTimeout)),
        None => relayed.await,
    };
    let up = match relayed {
        Ok(up) => up,
        Err(e) => {
            if matches!(e, SessionError::AuthFailed(_)) {
                crate::metrics::login(
                    crate::metrics::Protocol::Postgres,
                    crate::metrics::LoginEnd::Failed,
                );
            }
            if let (SessionError::AuthFailed(_), Some(log)) = (&e, &proxy.audit) {
                crate::pg::audit_hook::auth_failed(
                    log,
                    session_id,
                    user,
                    &peer.to_string(),
                    (database, "the database server refused the login"),
                );
            }
            return Err(e);
        }
    };
    // From here on the server accepted the login: a refusal is recorded
    // (operator finding: a superuser refused by `no-policy` left no
    // record, as a configured identity's refusal does).
    let refused = |e: SessionError| {
        crate::metrics::login(
            crate::metrics::Protocol::Postgres,
            crate::metrics::LoginEnd::Refused,
        );
        if let Some(log) = &proxy.audit {
            let who = (user, principal.user.as_deref(), principal.model.as_deref());
            crate::pg::audit_hook::login_refused(
                log,
                session_id,
                who,
                database,
                &peer.to_string(),
                &e.to_string(),
            );
        }
        e
    };
    // Policies, approval windows and the audit log know a principal by its
    // name alone: a database user named like an airlock identity would get
    // that identity's policies with no airlock secret (red-team finding:
    // role `bob` logged in through passthrough under identity bob's
    // allow-all policy). Refused, once the server accepted the login: a
    // client that proved nothing does not learn which identities exist.
    if config.identities.contains_key(user) {
        tracing::warn!(
            identity = user,
            database,
            "passthrough login refused: an airlock identity has that name"
        );
        return Err(refused(SessionError::Upstream {
            code: "28000",
            message: format!(
                "airlock: database user \"{user}\" has the name of an airlock identity; it cannot log in through passthrough target \"{database}\""
            ),
        }));
    }
    drop(pending);
    conn.login_deadline = None;
    // Taken once the server accepted the login (red-team finding: taken
    // before, clients that sent only a user name used up the real user's
    // sessions without a password).
    // Counted apart from identities' sessions (red-team finding: an
    // identity or JWT subject named `postgres@legacy` used up database
    // user postgres's sessions there): the key starts with NUL, which no
    // startup user name can hold.
    let _slot = proxy
        .session_slot(
            &format!("\0passthrough\0{database}\0{user}"),
            target.passthrough.max_sessions,
        )
        .ok_or_else(|| SessionError::Upstream {
            code: "53300",
            message: format!(
                "too many sessions for user \"{user}\" (targets.{database}.passthrough.max_sessions)"
            ),
        })
        .map_err(refused)?;
    record_identity(user, principal.model.as_deref(), startup);
    tracing::info!(
        identity = user,
        model = principal.model.as_deref().unwrap_or(""),
        target = database,
        "database user logged in (passthrough)"
    );
    judge_startup(gate.as_ref(), &principal, startup).map_err(refused)?;
    let (masking, rules_version) = mask_context(proxy, &principal).await?;
    Ok(Admitted {
        principal,
        target,
        up,
        upstream_user: user.to_owned(),
        settings,
        masking,
        rules_version,
        lease: None,
        token_expires_at: None,
        _slot,
    })
}

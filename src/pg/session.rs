//! One client session, from the opening packet to the end of the relay.
//!
//! See the module docs of [`crate::pg`] for the state machine. This file
//! strings the states together and owns the session's log context.
//!
//! A session is admitted one of two ways: an agent identity authenticates to
//! airlock, which then logs in upstream with the target's static or
//! ephemeral credential (`admit_agent`); or, on a `credentials =
//! "passthrough"` target, the client's own database login is relayed and the
//! database user is the identity (`session/passthrough.rs`). Both end in the
//! same relay, policy and audit.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::Instrument;

use airlock_protocol::pg::backend::{self, Severity};
use airlock_protocol::pg::startup::StartupMessage;

use super::audit_hook::SessionAudit;
use super::cancel::{forward_cancel, CancelTarget, HeldCancel};
use super::client_auth::{authenticate, Authenticated, Login};
use super::conn::Conn;
use super::error::SessionError;
use super::masking::{MaskContext, RowMasking};
use super::opening::{open, Opening};
use super::relay::{pump, Stopped};
use super::results::Expectations;
use super::sides::{ClientMasking, ClientSide, ServerSide, Shared};
use super::upstream;
use crate::config::{Config, CredentialMode, Identity, JwtConfig, Target};
use crate::credentials;
use crate::net::Stream;
use crate::policy::{Decision, Principal, SessionContext, SessionSettings};
use crate::proxy::{Proxy, SessionSlot};
use crate::wake_gate::WakeGate;

mod passthrough;

/// Runs a session to completion. Never panics on client input; errors end
/// the session with a FATAL to the client where one can still be sent.
pub async fn run(
    proxy: Arc<Proxy>,
    tcp: TcpStream,
    peer: SocketAddr,
    admission: crate::listener::Admission,
) {
    let id = crate::audit::session::next_session_id();
    let _connection = crate::metrics::connection(crate::metrics::Protocol::Postgres);
    let crate::listener::Admission {
        permit,
        mut pending,
    } = admission;
    let span = tracing::info_span!(
        "session",
        id,
        client = %peer,
        identity = tracing::field::Empty,
        model = tracing::field::Empty,
        declared_model = tracing::field::Empty,
    );
    async move {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        // A connection over the limit gets a few seconds to say what it
        // is (it is then refused), not the whole login time: idle sockets
        // must not pile up file descriptors (DoS finding).
        let opening_time = match permit {
            Some(_) => proxy.config().limits.login_timeout,
            None => OVER_LIMIT_WAIT,
        };
        // The whole login, opening and authentication together, has
        // login_timeout (red-team finding: each had it in full, so a
        // client could hold its slot for twice as long).
        let login_deadline = std::time::Instant::now() + opening_time;
        let opening = match crate::timer_thread::timeout(
            opening_time,
            open(tcp, proxy.client_tls.as_ref()),
        )
        .await
        {
            Err(_) => {
                static SILENT: crate::log_every::SharedLogEvery =
                    crate::log_every::SharedLogEvery::new(std::time::Duration::from_secs(10));
                if let Some(n) = SILENT.hit() {
                    tracing::info!(count = n, "connections closed: nothing usable sent within limits.login_timeout (logged at most every 10 s)");
                }
                return;
            }
            Ok(Ok(o)) => o,
            Ok(Err(SessionError::ClientGone)) => return,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "connection refused during opening");
                return;
            }
        };
        match opening {
            Opening::Cancel {
                pid,
                secret_key,
                mut stream,
            } => {
                let timeout = proxy.config().limits.connect_timeout;
                forward_cancel(&proxy.cancels, pid, secret_key, timeout).await;
                let _ = crate::timer_thread::timeout(
                    std::time::Duration::from_secs(1),
                    tokio::io::AsyncWriteExt::shutdown(&mut stream),
                )
                .await;
            }
            Opening::Startup { stream, message } => {
                // Until the client has proved who it is, messages are
                // small (SCRAM, a password, a JWT): a client that has not
                // logged in must not make airlock buffer max_message_size
                // (DoS finding). Raised once authenticated.
                let max = proxy.config().limits.max_message_size.0;
                let mut conn = Conn::new(stream, max.min(PRE_AUTH_MAX_MESSAGE));
                conn.login_deadline = Some(login_deadline);
                let result = match permit {
                    Some(_) => serve(&proxy, &mut conn, message, (id, peer), &mut pending).await,
                    None => Err(SessionError::TooManyConnections),
                };
                match result {
                    Ok(()) => tracing::info!("session ended"),
                    Err(SessionError::ClientGone) => tracing::info!("client disconnected"),
                    Err(e) => {
                        // airlock's own protocol checks are worth a look;
                        // refused logins and upstream failures are routine.
                        match &e {
                            SessionError::Protocol(_) => tracing::warn!(error = %e, sqlstate = e.sqlstate(), "session ended with an error"),
                            _ => tracing::info!(error = %e, sqlstate = e.sqlstate(), "session ended with an error"),
                        }
                        send_fatal(&mut conn.stream, &e).await;
                    }
                }
                let _ = conn.stream.shutdown().await;
            }
        }
    }
    .instrument(span)
    .await
}

/// Largest message a client may send before it has authenticated.
const PRE_AUTH_MAX_MESSAGE: usize = 64 * 1024;
/// How long a connection over `max_client_connections` may take to send
/// its startup packet before it is closed without an answer.
const OVER_LIMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn send_fatal(stream: &mut Stream, e: &SessionError) {
    let mut out = BytesMut::new();
    backend::error_response(&mut out, Severity::Fatal, e.sqlstate(), &e.to_string());
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
}

/// Authenticates the client, connects upstream and relays until the end.
///
/// The login runs in its own boxed future: its state (SCRAM, the upstream
/// connect and TLS handshake, a catalog load, an ephemeral lease) is several
/// KB, and inline it would size every session's task for the session's
/// whole life. What the relay needs is handed over in a [`LoggedIn`];
/// everything else of the login (the startup packet, the server's greeting,
/// buffers) is freed before the relay starts.
async fn serve(
    proxy: &Arc<Proxy>,
    conn: &mut Conn,
    startup: StartupMessage,
    (session_id, peer): (u64, SocketAddr),
    pending: &mut crate::pending_logins::PendingLogin,
) -> Result<(), SessionError> {
    let mut session = Box::pin(log_in(proxy, conn, startup, session_id, peer)).await?;
    pending.finish();
    let expires_at = session.lease.as_ref().and_then(|l| l.expires_at);
    let token_expires_at = session.token_expires_at;
    let cancel = session.cancel_guard.held();
    // One select, the relay future built in place: moving a future into a
    // second select (or an async block) would keep two copies of its state.
    // Biased, the control branch first: no random start at every wake-up,
    // and it is polled with a fresh coop budget. Were the relay first, a
    // result streaming at full speed would spend the budget at every poll
    // and the TTL's sleep (budgeted) would never see its deadline. Gated
    // (see `wake_gate`): the control branch is polled only when the
    // terminate notification or the TTL timer woke it, not at every
    // message the relay moves.
    let live = &session.live;
    let control = WakeGate::new(async move {
        tokio::select! {
            biased;
            () = live.terminated() => Err(SessionError::Upstream {
                code: "57P01",
                message: "terminating connection due to administrator command (airlock admin API)".into(),
            }),
            // An ephemeral user's TTL ends the session (the broker also
            // revokes the user shortly after, terminating its backend, should
            // this timer fail).
            () = sleep_until_or_forever(expires_at) => Err(SessionError::Upstream {
                code: "57P01",
                message: "terminating connection because its database credential expired (ephemeral.ttl)".into(),
            }),
            () = sleep_until_or_forever(token_expires_at) => Err(SessionError::Upstream {
                code: "57P01",
                message: "terminating connection because its login token expired (jwt.end_sessions_at_expiry)".into(),
            }),
        }
    });
    let result = tokio::select! {
        biased;
        r = control => r,
        r = relay(
            proxy,
            session_id,
            conn,
            &mut session.server,
            session.status,
            &session.principal,
            session.context,
            session.max_rows,
            session.withhold_error_values,
            (session.masking, session.rules_version),
            &session.upstream_user,
            session.audit.as_deref(),
            cancel,
        ) => r,
    };
    // Close the upstream connection before the lease is released, so that
    // its backend is gone (not mid-transaction) when the role is dropped.
    drop(session.server);
    if let Some(lease) = session.lease {
        // Boxed: the release (a connection to the broker) is large, and only
        // ephemeral sessions have one.
        Box::pin(lease.release()).await;
    }
    if let Some(a) = &session.audit {
        a.disconnect();
    }
    result
}

/// Waits until `at`, or forever when there is no deadline (on the timer
/// thread, like every timer: the runtime has none of its own).
async fn sleep_until_or_forever(at: Option<std::time::Instant>) {
    match at {
        Some(at) => crate::timer_thread::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A logged-in session, ready to relay: what the relay needs, and the
/// registrations that last as long as the session.
struct LoggedIn {
    principal: Principal,
    server: Conn,
    /// Transaction status of the server's first ReadyForQuery.
    status: u8,
    context: SessionContext,
    max_rows: Option<u64>,
    /// Errors lose their data values (see `crate::masking::error_values`).
    withhold_error_values: bool,
    masking: Option<Arc<MaskContext>>,
    /// The version of the rules `masking` was decided under.
    rules_version: u64,
    /// The database user airlock logged in as upstream (what `$user` in
    /// search_path stands for).
    upstream_user: String,
    /// Boxed: large, and absent unless an audit log is configured.
    audit: Option<Box<SessionAudit>>,
    /// The session's ephemeral user, released at the end.
    lease: Option<credentials::Lease>,
    /// When the JWT the agent logged in with expires, if the session ends
    /// then (`jwt.end_sessions_at_expiry`).
    token_expires_at: Option<std::time::Instant>,
    live: crate::admin::live::LiveSession,
    cancel_guard: super::cancel::CancelGuard,
    _slot: SessionSlot,
}

/// Authenticates the client, connects upstream, and tells the client it is
/// in (AuthenticationOk, the server's greeting, ReadyForQuery).
async fn log_in(
    proxy: &Arc<Proxy>,
    conn: &mut Conn,
    startup: StartupMessage,
    session_id: u64,
    peer: SocketAddr,
) -> Result<LoggedIn, SessionError> {
    let startup = &startup;
    let config = proxy.config();
    let mut out = BytesMut::new();
    if proxy.client_tls.as_ref().is_some_and(|t| t.require) && !conn.stream.is_tls() {
        return Err(SessionError::Refused(
            "airlock requires TLS: connect with sslmode=require or stronger".into(),
        ));
    }

    // Protocol 3.x with x > 0, or protocol options: say we speak 3.0.
    let options: Vec<&str> = startup.protocol_options().collect();
    if startup.minor > 0 || !options.is_empty() {
        backend::negotiate_protocol_version(&mut out, 0, &options);
        conn.write_all(&out).await?;
        out.clear();
    }

    let user = startup
        .param("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            SessionError::Refused("no PostgreSQL user name specified in startup packet".into())
        })?;
    let database = startup
        .param("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(user);
    if startup
        .param("replication")
        .is_some_and(|r| !matches!(r, "false" | "off" | "no" | "0"))
    {
        return Err(SessionError::Refused(
            "airlock does not allow replication connections".into(),
        ));
    }

    let passthrough = config.targets.get(database).filter(|t| {
        t.protocol == crate::config::Protocol::Postgres
            && t.credentials == CredentialMode::Passthrough
    });
    let admitted = match passthrough {
        Some(target) => {
            passthrough::admit(proxy, conn, startup, database, target, session_id, peer).await?
        }
        None => admit_agent(proxy, &config, conn, startup, database, session_id, peer).await?,
    };
    let Admitted {
        principal,
        target,
        mut up,
        upstream_user,
        settings,
        masking,
        rules_version,
        lease,
        token_expires_at,
        _slot,
    } = admitted;
    // Before the client is in: a session whose policy has rules on tables
    // starts with the target's links up to date (see
    // `crate::foreign_keys`), read on its own connection when they are
    // not; if they cannot be, its writes are refused until they are.
    let foreign_keys = match proxy.gate().judges_tables(&principal) {
        true => Some(
            proxy
                .pg_foreign_keys(&principal.target, &mut up.conn)
                .await
                .map_err(|message| SessionError::Upstream {
                    code: "58000",
                    message,
                })?,
        ),
        false => None,
    };
    let (client_key, cancel_guard) = proxy.cancels.register(CancelTarget {
        host: target.host.clone(),
        port: target.port,
        pid: up.pid,
        secret_key: up.secret_key,
    });
    tracing::info!(
        backend_pid = up.pid,
        read_only = settings.read_only,
        "upstream connected"
    );

    backend::authentication_ok(&mut out);
    out.extend_from_slice(&up.greeting);
    backend::backend_key_data(&mut out, up.pid, client_key);
    backend::ready_for_query(&mut out, up.status);
    conn.write_all(&out).await?;

    let context = SessionContext {
        search_path: search_path_from_options(startup.param("options")),
        foreign_keys,
        ..Default::default()
    };
    let audit = proxy.audit.as_ref().map(|log| {
        Box::new(SessionAudit::new(
            Arc::clone(log),
            proxy.audit_fail_closed,
            session_id,
            &principal,
            &peer.to_string(),
            startup.param("application_name"),
            declared_model(startup.param("application_name")),
        ))
    });
    if let Some(a) = &audit {
        a.connect();
    }
    let live = proxy.live.register(crate::admin::live::SessionInfo {
        user: principal.user.clone(),
        model: principal.model.clone(),
        declared_model: declared_model(startup.param("application_name")).map(str::to_owned),
        ..crate::admin::live::SessionInfo::now(
            session_id,
            "postgres",
            &principal.identity,
            peer.to_string(),
            &principal.target,
        )
    });
    Ok(LoggedIn {
        principal,
        server: up.conn,
        status: up.status,
        context,
        max_rows: settings.max_rows,
        withhold_error_values: settings.withhold_error_values || masking.is_some(),
        masking,
        rules_version,
        upstream_user,
        audit,
        lease,
        token_expires_at,
        live,
        cancel_guard,
        _slot,
    })
}

/// What a session needs once its client is in: who it is, the upstream
/// connection (logged in), and what applies to it.
pub(super) struct Admitted<'a> {
    principal: Principal,
    target: &'a Target,
    up: upstream::Upstream,
    /// The database user `up` logged in as.
    upstream_user: String,
    settings: SessionSettings,
    masking: Option<Arc<MaskContext>>,
    /// The version of the rules `masking` was decided under.
    rules_version: u64,
    /// The session's ephemeral user, released at the end.
    lease: Option<credentials::Lease>,
    /// See [`LoggedIn::token_expires_at`].
    token_expires_at: Option<std::time::Instant>,
    _slot: SessionSlot,
}

/// An agent identity logs in to airlock (its secret or a JWT); airlock then
/// connects upstream with the target's static or ephemeral credential.
async fn admit_agent<'a>(
    proxy: &Arc<Proxy>,
    config: &'a Config,
    conn: &mut Conn,
    startup: &StartupMessage,
    database: &str,
    session_id: u64,
    peer: SocketAddr,
) -> Result<Admitted<'a>, SessionError> {
    let user = startup.param("user").unwrap_or_default();
    let identity = config.identities.get(user);
    let verifier = identity.and_then(|i| proxy.verifier(user, i));
    let login = Login {
        user,
        verifier: verifier.as_ref(),
        allow_cleartext: config
            .tls
            .as_ref()
            .is_some_and(|t| t.allow_cleartext_password),
        mock_secret: &proxy.mock_secret,
        mock_iterations: proxy.scram_mock_iterations(),
        jwt: config.jwt.as_ref(),
    };
    let time_left = conn
        .login_deadline
        .map_or(config.limits.login_timeout, |d| {
            d.saturating_duration_since(std::time::Instant::now())
        });
    let authenticated = match crate::timer_thread::timeout(time_left, authenticate(conn, &login))
        .await
        .unwrap_or(Err(SessionError::LoginTimeout))
    {
        Ok(a) => {
            conn.max_message = config.limits.max_message_size.0;
            conn.login_deadline = None;
            a
        }
        Err(e) => {
            if matches!(e, SessionError::AuthFailed(_)) {
                crate::metrics::login(
                    crate::metrics::Protocol::Postgres,
                    crate::metrics::LoginEnd::Failed,
                );
            }
            if let (SessionError::AuthFailed(_), Some(log)) = (&e, &proxy.audit) {
                let why = match identity {
                    Some(_) => "wrong password or token",
                    None if config.jwt.is_some() => "no identity of that name, and no valid token",
                    None => "no identity of that name",
                };
                super::audit_hook::auth_failed(
                    log,
                    session_id,
                    user,
                    &peer.to_string(),
                    (database, why),
                );
            }
            return Err(e);
        }
    };
    let jwt_identity;
    let mut token_expires_at = None;
    let identity = match authenticated {
        Authenticated::Secret => {
            identity.ok_or_else(|| SessionError::AuthFailed(user.to_owned()))?
        }
        Authenticated::Jwt(claims) => {
            let jwt = config
                .jwt
                .as_ref()
                .ok_or_else(|| SessionError::AuthFailed(user.to_owned()))?;
            // A token names an ad-hoc identity. One named like a configured
            // identity, or like a database user a passthrough target lists,
            // would share that identity's or user's policies, approval
            // windows and session limit: whoever can get a token for any
            // subject would act as it (red-team finding for the
            // passthrough user). Refused.
            let passthrough_user = config.targets.values().any(|t| {
                t.credentials == crate::config::CredentialMode::Passthrough
                    && t.passthrough.users.contains_key(user)
            });
            if identity.is_some() || passthrough_user {
                tracing::warn!(
                    identity = user,
                    "JWT login refused: a configured identity or passthrough user has that name"
                );
                crate::metrics::login(
                    crate::metrics::Protocol::Postgres,
                    crate::metrics::LoginEnd::Failed,
                );
                if let Some(log) = &proxy.audit {
                    super::audit_hook::auth_failed(
                        log,
                        session_id,
                        user,
                        &peer.to_string(),
                        (
                            database,
                            "a token named like a configured identity or passthrough user",
                        ),
                    );
                }
                return Err(SessionError::AuthFailed(user.to_owned()));
            }
            if jwt.end_sessions_at_expiry {
                token_expires_at = token_deadline(claims.expires, jwt.leeway);
            }
            jwt_identity = identity_from_jwt(jwt, claims);
            &jwt_identity
        }
    };
    record_identity(user, identity.model.as_deref(), startup);
    // From here on the agent has proved who it is: a refusal is recorded.
    let refused = |e: SessionError| {
        crate::metrics::login(
            crate::metrics::Protocol::Postgres,
            crate::metrics::LoginEnd::Refused,
        );
        if let Some(log) = &proxy.audit {
            let who = (user, identity.user.as_deref(), identity.model.as_deref());
            let client = peer.to_string();
            super::audit_hook::login_refused(
                log,
                session_id,
                who,
                database,
                &client,
                &e.to_string(),
            );
        }
        e
    };
    let _slot = proxy
        .session_slot(user, identity.max_sessions)
        .ok_or_else(|| SessionError::Upstream {
            code: "53300",
            message: format!(
                "too many sessions for identity \"{user}\" (identities.{user}.max_sessions)"
            ),
        })
        .map_err(refused)?;

    let target = config
        .targets
        .get(database)
        .filter(|t| t.protocol == crate::config::Protocol::Postgres)
        .ok_or_else(|| SessionError::Upstream {
            code: "3D000",
            message: format!("database \"{database}\" does not exist"),
        })
        .map_err(refused)?;
    if !identity.may_use(database) {
        return Err(refused(SessionError::Upstream {
            code: "42501",
            message: format!("permission denied for database \"{database}\""),
        }));
    }
    tracing::info!(
        identity = user,
        model = identity.model.as_deref().unwrap_or(""),
        target = database,
        "agent authenticated"
    );

    let principal = Principal {
        identity: user.to_owned(),
        user: identity.user.clone(),
        model: identity.model.clone(),
        groups: identity.groups.clone(),
        target: database.to_owned(),
    };
    let gate = proxy.gate();
    judge_startup(gate.as_ref(), &principal, startup).map_err(refused)?;
    let settings = gate.session_settings(&principal);
    let (masking, rules_version) = mask_context(proxy, &principal).await?;
    let params = upstream_params(&startup.params, &settings);

    // Ephemeral credentials: this session's own database user. Never falls
    // back to the broker's credential.
    let lease = match target.credentials {
        CredentialMode::Static | CredentialMode::Passthrough => None,
        CredentialMode::Ephemeral => {
            let broker = proxy
                .brokers
                .get(database)
                .ok_or_else(|| credentials::unavailable(database))?;
            let lease = broker.lease(&principal).await;
            Some(lease.map_err(|e| e.client_error(database))?)
        }
    };
    let leased_target = lease.as_ref().map(|l| l.target(target));
    let up = match upstream::connect(
        database,
        leased_target.as_ref().unwrap_or(target),
        proxy.upstream_tls(database),
        &params,
        config.limits.connect_timeout,
        config.limits.max_message_size.0,
    )
    .await
    {
        Ok(up) => up,
        Err(e) => {
            if let Some(lease) = lease {
                lease.release().await;
            }
            return Err(e);
        }
    };
    let upstream_user = leased_target.as_ref().unwrap_or(target).user.clone();
    Ok(Admitted {
        principal,
        target,
        up,
        upstream_user,
        settings,
        masking,
        rules_version,
        lease,
        token_expires_at,
        _slot,
    })
}

/// Puts the identity and its models on the session's log span.
fn record_identity(identity: &str, model: Option<&str>, startup: &StartupMessage) {
    let span = tracing::Span::current();
    span.record("identity", identity);
    if let Some(m) = model {
        span.record("model", m);
    }
    if let Some(declared) = declared_model(startup.param("application_name")) {
        span.record("declared_model", declared);
    }
}

/// Refuses the session when a rule blocks its startup parameters.
fn judge_startup(
    gate: &dyn crate::policy::Gate,
    principal: &Principal,
    startup: &StartupMessage,
) -> Result<(), SessionError> {
    // Postgres keeps the last value of a parameter named twice, while
    // airlock's checks, the audit log and the settings it appends to
    // `options` would read the first: refused.
    let params = &startup.params;
    // Except client_encoding named twice as UTF-8 both times: asyncpg
    // sends its own and then the one in `server_settings`.
    let utf8 = |k: &str, v: &str| {
        k == "client_encoding" && crate::policy::engine::is_utf8_encoding_name(v)
    };
    if let Some((key, _)) = params.iter().enumerate().find_map(|(i, (k, v))| {
        params[..i]
            .iter()
            .find(|(seen, first)| seen == k && !(utf8(k, v) && utf8(seen, first)))
    }) {
        return Err(SessionError::Upstream {
            code: "08P01",
            message: format!(
                "airlock: the startup message names parameter \"{key}\" more than once"
            ),
        });
    }
    if let Decision::Block { rule, message } | Decision::RequireApproval { rule, message } =
        gate.judge_startup(principal, &startup.params)
    {
        return Err(SessionError::Upstream {
            code: "42501",
            message: format!("airlock: blocked by rule {rule}: {message}"),
        });
    }
    Ok(())
}

/// The masking context of a session, when masking applies to it.
async fn mask_context(
    proxy: &Arc<Proxy>,
    principal: &Principal,
) -> Result<(Option<Arc<MaskContext>>, u64), SessionError> {
    // Read first: a reload after it is noticed at the first statement.
    let version = proxy.version().0;
    let masking = match proxy.masker().filter(|m| m.is_active_for(principal)) {
        Some(masker) => Some(Arc::new(MaskContext::new(
            masker,
            login_catalog(proxy, &principal.target).await?,
            proxy.catalog_generations.of(&principal.target),
            principal.clone(),
        ))),
        None => None,
    };
    Ok((masking, version))
}

/// The catalog snapshot a masking session starts with. When it cannot be
/// read for a lock another transaction holds (55P03, after the load tried
/// again; see [`super::catalog`]), the session starts all the same with
/// an empty snapshot marked stale ([`super::catalog::NOT_LOADED`]): its
/// first statement that needs one waits for a fresh load, and is refused
/// (55P03, the session going on) while it still cannot be read, as in a
/// session that was already running. Before, the login failed, which a
/// connection pool takes for a broken server. Other failures (the server
/// unreachable, airlock's credentials refused) still fail the login.
async fn login_catalog(
    proxy: &Arc<Proxy>,
    target: &str,
) -> Result<(Arc<super::catalog::CatalogSnapshot>, u64), SessionError> {
    match proxy.catalog(target).await {
        Err(e) if e.sqlstate() == "55P03" => {
            tracing::warn!(%target, error = %e, "catalog snapshot not loaded at login: the session starts, and its statements that need the snapshot are refused until it loads");
            Ok((Arc::default(), super::catalog::NOT_LOADED))
        }
        loaded => loaded,
    }
}

/// The ad-hoc identity of a JWT login: name, model and groups from the
/// token, targets and session limit from `[jwt]`. It has no secret.
/// When a token that expires at `exp` (Unix seconds) stops being valid,
/// with `leeway` for clock skew, as an instant of this process's clock;
/// `None` when that is past what the clock can hold (an `exp` centuries
/// away: no deadline), rather than a panic on overflow.
fn token_deadline(exp: u64, leeway: std::time::Duration) -> Option<std::time::Instant> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let left = std::time::Duration::from_secs(exp)
        .saturating_sub(now)
        .saturating_add(leeway);
    std::time::Instant::now().checked_add(left)
}

fn identity_from_jwt(jwt: &JwtConfig, claims: crate::identity::jwt::JwtClaims) -> Identity {
    Identity {
        secret: None,
        mysql_secret: None,
        user: None,
        model: claims.model,
        groups: claims.groups,
        targets: jwt.targets.clone(),
        max_sessions: jwt.max_sessions,
    }
}

/// A model the client declares in application_name (`...model=NAME...`).
/// It is recorded beside the configured model and never replaces it.
fn declared_model(application_name: Option<&str>) -> Option<&str> {
    let app = application_name?;
    let at = app.find("model=")?;
    let rest = &app[at + "model=".len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ';' || c == ',' || c == ')')
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|m| !m.is_empty())
}

/// The startup parameters sent upstream: the client's, with the policy's
/// session settings appended to `options` (later `-c` settings win, so a
/// client cannot undo them at startup).
fn upstream_params(
    client: &[(String, String)],
    settings: &SessionSettings,
) -> Vec<(String, String)> {
    let mut forced = Vec::new();
    if settings.read_only {
        forced.push("-c default_transaction_read_only=on".to_owned());
    }
    if let Some(t) = settings.statement_timeout {
        forced.push(format!("-c statement_timeout={}", t.as_millis()));
    }
    if let Some(t) = settings.idle_in_transaction_timeout {
        forced.push(format!(
            "-c idle_in_transaction_session_timeout={}",
            t.as_millis()
        ));
    }
    let mut params: Vec<(String, String)> = client.to_vec();
    if forced.is_empty() {
        return params;
    }
    let extra = forced.join(" ");
    match params.iter_mut().find(|(k, _)| k == "options") {
        Some((_, v)) => {
            v.push(' ');
            v.push_str(&extra);
        }
        None => params.push(("options".into(), extra)),
    }
    params
}

/// The search_path a session starts with: Postgres's default unless the
/// startup options set one (which policy may forbid).
fn search_path_from_options(options: Option<&str>) -> Vec<String> {
    let default = vec!["$user".to_owned(), "public".to_owned()];
    let Some(options) = options else {
        return default;
    };
    crate::policy::startup_options::parse_options(options)
        .into_iter()
        .rfind(|o| o.name == "search_path")
        .map(|o| {
            o.value
                .split(',')
                .map(|p| p.trim().trim_matches('"').to_owned())
                .collect()
        })
        .unwrap_or(default)
}

/// Runs both directions until one ends, then closes the other.
#[allow(clippy::too_many_arguments)]
async fn relay(
    proxy: &Arc<Proxy>,
    session_id: u64,
    client: &mut Conn,
    server: &mut Conn,
    status: u8,
    principal: &Principal,
    context: SessionContext,
    max_rows: Option<u64>,
    withhold_error_values: bool,
    (masking, rules_version): (Option<Arc<MaskContext>>, u64),
    upstream_user: &str,
    audit: Option<&SessionAudit>,
    held: Arc<HeldCancel>,
) -> Result<(), SessionError> {
    let config = proxy.config();
    let max = config.limits.max_message_size.0;
    let shared = Shared::new(status);
    let expect = Arc::new(Expectations::default());
    let mut client_buf = std::mem::take(&mut client.rbuf);
    let mut server_buf = std::mem::take(&mut server.rbuf);
    let (mut client_r, mut client_w) = client.stream.split();
    let (mut server_r, mut server_w) = server.stream.split();

    let mut to_server = ClientSide::new(
        &shared,
        proxy,
        principal,
        config.limits.idle_timeout,
        context,
        masking
            .as_ref()
            .map(|m| ClientMasking::new(Arc::clone(m), Arc::clone(&expect), upstream_user)),
        audit,
    )
    .with_session_id(session_id)
    .with_upstream_user(upstream_user)
    .with_rules_version(rules_version)
    .with_cancel(held);
    let mut to_client = ServerSide::new(
        &shared,
        proxy,
        &principal.target,
        max_rows,
        masking.map(|m| RowMasking::new(m, Arc::clone(&expect))),
    )
    .with_audit(to_server.reply_audit())
    .withholding_values(withhold_error_values);
    // Not biased: a pump that streams at full speed spends the task's coop
    // budget, and the other pump, always polled second, would then be
    // starved for as long as the stream lasts. Each pump gated (see
    // `wake_gate`): a wake-up for one socket polls that socket's pump only,
    // not the other one's read as well.
    let result = tokio::select! {
        r = WakeGate::new(pump(&mut client_r, &mut server_w, &mut client_buf, max, &mut to_server)) => {
            match r {
                Ok(Stopped::PeerClosed) => {
                    // The client vanished without Terminate: end the backend cleanly.
                    let _ = server_w.write_all(b"X\x00\x00\x00\x04").await;
                    Ok(())
                }
                Ok(Stopped::BySide) => Ok(()),
                Err(e) => {
                    let _ = server_w.write_all(b"X\x00\x00\x00\x04").await;
                    Err(e)
                }
            }
        }
        r = WakeGate::new(pump(&mut server_r, &mut client_w, &mut server_buf, max, &mut to_client)) => {
            match r {
                Ok(Stopped::PeerClosed) => {
                    tracing::info!("upstream server closed the connection");
                    Ok(())
                }
                Ok(Stopped::BySide) => Err(SessionError::ShuttingDown),
                Err(e) => Err(e),
            }
        }
    };
    let _ = server_w.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::token_deadline;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    #[test]
    fn token_deadlines_never_overflow() {
        let leeway = Duration::from_secs(5);
        assert_eq!(token_deadline(u64::MAX, leeway), None);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // Expired already: the leeway is what is left.
        let d = token_deadline(0, leeway).unwrap_or_else(Instant::now);
        assert!(d <= Instant::now() + leeway);
        let d = token_deadline(now + 60, leeway).unwrap_or_else(Instant::now);
        assert!(d > Instant::now() + Duration::from_secs(55));
    }
}

//! One MySQL client session: login, then the command loop. See the module
//! docs of [`crate::mysql`] for the state machine.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::masking::DetectorSet;
use airlock_protocol::mysql::{com, frame, packets, status};

use super::audit_hook::{self, MyAudit};
use super::client_auth::{authenticate, Hello};
use super::commands::{classify, Action};
use super::conn::{Leg, Packet, PacketConn};
use super::error::MyError;
use super::masking::MyMask;
use super::reply_mask::{Outcome, Plans, ReplyMask};
use super::response::{Expect, Step, Tracker};
use super::stmt_ids::{IdMap, IdSet};
use super::upstream::{self, Upstream};
use crate::config::PREPARED_LIMIT_RULE;
use crate::config::{Protocol, Target};
use crate::policy::memo::Memo;
use crate::policy::shape::Shape;
use crate::policy::{
    Decision, Dialect, Effects, Gate, Judgement, Principal, Request, SessionContext,
    SessionSettings, Source,
};
use crate::proxy::{GateCache, Proxy};
use crate::wake_gate::WakeGate;

/// Flush forwarded reply bytes to the client at least this often.
const FLUSH_AT: usize = 256 * 1024;

/// How long a masking session's DDL waits for other masking sessions'
/// commands in flight (see [`Session::ddl_may_run`]).
const DDL_GRACE: Duration = Duration::from_secs(5);

/// The refusal of DDL whose wait for other sessions' commands timed out.
const DDL_BESIDE_STATEMENTS: &str = "airlock: blocked by rule mask.unanalyzable: while masking applies, DDL runs once the statements other masked sessions of the target were running when it came have ended (a write checked before this DDL could otherwise run after it, against definitions its plan did not know), and they did not end within 5 s: run it again";

/// The refusal of DDL that waited while another session's DDL was counted.
const DDL_BESIDE_DDL: &str = "airlock: blocked by rule mask.unanalyzable: while masking applies, no DDL runs while another session's DDL runs: run it again";

/// Runs a session to completion. Never panics on client input; errors end
/// the session with an ERR to the client where one can still be sent.
pub async fn run(
    proxy: Arc<Proxy>,
    tcp: TcpStream,
    peer: SocketAddr,
    admission: crate::listener::Admission,
) {
    let id = crate::audit::session::next_session_id();
    let _connection = crate::metrics::connection(crate::metrics::Protocol::Mysql);
    let crate::listener::Admission {
        permit,
        mut pending,
    } = admission;
    let span = tracing::info_span!(
        "mysql_session",
        id,
        client = %peer,
        identity = tracing::field::Empty,
        model = tracing::field::Empty,
    );
    async move {
        let _ = tcp.set_nodelay(true);
        // Small packets until the client has authenticated (a handshake
        // response is a few hundred bytes): a client that has not logged
        // in must not make airlock buffer max_message_size (DoS finding).
        let max = proxy.config().limits.max_message_size.0;
        let mut client = PacketConn::new(tcp, max.min(PRE_AUTH_MAX_PACKET), Leg::Client);
        let result = match permit {
            Some(_) => serve(&proxy, &mut client, peer, id, &mut pending).await,
            None => Err(MyError::refused(
                1040,
                "08004",
                "Too many connections to airlock",
            )),
        };
        match &result {
            Ok(()) => tracing::info!("session ended"),
            Err(MyError::ClientGone) => tracing::info!("client disconnected"),
            Err(e) => tracing::info!(error = %e, "session ended with an error"),
        }
        if let Some((code, state, message)) = result.err().and_then(|e| e.to_client()) {
            let _ = client.send_err(code, state, &message).await;
        }
        client.shutdown().await;
    }
    .instrument(span)
    .await
}

/// Largest packet a client may send before it has authenticated.
const PRE_AUTH_MAX_PACKET: usize = 64 * 1024;

async fn serve(
    proxy: &Arc<Proxy>,
    client: &mut PacketConn,
    peer: SocketAddr,
    session_id: u64,
    pending: &mut crate::pending_logins::PendingLogin,
) -> Result<(), MyError> {
    let login_timeout = proxy.config().limits.login_timeout;
    let login = crate::timer_thread::timeout(login_timeout, authenticate(proxy, client, peer.ip()));
    let mut hello = match login.await.unwrap_or_else(|_| {
        Err(MyError::refused(
            1043,
            "08S01",
            "airlock: login timed out (limits.login_timeout)",
        ))
    }) {
        Ok(hello) => {
            client.set_max(proxy.config().limits.max_message_size.0);
            pending.finish();
            hello
        }
        Err(e) => return Err(login_failed(proxy, session_id, peer, e)),
    };
    // COM_CHANGE_USER starts over as the new identity (and a failed one
    // ends the session as a failed login).
    loop {
        match serve_as(proxy, client, peer, session_id, hello).await {
            Ok(Some(next)) => hello = next,
            Ok(None) => return Ok(()),
            Err(e) => return Err(login_failed(proxy, session_id, peer, e)),
        }
    }
}

/// Counts and records `e` if it is a failed login (or COM_CHANGE_USER);
/// returns it.
fn login_failed(proxy: &Proxy, session_id: u64, peer: SocketAddr, e: MyError) -> MyError {
    if matches!(e, MyError::LoginFailed { .. }) {
        crate::metrics::login(
            crate::metrics::Protocol::Mysql,
            crate::metrics::LoginEnd::Failed,
        );
        if let Some(log) = &proxy.audit {
            audit_hook::auth_failed(log, session_id, &e, &peer.to_string());
        }
    }
    e
}

/// The session of one authenticated identity; `Some` when the client
/// re-authenticated with COM_CHANGE_USER.
async fn serve_as(
    proxy: &Arc<Proxy>,
    client: &mut PacketConn,
    peer: SocketAddr,
    session_id: u64,
    hello: Hello,
) -> Result<Option<Hello>, MyError> {
    let Hello { user, response } = hello;
    let config = proxy.config();
    let identity = config.identities.get(&user).ok_or_else(|| {
        super::client_auth::access_denied(
            &user,
            peer.ip(),
            true,
            response.database.as_deref(),
            "the identity is no longer in the config",
        )
    })?;
    // From here on the agent has proved who it is: a refusal is recorded.
    let refused = |target: &str, e: MyError| {
        crate::metrics::login(
            crate::metrics::Protocol::Mysql,
            crate::metrics::LoginEnd::Refused,
        );
        if let Some(log) = &proxy.audit {
            let who = (
                user.as_str(),
                identity.user.as_deref(),
                identity.model.as_deref(),
            );
            audit_hook::login_refused(log, session_id, who, target, &peer.to_string(), &e);
        }
        e
    };
    // Held for as long as this identity's session lasts (a COM_CHANGE_USER
    // gives it back). Red-team finding: the MySQL listener took none, so
    // `max_sessions` did not count its sessions.
    let _slot = proxy
        .session_slot(&user, identity.max_sessions)
        .ok_or_else(|| {
            let e = MyError::refused(
                1203,
                "42000",
                format!(
                    "User {user} already has more than 'max_user_connections' active connections (airlock: identities.{user}.max_sessions)"
                ),
            );
            let target = response.database.as_deref().unwrap_or_default();
            refused(&String::from_utf8_lossy(target), e)
        })?;
    let database = response
        .database
        .as_deref()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            refused(
                "",
                MyError::refused(
                    1046,
                    "3D000",
                    "No database selected: connect with the target name as the database",
                ),
            )
        })?;
    let target = config
        .targets
        .get(&database)
        .filter(|t| t.protocol == Protocol::Mysql)
        .ok_or_else(|| {
            let e = MyError::refused(1049, "42000", format!("Unknown database '{database}'"));
            refused(&database, e)
        })?;
    if !identity.may_use(&database) {
        return Err(refused(
            &database,
            MyError::refused(
                1044,
                "42000",
                format!("Access denied for user '{user}'@'%' to database '{database}'"),
            ),
        ));
    }
    let principal = Principal {
        identity: user.clone(),
        user: identity.user.clone(),
        model: identity.model.clone(),
        groups: identity.groups.clone(),
        target: database.clone(),
    };
    let span = tracing::Span::current();
    span.record("identity", user.as_str());
    if let Some(m) = &identity.model {
        span.record("model", m.as_str());
    }
    tracing::info!(identity = %user, model = identity.model.as_deref().unwrap_or(""), target = %database, "agent authenticated");
    let generation = proxy.catalog_generations.of(&database);
    // Read before the masking is decided: a reload after it is noticed at
    // the first command.
    let rules_version = proxy.version().0;
    let mask = proxy
        .masker()
        .filter(|m| m.is_active_for(&principal))
        .map(|masker| {
            let detectors = masker.detectors_for(&principal);
            MyMask::new(masker, principal.clone(), detectors, generation.clone())
        });
    let gate = proxy.gate();
    let settings = gate.session_settings(&principal);
    let wants_foreign_keys = gate.judges_tables(&principal);
    // Ephemeral credentials (crate::credentials::mysql): the session's own user.
    let lease = crate::credentials::mysql::lease_for(proxy, &database, target, &principal).await?;
    let leased = lease.as_ref().map(|l| l.target(target));
    let up = match upstream::connect(
        leased.as_ref().unwrap_or(target),
        &response,
        &settings,
        config.limits.connect_timeout,
        config.limits.max_message_size.0,
        proxy.upstream_tls(&database),
    )
    .await
    {
        Ok(up) => up,
        Err(e) => {
            if let Some(lease) = lease {
                lease.release().await;
            }
            // Before the client's login is answered: an error of the
            // server range, which clients show as sent. The client-range
            // 2013 (CR_SERVER_LOST) of a session whose upstream went away
            // made the mariadb CLI report a malformed packet here.
            return Err(match e {
                MyError::Upstream(detail) => {
                    tracing::warn!(error = %detail, "could not connect the session upstream");
                    MyError::refused(
                        1105,
                        "HY000",
                        "airlock could not connect to the upstream server (see airlock's log)",
                    )
                }
                other => other,
            });
        }
    };
    tracing::info!(
        server_connection = up.connection_id,
        read_only = settings.read_only,
        "upstream connected"
    );

    let audit = proxy.audit.as_ref().map(|log| {
        let program = response
            .attributes
            .iter()
            .find(|(k, _)| k == b"program_name")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        MyAudit::new(
            Arc::clone(log),
            proxy.audit_fail_closed,
            session_id,
            &principal,
            &peer.to_string(),
            program.as_deref(),
            &target.database,
        )
    });

    let mut ok = BytesMut::new();
    packets::ok(&mut ok, 0, 0, status::AUTOCOMMIT, 0);
    client.send(&ok).await?;
    if let Some(a) = &audit {
        a.connect();
    }

    let live = proxy.live.register(crate::admin::live::SessionInfo {
        user: principal.user.clone(),
        model: principal.model.clone(),
        ..crate::admin::live::SessionInfo::now(
            session_id,
            "mysql",
            &principal.identity,
            peer.to_string(),
            &principal.target,
        )
    });
    let mut session = Session {
        proxy,
        single_byte_client: super::client_charset::single_byte_collation(response.charset),
        gates: proxy.gate_cache(),
        session_id,
        target,
        principal,
        settings,
        context: SessionContext {
            current_database: Some(target.database.clone()),
            ..Default::default()
        },
        prepared: IdSet::default(),
        texts: IdMap::default(),
        last_prepared: None,
        seen_version: rules_version,
        cursors: IdMap::default(),
        rejudge: false,
        masking_now_applies: false,
        masking_lapsed: false,
        approved_once: Vec::new(),
        prepare_approved: false,
        used_up: Vec::new(),
        catalog_changing: IdSet::default(),
        generation,
        wants_foreign_keys,
        foreign_keys: None,
        links: Default::default(),
        mask,
        audit,
        client,
        up,
        changed: None,
        memo: Memo::default(),
    };
    let expires_at = lease.as_ref().and_then(|l| l.expires_at);
    // Biased, the terminate signal first: no random start at every
    // wake-up, and a command loop that spends the coop budget (a long
    // result) cannot keep an operator's terminate from being seen.
    // Gated (see `wake_gate`): the terminate branch is polled only when an
    // operator's terminate woke it, not at every packet.
    let terminated = WakeGate::new(live.terminated());
    let result = tokio::select! {
        biased;
        () = terminated => Err(MyError::refused(1927, "70100", "airlock: session terminated by an administrator")),
        r = crate::credentials::mysql::until_expiry(expires_at, session.commands()) => r,
    };
    if crate::credentials::mysql::is_expiry(&result) {
        session.client.next_seq = 1; // the ERR answers the client's next command
    }
    if let Some(lease) = lease {
        lease.release().await;
    }
    if let Some(a) = &session.audit {
        a.disconnect();
    }
    result.map(|()| session.changed.take())
}

/// Held while a statement that may change the catalog runs; moves the
/// target's catalog generation when dropped, after the statement ran or
/// the session failed while it might have. DDL a masking session planned
/// (`counted`) is also one of the target's unsettled changes meanwhile:
/// masking sessions refuse results that start then (the statement may
/// have waited for it, see `MyMask::schema_moved`). The text scan that
/// decides the move errs on the side of reloading (a column named
/// `created_at` matches), too often to count.
struct CatalogChange {
    generation: crate::masking::Generation,
    counted: bool,
}

impl CatalogChange {
    fn new(generation: &crate::masking::Generation, counted: bool) -> Self {
        if counted {
            generation.count_unsettled();
        }
        CatalogChange {
            generation: generation.clone(),
            counted,
        }
    }
}

impl Drop for CatalogChange {
    fn drop(&mut self) {
        // Moved before it is settled: a session that sees it settled sees
        // the catalog stale.
        self.generation.bump();
        if self.counted {
            self.generation.settle_unsettled();
        }
    }
}

/// The rules' version and the target's links a prepared statement was
/// judged under: it is judged again before it runs under others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JudgedUnder {
    rules: u64,
    links: u64,
}

struct Session<'a> {
    proxy: &'a Arc<Proxy>,
    /// The client character set is (or may be) latin1 or ascii: see
    /// [`super::client_charset`].
    single_byte_client: bool,
    /// The rules in force, looked up once per statement.
    gates: GateCache<'a>,
    /// For approval requests.
    session_id: u64,
    target: &'a Target,
    principal: Principal,
    settings: SessionSettings,
    context: SessionContext,
    /// Statement ids from prepares airlock allowed.
    prepared: IdSet,
    /// Their texts, and the version of the rules each was judged under: a
    /// statement prepared before a reload is judged again before it next
    /// runs ([`Session::judged_again`]).
    texts: IdMap<(JudgedUnder, Arc<[u8]>)>,
    /// The statement last prepared, what MariaDB's id 0xFFFFFFFF names (as
    /// far as airlock can tell: for the audit record of its executions).
    last_prepared: Option<u32>,
    /// The version of the rules the session last saw.
    seen_version: u64,
    /// Statements with a cursor the server may hold open (an execute
    /// that opened one, and no successful execute since), and the version
    /// of the rules it was opened under: a COM_STMT_FETCH after a reload
    /// is refused ([`Session::stale_cursor`]). The key `u32::MAX` stands
    /// for a cursor opened through "the last statement", whose id airlock
    /// does not know.
    cursors: IdMap<u64>,
    /// A reload happened while statements were prepared: executes judge
    /// them again ([`Session::judged_again`]).
    rejudge: bool,
    /// A reload made masking rules apply to this principal, whose session
    /// started without masking (or went on without it for a while): every
    /// later statement is refused.
    masking_now_applies: bool,
    /// A reload took masking away from this session, which started with
    /// it: the session ran unmasked (see [`Session::rules_changed`]).
    masking_lapsed: bool,
    /// Statements a human approved (a held COM_STMT_PREPARE), not executed
    /// yet: each runs once, as an approved query does; a second execute is
    /// refused as unknown (prepare it again to ask again).
    approved_once: Vec<u32>,
    /// The COM_STMT_PREPARE being judged was approved by a human.
    prepare_approved: bool,
    /// Approved statements executed once: executing them again is refused
    /// (and 0xFFFFFFFF, the last prepared, which may name one).
    used_up: Vec<u32>,
    /// Those of them whose text may change the catalog: executing one
    /// moves `generation`.
    catalog_changing: IdSet,
    /// The target's catalog generation, moved after every statement that
    /// may change the catalog, whether or not this session masks: other
    /// sessions' snapshots go stale (see [`crate::masking::catalog`]).
    generation: crate::masking::Generation,
    /// The policy has rules on tables: the target's links are kept in
    /// `context` ([`Session::refresh_foreign_keys`]).
    wants_foreign_keys: bool,
    /// The target's links, once loaded (see [`crate::foreign_keys`]).
    foreign_keys: Option<Arc<crate::foreign_keys::ForeignKeySlot>>,
    /// When `foreign_keys`' map was last taken, and when it is due.
    links: crate::foreign_keys::LinksWatch,
    /// Set when masking rules or detectors apply to the principal.
    mask: Option<MyMask>,
    /// Set when the audit log is configured.
    audit: Option<MyAudit>,
    client: &'a mut PacketConn,
    up: Upstream,
    /// Set by COM_CHANGE_USER: the session ends and starts over as this.
    changed: Option<Hello>,
    /// The last allowed judgements the gate said may be reused: a
    /// repeated statement skips the decision cache.
    memo: Memo<Judgement>,
}

impl Session<'_> {
    async fn commands(&mut self) -> Result<(), MyError> {
        let idle = self.proxy.config().limits.idle_timeout;
        let epoch = Instant::now();
        // When the wait for the next command began, in nanoseconds since
        // `epoch`: written after every command, read by the interrupt when
        // its timer fires.
        let waiting_since = AtomicU64::new(0);
        // One interrupt for the whole loop: creating it per command would
        // register and drop a timer and a shutdown waiter every time.
        // Gated: polled only when its timer or the shutdown channel woke it.
        let interrupt = WakeGate::new(interrupt(
            self.proxy.shutdown.clone(),
            idle,
            epoch,
            &waiting_since,
        ));
        tokio::pin!(interrupt);
        loop {
            let cmd = tokio::select! {
                biased;
                stop = &mut interrupt => return Err(stop),
                r = self.client.read() => r?,
            };
            if cmd.first_seq != 0 {
                tracing::debug!(seq = cmd.first_seq, "command with non-zero sequence id");
            }
            // Replies from airlock continue the command's sequence.
            self.client.next_seq = cmd.last_seq.wrapping_add(1);
            if !self.command(cmd).await? {
                return Ok(());
            }
            if !idle.is_zero() {
                waiting_since.store(nanos_since(epoch), Ordering::Relaxed);
            }
        }
    }

    /// Handles one command; `false` ends the session.
    async fn command(&mut self, cmd: Packet) -> Result<bool, MyError> {
        if let Some(a) = &self.audit {
            if a.queue_full() {
                // Backpressure: wait for the audit log to catch up rather
                // than refuse the statement.
                a.wait_for_room().await;
            }
        }
        let version = self.gates.version();
        if version != self.seen_version {
            self.rules_changed(version);
        }
        if self.masking_now_applies && classify_is_statement(&cmd.payload) {
            // A reload made masking apply to this session, which started
            // without it and cannot take it up: the session ends, so that
            // a pool opens a new one (ER_CONNECTION_KILLED). The statement
            // it ended at is recorded, so that the log says why.
            let message = masking_now_applies();
            if let (Some(a), Some(com::QUERY | com::STMT_PREPARE)) =
                (self.audit.as_mut(), cmd.payload.first().copied())
            {
                let ended = format!("{message} (the session was ended)");
                a.refused(&cmd.payload[1..], &Decision::Allow, &ended);
            }
            return Err(MyError::refused(1927, "70100", message));
        }
        let payload = &cmd.payload;
        match classify(payload) {
            Action::Quit => {
                let _ = self.up.conn.write_raw(&cmd.raw).await;
                return Ok(false);
            }
            Action::Refuse(why) => {
                tracing::warn!(command = why, "command refused");
                self.refuse(1047, "08S01", &format!("airlock: {why}"))
                    .await?;
            }
            Action::Query => {
                let Some(sql) = self.vet_text(&payload[1..]).await? else {
                    return Ok(true);
                };
                // Worked out once, for both the decision cache and the
                // masking plan cache.
                let shape = Shape::of(&sql);
                if let Some(effects) = self
                    .judge(Source::Query, &sql, Some(&shape), as_sent(&sql))
                    .await?
                {
                    // In flight, as other sessions' DDL sees it, from
                    // before its check until it has been answered.
                    let _in_flight = self.mask.as_mut().map(MyMask::checking);
                    let Some(plans) = self.plan_masking(&sql, &shape).await? else {
                        return Ok(true);
                    };
                    // Moves the generation once the statement has run (or
                    // the session failed while it might have).
                    let ddl = plans.as_ref().is_some_and(Plans::runs_ddl);
                    let _changes = (ddl || super::catalog::may_change_catalog(&payload[1..]))
                        .then(|| CatalogChange::new(&self.generation, ddl));
                    if ddl && !self.ddl_may_run(&sql).await? {
                        return Ok(true);
                    }
                    if !self.audit_begin(&payload[1..], plans.as_ref()).await? {
                        return Ok(true);
                    }
                    self.apply(effects);
                    self.up.conn.write_raw(&cmd.raw).await?;
                    let mut reply = self.mask.as_ref().map(|_| {
                        ReplyMask::new(Expect::Query, plans.unwrap_or_default(), None)
                            .with_own_change(ddl)
                    });
                    let t = self.relay_masked(Expect::Query, &mut reply).await?;
                    self.audit_finish(&t);
                }
            }
            Action::Prepare => {
                // Set by `judge` if a human approves this one.
                self.prepare_approved = false;
                let Some(sql) = self.vet_text(&payload[1..]).await? else {
                    return Ok(true);
                };
                // Worked out once, for both the decision cache and the
                // masking plan cache.
                let shape = Shape::of(&sql);
                if let Some(effects) = self
                    .judge(Source::Parse, &sql, Some(&shape), as_sent(&sql))
                    .await?
                {
                    let Some(plans) = self.plan_masking(&sql, &shape).await? else {
                        return Ok(true);
                    };
                    if !self.audit_begin(&payload[1..], plans.as_ref()).await? {
                        return Ok(true);
                    }
                    self.apply(effects);
                    let t = self.forward(&cmd.raw, Expect::Prepare).await?;
                    self.audit_finish(&t);
                    // Taken whatever the server answered: a failed
                    // prepare leaves no approval for the next one.
                    let approved = std::mem::take(&mut self.prepare_approved);
                    if let Some(id) = t.prepared {
                        self.prepared.insert(id);
                        self.last_prepared = Some(id);
                        self.texts
                            .insert(id, (self.judged_under(), Arc::from(&sql[..])));
                        if approved {
                            self.approved_once.push(id);
                        }
                        if super::catalog::may_change_catalog(&payload[1..]) {
                            self.catalog_changing.insert(id);
                        }
                        if let Some(m) = self.mask.as_mut() {
                            m.prepared(id, plans.as_ref(), &sql);
                        }
                    }
                }
            }
            Action::InitDb => {
                let db = String::from_utf8_lossy(&payload[1..]).into_owned();
                if db != self.target.database && db != self.principal.target {
                    self.refuse(
                        1044,
                        "42000",
                        &format!("airlock: only the target's database may be used, not '{db}'"),
                    )
                    .await?;
                    return Ok(true);
                }
                let sql = format!("USE `{}`", self.target.database.replace('`', "``"));
                if self
                    .judge(Source::Query, sql.as_bytes(), None, false)
                    .await?
                    .is_some()
                {
                    let mut p = BytesMut::new();
                    p.put_u8(com::INIT_DB);
                    p.put_slice(self.target.database.as_bytes());
                    self.up.conn.next_seq = 0;
                    self.up.conn.send(&p).await?;
                    self.relay(Expect::Single).await?;
                    self.context.current_database = Some(self.target.database.clone());
                }
            }
            Action::FieldList => {
                let mut r = airlock_protocol::mysql::wire::Reader::new(&payload[1..]);
                let table = r.cstr().unwrap_or_else(|| r.rest_str());
                let sql = format!(
                    "SELECT * FROM `{}` LIMIT 0",
                    String::from_utf8_lossy(table).replace('`', "``")
                );
                if self
                    .judge(Source::Query, sql.as_bytes(), None, false)
                    .await?
                    .is_some()
                {
                    self.forward(&cmd.raw, Expect::FieldList).await?;
                }
            }
            Action::Statement { id, reply } => {
                // MariaDB's id 0xFFFFFFFF means "the statement prepared
                // last". Which one that is is not certain here (the
                // server's idea of "last" may differ after a failed prepare
                // or a close), so while masking applies, or a statement a
                // human approved to run once may be the last, it must be
                // named: an approved statement executed as 0xFFFFFFFF never
                // used its approval up.
                if id == u32::MAX
                    && (self.mask.is_some()
                        || !self.approved_once.is_empty()
                        || !self.used_up.is_empty())
                {
                    if reply.is_some() {
                        self.refuse(
                            1243,
                            "HY000",
                            "airlock: statement id 0xFFFFFFFF (the last prepared statement) is not accepted while masking or an approval applies; use the statement's id",
                        )
                        .await?;
                    }
                    return Ok(true);
                }
                // A statement whose approval was used up runs no more (nor
                // 0xFFFFFFFF, the last prepared, which may be it).
                let used_up = reply == Some(Expect::Execute)
                    && !self.used_up.is_empty()
                    && (id == u32::MAX || self.used_up.contains(&id));
                let known = !used_up
                    && (self.prepared.contains(&id)
                        || (id == u32::MAX && !self.prepared.is_empty())
                        || !self.gates.gate().vets_prepared());
                if known && reply == Some(Expect::Execute) {
                    if self.wants_foreign_keys && !self.texts.is_empty() {
                        // Judged again below when the links changed.
                        let _ = self.refresh_foreign_keys().await;
                    }
                    if let Some(refusal) = self.judged_again(id) {
                        tracing::warn!(statement = id, reason = %refusal, "execute refused");
                        self.refuse(1142, "42000", &refusal).await?;
                        return Ok(true);
                    }
                }
                if known && reply == Some(Expect::Fetch) && !self.cursors.is_empty() {
                    if let Some(refusal) = self.stale_cursor(id) {
                        tracing::warn!(statement = id, reason = %refusal, "fetch refused");
                        self.refuse(1142, "42000", &refusal).await?;
                        return Ok(true);
                    }
                }
                if !known {
                    tracing::info!(
                        statement = id,
                        "command on a statement airlock did not prepare"
                    );
                    if reply.is_some() {
                        self.refuse(
                            1243,
                            "HY000",
                            &format!("airlock: unknown prepared statement handler ({id})"),
                        )
                        .await?;
                    }
                    return Ok(true);
                }
                match reply {
                    Some(expect) => {
                        // In flight, as other sessions' DDL sees it, from
                        // before its check until it has been answered.
                        let _in_flight = self.mask.as_mut().map(MyMask::checking);
                        if expect == Expect::Execute && !self.replan_prepared(id).await? {
                            return Ok(true);
                        }
                        if expect == Expect::Execute {
                            if let Some(at) = self.approved_once.iter().position(|a| *a == id) {
                                // This execute uses the approval up.
                                self.approved_once.swap_remove(at);
                                self.used_up.push(id);
                            }
                        }
                        let ddl = self.mask.as_ref().is_some_and(|m| m.runs_ddl(id));
                        let _changes = (ddl
                            || (!self.catalog_changing.is_empty()
                                && (id == u32::MAX || self.catalog_changing.contains(&id))))
                        .then(|| CatalogChange::new(&self.generation, ddl));
                        if ddl {
                            let sql = self.texts.get(&id).map(|(_, s)| Arc::clone(s));
                            if !self.ddl_may_run(sql.as_deref().unwrap_or_default()).await? {
                                return Ok(true);
                            }
                        }
                        // Each execution is recorded, with its rows, as a
                        // Postgres Execute is (and refused while the audit
                        // log cannot record it, with fail_closed).
                        let audited = expect == Expect::Execute && self.audit.is_some();
                        if audited && !self.audit_execute_begin(id).await? {
                            return Ok(true);
                        }
                        let mut reply = self
                            .mask
                            .as_ref()
                            .map(|m| m.reply_for(id, expect).with_own_change(ddl));
                        self.up.conn.write_raw(&cmd.raw).await?;
                        let t = self.relay_masked(expect, &mut reply).await?;
                        if audited {
                            self.audit_finish(&t);
                        }
                        if expect == Expect::Execute && (t.cursor || !self.cursors.is_empty()) {
                            self.cursor_executed(id, t.cursor, t.error);
                        }
                        if let (Some(m), Some(r)) = (self.mask.as_mut(), reply.as_mut()) {
                            m.executed(id, expect, r, t.cursor);
                        }
                    }
                    None => {
                        if payload[0] == com::STMT_CLOSE {
                            self.prepared.remove(&id);
                            self.texts.remove(&id);
                            if self.last_prepared == Some(id) {
                                self.last_prepared = None;
                            }
                            self.cursors.remove(&id);
                            self.used_up.retain(|u| *u != id);
                            self.approved_once.retain(|a| *a != id);
                            self.catalog_changing.remove(&id);
                            if let Some(m) = self.mask.as_mut() {
                                m.statements.remove(&id);
                            }
                        }
                        self.up.conn.write_raw(&cmd.raw).await?;
                    }
                }
            }
            Action::Forward(expect) => {
                self.forward(&cmd.raw, expect).await?;
            }
            Action::ChangeUser => {
                let hello =
                    super::change_user::reauthenticate(self.proxy, self.client, payload).await?;
                // The old upstream session goes; the new identity logs in
                // afresh (its own credential, settings and checks).
                let _ = self.up.conn.write_raw(&[1, 0, 0, 0, com::QUIT]).await;
                self.changed = Some(hello);
                return Ok(false);
            }
            Action::Reset => {
                self.up.conn.write_raw(&cmd.raw).await?;
                let reply = self.up.conn.read().await?;
                if reply.payload.first() == Some(&packets::OK) {
                    self.prepared.clear();
                    self.texts.clear();
                    self.last_prepared = None;
                    self.cursors.clear();
                    self.catalog_changing.clear();
                    if let Some(m) = self.mask.as_mut() {
                        m.statements.clear();
                    }
                    self.context = SessionContext {
                        current_database: Some(self.target.database.clone()),
                        ..Default::default()
                    };
                    upstream::prepare_session(&mut self.up, &self.settings).await?;
                }
                self.client.write_raw(&reply.raw).await?;
            }
        }
        Ok(true)
    }

    /// The text to judge for a client's statement: executable comments
    /// expanded for the server, sql_mode changes vetted
    /// ([`super::statement_text`]). `None` when refused (the client has its
    /// ERR).
    async fn vet_text<'b>(
        &mut self,
        sql: &'b [u8],
    ) -> Result<Option<std::borrow::Cow<'b, [u8]>>, MyError> {
        // A statement that may set a single-byte client character set is
        // read so itself, and the session from then on.
        if !self.single_byte_client && super::client_charset::may_set_single_byte_names(sql) {
            self.single_byte_client = true;
        }
        match super::statement_text::vet(sql, &self.up.info, self.single_byte_client) {
            Ok(text) => Ok(Some(text)),
            Err(why) => {
                let message = format!("airlock: {why}");
                log_blocked(sql, &message);
                crate::metrics::statement(crate::audit::AuditDecision::Block);
                // In the blocked-statement log like the guardrails' refusals,
                // under the rule the message names.
                if let Some(a) = self.audit.as_mut() {
                    a.refused(sql, &Decision::Allow, &message);
                }
                self.refuse(1142, "42000", &message).await?;
                Ok(None)
            }
        }
    }

    /// Sends a locally generated ERR for the current command.
    async fn refuse(&mut self, code: u16, state: &str, message: &str) -> Result<(), MyError> {
        self.client.send_err(code, state, message).await
    }

    /// Judges a statement; `None` when it was refused (the client has its
    /// ERR). `vetted`: `sql` is a client's text that
    /// [`super::statement_text::vet`] returned as sent, so it is known to
    /// be its own vetted form; any other text is vetted again here.
    /// `shape`: `sql`'s shape when the caller worked it out (it is shared
    /// with masking's plan cache); worked out here otherwise.
    async fn judge(
        &mut self,
        source: Source,
        sql: &[u8],
        shape: Option<&Shape<'_>>,
        vetted: bool,
    ) -> Result<Option<Effects>, MyError> {
        if self.masking_now_applies {
            self.refuse(1142, "42000", &masking_now_applies()).await?;
            return Ok(None);
        }
        if self.wants_foreign_keys {
            if let Some(message) = self.refresh_foreign_keys().await {
                log_blocked(sql, &message);
                crate::metrics::statement(crate::audit::AuditDecision::Block);
                if let Some(a) = self.audit.as_mut() {
                    a.refused(sql, &Decision::Allow, &message);
                }
                self.refuse(1105, "HY000", &message).await?;
                return Ok(None);
            }
        }
        if source == Source::Parse {
            // One statement id more than the session may hold: refused
            // before the server-wide max_prepared_stmt_count runs out.
            let limits = &self.proxy.config().limits;
            if let Some(why) = limits.prepared_refusal(self.prepared.len()) {
                let message = format!("airlock: blocked by rule {PREPARED_LIMIT_RULE}: {why}");
                log_blocked(sql, &message);
                crate::metrics::statement(crate::audit::AuditDecision::Block);
                if let Some(a) = self.audit.as_mut() {
                    a.refused(sql, &Decision::Allow, &message);
                }
                // ER_MAX_PREPARED_STMT_COUNT_REACHED, as the server's own.
                self.refuse(1461, "42000", &message).await?;
                return Ok(None);
            }
        }
        let gate: Arc<dyn Gate> = Arc::clone(self.gates.gate());
        let judgement = match shape {
            Some(shape) => self.judge_memo(&gate, source, sql, shape),
            None => {
                let request = Request {
                    dialect: Dialect::MySql,
                    source,
                    sql,
                    session: &self.context,
                };
                gate.judge(&self.principal, &request)
            }
        };
        let judgement = judgement.enforcing_builtins(self.mask.is_some());
        if let Some(would) = &judgement.would {
            tracing::warn!(decision = %would, sql = %crate::audit::event::log_preview(sql), "observe mode: would refuse");
        }
        // Executable comments and sql_mode changes: the text must already
        // be what the server parses (see `vet_text`).
        let unvetted = match vetted {
            true => None,
            false => super::statement_text::unvetted(sql, &self.up.info, self.single_byte_client),
        };
        let refusal = match &judgement.decision {
            _ if unvetted.is_some() => unvetted,
            Decision::Allow => None,
            d @ Decision::RequireApproval { rule, message } => {
                match self.approval(sql, rule, message).await {
                    None => Some(format!("airlock: {d}")),
                    Some(decided) => {
                        let refusal = decided
                            .outcome
                            .refusal(rule)
                            .or_else(|| self.refused_after_reload(source, sql));
                        self.prepare_approved = source == Source::Parse && refusal.is_none();
                        if let (None, Some(a)) = (&refusal, self.audit.as_mut()) {
                            a.approved(rule, decided.reason);
                        }
                        refusal
                    }
                }
            }
            d @ Decision::Block { .. } => Some(format!("airlock: {d}")),
        };
        crate::metrics::statement(match refusal {
            None => crate::audit::AuditDecision::Allow,
            Some(_) => crate::audit::AuditDecision::Block,
        });
        // USE of any other database is refused whatever the rules say.
        let refusal = refusal.or_else(|| {
            judgement
                .effects
                .current_database
                .as_ref()
                .filter(|db| **db != self.target.database)
                .map(|db| format!("airlock: only the target's database may be used, not '{db}'"))
        });
        // One statement id more than the session may hold: refused before
        // the server's server-wide max_prepared_stmt_count runs out.
        if let Some(a) = self.audit.as_mut() {
            a.judged(judgement.would.as_ref());
            if let Some(message) = &refusal {
                a.refused(sql, &judgement.decision, message);
            }
        }
        match refusal {
            None => Ok(Some(judgement.effects)),
            Some(message) => {
                log_blocked(sql, &message);
                self.refuse(1142, "42000", &message).await?;
                Ok(None)
            }
        }
    }

    /// Puts the target's links as of the current catalog generation in
    /// the session context, loading them first when they are stale (see
    /// [`crate::foreign_keys`]). The refusal to answer with when they
    /// have never been loaded and cannot be.
    async fn refresh_foreign_keys(&mut self) -> Option<String> {
        let slot = match &self.foreign_keys {
            Some(slot) => Arc::clone(slot),
            None => match self.proxy.foreign_keys(&self.principal.target) {
                Ok(slot) => {
                    self.foreign_keys = Some(Arc::clone(&slot));
                    slot
                }
                Err(e) => {
                    return Some(format!(
                        "airlock: could not read the target's foreign keys, which its rules on tables need: {e}; run the statement again"
                    ))
                }
            },
        };
        // A map another session loaded is taken without a wait; a stale
        // one is loaded again first.
        let mut map = self.links.changed(&slot, self.context.foreign_keys_id());
        if self.links.stale(&slot) {
            slot.fresh().await;
            // Taken whatever the slot's version says (see
            // `LinksWatch::changed`).
            map = self.links.changed(&slot, 0).or(map);
        }
        if map.is_some_and(|map| self.context.set_foreign_keys(map)) {
            // Statements prepared under the old links are judged again
            // before they next run (red-team finding: a prepared DELETE
            // went on cascading into a table denied since).
            self.rejudge |= !self.texts.is_empty();
        }
        None
    }

    /// What a prepared statement's judgement depended on besides its
    /// text.
    fn judged_under(&self) -> JudgedUnder {
        JudgedUnder {
            rules: self.seen_version,
            links: self.context.foreign_keys_id(),
        }
    }

    /// The gate's judgement of `sql`, from the session's memo when the
    /// statement repeats a reusable one.
    fn judge_memo(
        &mut self,
        gate: &Arc<dyn Gate>,
        source: Source,
        sql: &[u8],
        shape: &Shape<'_>,
    ) -> Judgement {
        if let Some(j) = self.memo.view(gate, &self.context).and_then(|m| {
            m.exact(source, sql)
                .or_else(|| m.shaped(source, sql, shape))
        }) {
            return j.clone();
        }
        let request = Request {
            dialect: Dialect::MySql,
            source,
            sql,
            session: &self.context,
        };
        let (judgement, reuse) = gate.judge_reusable(&self.principal, &request, shape);
        if judgement.replayable() {
            self.memo.remember(
                gate,
                source,
                &self.context,
                reuse,
                sql,
                shape,
                judgement.clone(),
            );
        }
        judgement
    }

    /// Holds a statement a `require_approval` rule matched until a human
    /// decides; `None` when approvals are not enabled. The session reads
    /// nothing from its client meanwhile, so it watches for the client
    /// hanging up: the request is then withdrawn.
    async fn approval(
        &self,
        sql: &[u8],
        rule: &str,
        message: &str,
    ) -> Option<crate::approvals::wait::Decided> {
        let request = crate::approvals::HoldRequest {
            statement: String::from_utf8_lossy(sql).into_owned(),
            identity: self.principal.identity.clone(),
            user: self.principal.user.clone(),
            model: self.principal.model.clone(),
            rule: rule.to_owned(),
            message: message.to_owned(),
            session: self.session_id,
            protocol: "mysql",
            target: self.principal.target.clone(),
        };
        let session_event = self.audit.as_ref().map(|a| a.statement_event());
        crate::approvals::wait::hold_and_wait(
            self.proxy,
            request,
            session_event,
            self.client.hung_up(),
        )
        .await
    }

    fn apply(&mut self, effects: Effects) {
        // In the order `Effects` documents.
        if effects.deallocate_all {
            self.context.prepared.clear();
        }
        for name in &effects.deallocated {
            self.context.prepared.remove(name);
        }
        for name in effects.prepared {
            self.context.prepared.insert(name);
        }
        if let Some(db) = effects.current_database {
            self.context.current_database = Some(db);
        }
    }

    /// Forwards a command as received and relays the reply.
    async fn forward(&mut self, raw: &[u8], expect: Expect) -> Result<Tracker, MyError> {
        self.up.conn.write_raw(raw).await?;
        self.relay(expect).await
    }

    /// This session's DDL (`sql`), counted unsettled, waits (at most
    /// [`DDL_GRACE`]) until the commands other masking sessions of the
    /// target had in flight have been answered: any of them may be a
    /// write checked before the DDL was counted, which must not run after
    /// it (see [`crate::masking::catalog::InFlight`]; commands checked
    /// later see the DDL, and their writes are refused). `false` when it
    /// is refused instead (the client has its ERR).
    async fn ddl_may_run(&mut self, sql: &[u8]) -> Result<bool, MyError> {
        let Some(m) = self.mask.as_ref() else {
            return Ok(true);
        };
        let waiting_for = m.others_in_flight();
        if waiting_for.is_empty() {
            return Ok(true);
        }
        m.holding();
        let drained = waiting_for.wait_drained(DDL_GRACE).await;
        let beside = self.mask.as_ref().is_some_and(MyMask::resuming);
        let refusal = match (drained, beside) {
            (true, false) => return Ok(true),
            (false, _) => DDL_BESIDE_STATEMENTS,
            (true, true) => DDL_BESIDE_DDL,
        };
        tracing::warn!(sql = %crate::audit::event::log_preview(sql), reason = refusal, "DDL refused");
        if let Some(a) = self.audit.as_mut() {
            a.refused(sql, &crate::policy::Decision::Allow, refusal);
        }
        self.refuse(1213, "40001", refusal).await?;
        Ok(false)
    }

    /// Plans `sql` for masking (when masking applies). `None` when the
    /// statement was refused (the client has its ERR); `Some(None)` when
    /// nothing needs masking work.
    async fn plan_masking(
        &mut self,
        sql: &[u8],
        shape: &Shape<'_>,
    ) -> Result<Option<Option<Plans>>, MyError> {
        if let Some(mask) = self.mask.as_mut() {
            mask.refresh_catalog(&mut self.up.conn).await?;
        }
        let Some(mask) = &self.mask else {
            return Ok(Some(None));
        };
        let refusal = match mask.plan(sql, shape, &self.context) {
            Err(message) => message,
            Ok(plans) => return Ok(Some(Some(plans))),
        };
        log_blocked(sql, &refusal);
        if let Some(a) = self.audit.as_mut() {
            a.refused(sql, &crate::policy::Decision::Allow, &refusal);
        }
        self.refuse(1142, "42000", &refusal).await?;
        Ok(None)
    }

    /// The rules changed (a reload) since the session last looked. Masking
    /// takes the new masking rules up (a reload also moves every catalog
    /// generation, so prepared statements are planned again before they
    /// next run); masking rules now applying to a session that started
    /// without masking cannot be taken up mid-session, so its statements
    /// are refused from now on.
    fn rules_changed(&mut self, version: u64) {
        self.seen_version = version;
        self.wants_foreign_keys = self.gates.gate().judges_tables(&self.principal);
        if !self.wants_foreign_keys {
            self.context.foreign_keys = None;
            // Taken again in full if rules on tables come back.
            self.links = crate::foreign_keys::LinksWatch::default();
        }
        self.rejudge |= !self.texts.is_empty();
        let masker = self.gates.masker().cloned();
        match self.mask.as_mut() {
            Some(m) => {
                // A reload that takes masking away and a later one that
                // brings it back end the session, which ran unmasked
                // meanwhile (see the Postgres twin,
                // `pg::sides::ClientSide::rules_changed`).
                // (No masking rules at all: it keeps the ones it has.)
                match &masker {
                    Some(m) if !m.has_rules_for(&self.principal) => self.masking_lapsed = true,
                    Some(_) if self.masking_lapsed => self.masking_now_applies = true,
                    _ => {}
                }
                if let Some(masker) = masker {
                    m.set_masker(masker);
                }
            }
            None => {
                // (And no longer, when a later reload took the mask away.)
                self.masking_now_applies = masker.is_some_and(|m| m.is_active_for(&self.principal));
            }
        }
    }

    /// A statement a human approved while the rules were reloaded: judged
    /// again under the rules in force now, which the human did not see
    /// (red-team finding, on Postgres: a hold released after a reload that
    /// denied its column, or made masking apply to the session, ran as
    /// judged before). The refusal when they refuse it; one they would
    /// hold for approval again runs: a human approved it.
    fn refused_after_reload(&mut self, source: Source, sql: &[u8]) -> Option<String> {
        let version = self.gates.version();
        if version == self.seen_version {
            return None;
        }
        self.rules_changed(version);
        if self.masking_now_applies {
            return Some(masking_now_applies());
        }
        let request = Request {
            dialect: Dialect::MySql,
            source,
            sql,
            session: &self.context,
        };
        let judgement = self.gates.gate().judge(&self.principal, &request);
        match judgement.enforcing_builtins(self.mask.is_some()).decision {
            d @ Decision::Block { .. } => Some(format!(
                "airlock: {d} (the rules were reloaded while it waited for approval, and they refuse it)"
            )),
            Decision::Allow | Decision::RequireApproval { .. } => None,
        }
    }

    /// After COM_STMT_EXECUTE of statement `id`: whether it left a cursor
    /// open (`cursor`), or failed (`error`). A successful execute closes
    /// the statement's earlier cursor; a failed one may not have reached
    /// it (a malformed parameter is refused before), so it is kept.
    fn cursor_executed(&mut self, id: u32, cursor: bool, error: bool) {
        if cursor {
            self.cursors.insert(id, self.seen_version);
        } else if !error && id != u32::MAX {
            self.cursors.remove(&id);
        }
    }

    /// Before COM_STMT_FETCH of statement `id`: the refusal, when its
    /// cursor (or one opened through "the last statement", whose id is not
    /// known) was opened under rules a reload has since replaced. The rows
    /// it hands out were judged when it was opened.
    fn stale_cursor(&self, id: u32) -> Option<String> {
        let version = self.seen_version;
        let stale = |key: u32| self.cursors.get(&key).is_some_and(|v| *v != version);
        let any_stale = || self.cursors.iter().any(|(_, v)| *v != version);
        let refused = match id {
            u32::MAX => any_stale(),
            id => stale(id) || stale(u32::MAX),
        };
        refused.then(|| {
            format!(
                "airlock: blocked by rule {}: the rules were reloaded after this statement's cursor was opened: execute it again",
                crate::policy::builtin::ids::RULES_RELOADED
            )
        })
    }

    /// Before COM_STMT_EXECUTE of statement `id` (0xFFFFFFFF: any of
    /// them): the refusal, when the rules changed since it was prepared
    /// and now refuse it (or masking now applies). An allowed one is not
    /// judged again until the next reload.
    fn judged_again(&mut self, id: u32) -> Option<String> {
        if self.masking_now_applies {
            return Some(masking_now_applies());
        }
        if !self.rejudge {
            return None;
        }
        let version = self.judged_under();
        let ids: Vec<u32> = match id {
            u32::MAX => self
                .texts
                .iter()
                .filter(|(_, (v, _))| *v != version)
                .map(|(id, _)| *id)
                .collect(),
            _ => vec![id],
        };
        let gate: Arc<dyn Gate> = Arc::clone(self.gates.gate());
        for id in ids {
            let Some((judged_at, sql)) = self.texts.get(&id) else {
                continue;
            };
            if *judged_at == version {
                continue;
            }
            let request = Request {
                dialect: Dialect::MySql,
                source: Source::Parse,
                sql,
                session: &self.context,
            };
            match gate
                .judge(&self.principal, &request)
                .enforcing_builtins(self.mask.is_some())
                .decision
            {
                Decision::Allow => {
                    if let Some(t) = self.texts.get_mut(&id) {
                        t.0 = version;
                    }
                }
                d @ Decision::RequireApproval { .. } => {
                    return Some(format!(
                        "airlock: {d}; the rules were reloaded since this statement was prepared, and they hold it for approval: prepare it again to ask"
                    ))
                }
                d => return Some(format!("airlock: {d}")),
            }
        }
        None
    }

    /// Before COM_STMT_EXECUTE of statement `id`: when the catalog changed
    /// since its masking plan was made (the server re-prepares it then,
    /// and a view it reads may now compute something else), plans its text
    /// again against a fresh snapshot. `false` when that plan refuses it
    /// (the client has its ERR; the session goes on).
    async fn replan_prepared(&mut self, id: u32) -> Result<bool, MyError> {
        let Some(mask) = self.mask.as_mut() else {
            return Ok(true);
        };
        mask.refresh_catalog(&mut self.up.conn).await?;
        if let Some(refusal) = mask.beside_ddl_refusal_of(id, &self.context) {
            tracing::warn!(statement = id, reason = %refusal, "prepared statement refused by masking");
            if let (Some(a), Some((_, sql))) = (self.audit.as_mut(), self.texts.get(&id)) {
                a.refused(sql, &crate::policy::Decision::Allow, &refusal);
            }
            self.refuse(1142, "42000", &refusal).await?;
            return Ok(false);
        }
        let Some(mask) = self.mask.as_mut() else {
            return Ok(true);
        };
        let Some(sql) = mask.outdated(id) else {
            return Ok(true);
        };
        let shape = Shape::of(&sql);
        let Some(plans) = self.plan_masking(&sql, &shape).await? else {
            return Ok(false);
        };
        if let Some(m) = self.mask.as_mut() {
            m.replanned(id, plans.as_ref());
        }
        Ok(true)
    }

    /// Tells the audit log an allowed statement is about to run; `false`
    /// when it was refused instead (the log is failing and airlock fails
    /// closed; the client has its ERR).
    async fn audit_begin(&mut self, sql: &[u8], plans: Option<&Plans>) -> Result<bool, MyError> {
        let Some(a) = self.audit.as_mut() else {
            return Ok(true);
        };
        match a.begin(sql, plans.map(Plans::as_slice)) {
            Ok(()) => Ok(true),
            Err(message) => {
                tracing::warn!(reason = %message, "statement refused: audit log unavailable");
                self.refuse(1142, "42000", &message).await?;
                Ok(false)
            }
        }
    }

    /// [`Self::audit_begin`] for a COM_STMT_EXECUTE of statement `id`: its
    /// prepared text (as the server runs it) and masking plan.
    ///
    /// Id 0xFFFFFFFF ("the last prepared") is recorded with the text of
    /// the statement airlock saw prepared last, marked as such (review
    /// finding: it was recorded without any).
    async fn audit_execute_begin(&mut self, id: u32) -> Result<bool, MyError> {
        let last = (id == u32::MAX).then_some(self.last_prepared).flatten();
        let text = self
            .texts
            .get(&last.unwrap_or(id))
            .map(|(_, t)| Arc::clone(t));
        let plans = self.mask.as_ref().map(|m| {
            Plans::One(
                m.statements
                    .get(&last.unwrap_or(id))
                    .and_then(|s| s.plan.clone()),
            )
        });
        let marked: Vec<u8>;
        let sql: &[u8] = match (&text, last) {
            (Some(t), None) => t,
            (Some(t), Some(_)) => {
                marked = [
                    &b"-- statement id 0xFFFFFFFF, taken as the last prepared:\n"[..],
                    t,
                ]
                .concat();
                &marked
            }
            (None, _) => b"-- COM_STMT_EXECUTE of a statement airlock has no text of",
        };
        self.audit_begin(sql, plans.as_ref()).await
    }

    /// Records the statement [`Self::audit_begin`] let through.
    fn audit_finish(&mut self, tracker: &Tracker) {
        if let Some(a) = self.audit.as_mut() {
            a.finish(tracker);
        }
    }

    /// Relays the server's reply to the client until it is complete.
    async fn relay(&mut self, expect: Expect) -> Result<Tracker, MyError> {
        let mut reply = self
            .mask
            .as_ref()
            .map(|_| ReplyMask::new(expect, Plans::None, None));
        self.relay_masked(expect, &mut reply).await
    }

    /// Relays a reply, masking its result sets and scrubbing its errors
    /// with `reply` (see [`super::reply_mask`]) when the session masks.
    ///
    /// The packets already read are walked in place in the upstream read
    /// buffer; those that pass are written to the client straight from it,
    /// in one write per read (when the client would otherwise wait for
    /// them, or at the end of the reply). Only a replaced or dropped packet
    /// makes an output buffer be assembled; a packet is never re-encoded
    /// unless its payload changed.
    async fn relay_masked(
        &mut self,
        expect: Expect,
        reply: &mut Option<ReplyMask>,
    ) -> Result<Tracker, MyError> {
        let mut tracker = Tracker::new(expect);
        // What to send that is not a span of the read buffer as received:
        // empty, and never allocated, while every packet passes.
        let mut out = BytesMut::new();
        let mut swallow = Swallow::default();
        loop {
            // Walk the complete packets already read, in place.
            let mut at = 0; // end of the packets walked
            let mut pass_from = 0; // start of the walked bytes that pass as they are
            let mut last_seq = None;
            let mut infile = false;
            let mut split = false;
            while !tracker.is_done() {
                // Rows that pass as they are, walked in one tight loop.
                // Not under a row limit: rows are then counted one by one.
                if !swallow.on
                    && self.settings.max_rows.is_none()
                    && reply.as_ref().is_none_or(ReplyMask::rows_pass)
                {
                    let rest = self.up.conn.buffer().get(at..).unwrap_or_default();
                    if let Some((n, seq)) = tracker.pass_rows(rest, self.up.conn.max()) {
                        at += n;
                        last_seq = Some(seq);
                        self.client.next_seq = seq.wrapping_add(1);
                    }
                }
                let Some(l) = self.up.conn.locate_at(at)? else {
                    break;
                };
                if l.packets > 1 {
                    // 16 MiB or more: joined by the packet path below.
                    split = true;
                    break;
                }
                let end = at + l.raw_len;
                let buf = self.up.conn.buffer();
                let payload = buf.get(at + 4..end).unwrap_or_default();
                let verdict = judge_packet(
                    &mut tracker,
                    reply.as_mut(),
                    self.mask.as_mut(),
                    (self.settings.withhold_error_values, self.settings.max_rows),
                    payload,
                    false,
                    &mut swallow,
                )?;
                last_seq = Some(l.last_seq);
                match verdict {
                    Verdict::Pass => self.client.next_seq = l.last_seq.wrapping_add(1),
                    Verdict::Drop | Verdict::LocalInfile => {
                        infile = verdict == Verdict::LocalInfile;
                        out.extend_from_slice(&buf[pass_from..at]);
                        pass_from = end;
                    }
                    Verdict::Replace(new) => {
                        out.extend_from_slice(&buf[pass_from..at]);
                        pass_from = end;
                        frame::write_packet(&mut out, l.first_seq, &new);
                        self.client.next_seq = l.last_seq.wrapping_add(1);
                    }
                }
                at = end;
                if infile {
                    break;
                }
            }
            let done = tracker.is_done();
            self.flush_walked(&mut out, pass_from, at, done.then_some(&mut swallow))
                .await?;
            if let Some(seq) = last_seq {
                self.up.conn.consume(at, seq);
            }
            if done {
                return Ok(tracker);
            }
            if infile {
                // Never forwarded: answer with an empty file; the rest of
                // the reply is dropped and the client told.
                tracing::warn!("server asked for a local file; refused");
                self.up.conn.send(&[]).await?;
            } else if split {
                let Some(p) = self.up.conn.buffered()? else {
                    continue;
                };
                let verdict = judge_packet(
                    &mut tracker,
                    reply.as_mut(),
                    self.mask.as_mut(),
                    (self.settings.withhold_error_values, self.settings.max_rows),
                    &p.payload,
                    p.first_seq != p.last_seq,
                    &mut swallow,
                )?;
                match verdict {
                    Verdict::Pass => out.extend_from_slice(&p.raw),
                    Verdict::Replace(new) => {
                        frame::write_packet(&mut out, p.first_seq, &new);
                    }
                    Verdict::Drop => continue,
                    Verdict::LocalInfile => {
                        tracing::warn!("server asked for a local file; refused");
                        self.up.conn.send(&[]).await?;
                        continue;
                    }
                }
                self.client.next_seq = p.last_seq.wrapping_add(1);
                if out.len() >= FLUSH_AT {
                    self.client.write_raw(&out).await?;
                    out.clear();
                }
            } else {
                self.up.conn.fill().await?;
            }
        }
    }

    /// Sends what a walk of the read buffer let through: `out`, then the
    /// buffer's bytes `pass_from..at`, then (`end`: the reply is complete)
    /// the ERR a refusal ends the reply with. One write; none when there is
    /// nothing to send.
    async fn flush_walked(
        &mut self,
        out: &mut BytesMut,
        pass_from: usize,
        at: usize,
        end: Option<&mut Swallow>,
    ) -> Result<(), MyError> {
        let refusal = end.and_then(|s| s.refusal.take().filter(|_| s.on));
        let span = self.up.conn.buffer().get(pass_from..at).unwrap_or_default();
        if out.is_empty() && refusal.is_none() {
            if !span.is_empty() {
                self.client.write_raw(span).await?;
            }
            return Ok(());
        }
        out.extend_from_slice(span);
        if let Some((code, state, message)) = refusal {
            let mut p = BytesMut::new();
            packets::err(&mut p, code, state, &message);
            let seq = self.client.next_seq;
            self.client.next_seq = frame::write_packet(out, seq, &p);
        }
        if !out.is_empty() {
            self.client.write_raw(out).await?;
            out.clear();
        }
        Ok(())
    }
}

/// Whether [`super::statement_text::vet`] returned a text as sent: vetting
/// it again gives the same text, so it needs no second look.
#[allow(clippy::ptr_arg)] // the variant is the point
fn as_sent(text: &std::borrow::Cow<'_, [u8]>) -> bool {
    matches!(text, std::borrow::Cow::Borrowed(_))
}

/// Nanoseconds from `epoch` to now (saturating).
fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What ends a session while it waits for a command: the idle timeout
/// (`idle`, zero for none) counted from `waiting_since` (nanoseconds since
/// `epoch`), or shutdown. Created once per command loop and polled with
/// every read of a command; it is not polled while a command runs, so a
/// timer that fires meanwhile only makes it look again at the next wait.
async fn interrupt(
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    idle: Duration,
    epoch: Instant,
    waiting_since: &AtomicU64,
) -> MyError {
    // On the timer thread, like every timer: the runtime has none.
    let first = Instant::now().checked_add(idle).filter(|_| !idle.is_zero());
    let mut armed = first.is_some();
    let mut sleep = crate::timer_thread::sleep_until(first.unwrap_or(epoch));
    loop {
        if *shutdown.borrow() {
            return MyError::ShuttingDown;
        }
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // The proxy is gone: treat as shutdown.
                    return MyError::ShuttingDown;
                }
            }
            () = &mut sleep, if armed => {
                let since = Duration::from_nanos(waiting_since.load(Ordering::Relaxed));
                let deadline = since.saturating_add(idle);
                if epoch.elapsed() >= deadline {
                    return MyError::IdleTimeout;
                }
                // A command ran meanwhile: wait out the current idle period
                // (none that ends within `Instant`'s range ever ends).
                match epoch.checked_add(deadline) {
                    Some(at) => sleep = crate::timer_thread::sleep_until(at),
                    None => armed = false,
                }
            }
        }
    }
}

/// Whether the rest of a reply is dropped, and the ERR that then ends it;
/// and the rows the reply returned so far (for `max_rows`).
#[derive(Default)]
struct Swallow {
    on: bool,
    refusal: Option<(u16, &'static str, String)>,
    rows: u64,
}

/// What to do with one packet of a reply.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Forward the bytes received.
    Pass,
    /// Forward this payload instead (same sequence ids).
    Replace(Vec<u8>),
    /// Not forwarded.
    Drop,
    /// The server asks for a local file: not forwarded; answer it with an
    /// empty one.
    LocalInfile,
}

/// Follows one reply packet (its joined `payload`; `split`: it spans
/// physical packets) and masks it when the session masks. `withhold`:
/// the session's policy denies columns, so an ERR that may quote a value
/// loses it even where nothing is masked. `max_rows`: the policy's row
/// limit; past it the rest of the reply is dropped and an ERR ends it.
fn judge_packet(
    tracker: &mut Tracker,
    reply: Option<&mut ReplyMask>,
    mask: Option<&mut MyMask>,
    (withhold, max_rows): (bool, Option<u64>),
    payload: &[u8],
    split: bool,
    swallow: &mut Swallow,
) -> Result<Verdict, MyError> {
    let step = tracker.feed(payload).map_err(MyError::Upstream)?;
    if step == Step::Row {
        swallow.rows = swallow.rows.saturating_add(1);
    }
    if let Some(max) = max_rows.filter(|max| step == Step::Row && swallow.rows > *max) {
        if !swallow.on {
            swallow.on = true;
            swallow.refusal = Some((
                1317,
                "70100",
                format!("airlock: result stopped after {max} rows (policy max_rows); add a LIMIT or narrow the query"),
            ));
        }
        return Ok(Verdict::Drop);
    }
    if step == Step::LocalInfile {
        swallow.on = true;
        swallow.refusal.get_or_insert((
            1148,
            "42000",
            "airlock: LOAD DATA LOCAL is not allowed".into(),
        ));
        return Ok(Verdict::LocalInfile);
    }
    if swallow.on {
        return Ok(Verdict::Drop);
    }
    let outcome = match (reply, mask) {
        (Some(r), Some(mask)) => r.on_packet(mask, step, payload, split),
        // An ERR is never a row or a column definition; the masking path
        // ([`ReplyMask::on_packet`]) scrubs only outside those too.
        _ if withhold
            && !matches!(step, Step::Row | Step::Column)
            && payload.first() == Some(&packets::ERR) =>
        {
            match super::masking::scrub_err(payload, DetectorSet::NONE) {
                Some(clean) => Outcome::Replace(clean),
                None => Outcome::Pass,
            }
        }
        _ => Outcome::Pass,
    };
    Ok(match outcome {
        Outcome::Pass => Verdict::Pass,
        Outcome::Replace(new) => Verdict::Replace(new),
        Outcome::Refuse(code, state, message) => {
            swallow.on = true;
            swallow.refusal = Some((code, state, message));
            Verdict::Drop
        }
    })
}

/// The refusal of every statement of a session that started without
/// masking, once a reload made masking rules apply to its principal.
/// Whether a command runs a statement (COM_QUERY, COM_STMT_PREPARE,
/// COM_STMT_EXECUTE): what a session under [`masking_now_applies`] may
/// not do any more. COM_QUIT, COM_PING and the like still work.
fn classify_is_statement(payload: &[u8]) -> bool {
    matches!(payload.first(), Some(0x03 | 0x16 | 0x17))
}

fn masking_now_applies() -> String {
    format!(
        "airlock: blocked by rule {}: the rules were reloaded and masking now applies to this identity; reconnect to have it applied",
        crate::policy::builtin::ids::RULES_RELOADED
    )
}

/// Logs a refused statement as the Postgres session does (`statement
/// blocked`, with `rule`, `reason` and `sql` fields), so that one alert
/// matches both protocols (operator finding: MySQL's lines had no rule
/// field and another message).
fn log_blocked(sql: &[u8], message: &str) {
    let rule = crate::audit::session::rule_in(message).unwrap_or("-");
    let prefix = format!("airlock: blocked by rule {rule}: ");
    let reason = message
        .strip_prefix(prefix.as_str())
        .or_else(|| message.strip_prefix("airlock: "))
        .unwrap_or(message);
    tracing::warn!(rule = %rule, reason = %reason, sql = %crate::audit::event::log_preview(sql), "statement blocked");
}

//! One MySQL client session: login, then the command loop. See the module
//! docs of [`crate::mysql`] for the state machine.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use airlock_protocol::mysql::{com, packets, status};

use super::client_auth::{authenticate, Hello};
use super::commands::{classify, Action};
use super::conn::{Leg, Packet, PacketConn};
use super::error::MyError;
use super::masking::{Action as ColAction, ColumnDef, MyMask};
use super::response::{Expect, Step, Tracker};
use super::upstream::{self, Upstream};
use crate::config::{Protocol, Target};
use crate::masking::StatementPlan;
use crate::policy::{
    Decision, Dialect, Effects, Gate, Principal, Request, SessionContext, SessionSettings, Source,
};
use crate::proxy::Proxy;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Flush forwarded reply bytes to the client at least this often.
const FLUSH_AT: usize = 256 * 1024;

/// Runs a session to completion. Never panics on client input; errors end
/// the session with an ERR to the client where one can still be sent.
pub async fn run(
    proxy: Arc<Proxy>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
) {
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("mysql_session", id, client = %peer);
    async move {
        let _ = tcp.set_nodelay(true);
        let max = proxy.config().limits.max_message_size.0;
        let mut client = PacketConn::new(tcp, max, Leg::Client);
        let result = match permit {
            Some(_) => serve(&proxy, &mut client, peer).await,
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
        let _ = client.stream.shutdown().await;
    }
    .instrument(span)
    .await
}

async fn serve(
    proxy: &Arc<Proxy>,
    client: &mut PacketConn,
    peer: SocketAddr,
) -> Result<(), MyError> {
    let Hello { user, response } = authenticate(proxy, client, peer.ip()).await?;
    let config = proxy.config();
    let identity = config
        .identities
        .get(&user)
        .ok_or_else(|| super::client_auth::access_denied(&user, peer.ip(), true))?;
    let database = response
        .database
        .as_deref()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            MyError::refused(
                1046,
                "3D000",
                "No database selected: connect with the target name as the database",
            )
        })?;
    let target = config
        .targets
        .get(&database)
        .filter(|t| t.protocol == Protocol::Mysql)
        .ok_or_else(|| MyError::refused(1049, "42000", format!("Unknown database '{database}'")))?;
    if !identity.may_use(&database) {
        return Err(MyError::refused(
            1044,
            "42000",
            format!("Access denied for user '{user}'@'%' to database '{database}'"),
        ));
    }
    let principal = Principal {
        identity: user.clone(),
        user: identity.user.clone(),
        model: identity.model.clone(),
        groups: identity.groups.clone(),
        target: database.clone(),
    };
    tracing::info!(identity = %user, model = identity.model.as_deref().unwrap_or(""), target = %database, "agent authenticated");
    let mask = proxy
        .masker()
        .filter(|m| m.is_active_for(&principal))
        .map(|masker| MyMask {
            detectors: masker.detectors_for(&principal),
            masker,
            principal: principal.clone(),
        });
    let gate = proxy.gate();
    let settings = gate.session_settings(&principal);
    let up = upstream::connect(
        target,
        &response,
        &settings,
        config.limits.connect_timeout,
        config.limits.max_message_size.0,
    )
    .await?;
    tracing::info!(
        server_connection = up.connection_id,
        read_only = settings.read_only,
        "upstream connected"
    );

    let mut ok = BytesMut::new();
    packets::ok(&mut ok, 0, 0, status::AUTOCOMMIT, 0);
    client.send(&ok).await?;

    let mut session = Session {
        proxy,
        target,
        principal,
        settings,
        context: SessionContext {
            current_database: Some(target.database.clone()),
            ..Default::default()
        },
        prepared: HashSet::new(),
        mask,
        client,
        up,
    };
    session.commands().await
}

struct Session<'a> {
    proxy: &'a Arc<Proxy>,
    target: &'a Target,
    principal: Principal,
    settings: SessionSettings,
    context: SessionContext,
    /// Statement ids from prepares airlock allowed.
    prepared: HashSet<u32>,
    /// Set when masking rules or detectors apply to the principal.
    mask: Option<MyMask>,
    client: &'a mut PacketConn,
    up: Upstream,
}

impl Session<'_> {
    async fn commands(&mut self) -> Result<(), MyError> {
        let idle = self.proxy.config().limits.idle_timeout;
        let mut shutdown = self.proxy.shutdown.clone();
        loop {
            let cmd = tokio::select! {
                r = self.client.read() => r?,
                _ = tokio::time::sleep(idle), if !idle.is_zero() => return Err(MyError::IdleTimeout),
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Err(MyError::ShuttingDown);
                    }
                    continue;
                }
            };
            if cmd.first_seq != 0 {
                tracing::debug!(seq = cmd.first_seq, "command with non-zero sequence id");
            }
            // Replies from airlock continue the command's sequence.
            self.client.next_seq = cmd.last_seq.wrapping_add(1);
            if !self.command(cmd).await? {
                return Ok(());
            }
        }
    }

    /// Handles one command; `false` ends the session.
    async fn command(&mut self, cmd: Packet) -> Result<bool, MyError> {
        let payload = &cmd.payload;
        match classify(payload) {
            Action::Quit => {
                let _ = self.up.conn.write_raw(&cmd.raw).await;
                return Ok(false);
            }
            Action::Refuse(why) => {
                tracing::info!(command = why, "command refused");
                self.refuse(1047, "08S01", &format!("airlock: {why}"))
                    .await?;
            }
            Action::Query => {
                if let Some(effects) = self.judge(Source::Query, &payload[1..]).await? {
                    let Some(plans) = self.plan_masking(&payload[1..], false).await? else {
                        return Ok(true);
                    };
                    self.apply(effects);
                    self.up.conn.write_raw(&cmd.raw).await?;
                    self.relay_with(Expect::Query, plans).await?;
                }
            }
            Action::Prepare => {
                if let Some(effects) = self.judge(Source::Parse, &payload[1..]).await? {
                    if self.plan_masking(&payload[1..], true).await?.is_none() {
                        return Ok(true);
                    }
                    self.apply(effects);
                    let t = self.forward(&cmd.raw, Expect::Prepare).await?;
                    if let Some(id) = t.prepared {
                        self.prepared.insert(id);
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
                if self.judge(Source::Query, sql.as_bytes()).await?.is_some() {
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
                if self.judge(Source::Query, sql.as_bytes()).await?.is_some() {
                    self.forward(&cmd.raw, Expect::FieldList).await?;
                }
            }
            Action::Statement { id, reply } => {
                let known = self.prepared.contains(&id)
                    || (id == u32::MAX && !self.prepared.is_empty())
                    || !self.proxy.gate().vets_prepared();
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
                        self.forward(&cmd.raw, expect).await?;
                    }
                    None => {
                        if payload[0] == com::STMT_CLOSE {
                            self.prepared.remove(&id);
                        }
                        self.up.conn.write_raw(&cmd.raw).await?;
                    }
                }
            }
            Action::Forward(expect) => {
                self.forward(&cmd.raw, expect).await?;
            }
            Action::Reset => {
                self.up.conn.write_raw(&cmd.raw).await?;
                let reply = self.up.conn.read().await?;
                if reply.payload.first() == Some(&packets::OK) {
                    self.prepared.clear();
                    self.context = SessionContext {
                        current_database: Some(self.target.database.clone()),
                        ..Default::default()
                    };
                    upstream::apply_settings(&mut self.up, &self.settings).await?;
                }
                self.client.write_raw(&reply.raw).await?;
            }
        }
        Ok(true)
    }

    /// Sends a locally generated ERR for the current command.
    async fn refuse(&mut self, code: u16, state: &str, message: &str) -> Result<(), MyError> {
        self.client.send_err(code, state, message).await
    }

    /// Judges a statement; `None` when it was refused (the client has its ERR).
    async fn judge(&mut self, source: Source, sql: &[u8]) -> Result<Option<Effects>, MyError> {
        let gate: Arc<dyn Gate> = self.proxy.gate();
        let judgement = gate.judge(
            &self.principal,
            &Request {
                dialect: Dialect::MySql,
                source,
                sql,
                session: &self.context,
            },
        );
        if let Some(would) = &judgement.would {
            tracing::warn!(decision = %would, sql = %String::from_utf8_lossy(sql), "observe mode: would refuse");
        }
        // Executable comments (`/*! ... */`, `/*M! ... */`) run on the server
        // but hide from parsers; refused outright (string literals included).
        let executable =
            sql.windows(3).any(|w| w == b"/*!") || sql.windows(4).any(|w| w == b"/*M!");
        let refusal = match &judgement.decision {
            _ if executable => {
                Some("airlock: executable comments (/*! ... */) are not allowed".to_owned())
            }
            Decision::Allow => None,
            d @ (Decision::Block { .. } | Decision::RequireApproval { .. }) => {
                Some(format!("airlock: {d}"))
            }
        };
        // USE of any other database is refused whatever the rules say.
        let refusal = refusal.or_else(|| {
            judgement
                .effects
                .current_database
                .as_ref()
                .filter(|db| **db != self.target.database)
                .map(|db| format!("airlock: only the target's database may be used, not '{db}'"))
        });
        match refusal {
            None => Ok(Some(judgement.effects)),
            Some(message) => {
                tracing::info!(sql = %String::from_utf8_lossy(sql), reason = %message, "statement refused");
                self.refuse(1142, "42000", &message).await?;
                Ok(None)
            }
        }
    }

    fn apply(&mut self, effects: Effects) {
        for name in effects.prepared {
            self.context.prepared.insert(name);
        }
        for name in &effects.deallocated {
            self.context.prepared.remove(name);
        }
        if effects.deallocate_all {
            self.context.prepared.clear();
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

    /// Plans `sql` for masking (when masking applies). `None` when the
    /// statement was refused (the client has its ERR); `Some(None)` when
    /// nothing needs masking work.
    async fn plan_masking(
        &mut self,
        sql: &[u8],
        prepare: bool,
    ) -> Result<Option<Option<Vec<StatementPlan>>>, MyError> {
        let Some(mask) = &self.mask else {
            return Ok(Some(None));
        };
        let refusal = match mask.plan(sql, &self.context) {
            Err(message) => message,
            Ok(plans) if prepare && mask.prepared_needs_masking(&plans) => {
                "airlock: masked columns are not supported over server-side prepared statements yet; use text queries".to_owned()
            }
            Ok(plans) => return Ok(Some(Some(plans))),
        };
        tracing::info!(sql = %String::from_utf8_lossy(sql), reason = %refusal, "statement refused by masking");
        self.refuse(1142, "42000", &refusal).await?;
        Ok(None)
    }

    /// Relays the server's reply to the client until it is complete.
    async fn relay(&mut self, expect: Expect) -> Result<Tracker, MyError> {
        self.relay_with(expect, None).await
    }

    /// Relays a reply, masking result sets by `plans` (one per statement)
    /// when the session masks.
    async fn relay_with(
        &mut self,
        expect: Expect,
        plans: Option<Vec<StatementPlan>>,
    ) -> Result<Tracker, MyError> {
        let mut tracker = Tracker::new(expect);
        let mut out = BytesMut::new();
        let mut swallow = false;
        let mut refusal: Option<(u16, &str, String)> = None;
        let masking = self.mask.is_some();
        // Prepare replies are held back until their columns are vetted.
        let hold = masking && expect == Expect::Prepare;
        let start_seq = self.client.next_seq;
        let mut prepare_blocked = false;
        // Per result set: its plan index, column definitions, actions.
        let mut result = 0usize;
        let mut plan: Option<StatementPlan> = None;
        let mut cols: Vec<ColumnDef> = Vec::new();
        let mut actions: Option<Vec<ColAction>> = None;
        while !tracker.is_done() {
            let p = match self.up.conn.buffered()? {
                Some(p) => p,
                None => {
                    if !out.is_empty() && !hold {
                        self.client.write_raw(&out).await?;
                        out.clear();
                    }
                    self.up.conn.read().await?
                }
            };
            let step = tracker.feed(&p.payload).map_err(MyError::Upstream)?;
            if step == Step::LocalInfile {
                // Never forwarded: answer with an empty file, drop the rest
                // of the reply and tell the client.
                tracing::warn!("server asked for a local file; refused");
                self.up.conn.next_seq = p.last_seq.wrapping_add(1);
                self.up.conn.send(&[]).await?;
                swallow = true;
                refusal.get_or_insert((
                    1148,
                    "42000",
                    "airlock: LOAD DATA LOCAL is not allowed".into(),
                ));
                continue;
            }
            if swallow {
                continue;
            }
            let mut replaced: Option<Vec<u8>> = None;
            if let Some(mask) = &self.mask {
                match step {
                    Step::ColumnCount if expect == Expect::Query => {
                        plan = plans.as_ref().and_then(|ps| ps.get(result).cloned());
                        result += 1;
                        cols.clear();
                        actions = None;
                    }
                    Step::Column => {
                        let def =
                            super::masking::parse_column_def(&p.payload).ok_or_else(|| {
                                MyError::Upstream("malformed column definition".into())
                            })?;
                        if expect == Expect::Prepare && mask.source_mask(&def).is_some() {
                            prepare_blocked = true;
                        }
                        cols.push(def);
                    }
                    Step::Row if expect == Expect::Query => {
                        if actions.is_none() {
                            match mask.actions(plan.as_ref(), &cols) {
                                Ok(a) => {
                                    let all_clear = a
                                        .iter()
                                        .all(|a| a.mask == crate::masking::ColumnMask::Clear);
                                    actions = Some(if all_clear { Vec::new() } else { a });
                                }
                                Err(m) => {
                                    swallow = true;
                                    refusal = Some((1142, "42000", m));
                                    continue;
                                }
                            }
                        }
                        if let Some(a) = actions.as_ref().filter(|a| !a.is_empty()) {
                            match mask.rewrite_row(a, &p.payload) {
                                Ok(new) if new.is_some() && p.first_seq != p.last_seq => {
                                    swallow = true;
                                    refusal = Some((
                                        1153,
                                        "08S01",
                                        "airlock: a masked row over 16 MiB cannot be rewritten"
                                            .into(),
                                    ));
                                    continue;
                                }
                                Ok(new) => replaced = new,
                                Err(m) => {
                                    swallow = true;
                                    refusal = Some((1153, "08S01", format!("airlock: {m}")));
                                    continue;
                                }
                            }
                        }
                    }
                    Step::Row => {}
                    _ if p.payload.first() == Some(&packets::ERR) => {
                        replaced = mask.scrub_err(&p.payload);
                    }
                    _ if p.payload.first() == Some(&packets::OK) && expect == Expect::Query => {
                        // A statement that returned no rows used its plan.
                        result += 1;
                    }
                    _ => {}
                }
            }
            match replaced {
                Some(payload) => {
                    airlock_protocol::mysql::frame::write_packet(&mut out, p.first_seq, &payload);
                }
                None => out.extend_from_slice(&p.raw),
            }
            self.client.next_seq = p.last_seq.wrapping_add(1);
            if out.len() >= FLUSH_AT && !hold {
                self.client.write_raw(&out).await?;
                out.clear();
            }
        }
        if prepare_blocked {
            out.clear();
            self.client.next_seq = start_seq;
            if let Some(id) = tracker.prepared.take() {
                let mut p = BytesMut::new();
                p.put_u8(com::STMT_CLOSE);
                p.put_u32_le(id);
                self.up.conn.next_seq = 0;
                self.up.conn.send(&p).await?;
            }
            swallow = true;
            refusal = Some((
                1142,
                "42000",
                "airlock: masked columns are not supported over server-side prepared statements yet; use text queries".into(),
            ));
        }
        if let (true, Some((code, state, message))) = (swallow, refusal) {
            let mut p = BytesMut::new();
            packets::err(&mut p, code, state, &message);
            let seq = self.client.next_seq;
            self.client.next_seq = airlock_protocol::mysql::frame::write_packet(&mut out, seq, &p);
        }
        if !out.is_empty() {
            self.client.write_raw(&out).await?;
        }
        Ok(tracker)
    }
}

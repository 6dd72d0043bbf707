//! Starting airlock: binding listeners (Postgres, MySQL, admin HTTP), and
//! stopping on a signal.
//!
//! [`start`] binds and returns a [`Running`] handle, which tests and the demo
//! use directly; `airlock serve` calls [`run_until_signal`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::proxy::Proxy;

/// A running airlock.
pub struct Running {
    /// Bound address of the Postgres listener (unspecified if none).
    pub postgres_addr: SocketAddr,
    /// Bound address of the MySQL listener, if configured.
    pub mysql_addr: Option<SocketAddr>,
    /// Bound address of the admin HTTP listener, if configured.
    pub admin_addr: Option<SocketAddr>,
    pub proxy: Arc<Proxy>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    watcher: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and waits for sessions to end (up to the configured
    /// shutdown timeout).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Held statements are refused now rather than at their timeout, so
        // their sessions can finish.
        self.proxy.approvals.cancel_all();
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(audit) = &self.proxy.audit {
            // Drain what the sessions recorded.
            let audit = std::sync::Arc::clone(audit);
            let _ = tokio::task::spawn_blocking(move || audit.shutdown()).await;
        }
        self.watcher.abort();
        if let Some(admin) = self.admin {
            admin.abort();
        }
    }
}

/// Binds the listeners and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let pg_addr = config.listen.postgres;
    let my_addr = config.listen.mysql;
    let (tx, rx) = watch::channel(false);
    let proxy = Arc::new(Proxy::new(config, rx)?);
    let mut tasks = Vec::new();
    let mut postgres_addr = SocketAddr::from(([0, 0, 0, 0], 0));
    if let Some(addr) = pg_addr {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (listen.postgres)"))?;
        postgres_addr = listener.local_addr()?;
        tasks.push(tokio::spawn(crate::pg::listener::serve(
            Arc::clone(&proxy),
            listener,
        )));
    }
    let mut mysql_addr = None;
    if let Some(addr) = my_addr {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (listen.mysql)"))?;
        mysql_addr = Some(listener.local_addr()?);
        tasks.push(tokio::spawn(crate::mysql::listener::serve(
            Arc::clone(&proxy),
            listener,
        )));
    }
    if proxy.config().policy.rules.is_none() {
        tracing::warn!("no [policy] rules configured: every statement is allowed");
    }
    let (admin_addr, admin) = match crate::admin::start(Arc::clone(&proxy)).await? {
        Some((addr, task)) => (Some(addr), Some(task)),
        None => (None, None),
    };
    let watcher = tokio::spawn(crate::reload::watch(Arc::clone(&proxy)));
    Ok(Running {
        postgres_addr,
        mysql_addr,
        admin_addr,
        admin,
        proxy,
        shutdown: tx,
        tasks,
        watcher,
    })
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run_until_signal(config: Config) -> anyhow::Result<()> {
    // Registered before airlock says it is listening: a supervisor that
    // stops it right after must get a graceful shutdown, not the default
    // action of SIGTERM.
    let mut signals = StopSignals::register(false)?;
    let running = start(config).await?;
    let or_off =
        |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    // An unconfigured Postgres listener's address is 0.0.0.0:0.
    let postgres = Some(running.postgres_addr).filter(|a| a.port() != 0);
    tracing::info!(postgres = %or_off(postgres), mysql = %or_off(running.mysql_addr), admin = %or_off(running.admin_addr), "airlock is listening");
    signals.wait().await;
    tracing::info!("shutting down: no new connections; waiting for sessions");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The signals that stop airlock: SIGTERM and SIGINT, and SIGHUP if asked
/// for. Registering replaces their default action (ending the process at
/// once), so it is done before anything tells the outside world that
/// airlock is up, and [`StopSignals::wait`] then sees a signal that came
/// in between.
pub(crate) struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub(crate) fn register(hangup: bool) -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hangup: if hangup {
                Some(signal(SignalKind::hangup())?)
            } else {
                None
            },
        })
    }

    /// Waits for one of the signals.
    pub(crate) async fn wait(&mut self) {
        let hangup = async {
            match self.hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
            _ = hangup => {}
        }
    }
}

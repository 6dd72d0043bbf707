//! The admin listener.
//!
//! An accept error that is not about one connection (say `EMFILE`) is
//! waited out on the timer thread, not with `tokio::time::sleep` as axum's
//! own listener does, which would panic on airlock's runtime: it has no
//! time driver (see [`crate::timer_thread`]). What failed is logged.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long to wait after an accept error that is not about one
/// connection: the process may be out of file descriptors, and accepting
/// again at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// `[admin] listen`, bound.
pub struct AdminListener(pub TcpListener);

impl AdminListener {
    /// The next connection, waiting out accept errors.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(e) if is_one_connection(&e) => {}
                Err(e) => {
                    tracing::error!(error = %e, "admin listener: accept failed; retrying in 1 s");
                    crate::timer_thread::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// An error about the one connection being accepted (it went away before
/// it was accepted), not about the listener.
fn is_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

//! The admin listener as axum sees it.
//!
//! axum's own `Listener` for a `TcpListener` waits out an accept error
//! (say `EMFILE`) with `tokio::time::sleep`, which would panic on airlock's
//! runtime: it has no time driver (see [`crate::timer_thread`]). This one
//! waits on the timer thread instead, and logs what failed.

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

impl axum::serve::Listener for AdminListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
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

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
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

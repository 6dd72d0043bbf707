//! Serving the admin router: HTTP/1.1, with a deadline on every request
//! head.
//!
//! `axum::serve` gives hyper no timer, so a client that connects and sends
//! nothing, or a header line a minute, holds its connection and task for
//! as long as it likes; enough of them exhaust the process's descriptors.
//! Here each connection gets hyper's header-read timeout, run on
//! [`crate::timer_thread`] (airlock's runtime has no tokio timer, see
//! `main.rs`): a request head, the first or the next on a kept-alive
//! connection, must arrive in full within [`HEADER_READ_TIMEOUT`] of the
//! server starting to read it, or the connection is closed.
//!
//! At most [`MAX_CONNECTIONS`] are open at once, so that clients of the
//! admin port cannot take the descriptors the proxy's own listeners need.
//! At the cap, the connection quiet longest (for at least [`MIN_IDLE`]) is
//! closed to make room, or else the new one ([`super::slots`]).
//!
//! On shutdown the listener stops accepting, each connection finishes the
//! request it is serving and closes, and [`serve`] returns when all have.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::listener::AdminListener;
use super::slots::{Slots, Taken};
use crate::log_every::LogEvery;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// How long a client has to send a whole request head (request line and
/// headers). Admin clients (curl, the CLI, a browser) send it at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin connections open at once, at most.
pub const MAX_CONNECTIONS: usize = 64;

/// At the cap, a connection that has moved no byte for this long is closed
/// to make room for a new one. An admin request is answered in
/// milliseconds; between requests a browser's kept-alive connection is
/// quiet, and opens a new one if it is closed.
pub const MIN_IDLE: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` until `stop` completes, then drains.
pub async fn serve(mut listener: AdminListener, app: Router, stop: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let slots = Slots::new(MAX_CONNECTIONS, MIN_IDLE);
    let mut stop = std::pin::pin!(stop);
    // Connections closed at the cap since the last warning, which is
    // logged at most every 10 s: quiet ones closed to make room, and new
    // ones closed when none was quiet.
    let (mut made_room, mut turned_away) = (0u64, 0u64);
    let mut warn = LogEvery::new(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let slot = match slots.take() {
            Taken::Free(slot) => Some(slot),
            Taken::Evicted(slot) => {
                made_room += 1;
                Some(slot)
            }
            Taken::Full => {
                turned_away += 1;
                None
            }
        };
        if made_room + turned_away > 0 && warn.hit().is_some() {
            tracing::warn!(%peer, closed_quiet = made_room, closed_new = turned_away, "admin listener: {MAX_CONNECTIONS} connections open; closing the quietest to make room, or the new one when none is quiet");
            (made_room, turned_away) = (0, 0);
        }
        let Some(slot) = slot else {
            continue;
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TimerThread)
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = http.serve_connection(
            TokioIo::new(slot.watch(stream)),
            TowerToHyperService::new(app.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                served = conn => if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "admin connection closed on an error");
                },
                () = slot.evicted() => {
                    tracing::debug!(%peer, "admin connection closed to make room: quiet longest");
                }
            }
            drop(slot);
        });
    }
    graceful.shutdown().await;
}

/// hyper's timer on [`crate::timer_thread`].
#[derive(Clone, Copy, Debug)]
struct TimerThread;

impl hyper::rt::Timer for TimerThread {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        match Instant::now().checked_add(duration) {
            Some(deadline) => self.sleep_until(deadline),
            None => Box::pin(Never),
        }
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep(crate::timer_thread::sleep_until(deadline)))
    }
}

/// A timer-thread sleep as hyper wants it.
struct Sleep(crate::timer_thread::Sleep);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for Sleep {}

/// A sleep past what `Instant` can hold: it never ends.
struct Never;

impl Future for Never {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl hyper::rt::Sleep for Never {}

//! The admin listener's connection slots.
//!
//! At most [`Slots::new`]'s `max` admin connections are open at once, so
//! that clients of the admin port cannot take the descriptors the proxy's
//! own listeners need. At the cap, the connection that has been quiet
//! longest (no byte read or written for at least `min_idle`) is closed to
//! make room for the new one; only when none is that quiet is the new one
//! closed instead.
//!
//! Red-team finding: the new connection was always the one closed, so 64
//! sockets that sent nothing (each dropped after the header timeout and
//! reopened) kept the operator's `curl` and console out. An operator's
//! request is answered in milliseconds, so it is never the quietest; an
//! idle flood now mostly closes its own sockets.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The open admin connections.
pub struct Slots {
    open: Arc<Mutex<Vec<Arc<Conn>>>>,
    epoch: Instant,
    max: usize,
    min_idle: Duration,
}

/// One open connection: when it last moved a byte, and how to close it.
struct Conn {
    /// Milliseconds since [`Slots::epoch`].
    last_ms: AtomicU64,
    evict: Notify,
}

/// What [`Slots::take`] did to find room.
pub enum Taken {
    /// There was room.
    Free(Slot),
    /// The quietest connection is being closed to make room.
    Evicted(Slot),
    /// At the cap, with no connection quiet for long enough.
    Full,
}

impl Slots {
    pub fn new(max: usize, min_idle: Duration) -> Slots {
        Slots {
            open: Arc::default(),
            epoch: Instant::now(),
            max,
            min_idle,
        }
    }

    /// A slot for a connection accepted now.
    pub fn take(&self) -> Taken {
        let now = self.now_ms();
        let mut open = lock(&self.open);
        let mut evicted = false;
        if open.len() >= self.max {
            let quiet = open.iter().map(|c| c.last_ms.load(Ordering::Relaxed));
            let min_idle = u64::try_from(self.min_idle.as_millis()).unwrap_or(u64::MAX);
            let Some(i) = quietest(quiet, now, min_idle) else {
                return Taken::Full;
            };
            // Its task sees the permit, drops the connection and its Slot,
            // which finds itself gone from the list already.
            open.swap_remove(i).evict.notify_one();
            evicted = true;
        }
        let conn = Arc::new(Conn {
            last_ms: AtomicU64::new(now),
            evict: Notify::new(),
        });
        open.push(Arc::clone(&conn));
        let slot = Slot {
            conn,
            open: Arc::clone(&self.open),
            epoch: self.epoch,
        };
        if evicted {
            Taken::Evicted(slot)
        } else {
            Taken::Free(slot)
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch)
    }
}

/// The index of the connection quiet longest, if it has been quiet for at
/// least `min_idle` ms at `now` (times in ms since one epoch).
fn quietest(last: impl Iterator<Item = u64>, now: u64, min_idle: u64) -> Option<usize> {
    let (i, at) = last.enumerate().min_by_key(|&(_, at)| at)?;
    (now.saturating_sub(at) >= min_idle).then_some(i)
}

fn millis(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn lock(open: &Mutex<Vec<Arc<Conn>>>) -> MutexGuard<'_, Vec<Arc<Conn>>> {
    // The list holds no invariant a panic could break halfway.
    open.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection's place among the open ones; dropping it frees the place.
pub struct Slot {
    conn: Arc<Conn>,
    open: Arc<Mutex<Vec<Arc<Conn>>>>,
    epoch: Instant,
}

impl Slot {
    /// `io`, marking this connection active whenever it moves a byte.
    pub fn watch<S>(&self, io: S) -> Watched<S> {
        Watched {
            io,
            conn: Arc::clone(&self.conn),
            epoch: self.epoch,
        }
    }

    /// Completes when the connection is to be closed to make room.
    pub fn evicted(&self) -> impl Future<Output = ()> + '_ {
        self.conn.evict.notified()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(i) = open.iter().position(|c| Arc::ptr_eq(c, &self.conn)) {
            open.swap_remove(i);
        }
    }
}

/// An admin connection's stream, noting when it last moved a byte.
pub struct Watched<S> {
    io: S,
    conn: Arc<Conn>,
    epoch: Instant,
}

impl<S> Watched<S> {
    fn touch(&self) {
        self.conn
            .last_ms
            .store(millis(self.epoch), Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quietest_connection_goes_if_it_has_been_quiet_long_enough() {
        let last = [500u64, 100, 300];
        assert_eq!(quietest(last.into_iter(), 2_100, 2_000), Some(1));
        assert_eq!(quietest(last.into_iter(), 2_099, 2_000), None);
        assert_eq!(quietest(std::iter::empty(), 10_000, 0), None);
    }

    #[tokio::test]
    async fn at_the_cap_a_quiet_connection_makes_room_and_a_busy_one_does_not() {
        let slots = Slots::new(2, Duration::ZERO);
        let (Taken::Free(a), Taken::Free(b)) = (slots.take(), slots.take()) else {
            panic!("room for two");
        };
        // Both quiet for zero ms or more: the first taken goes.
        let Taken::Evicted(c) = slots.take() else {
            panic!("no room made");
        };
        a.evicted().await;
        drop(a);
        assert_eq!(lock(&slots.open).len(), 2);
        drop((b, c));
        assert!(lock(&slots.open).is_empty());

        let slots = Slots::new(1, Duration::from_secs(3600));
        let Taken::Free(_busy) = slots.take() else {
            panic!("room for one");
        };
        assert!(matches!(slots.take(), Taken::Full));
    }
}

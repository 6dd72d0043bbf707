//! A byte stream that is plain TCP or TLS over TCP, on either leg.
//!
//! Sessions start on plain TCP and may upgrade after an SSLRequest; the rest
//! of the code reads and writes a [`Stream`] without caring which it is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum Stream {
    Plain(TcpStream),
    /// airlock is the TLS server (client leg).
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// airlock is the TLS client (upstream leg).
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// The TCP socket under any TLS.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::ServerTls(s) => s.get_ref().0,
            Stream::ClientTls(s) => s.get_ref().0,
        }
    }
}

/// Completes when the peer has shut down its side of `tcp` (a FIN or a
/// reset), whatever it sent before that is still unread: readiness is
/// looked at, nothing is read, so bytes the peer sent stay for the next
/// read. Bytes without a FIN make the socket readable but not closed; it
/// looks again a second later rather than spin on that readiness.
pub async fn peer_hung_up(tcp: &TcpStream) {
    loop {
        match tcp.ready(tokio::io::Interest::READABLE).await {
            Ok(ready) if !ready.is_read_closed() => {
                crate::timer_thread::sleep(std::time::Duration::from_secs(1)).await;
            }
            _ => return,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self.get_mut() {
            Stream::Plain(s) => Pin::new(s).$method($($arg),*),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).$method($($arg),*),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).$method($($arg),*),
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::ServerTls(s) => s.is_write_vectored(),
            Stream::ClientTls(s) => s.is_write_vectored(),
        }
    }
}

/// The read half of a [`Stream`] borrowed for a relay: for plain TCP the
/// socket's own lock-free half; for TLS, which shares one state machine
/// between directions, tokio's locked split.
pub enum ReadHalf<'a> {
    Tcp(tokio::net::tcp::ReadHalf<'a>),
    Tls(tokio::io::ReadHalf<&'a mut Stream>),
}

/// The write half matching [`ReadHalf`].
pub enum WriteHalf<'a> {
    Tcp(tokio::net::tcp::WriteHalf<'a>),
    Tls(tokio::io::WriteHalf<&'a mut Stream>),
}

impl Stream {
    /// Splits the stream into halves that can be driven concurrently.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Stream::Plain(tcp) => {
                let (r, w) = tcp.split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            tls => {
                let (r, w) = tokio::io::split(tls);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

macro_rules! delegate_half {
    ($self:ident, $half:ident, $method:ident($($arg:expr),*)) => {
        match $self.get_mut() {
            $half::Tcp(s) => Pin::new(s).$method($($arg),*),
            $half::Tls(s) => Pin::new(s).$method($($arg),*),
        }
    };
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate_half!(self, ReadHalf, poll_read(cx, buf))
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate_half!(self, WriteHalf, poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_half!(self, WriteHalf, poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_half!(self, WriteHalf, poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::peer_hung_up;

    /// A connected pair on loopback: (airlock's end, the peer's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        (ours, peer)
    }

    #[tokio::test]
    async fn a_hang_up_is_seen_with_bytes_still_unread() {
        let (mut ours, mut peer) = pair().await;
        peer.write_all(b"quit").await.unwrap();
        drop(peer);
        crate::timer_thread::timeout(Duration::from_secs(10), peer_hung_up(&ours))
            .await
            .expect("the hang-up was not seen");
        // Nothing was read: the bytes are still there, then EOF.
        let mut got = Vec::new();
        ours.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"quit");
    }

    #[tokio::test]
    async fn bytes_without_a_hang_up_are_not_one() {
        let (mut ours, mut peer) = pair().await;
        peer.write_all(b"next").await.unwrap();
        let waited =
            crate::timer_thread::timeout(Duration::from_millis(2500), peer_hung_up(&ours)).await;
        assert!(waited.is_err(), "bytes alone were taken for a hang-up");
        let mut got = [0u8; 4];
        ours.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"next");
        // A shutdown of the peer's writing side is one, seen on the next look.
        peer.shutdown().await.unwrap();
        crate::timer_thread::timeout(Duration::from_secs(10), peer_hung_up(&ours))
            .await
            .expect("the hang-up was not seen");
    }
}

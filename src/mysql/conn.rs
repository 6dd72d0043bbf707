//! One leg of a session as MySQL packets: buffered reads of whole logical
//! packets (16 MiB continuations joined for inspection, raw bytes kept for
//! forwarding) and the sequence id of the next packet airlock sends.
//!
//! The leg starts on plain TCP and may be upgraded to TLS once, right after
//! the SSLRequest ([`PacketConn::accept_tls`] on the client leg,
//! [`PacketConn::connect_tls`] upstream). An upgrade with bytes already
//! buffered is refused: those bytes were sent before the handshake and must
//! not be taken as protected. The client leg therefore reads the packet that
//! may be an SSLRequest with [`PacketConn::read_exact_packet`], which leaves
//! the ClientHello that follows it on the socket.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use airlock_protocol::mysql::frame;

use super::error::MyError;
use crate::net::Stream;

/// One logical packet.
#[derive(Debug, Clone)]
pub struct Packet {
    /// The exact bytes received, headers included.
    pub raw: Bytes,
    /// The joined payload.
    pub payload: Bytes,
    pub first_seq: u8,
    pub last_seq: u8,
}

/// Which leg, for error mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    Client,
    Server,
}

/// A read buffer with less spare room than this grows before a read.
const MIN_SPARE: usize = 4 * 1024;
/// How much a read buffer grows by when it runs short.
const READ_CHUNK: usize = 16 * 1024;

pub struct PacketConn {
    /// `None` only while a TLS upgrade is under way (or after one failed).
    stream: Option<Stream>,
    rbuf: BytesMut,
    max: usize,
    leg: Leg,
    /// Sequence id of the next packet airlock writes on this leg.
    pub next_seq: u8,
    /// Client leg: the capability flags negotiated at login (masked to what
    /// airlock offers), for parsing later commands such as COM_CHANGE_USER.
    pub capabilities: u32,
    /// Client leg: the max packet size the client announced at login.
    pub max_packet: u32,
}

impl PacketConn {
    pub fn new(stream: TcpStream, max: usize, leg: Leg) -> Self {
        PacketConn {
            stream: Some(Stream::Plain(stream)),
            rbuf: BytesMut::with_capacity(16 * 1024),
            max,
            leg,
            next_seq: 0,
            capabilities: 0,
            max_packet: 0,
        }
    }

    /// Completes when the peer hangs up (see [`crate::net::peer_hung_up`]);
    /// never while a TLS upgrade is under way.
    pub async fn hung_up(&self) {
        match &self.stream {
            Some(s) => crate::net::peer_hung_up(s.tcp()).await,
            None => std::future::pending().await,
        }
    }

    /// The peer's IP address, for messages.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        let addr = self.stream.as_ref()?.tcp().peer_addr();
        addr.ok().map(|a| a.ip())
    }

    /// True once the leg runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(Stream::is_tls)
    }

    fn gone(&self, detail: impl std::fmt::Display) -> MyError {
        match self.leg {
            Leg::Client => {
                tracing::debug!(error = %detail, "client connection failed");
                MyError::ClientGone
            }
            Leg::Server => MyError::Upstream(detail.to_string()),
        }
    }

    /// The error for a leg whose stream was lost in a failed TLS upgrade.
    fn lost(leg: Leg) -> MyError {
        match leg {
            Leg::Client => MyError::ClientGone,
            Leg::Server => MyError::Upstream("connection lost in a TLS upgrade".into()),
        }
    }

    fn io(&mut self) -> Result<&mut Stream, MyError> {
        let leg = self.leg;
        self.stream.as_mut().ok_or_else(|| Self::lost(leg))
    }

    /// Takes the plain TCP stream for a TLS upgrade.
    fn take_plain(&mut self) -> Result<TcpStream, MyError> {
        if !self.rbuf.is_empty() {
            return Err(MyError::Protocol(
                "data sent before the TLS handshake completed".into(),
            ));
        }
        match self.stream.take() {
            Some(Stream::Plain(tcp)) => Ok(tcp),
            other => {
                self.stream = other;
                Err(MyError::Protocol("TLS requested twice".into()))
            }
        }
    }

    /// Client leg: completes the TLS handshake after an SSLRequest.
    pub async fn accept_tls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Result<(), MyError> {
        let tcp = self.take_plain()?;
        let tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| MyError::Protocol(format!("TLS handshake failed: {e}")))?;
        self.stream = Some(Stream::ServerTls(Box::new(tls)));
        Ok(())
    }

    /// Upstream leg: starts TLS after airlock sent its SSLRequest.
    pub async fn connect_tls(
        &mut self,
        config: std::sync::Arc<rustls::ClientConfig>,
        host: &str,
    ) -> Result<(), MyError> {
        let tcp = self.take_plain()?;
        let name = crate::tls::server_name(host).map_err(|e| MyError::Upstream(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| MyError::Upstream(format!("TLS handshake with the server failed: {e}")))?;
        self.stream = Some(Stream::ClientTls(Box::new(tls)));
        Ok(())
    }

    /// A packet already buffered, without reading.
    pub fn buffered(&mut self) -> Result<Option<Packet>, MyError> {
        let Some(l) = frame::locate(&self.rbuf, self.max)? else {
            return Ok(None);
        };
        let raw = self.rbuf.split_to(l.raw_len).freeze();
        let payload = if l.packets == 1 {
            raw.slice(4..)
        } else {
            Bytes::from(frame::payload(&raw, &l).into_owned())
        };
        self.next_seq = l.last_seq.wrapping_add(1);
        Ok(Some(Packet {
            raw,
            payload,
            first_seq: l.first_seq,
            last_seq: l.last_seq,
        }))
    }

    /// The largest logical packet this leg accepts.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Sets the largest packet accepted (see [`Self::new`]).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The bytes read and not yet taken.
    pub fn buffer(&self) -> &[u8] {
        &self.rbuf
    }

    /// Where the next complete logical packet in [`Self::buffer`] starts
    /// at `at`, if it is all there.
    pub fn locate_at(&self, at: usize) -> Result<Option<frame::Logical>, MyError> {
        let rest = self.rbuf.get(at..).unwrap_or_default();
        Ok(frame::locate(rest, self.max)?)
    }

    /// Drops the first `n` buffered bytes (packets walked in place with
    /// [`Self::locate_at`]); the next packet airlock sends on this leg
    /// follows `last_seq`.
    pub fn consume(&mut self, n: usize, last_seq: u8) {
        let n = n.min(self.rbuf.len());
        bytes::Buf::advance(&mut self.rbuf, n);
        self.next_seq = last_seq.wrapping_add(1);
    }

    /// Reads once more into the buffer (at least one byte).
    pub async fn fill(&mut self) -> Result<(), MyError> {
        if self.rbuf.capacity() - self.rbuf.len() < MIN_SPARE {
            self.rbuf.reserve(READ_CHUNK);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(Self::lost(self.leg));
        };
        let r = stream.read_buf(&mut self.rbuf).await;
        let n = r.map_err(|e| self.gone(e))?;
        if n == 0 {
            return Err(match self.leg {
                Leg::Client => MyError::ClientGone,
                Leg::Server => MyError::Upstream("server closed the connection".into()),
            });
        }
        Ok(())
    }

    /// The next packet; the peer closing is [`MyError::ClientGone`] on the
    /// client leg and [`MyError::Upstream`] on the server leg.
    pub async fn read(&mut self) -> Result<Packet, MyError> {
        loop {
            if let Some(p) = self.buffered()? {
                return Ok(p);
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(Self::lost(self.leg));
            };
            let r = stream.read_buf(&mut self.rbuf).await;
            let n = r.map_err(|e| self.gone(e))?;
            if n == 0 {
                return Err(match self.leg {
                    Leg::Client => MyError::ClientGone,
                    Leg::Server => MyError::Upstream("server closed the connection".into()),
                });
            }
        }
    }

    /// The next packet, read without taking a byte past its end: for the
    /// packet that may be an SSLRequest. MySQL clients start the TLS
    /// handshake right after it, without waiting for a reply, so a buffered
    /// read can take in the start of their ClientHello too (two segments
    /// already queued on the socket, or one write); bytes in the read buffer
    /// then refuse the upgrade ([`Self::accept_tls`]). Reading exactly one
    /// packet leaves the ClientHello on the socket for rustls.
    pub async fn read_exact_packet(&mut self) -> Result<Packet, MyError> {
        loop {
            if let Some(p) = self.buffered()? {
                return Ok(p);
            }
            let want = missing(&self.rbuf);
            let Some(stream) = self.stream.as_mut() else {
                return Err(Self::lost(self.leg));
            };
            let r = (&mut *stream).take(want).read_buf(&mut self.rbuf).await;
            let n = r.map_err(|e| self.gone(e))?;
            if n == 0 {
                return Err(match self.leg {
                    Leg::Client => MyError::ClientGone,
                    Leg::Server => MyError::Upstream("server closed the connection".into()),
                });
            }
        }
    }

    /// Writes bytes as they are (forwarding).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), MyError> {
        let r = self.io()?.write_all(bytes).await;
        if let Err(e) = r {
            return Err(self.gone(e));
        }
        // TLS streams buffer; plain TCP flushes as a no-op.
        let r = self.io()?.flush().await;
        r.map_err(|e| self.gone(e))
    }

    /// Frames `payload` with [`Self::next_seq`] and writes it.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), MyError> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        self.next_seq = frame::write_packet(&mut out, self.next_seq, payload);
        self.write_raw(&out).await
    }

    /// Sends an ERR packet.
    pub async fn send_err(&mut self, code: u16, state: &str, message: &str) -> Result<(), MyError> {
        let mut p = BytesMut::new();
        airlock_protocol::mysql::packets::err(&mut p, code, state, message);
        self.send(&p).await
    }

    /// Closes the write side (best effort).
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stream.as_mut() {
            let _ = s.shutdown().await;
        }
    }
}

/// How many bytes `buf` still lacks to end on a physical packet boundary
/// past an incomplete logical packet (at least 1): the rest of the current
/// header or payload.
fn missing(buf: &[u8]) -> u64 {
    let mut at = 0usize;
    loop {
        let Some(h) = buf.get(at..at + 4) else {
            return (at + 4 - buf.len()) as u64;
        };
        let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        let end = at + 4 + len;
        if buf.len() < end {
            return (end - buf.len()) as u64;
        }
        if len < frame::MAX_PAYLOAD {
            // A complete logical packet ([`PacketConn::buffered`] takes it
            // first); read on by one header.
            return 4;
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::missing;

    #[test]
    fn missing_stops_at_packet_boundaries() {
        assert_eq!(missing(&[]), 4);
        assert_eq!(missing(&[32, 0]), 2);
        assert_eq!(missing(&[32, 0, 0, 1]), 32);
        assert_eq!(missing(&[32, 0, 0, 1, 0, 0]), 30);
        // A full 16 MiB physical packet continues with another header.
        let mut big = vec![0xff, 0xff, 0xff, 0];
        big.resize(4 + 0xff_ffff, 0);
        assert_eq!(missing(&big), 4);
        big.extend_from_slice(&[5, 0]);
        assert_eq!(missing(&big), 2);
    }
}

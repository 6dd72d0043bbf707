//! One leg of a session as MySQL packets: buffered reads of whole logical
//! packets (16 MiB continuations joined for inspection, raw bytes kept for
//! forwarding) and the sequence id of the next packet airlock sends.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use airlock_protocol::mysql::frame;

use super::error::MyError;

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

pub struct PacketConn {
    pub stream: TcpStream,
    rbuf: BytesMut,
    max: usize,
    leg: Leg,
    /// Sequence id of the next packet airlock writes on this leg.
    pub next_seq: u8,
}

impl PacketConn {
    pub fn new(stream: TcpStream, max: usize, leg: Leg) -> Self {
        PacketConn {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            max,
            leg,
            next_seq: 0,
        }
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

    /// The next packet; the peer closing is [`MyError::ClientGone`] on the
    /// client leg and [`MyError::Upstream`] on the server leg.
    pub async fn read(&mut self) -> Result<Packet, MyError> {
        loop {
            if let Some(p) = self.buffered()? {
                return Ok(p);
            }
            let n = match self.stream.read_buf(&mut self.rbuf).await {
                Ok(n) => n,
                Err(e) if self.leg == Leg::Client => {
                    tracing::debug!(error = %e, "client read failed");
                    return Err(MyError::ClientGone);
                }
                Err(e) => return Err(MyError::Upstream(e.to_string())),
            };
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
        let leg = self.leg;
        self.stream.write_all(bytes).await.map_err(|e| match leg {
            Leg::Client => MyError::ClientGone,
            Leg::Server => MyError::Upstream(e.to_string()),
        })
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
}

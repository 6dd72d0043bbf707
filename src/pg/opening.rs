//! The opening of a client connection: encryption negotiation, then the
//! StartupMessage or a CancelRequest.
//!
//! Packets are read with exact lengths, never ahead: the bytes after an
//! SSLRequest belong to the TLS handshake, and bytes a client sends before
//! the handshake completes must not be taken as protected (the class of bug
//! behind CVE-2021-23222).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use airlock_protocol::pg::startup::{
    split_startup, StartupError, StartupMessage, StartupPacket, MAX_STARTUP_LEN,
};

use super::error::SessionError;
use crate::net::Stream;

/// How a connection opened.
pub enum Opening {
    Startup {
        stream: Stream,
        message: StartupMessage,
    },
    Cancel {
        pid: i32,
        secret_key: i32,
        /// Closed once the request is forwarded: over TLS with a
        /// close_notify, which clients check (psycopg's `cancel_safe()`
        /// reported a cancel that worked as failed: "unexpected eof").
        stream: Stream,
    },
}

/// Client-leg TLS settings.
#[derive(Clone)]
pub struct ClientTlsSettings {
    pub acceptor: TlsAcceptor,
    pub require: bool,
}

/// Negotiates encryption and reads the StartupMessage or CancelRequest.
pub async fn open(
    tcp: TcpStream,
    tls: Option<&Arc<ClientTlsSettings>>,
) -> Result<Opening, SessionError> {
    let mut stream = Stream::Plain(tcp);
    let mut asked_gss = false;
    loop {
        let packet = read_packet(&mut stream).await?;
        match packet {
            StartupPacket::SslRequest => {
                let Stream::Plain(tcp) = stream else {
                    return Err(SessionError::Protocol("SSLRequest after TLS".into()));
                };
                match tls {
                    Some(settings) => {
                        let mut tcp = tcp;
                        tcp.write_all(b"S").await?;
                        let tls = settings.acceptor.accept(tcp).await?;
                        stream = Stream::ServerTls(Box::new(tls));
                    }
                    None => {
                        let mut tcp = tcp;
                        tcp.write_all(b"N").await?;
                        stream = Stream::Plain(tcp);
                    }
                }
            }
            StartupPacket::GssEncRequest => {
                if asked_gss || stream.is_tls() {
                    return Err(SessionError::Protocol("unexpected GSSENCRequest".into()));
                }
                asked_gss = true;
                stream.write_all(b"N").await?;
            }
            StartupPacket::CancelRequest { pid, secret_key } => {
                return Ok(Opening::Cancel {
                    pid,
                    secret_key,
                    stream,
                })
            }
            StartupPacket::Startup(message) => return Ok(Opening::Startup { stream, message }),
        }
    }
}

/// Reads exactly one untagged packet.
async fn read_packet(stream: &mut Stream) -> Result<StartupPacket, SessionError> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(SessionError::ClientGone)
        }
        Err(e) => return Err(e.into()),
    }
    let n = i32::from_be_bytes(len);
    if !(8..=MAX_STARTUP_LEN as i32).contains(&n) {
        return Err(StartupError::BadLength(i64::from(n)).into());
    }
    let mut buf = BytesMut::zeroed(n as usize);
    buf[..4].copy_from_slice(&len);
    stream.read_exact(&mut buf[4..]).await?;
    split_startup(&mut buf)?
        .ok_or_else(|| SessionError::Protocol("incomplete startup packet".into()))
}

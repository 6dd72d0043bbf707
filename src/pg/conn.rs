//! Reading and writing whole messages during the start of a session, before
//! the relay takes over.
//!
//! A [`Conn`] keeps its read buffer, so bytes that arrive after the message
//! being waited for (a pipelining client, or the server's first messages) are
//! not lost: the relay starts with that buffer.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use airlock_protocol::pg::frame::{split_frame, Frame, FrameError};

use crate::net::Stream;

pub struct Conn {
    pub stream: Stream,
    pub rbuf: BytesMut,
    pub max_message: usize,
    /// A client's connection, until it has logged in: when
    /// `limits.login_timeout` runs out, counted from its arrival (the
    /// opening and the authentication share it).
    pub login_deadline: Option<std::time::Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
}

impl Conn {
    pub fn new(stream: Stream, max_message: usize) -> Self {
        Conn {
            stream,
            // Small: the relay keeps this buffer for the session, and grows
            // it only for messages that need more room.
            rbuf: BytesMut::with_capacity(2 * 1024),
            max_message,
            login_deadline: None,
        }
    }

    /// Waits for the next complete message.
    pub async fn read_frame(&mut self) -> Result<Frame, ConnError> {
        loop {
            if let Some(frame) = split_frame(&mut self.rbuf, self.max_message)? {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }
}

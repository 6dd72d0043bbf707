//! Why a MySQL session ended early, and the ERR packet the client gets.

use airlock_protocol::mysql::frame::FrameError;

#[derive(Debug, thiserror::Error)]
pub enum MyError {
    /// The client went away; nothing to tell it.
    #[error("client disconnected")]
    ClientGone,
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Refused with this ERR (code, SQLSTATE, message).
    #[error("{message}")]
    Refused {
        code: u16,
        state: &'static str,
        message: String,
    },
    /// A login or COM_CHANGE_USER refused for its credentials: the client
    /// gets ERR 1045 with `message` (the server's wording, the same
    /// whatever the cause); the audit log gets the identity, the database
    /// asked for and why.
    #[error("{message}")]
    LoginFailed {
        identity: String,
        database: String,
        why: &'static str,
        message: String,
    },
    /// The upstream leg failed. The detail is logged; the client gets a
    /// generic message.
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("airlock is shutting down")]
    ShuttingDown,
    #[error("idle timeout (limits.idle_timeout)")]
    IdleTimeout,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
}

impl MyError {
    pub fn refused(code: u16, state: &'static str, message: impl Into<String>) -> Self {
        MyError::Refused {
            code,
            state,
            message: message.into(),
        }
    }

    /// The ERR the client gets, if one can still be sent.
    pub fn to_client(&self) -> Option<(u16, &'static str, String)> {
        match self {
            MyError::ClientGone | MyError::Io(_) => None,
            MyError::Protocol(m) => Some((1047, "08S01", format!("airlock: {m}"))),
            MyError::Refused {
                code,
                state,
                message,
            } => Some((*code, state, message.clone())),
            MyError::LoginFailed { message, .. } => Some((1045, "28000", message.clone())),
            MyError::Upstream(_) => Some((
                2013,
                "HY000",
                "airlock: lost the connection to the upstream server".into(),
            )),
            MyError::ShuttingDown => Some((1053, "08S01", "airlock is shutting down".into())),
            MyError::IdleTimeout => Some((
                4031,
                "HY000",
                "airlock: disconnected after limits.idle_timeout of inactivity".into(),
            )),
            MyError::Frame(e) => Some((1153, "08S01", format!("airlock: {e}"))),
        }
    }
}

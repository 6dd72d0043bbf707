//! Why a session ended early, and what the client is told.
//!
//! Each error maps to the SQLSTATE and message the client sees in a FATAL
//! ErrorResponse. Messages never include upstream credentials; details that
//! only an operator should see go to the log instead.

use airlock_protocol::pg::startup::StartupError;

use super::conn::ConnError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client went away; nothing to tell it.
    #[error("client disconnected")]
    ClientGone,
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("{0}")]
    Startup(#[from] StartupError),
    #[error("password authentication failed for user \"{0}\"")]
    AuthFailed(String),
    #[error("{0}")]
    Refused(String),
    #[error("too many connections to airlock")]
    TooManyConnections,
    /// The upstream leg failed; the message is safe to show the client.
    #[error("{message}")]
    Upstream { code: &'static str, message: String },
    #[error("airlock is shutting down")]
    ShuttingDown,
    #[error("terminating connection due to idle timeout (limits.idle_timeout)")]
    IdleTimeout,
    #[error("canceling authentication due to timeout (limits.login_timeout)")]
    LoginTimeout,
    /// The session cannot go on as it is (a reload made masking apply to
    /// it): ended with 57P01 (admin_shutdown), which pools take as a cue to
    /// reconnect.
    #[error("terminating connection: {0}")]
    MustReconnect(&'static str),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl SessionError {
    /// The SQLSTATE the client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SessionError::ClientGone | SessionError::Io(_) => "08006",
            SessionError::Protocol(_) | SessionError::Startup(_) => "08P01",
            SessionError::AuthFailed(_) => "28P01",
            SessionError::Refused(_) => "28000",
            SessionError::TooManyConnections => "53300",
            SessionError::Upstream { code, .. } => code,
            SessionError::ShuttingDown => "57P01",
            SessionError::IdleTimeout => "57P05",
            SessionError::LoginTimeout => "57014",
            SessionError::MustReconnect(_) => "57P01",
        }
    }
}

impl From<ConnError> for SessionError {
    fn from(e: ConnError) -> Self {
        match e {
            ConnError::Closed => SessionError::ClientGone,
            ConnError::Io(e) => SessionError::Io(e),
            ConnError::Frame(e) => SessionError::Protocol(e.to_string()),
        }
    }
}

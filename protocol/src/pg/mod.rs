//! PostgreSQL frontend/backend protocol (version 3.0).
//!
//! * [`frame`]: splitting a byte stream into tagged messages, with a size cap.
//! * [`startup`]: the untagged messages a connection opens with (SSLRequest,
//!   GSSENCRequest, CancelRequest, StartupMessage).
//! * [`frontend`]: zero-copy views of client messages policy needs (Query,
//!   Parse, Bind, ...). Decoding borrows from the frame, so a message that is
//!   forwarded unchanged is never re-encoded.
//! * [`backend`]: builders for the server messages airlock originates
//!   (ErrorResponse, ReadyForQuery, ...) and small views of server messages.
//!   Full server-message parsing uses `postgres_protocol::message::backend`.
//! * [`scram`]: the server side of SCRAM-SHA-256, and verifier creation.
//!
//! pgwire's `messages` module decodes into owned `String`s (and re-encodes a
//! non-UTF-8 Query lossily), which costs an allocation per message on the hot
//! path; the views here borrow instead.

pub mod backend;
pub mod cstr;
pub mod frame;
pub mod frontend;
pub mod scram;
pub mod startup;

//! The Postgres proxy: one session per client connection.
//!
//! A session moves through these states (each a module):
//!
//! ```text
//!  accept ──► opening ──► client auth ──► upstream connect ──► relay ──► end
//!  (listener)  (opening.rs)  (client_auth.rs)  (upstream.rs)    (relay.rs)
//!                 │
//!                 └─ CancelRequest ──► forwarded to the real backend (cancel.rs)
//! ```
//!
//! * **opening**: SSLRequest is answered `S` (TLS via rustls) or `N`,
//!   GSSENCRequest `N`; then the StartupMessage, or a CancelRequest.
//! * **client auth**: the agent proves its identity to airlock with
//!   SCRAM-SHA-256 (or a cleartext password over TLS, if configured). An
//!   unknown identity and a wrong secret fail identically (FATAL 28P01).
//! * **upstream connect**: airlock logs in to the target with its own
//!   credential (SCRAM, md5 or cleartext), forwarding the client's startup
//!   parameters. The server's ParameterStatus messages go to the client
//!   unchanged; BackendKeyData keeps the real pid but gets an airlock secret
//!   key, which cancel.rs maps to the real one.
//! * **relay**: frames flow both ways. Every statement passes the policy gate
//!   before it is forwarded; everything else is forwarded as the exact bytes
//!   received, coalesced into one write per read.

pub mod audit_hook;
pub mod book_sync;
pub mod cancel;
pub mod catalog;
pub mod client_auth;
pub mod conn;
pub mod cursors;
pub mod ddl_fence;
pub mod error;
pub mod foreign_keys;
pub mod lexer_guard;
pub mod listener;
pub mod masking;
pub mod named;
pub mod opening;
pub mod refusal;
pub mod relay;
pub mod results;
pub mod rewrite;
pub mod session;
pub mod sides;
pub mod upstream;

//! Wire formats for airlock.
//!
//! This crate knows how bytes are laid out on the wire and nothing else: no
//! sockets, no policy. The proxy sessions in the `airlock` crate use it to
//! split byte streams into frames, to look inside the few messages policy needs
//! (without copying or re-encoding them), to build the messages airlock
//! originates itself, and to run the authentication exchanges.
//!
//! * [`mysql`]: MySQL/MariaDB client/server protocol 10 (4.1).
//! * [`pg`]: PostgreSQL frontend/backend protocol 3.0.

pub mod mysql;
pub mod pg;

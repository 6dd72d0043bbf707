//! Ways an agent proves who it is, beyond the per-identity SCRAM secret.
//!
//! * [`jwt`]: signed JWTs presented as the password (over TLS only).

pub mod jwt;

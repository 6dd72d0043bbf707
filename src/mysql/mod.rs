//! The MySQL/MariaDB proxy: one session per client connection.
//!
//! ```text
//!  accept ──► greeting ──► client auth ──► target check ──► upstream login ──► commands ──► end
//! (listener)  (client_auth.rs)              (session.rs)     (upstream.rs)    (session.rs,
//!                                                                              commands.rs,
//!                                                                              response.rs)
//! ```
//!
//! * **greeting**: airlock greets first (protocol 10, version
//!   `5.5.5-10.11.0-airlock`, its own 20-byte scramble, a fixed capability
//!   set without `CLIENT_LOCAL_FILES`, `CLIENT_SSL`, `CLIENT_DEPRECATE_EOF`
//!   or compression). The client's flags are masked to that set.
//! * **client auth**: `mysql_native_password` against the identity's
//!   `mysql_secret` (an AuthSwitchRequest if the client started with another
//!   plugin). Unknown identity and wrong password fail identically
//!   (ERR 1045 / 28000).
//! * **target check**: the database the client names is the target; it must
//!   be a `protocol = "mysql"` target the identity may use.
//! * **upstream login**: airlock connects to the target, logs in as the
//!   target's user (`mysql_native_password`, or the `caching_sha2_password`
//!   fast path) to the target's database, with the client's capability
//!   flags (minus attributes, local files, TLS), then applies the policy's
//!   session settings (read-only, statement timeout). Only then does the
//!   client get its OK.
//! * **commands**: strictly request/response (the text protocol has no
//!   pipelining). Each command is classified ([`commands`]); statements
//!   (COM_QUERY, COM_STMT_PREPARE, COM_INIT_DB, COM_FIELD_LIST) pass the
//!   policy gate first. A refused command is answered with a local ERR and
//!   never reaches the server; the session stays usable. Allowed commands
//!   are forwarded as the exact bytes received, and the server's reply is
//!   followed packet by packet ([`response`]) and forwarded unchanged,
//!   coalesced into few writes (for principals with masking rules, text
//!   result rows with masked columns are rewritten and ERR text scrubbed;
//!   see [`masking`]). Prepared statement ids are tracked from
//!   COM_STMT_PREPARE_OK replies; commands naming any other id are refused.
//! * **end**: COM_QUIT, either side closing, idle timeout, or shutdown
//!   (between commands).

pub mod client_auth;
pub mod commands;
pub mod conn;
pub mod error;
pub mod listener;
pub mod masking;
pub mod response;
pub mod session;
pub mod upstream;

use crate::config::Identity;

/// The `mysql_native_password` hash (SHA1(SHA1(password))) an identity logs
/// in with over MySQL, from `identities.<name>.mysql_secret`.
pub fn native_verifier(identity: &Identity) -> Option<[u8; 20]> {
    identity
        .mysql_secret
        .as_deref()
        .and_then(airlock_protocol::mysql::auth::parse_native_hash)
}

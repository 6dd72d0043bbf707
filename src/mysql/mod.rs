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
//!   set without `CLIENT_LOCAL_FILES`, `CLIENT_DEPRECATE_EOF` or
//!   compression; `CLIENT_SSL` only when `[tls]` is configured). The
//!   client's flags are masked to that set. An SSLRequest upgrades the leg
//!   to rustls with the same server config as the Postgres listener;
//!   `[tls] require` refuses clients that do not ask.
//! * **client auth** ([`client_auth`], [`password`]): against the
//!   identity's `mysql_secret` (native hash and/or caching_sha2 verifier):
//!   `mysql_native_password`, or `caching_sha2_password` by the fast path,
//!   or by the full path (the password itself) over TLS only; without TLS a
//!   full-auth request (RSA key retrieval included) gets an ERR saying to
//!   use TLS. One AuthSwitchRequest when the client's plugin does not fit.
//!   Unknown identity and wrong password fail identically (ERR 1045 /
//!   28000). COM_CHANGE_USER runs the same exchange ([`change_user`]) and
//!   then starts the session over as the new identity.
//! * **target check**: the database the client names is the target; it must
//!   be a `protocol = "mysql"` target the identity may use.
//! * **upstream login** ([`upstream`]): airlock connects to the target,
//!   optionally over TLS (the target's `tls` mode), logs in as the target's
//!   user (`mysql_native_password`, or `caching_sha2_password` by the fast
//!   path, or the full path over TLS) to the target's database, with the
//!   client's capability flags (minus attributes, local files, TLS), checks
//!   the session's sql_mode ([`sql_mode`]), then applies the policy's
//!   session settings (read-only, statement timeout). Only then does the
//!   client get its OK.
//! * **commands**: strictly request/response (the text protocol has no
//!   pipelining). Each command is classified ([`commands`]); statements
//!   (COM_QUERY, COM_STMT_PREPARE, COM_INIT_DB, COM_FIELD_LIST) pass the
//!   policy gate first, judged as the server will parse them: executable
//!   comments expanded for the server's version ([`exec_comments`]) and
//!   sql_mode changes vetted ([`statement_text`]). A refused command is answered with a local ERR and
//!   never reaches the server; the session stays usable. Allowed commands
//!   are forwarded as the exact bytes received, and the server's reply is
//!   followed packet by packet ([`response`]) and forwarded unchanged,
//!   coalesced into few writes (for principals with masking rules, text
//!   and binary result rows with masked columns are rewritten and ERR text
//!   scrubbed, lineage planned against a [`catalog`] snapshot; see
//!   [`masking`], [`reply_mask`], [`binary_row`]). Prepared statement ids
//!   are tracked from COM_STMT_PREPARE_OK replies, with their masking
//!   plans (made again at COM_STMT_EXECUTE when the catalog changed since);
//!   commands naming any other id are refused. Statements that may change
//!   the schema move the target's catalog generation when they have run,
//!   which makes every session's snapshot of the target stale. With an audit log,
//!   every judged statement and connection event is recorded
//!   ([`audit_hook`]).
//! * **end**: COM_QUIT, either side closing, idle timeout, or shutdown
//!   (between commands).

pub mod audit_hook;
pub mod binary_row;
pub mod catalog;
pub mod change_user;
pub mod client_auth;
pub mod client_charset;
pub mod commands;
pub mod conn;
pub mod error;
pub mod exec_comments;
pub mod foreign_keys;
pub mod listener;
pub mod masking;
pub mod password;
pub mod reply_mask;
pub mod response;
pub mod server_info;
pub mod session;
pub mod sql_mode;
pub mod statement_text;
pub mod stmt_ids;
pub mod upstream;

use crate::config::Identity;

/// The verifiers an identity logs in with over MySQL, from
/// `identities.<name>.mysql_secret` (`*<native hash>` and/or
/// `sha2:<SHA256(SHA256(password))>`, as `airlock passwd --mysql` prints).
pub fn secret(identity: &Identity) -> Option<airlock_protocol::mysql::auth::Secret> {
    identity
        .mysql_secret
        .as_deref()
        .and_then(airlock_protocol::mysql::auth::Secret::parse)
}

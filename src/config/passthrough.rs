//! `[targets.<name>.passthrough]`: who a database user is when a target
//! relays the client's own database login (`credentials = "passthrough"`).
//!
//! The identity of such a session is the database user name. Its person,
//! model and groups come from `users.<db user>` when listed, else the
//! person and model are unknown and the groups are `default_groups`
//! (`["passthrough"]` unless set), so one policy with
//! `applies_to = { groups = ["passthrough"] }` covers every unlisted user.
//! A user no policy applies to is refused at login (`no-policy`), as for any
//! identity.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Passthrough {
    /// Groups of a database user not listed in `users`.
    pub default_groups: Vec<String>,
    /// Per database user: the person, model and groups airlock records.
    pub users: BTreeMap<String, PassthroughUser>,
    /// Most sessions one database user may have open through this target.
    pub max_sessions: Option<usize>,
    /// Most logins relayed through this target at once (0: no limit). Each
    /// holds a server connection before the client has proved anything
    /// (for at most `limits.connect_timeout`), so without a bound clients
    /// with no password could fill the server's `max_connections`.
    pub max_pending_logins: usize,
    /// Accept a login the server lets in without asking for a password
    /// (`trust` in pg_hba.conf). The server's rule matches airlock's
    /// address, not the client's, so by default such a login is refused:
    /// any client could name any database user.
    pub allow_trust: bool,
}

/// [`Passthrough::max_pending_logins`] unless set: room for a pool's
/// burst of logins, far below a server's default `max_connections` (100).
pub const DEFAULT_MAX_PENDING_LOGINS: usize = 16;

impl Default for Passthrough {
    fn default() -> Self {
        Passthrough {
            default_groups: vec!["passthrough".to_owned()],
            users: BTreeMap::new(),
            max_sessions: None,
            max_pending_logins: DEFAULT_MAX_PENDING_LOGINS,
            allow_trust: false,
        }
    }
}

/// What airlock knows about one database user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassthroughUser {
    /// The person behind the login.
    pub user: Option<String>,
    /// The model behind it, e.g. "gpt-5".
    pub model: Option<String>,
    /// Groups, replacing `default_groups`.
    pub groups: Option<Vec<String>>,
}

impl Passthrough {
    /// (person, model, groups) of `db_user`.
    pub fn describe(&self, db_user: &str) -> (Option<String>, Option<String>, Vec<String>) {
        match self.users.get(db_user) {
            Some(u) => (
                u.user.clone(),
                u.model.clone(),
                u.groups
                    .clone()
                    .unwrap_or_else(|| self.default_groups.clone()),
            ),
            None => (None, None, self.default_groups.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_users_and_defaults() {
        let p: Passthrough = toml::from_str(
            "max_sessions = 3\n[users.report]\nuser = \"jane\"\nmodel = \"gpt-5\"\n\
             [users.ops]\ngroups = [\"ops\"]\n",
        )
        .expect("parses");
        assert_eq!(
            p.describe("report"),
            (
                Some("jane".into()),
                Some("gpt-5".into()),
                vec!["passthrough".to_owned()]
            )
        );
        assert_eq!(p.describe("ops"), (None, None, vec!["ops".to_owned()]));
        assert_eq!(
            p.describe("other"),
            (None, None, vec!["passthrough".to_owned()])
        );
        assert_eq!(p.max_sessions, Some(3));
        assert!(toml::from_str::<Passthrough>("grups = []").is_err());
    }

    #[test]
    fn only_for_postgres_targets() {
        let text = "[listen]\nmysql = \"127.0.0.1:3307\"\n[targets.app]\nprotocol = \"mysql\"\n\
                    host = \"h\"\nport = 3306\ndatabase = \"app\"\nuser = \"u\"\n\
                    credentials = \"passthrough\"\n";
        let e = crate::config::Config::from_toml(text, std::path::Path::new("/x/airlock.toml"))
            .expect_err("refused");
        let e = e.to_string();
        assert!(
            e.contains("/x/airlock.toml:9: targets.app.credentials"),
            "{e}"
        );
    }
}

//! COM_CHANGE_USER: the client logs in again as another user on the same
//! connection.
//!
//! ```text
//! 0x11, user NUL, auth-response (u8 length + bytes with
//! CLIENT_SECURE_CONNECTION, else NUL-terminated), database NUL,
//! [charset u16, [plugin NUL (CLIENT_PLUGIN_AUTH)], [attributes (lenenc,
//! CLIENT_CONNECT_ATTRS)]]
//! ```

use super::wire::Reader;
use super::{caps, com};

/// A parsed COM_CHANGE_USER.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeUser {
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Vec<u8>,
    pub charset: Option<u16>,
    pub auth_plugin: Option<String>,
}

impl ChangeUser {
    /// Parses the payload (command byte included) under the session's
    /// negotiated `capabilities`. `None` when malformed.
    pub fn parse(payload: &[u8], capabilities: u32) -> Option<ChangeUser> {
        let mut r = Reader::new(payload);
        if r.u8()? != com::CHANGE_USER {
            return None;
        }
        let user = r.cstr()?.to_vec();
        let auth_response = if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.bytes(n)?.to_vec()
        } else {
            r.cstr()?.to_vec()
        };
        let database = if r.is_empty() {
            Vec::new()
        } else {
            r.cstr()?.to_vec()
        };
        let mut out = ChangeUser {
            user,
            auth_response,
            database,
            ..Default::default()
        };
        if !r.is_empty() {
            out.charset = Some(r.u16()?);
            if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
                out.auth_plugin = Some(String::from_utf8_lossy(r.cstr()?).into_owned());
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_mysql_common_writes() {
        use mysql_common::packets::{ComChangeUser, ComChangeUserMoreData};
        use mysql_common::proto::MySerialize;
        let p = ComChangeUser::new()
            .with_user(Some(&b"agent2"[..]))
            .with_database(Some(&b"app"[..]))
            .with_auth_plugin_data(Some(&[7u8; 20][..]))
            .with_more_data(Some(ComChangeUserMoreData::new(45).with_auth_plugin(Some(
                mysql_common::packets::AuthPlugin::MysqlNativePassword,
            ))));
        let mut buf = Vec::new();
        p.serialize(&mut buf);
        let all = caps::SECURE_CONNECTION | caps::PLUGIN_AUTH | caps::CONNECT_ATTRS;
        let c = ChangeUser::parse(&buf, all).unwrap();
        assert_eq!(c.user, b"agent2");
        assert_eq!(c.database, b"app");
        assert_eq!(c.auth_response, vec![7u8; 20]);
        assert_eq!(c.charset, Some(45));
        assert_eq!(c.auth_plugin.as_deref(), Some("mysql_native_password"));
        for n in 0..buf.len() {
            let _ = ChangeUser::parse(&buf[..n], all);
        }
        assert_eq!(ChangeUser::parse(&[com::QUERY], all), None);
    }
}

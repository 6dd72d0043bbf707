//! What airlock does with each client command.

use airlock_protocol::mysql::com;
use airlock_protocol::mysql::wire::Reader;

use super::response::Expect;

/// The decision for one command, before policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// End the session.
    Quit,
    /// Judge as a statement, then forward.
    Query,
    /// Judge as `USE db`, then forward naming the target's database.
    InitDb,
    /// Judge as a Parse, then forward; track the id from the reply.
    Prepare,
    /// Judge as a read of the table, then forward.
    FieldList,
    /// A command about prepared statement `id`; forward only if airlock saw
    /// that statement prepared. `reply` is `None` for commands without one.
    Statement { id: u32, reply: Option<Expect> },
    /// Forward; the reply has this shape.
    Forward(Expect),
    /// COM_RESET_CONNECTION: forward, then re-apply session settings.
    Reset,
    /// COM_CHANGE_USER: log in again against airlock's identities; the
    /// session then starts over as the new identity with a fresh upstream
    /// connection ([`super::change_user`]).
    ChangeUser,
    /// Answer with an ERR (1047, 08S01) and do not forward.
    Refuse(String),
}

/// The name of a command byte, for messages.
pub fn name(code: u8) -> &'static str {
    match code {
        com::SLEEP => "COM_SLEEP",
        com::QUIT => "COM_QUIT",
        com::INIT_DB => "COM_INIT_DB",
        com::QUERY => "COM_QUERY",
        com::FIELD_LIST => "COM_FIELD_LIST",
        com::CREATE_DB => "COM_CREATE_DB",
        com::DROP_DB => "COM_DROP_DB",
        com::REFRESH => "COM_REFRESH",
        com::SHUTDOWN => "COM_SHUTDOWN",
        com::STATISTICS => "COM_STATISTICS",
        com::PROCESS_INFO => "COM_PROCESS_INFO",
        com::CONNECT => "COM_CONNECT",
        com::PROCESS_KILL => "COM_PROCESS_KILL",
        com::DEBUG => "COM_DEBUG",
        com::PING => "COM_PING",
        com::TIME => "COM_TIME",
        com::DELAYED_INSERT => "COM_DELAYED_INSERT",
        com::CHANGE_USER => "COM_CHANGE_USER",
        com::BINLOG_DUMP => "COM_BINLOG_DUMP",
        com::TABLE_DUMP => "COM_TABLE_DUMP",
        com::CONNECT_OUT => "COM_CONNECT_OUT",
        com::REGISTER_SLAVE => "COM_REGISTER_SLAVE",
        com::STMT_PREPARE => "COM_STMT_PREPARE",
        com::STMT_EXECUTE => "COM_STMT_EXECUTE",
        com::STMT_SEND_LONG_DATA => "COM_STMT_SEND_LONG_DATA",
        com::STMT_CLOSE => "COM_STMT_CLOSE",
        com::STMT_RESET => "COM_STMT_RESET",
        com::SET_OPTION => "COM_SET_OPTION",
        com::STMT_FETCH => "COM_STMT_FETCH",
        com::DAEMON => "COM_DAEMON",
        com::BINLOG_DUMP_GTID => "COM_BINLOG_DUMP_GTID",
        com::RESET_CONNECTION => "COM_RESET_CONNECTION",
        com::STMT_BULK_EXECUTE => "COM_STMT_BULK_EXECUTE",
        _ => "an unknown command",
    }
}

/// Classifies a command payload (first byte: the command).
pub fn classify(payload: &[u8]) -> Action {
    let Some(&code) = payload.first() else {
        return Action::Refuse("empty command packet".into());
    };
    let stmt = |reply| match Reader::new(&payload[1..]).u32() {
        Some(id) => Action::Statement { id, reply },
        None => Action::Refuse(format!("malformed {}", name(code))),
    };
    match code {
        com::QUIT => Action::Quit,
        com::QUERY => Action::Query,
        com::INIT_DB => Action::InitDb,
        com::STMT_PREPARE => Action::Prepare,
        com::FIELD_LIST => Action::FieldList,
        com::STMT_EXECUTE => stmt(Some(Expect::Execute)),
        com::STMT_FETCH => stmt(Some(Expect::Fetch)),
        com::STMT_RESET => stmt(Some(Expect::Single)),
        com::STMT_CLOSE | com::STMT_SEND_LONG_DATA => stmt(None),
        com::PING | com::STATISTICS => Action::Forward(Expect::Single),
        com::RESET_CONNECTION => Action::Reset,
        com::CHANGE_USER => Action::ChangeUser,
        com::SET_OPTION => match Reader::new(&payload[1..]).u16() {
            // MYSQL_OPTION_MULTI_STATEMENTS_OFF
            Some(1) => Action::Forward(Expect::Single),
            _ => Action::Refuse("COM_SET_OPTION may only turn multi-statements off".into()),
        },
        // Replication, server administration, and the shared upstream
        // user's other connections are off limits.
        _ => Action::Refuse(format!("{} is not allowed", name(code))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(b"\x03SELECT 1"), Action::Query);
        assert_eq!(classify(&[com::QUIT]), Action::Quit);
        assert_eq!(
            classify(&[com::STMT_EXECUTE, 5, 0, 0, 0, 0, 1, 0, 0, 0]),
            Action::Statement {
                id: 5,
                reply: Some(Expect::Execute)
            }
        );
        assert_eq!(
            classify(&[com::STMT_CLOSE, 9, 0, 0, 0]),
            Action::Statement { id: 9, reply: None }
        );
        assert!(matches!(
            classify(&[com::STMT_EXECUTE, 1]),
            Action::Refuse(_)
        ));
        assert_eq!(
            classify(&[com::SET_OPTION, 1, 0]),
            Action::Forward(Expect::Single)
        );
        for c in [
            com::SET_OPTION,
            com::BINLOG_DUMP,
            com::BINLOG_DUMP_GTID,
            com::REGISTER_SLAVE,
            com::TABLE_DUMP,
            com::SHUTDOWN,
            com::DEBUG,
            com::PROCESS_KILL,
            0x99,
        ] {
            assert!(matches!(classify(&[c, 0, 0]), Action::Refuse(_)), "{c:#x}");
        }
        assert!(matches!(classify(&[]), Action::Refuse(_)));
        assert_eq!(classify(&[com::CHANGE_USER, 0]), Action::ChangeUser);
        // Multi-statements may be turned off, never on (0 = ON).
        assert!(matches!(
            classify(&[com::SET_OPTION, 0, 0]),
            Action::Refuse(_)
        ));
        for c in [com::PING, com::STATISTICS] {
            assert_eq!(classify(&[c]), Action::Forward(Expect::Single));
        }
        assert_eq!(classify(&[com::RESET_CONNECTION]), Action::Reset);
        assert_eq!(classify(&[com::INIT_DB, b'a']), Action::InitDb);
        assert_eq!(classify(b"\x04t\0"), Action::FieldList);
    }
}

//! Built-in guardrails: rule ids and per-dialect lists of dangerous
//! functions and settings. These apply under every policy unless the policy
//! lists the rule id in `allow_builtin` (or, for functions, allows the
//! function by name in `allow_functions`).

use super::Dialect;

/// Stable ids of the built-in rules.
pub mod ids {
    pub const NO_POLICY: &str = "no-policy";
    pub const UNPARSEABLE: &str = "builtin.unparseable";
    pub const NON_UTF8: &str = "builtin.non-utf8";
    pub const TOO_LARGE: &str = "builtin.too-large";
    pub const TOO_COMPLEX: &str = "builtin.too-complex";
    pub const OPAQUE_CODE: &str = "builtin.opaque-code";
    pub const ADMIN: &str = "builtin.admin";
    pub const FILE_ACCESS: &str = "builtin.file-access";
    pub const COPY_PROGRAM: &str = "builtin.copy-program";
    pub const ROLE_CHANGE: &str = "builtin.role-change";
    pub const SEARCH_PATH: &str = "builtin.search-path";
    pub const LEXER_SETTING: &str = "builtin.lexer-setting";
    pub const DANGEROUS_FUNCTION: &str = "builtin.dangerous-function";
    pub const UNBOUNDED_WRITE: &str = "builtin.unbounded-write";
    pub const FUNCTION_CALL: &str = "builtin.function-call";
    pub const UNKNOWN_PREPARED: &str = "builtin.unknown-prepared";
    pub const MULTI_STATEMENT_PARSE: &str = "builtin.multi-statement-parse";
    pub const STARTUP_OPTION: &str = "builtin.startup-option";
    pub const CATALOG_WRITE: &str = "builtin.catalog-write";
    pub const COLUMN_STATISTICS: &str = "builtin.column-statistics";
    pub const OTHER_SESSIONS: &str = "builtin.other-sessions";
    /// A write through a view whose tables airlock cannot see (see
    /// [`crate::policy::foreign_keys`]).
    pub const OPAQUE_VIEW: &str = "builtin.opaque-view";
    /// A write while the target's links could not be read again.
    pub const LINKS_UNREADABLE: &str = "builtin.links-unreadable";
    /// Refusals that follow from a reload a session cannot take up as it
    /// is (masking now applies to a session that started without it; a
    /// statement prepared under the old rules). Not waivable.
    pub const RULES_RELOADED: &str = "builtin.rules-reloaded";

    /// Every built-in id, for validating `allow_builtin`.
    pub const ALL: &[&str] = &[
        UNPARSEABLE,
        NON_UTF8,
        TOO_LARGE,
        TOO_COMPLEX,
        OPAQUE_CODE,
        ADMIN,
        FILE_ACCESS,
        COPY_PROGRAM,
        ROLE_CHANGE,
        SEARCH_PATH,
        LEXER_SETTING,
        DANGEROUS_FUNCTION,
        UNBOUNDED_WRITE,
        FUNCTION_CALL,
        UNKNOWN_PREPARED,
        MULTI_STATEMENT_PARSE,
        STARTUP_OPTION,
        CATALOG_WRITE,
        COLUMN_STATISTICS,
        OTHER_SESSIONS,
        OPAQUE_VIEW,
        LINKS_UNREADABLE,
    ];
}

/// Postgres functions that read or write server files, run code elsewhere,
/// stall the server, signal backends or change session identity. Entries
/// ending in `*` are prefixes.
const PG_DANGEROUS: &[&str] = &[
    // pageinspect reads raw table pages, denied columns and all.
    "get_raw_page",
    "heap_page_items",
    "heap_page_item_attrs",
    "tuple_data_split",
    // ... and so do its index, free-space and page-header functions
    // (red-team finding: `bt_page_items('customers_ssn_idx', 1)` showed
    // the denied column's values from its index), and pg_walinspect's
    // (Postgres 16), which show block images from the WAL.
    "bt_*",
    "brin_*",
    "gin_*",
    "gist_*",
    "hash_page_*",
    "hash_bitmap_info",
    "hash_metapage_info",
    "fsm_page_contents",
    "page_header",
    "page_checksum",
    "heap_tuple_infomask_flags",
    "pg_get_wal_*",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_*",
    "pg_stat_file",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    "pg_logdir_ls",
    "lo_*",
    "loread",
    "lowrite",
    "dblink*",
    "pg_sleep*",
    "set_config",
    "pg_terminate_backend",
    "pg_stat_get_activity",
    "pg_stat_statements*",
    "pg_stat_get_backend_*",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_create_*_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_origin_*",
    "pg_logical_emit_message",
    "pg_import_system_collations",
    "query_to_xml*",
    "cursor_to_xml*",
    "table_to_xml*",
    "schema_to_xml*",
    "database_to_xml*",
    "query_to_json*",
    // Run the SQL text they are given, out of airlock's sight.
    "ts_stat",
    "ts_rewrite",
    "crosstab*",
    "connectby*",
    "pg_background_*",
    // Taking advisory locks can stall other sessions; releasing this
    // session's own (pg_advisory_unlock*, which pools call when a
    // connection is returned) cannot.
    "pg_advisory_lock*",
    "pg_advisory_xact_lock*",
    "pg_try_advisory_*lock*",
    "pg_execute_server_program",
    "pg_stat_reset*",
    "pg_log_backend_memory_contexts",
    "binary_upgrade_*",
    // NOTIFY by another name (NOTIFY itself is class `other`): a message
    // to every listening session, outside the agent's results.
    "pg_notify",
    // Sets a sequence wherever it stands (a write from a SELECT).
    "setval",
    // The server's change stream: every table's rows, denied ones too.
    "pg_logical_slot_*",
    "pg_replication_slot_advance",
];

/// MySQL / MariaDB equivalents.
const MY_DANGEROUS: &[&str] = &[
    "load_file",
    // MariaDB sequences: sets one wherever it stands (a write from a
    // SELECT).
    "setval",
    "sleep",
    "benchmark",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "is_free_lock",
    "is_used_lock",
    "master_pos_wait",
    "source_pos_wait",
    "sys_exec",
    "sys_eval",
    "sys_get",
    "sys_set",
    "lib_mysqludf_*",
    "wait_for_executed_gtid_set",
    "master_gtid_wait",
    "wait_until_sql_thread_after_gtids",
    // MySQL's sys schema: another thread's statements, literals and all,
    // from performance_schema (ground-truth re-check).
    "ps_thread_trx_info",
    "ps_thread_stack",
];

/// Functions with side effects: blocked under read-only policies.
const PG_WRITE_FUNCTIONS: &[&str] = &["nextval", "setval", "txid_current", "pg_current_xact_id"];
const MY_WRITE_FUNCTIONS: &[&str] = &["nextval", "setval", "last_insert_id"];

fn matches(list: &[&str], name: &str) -> bool {
    list.iter().any(|p| glob_match(p, name))
}

/// Tiny glob: `*` matches any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    if pieces.is_empty() {
        return rest.is_empty();
    }
    for (i, piece) in pieces.iter().enumerate() {
        if i == pieces.len() - 1 {
            return rest.ends_with(piece);
        }
        match rest.find(piece) {
            Some(pos) => rest = &rest[pos + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Is `name` (normalized) a built-in dangerous function in `dialect`?
pub fn is_dangerous_function(dialect: Dialect, name: &str) -> bool {
    match dialect {
        Dialect::Postgres => matches(PG_DANGEROUS, name),
        Dialect::MySql => matches(MY_DANGEROUS, name),
    }
}

/// Is `name` a function that writes (sequences, transaction ids)?
pub fn is_write_function(dialect: Dialect, name: &str) -> bool {
    match dialect {
        Dialect::Postgres => matches(PG_WRITE_FUNCTIONS, name),
        Dialect::MySql => matches(MY_WRITE_FUNCTIONS, name),
    }
}

/// Settings whose change would alter who we are.
pub fn is_role_setting(name: &str) -> bool {
    matches!(
        name,
        "role" | "session_authorization" | "session authorization"
    )
}

/// Settings that turn writes back on when changed.
pub fn is_read_only_setting(name: &str) -> bool {
    matches!(
        name,
        "default_transaction_read_only" | "transaction_read_only" | "tx_read_only" | "read_only"
    )
}

/// Settings that change how airlock must tokenize SQL, or load code.
pub fn is_lexer_or_loader_setting(name: &str) -> bool {
    matches!(
        name,
        "standard_conforming_strings"
            | "backslash_quote"
            | "escape_string_warning"
            | "sql_mode"
            | "character_set_client"
            | "client_encoding"
            | "names"
            | "local_preload_libraries"
            | "session_preload_libraries"
            | "shared_preload_libraries"
            | "dynamic_library_path"
    )
}

/// MySQL sql_modes that leave the lexing of strings and identifiers
/// alone: a session may set any combination of them. Not
/// `HIGH_NOT_PRECEDENCE`, which changes how `NOT` binds: airlock's parser
/// would read `NOT 1 BETWEEN 0 AND 2` otherwise than the server.
pub const MYSQL_SAFE_SQL_MODES: &[&str] = &[
    "REAL_AS_FLOAT",
    "PIPES_AS_CONCAT",
    "IGNORE_SPACE",
    "IGNORE_BAD_TABLE_OPTIONS",
    "ONLY_FULL_GROUP_BY",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_DIR_IN_CREATE",
    "NO_KEY_OPTIONS",
    "NO_TABLE_OPTIONS",
    "NO_FIELD_OPTIONS",
    "NO_AUTO_VALUE_ON_ZERO",
    "STRICT_TRANS_TABLES",
    "STRICT_ALL_TABLES",
    "NO_ZERO_IN_DATE",
    "NO_ZERO_DATE",
    "ALLOW_INVALID_DATES",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "TRADITIONAL",
    "NO_AUTO_CREATE_USER",
    "NO_ENGINE_SUBSTITUTION",
    "PAD_CHAR_TO_FULL_LENGTH",
    "EMPTY_STRING_IS_NULL",
    "SIMULTANEOUS_ASSIGNMENT",
    "TIME_ROUND_FRACTIONAL",
    "TIME_TRUNCATE_FRACTIONAL",
];

/// `Ok` when a MySQL sql_mode value (the string's content) names only
/// [`MYSQL_SAFE_SQL_MODES`]; else why not.
pub fn mysql_sql_mode_value_is_safe(v: &str) -> Result<(), String> {
    if !v
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b' '))
    {
        return Err("sql_mode value has characters airlock does not accept".into());
    }
    for mode in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        if !MYSQL_SAFE_SQL_MODES
            .iter()
            .any(|s| s.eq_ignore_ascii_case(mode))
        {
            return Err(format!(
                "sql_mode {mode} is not allowed: airlock only allows modes that keep MySQL's default quoting and escaping"
            ));
        }
    }
    Ok(())
}

/// The built-in rule that guards a setting airlock reads every session
/// by, when its default for a role or database changes (`ALTER ROLE ...
/// SET`): search_path, the lexer and loader settings, the role.
pub fn session_default_rule(name: &str) -> Option<&'static str> {
    if name == "search_path" {
        Some(ids::SEARCH_PATH)
    } else if is_lexer_or_loader_setting(name) {
        Some(ids::LEXER_SETTING)
    } else if is_role_setting(name) {
        Some(ids::ROLE_CHANGE)
    } else if is_server_log_setting(name) {
        // `ALTER ROLE … SET log_statement = 'none'` hides every later
        // session of the role (review finding).
        Some(ids::ADMIN)
    } else {
        None
    }
}

/// Postgres functions of one argument of any type that give back the whole
/// row they are given (every built-in of one `record`, `anyelement` or
/// `"any"` argument in PostgreSQL 15's `pg_proc` that does, checked on a
/// server; `hash_record` for its equality oracle, `pg_column_size` and
/// `num_nulls` for the size and nullness of a denied column, which `WHERE`
/// could then test). Postgres reads `c.f` as `f(c)` when table `c` has
/// no column `f` (field notation), so `SELECT c.row_to_json FROM customers
/// c` reads every column, denied ones included, without naming one. A
/// function the operator created with a composite argument does the same;
/// it cannot be listed here (creating one is refused as opaque code).
pub fn is_row_function(name: &str) -> bool {
    matches!(
        name,
        "row_to_json"
            | "to_json"
            | "to_jsonb"
            | "json_build_array"
            | "jsonb_build_array"
            | "concat"
            | "quote_literal"
            | "quote_nullable"
            | "array_agg"
            | "json_agg"
            | "jsonb_agg"
            | "hstore"
            | "record_out"
            | "record_send"
            | "hash_record"
            | "pg_column_size"
            | "num_nulls"
            | "num_nonnulls"
    )
}

/// Settings that change what the server logs of a session, or how it
/// replicates it: MariaDB's `sql_log_off` keeps a session's statements out
/// of the general log (ground-truth red team: allowed as a session
/// setting), `sql_log_bin` and `skip_replication` out of the binary log and
/// the replicas, the `gtid_*`, `server_id`, `pseudo_*`, `insert_id`,
/// `last_insert_id` and `rand_seed*` settings forge where events come from
/// and what they replay (`last_insert_id` also keeps a value for
/// `LAST_INSERT_ID()`, as the function form does); Postgres's `log_*` and
/// `track_*` settings, `compute_query_id` and `session_replication_role`
/// (which also switches triggers off) need a superuser, which an upstream
/// account may be. Refused as startup parameters too. airlock's own audit
/// log records the session either way; the server's logs are the DBA's.
pub fn is_server_log_setting(name: &str) -> bool {
    matches(
        &[
            "sql_log_*",
            "log_*",
            "slow_query_log*",
            "long_query_time",
            "min_examined_row_limit",
            "skip_replication",
            "skip_parallel_replication",
            "binlog_*",
            "wsrep_on",
            "gtid_*",
            "server_id",
            "pseudo_*",
            "insert_id",
            "last_insert_id",
            "rand_seed*",
            "session_replication_role",
            "track_*",
            "compute_query_id",
            "pgaudit.*",
        ],
        name,
    )
}

/// Settings that make the server print what it read: MySQL's optimizer
/// trace shows the constants of single-row lookups
/// (`information_schema.OPTIMIZER_TRACE`).
pub fn is_tracing_setting(name: &str) -> bool {
    name.starts_with("optimizer_trace")
}

/// Settings that control the statement timeout a policy imposes.
pub fn is_timeout_setting(name: &str) -> bool {
    matches!(
        name,
        "statement_timeout" | "max_execution_time" | "max_statement_time"
    )
}

/// The duration a timeout setting's value `text` stands for, when it is a
/// constant above 0: Postgres's settings take milliseconds or a number
/// with a unit (`us`, `ms`, `s`, `min`, `h`, `d`), MySQL's
/// `max_execution_time` milliseconds, MariaDB's `max_statement_time` and
/// idle timeouts seconds (fractions allowed).
pub fn timeout_value(name: &str, text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let n: f64 = number.parse().ok()?;
    let seconds_by_default = matches!(
        name,
        "max_statement_time"
            | "idle_transaction_timeout"
            | "idle_readonly_transaction_timeout"
            | "idle_write_transaction_timeout"
    );
    let ms = match (unit, seconds_by_default) {
        ("", true) => n * 1000.0,
        ("", false) | ("ms", false) => n,
        ("us", false) => n / 1000.0,
        ("s", false) => n * 1000.0,
        ("min", false) => n * 60_000.0,
        ("h", false) => n * 3_600_000.0,
        ("d", false) => n * 86_400_000.0,
        _ => return None,
    };
    (1.0..1e15)
        .contains(&ms)
        .then(|| std::time::Duration::from_micros((ms * 1000.0) as u64))
}

/// Settings that control the idle-in-transaction timeout a policy
/// imposes (Postgres; MariaDB's three).
pub fn is_idle_timeout_setting(name: &str) -> bool {
    matches!(
        name,
        "idle_in_transaction_session_timeout"
            | "idle_transaction_timeout"
            | "idle_readonly_transaction_timeout"
            | "idle_write_transaction_timeout"
    )
}

/// Catalog relations that hold sample values of every analysed column
/// (most common values, histogram bounds, minimum and maximum): reading
/// them sees around masks and denied columns.
pub fn is_column_statistics(dialect: Dialect, schema: &str, name: &str) -> bool {
    match dialect {
        Dialect::Postgres => {
            schema == "pg_catalog"
                && matches!(
                    name,
                    "pg_stats"
                        | "pg_stats_ext"
                        | "pg_stats_ext_exprs"
                        | "pg_statistic"
                        | "pg_statistic_ext_data"
                )
        }
        Dialect::MySql => {
            (schema == "mysql" && name == "column_stats")
                || (schema == "information_schema" && name == "column_statistics")
        }
    }
}

/// Catalog relations that show the statements other sessions are running,
/// literals included, or the values they lock or index. Agents that share
/// airlock's upstream account would read each other's SQL (and whatever
/// PII it quotes) there; InnoDB's lock and full-text tables show the key
/// values of locked records and the words of indexed text, masked columns
/// included, in clear (red-team finding: a masked email, indexed, read
/// from `innodb_locks.lock_data` while two sessions waited on its rows).
pub fn is_session_activity(dialect: Dialect, schema: &str, name: &str) -> bool {
    match dialect {
        // pg_stat_statements lives where its extension was created.
        Dialect::Postgres => {
            (schema == "pg_catalog" && name == "pg_stat_activity")
                || name.starts_with("pg_stat_statements")
        }
        Dialect::MySql => match schema {
            "information_schema" => {
                matches!(
                    name,
                    "processlist"
                        | "innodb_trx"
                        | "query_cache_info"
                        | "innodb_locks"
                        | "innodb_lock_waits"
                        | "innodb_ft_index_cache"
                        | "innodb_ft_index_table"
                        | "innodb_ft_config"
                )
            }
            // With `log_output = TABLE`: every session's statements.
            "mysql" => matches!(name, "general_log" | "slow_log"),
            "performance_schema" => {
                matches!(
                    name,
                    "threads"
                        | "processlist"
                        | "user_variables_by_thread"
                        | "data_locks"
                        | "data_lock_waits"
                ) || name.starts_with("events_")
                    || name.starts_with("prepared_statements")
            }
            "sys" => {
                let name = name.strip_prefix("x$").unwrap_or(name);
                matches!(
                    name,
                    "processlist" | "session" | "innodb_lock_waits" | "schema_table_lock_waits"
                ) || name.starts_with("statement")
                    || name.starts_with("session_")
            }
            _ => false,
        },
    }
}

/// Catalog relations that hold password hashes (or passwords) of database
/// accounts, readable where the upstream account is privileged (a
/// superuser, or MySQL's `SELECT` on `mysql.*`): the hash of the account
/// airlock logs in as can be cracked offline, as `SHOW GRANTS` shows it
/// (ground-truth red team: `SELECT * FROM mysql.user` was allowed).
pub fn is_credential_store(dialect: Dialect, schema: &str, name: &str) -> bool {
    match dialect {
        // `information_schema.user_mapping_options` shows a mapping's
        // password to its mapped user with USAGE on the server, the usual
        // postgres_fdw set-up (re-check finding); a subscription's
        // connection string may hold one.
        Dialect::Postgres => match schema {
            "pg_catalog" => matches!(
                name,
                "pg_authid"
                    | "pg_shadow"
                    | "pg_user_mapping"
                    | "pg_user_mappings"
                    | "pg_subscription"
            ),
            "information_schema" => {
                matches!(name, "user_mapping_options" | "_pg_user_mappings")
            }
            _ => false,
        },
        Dialect::MySql => {
            schema == "mysql"
                && matches!(
                    name,
                    "user"
                        | "global_priv"
                        | "password_history"
                        | "servers"
                        | "slave_master_info"
                        | "replica_source_info"
                )
        }
    }
}

/// Postgres catalogs live in `pg_catalog`, which is searched first; every
/// relation in it starts with `pg_`.
pub fn may_be_pg_catalog(name: &str) -> bool {
    name.starts_with("pg_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_glob() {
        assert!(glob_match("pg_ls_*", "pg_ls_dir"));
        assert!(glob_match("pg_sleep*", "pg_sleep"));
        assert!(glob_match(
            "pg_advisory_*lock*",
            "pg_advisory_xact_lock_shared"
        ));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(!glob_match("sleep", "sleepy"));
        assert!(is_dangerous_function(Dialect::MySql, "sleep"));
        assert!(!is_dangerous_function(Dialect::Postgres, "sleep"));
    }
}

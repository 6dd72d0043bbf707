//! Statement classes and session-statement facts (SET, RESET, BEGIN,
//! PREPARE, EXECUTE, DEALLOCATE, USE, DISCARD, and the role defaults
//! `ALTER ROLE ... SET` gives later sessions).

use sqlparser::ast::{
    AlterRoleOperation, ContextModifier, CopyTarget, DiscardObject, Expr, ObjectName, ObjectType,
    Reset, ResetConfig, RoleOption, Set, SetExpr, Statement, TransactionAccessMode,
    TransactionMode, Use,
};

use super::builtin::{self, ids};
use super::facts::{Facts, StatementClass};
use super::Dialect;

/// MySQL character sets safe for `SET NAMES` and `character_set_results`:
/// ASCII-compatible, no multi-byte character contains a byte below 0x80,
/// and results in them are text masking can read. (`binary` lexes safely,
/// but results in it are not converted, so a utf16 column's values and
/// every column's name reach masking undecoded: refused.)
const ASCII_SAFE_CHARSETS: &[&str] = &["utf8mb4", "utf8mb3", "utf8", "latin1", "ascii"];

/// Whether a `SET character_set_results` value is one plain name from
/// [`ASCII_SAFE_CHARSETS`] (not NULL, which sends each column in its own
/// character set, nor an expression or DEFAULT).
fn result_charset_is_safe(values: &[Expr]) -> bool {
    let [value] = values else {
        return false;
    };
    let name = match value {
        Expr::Identifier(id) => id.value.to_lowercase(),
        Expr::Value(v) => v.to_string().to_lowercase().trim_matches('\'').to_string(),
        _ => return false,
    };
    ASCII_SAFE_CHARSETS.contains(&name.as_str())
}

/// The data-modifying statement a query's body is, if it is one: sqlparser
/// parses `WITH ... INSERT/UPDATE/DELETE/MERGE` as a query with that body.
fn dml_body(q: &sqlparser::ast::Query) -> Option<&Statement> {
    use sqlparser::ast::SetExpr;
    match q.body.as_ref() {
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => Some(s),
        SetExpr::Query(inner) => dml_body(inner),
        _ => None,
    }
}

/// Class and a short kind name of a top-level statement. EXPLAIN and
/// PREPARE take the class of the statement they wrap.
pub fn classify(s: &Statement) -> (StatementClass, String) {
    use StatementClass::*;
    let (class, kind): (StatementClass, &str) = match s {
        // `WITH s AS (...) DELETE FROM t ...` is a query whose body is the
        // data-modifying statement: it is what that statement is.
        Statement::Query(q) => match dml_body(q) {
            Some(dml) => return classify(dml),
            None => (Read, "SELECT"),
        },
        Statement::Explain { statement, .. } => {
            let (c, k) = classify(statement);
            return (c, format!("EXPLAIN {k}"));
        }
        Statement::Prepare { statement, .. } => {
            let (c, k) = classify(statement);
            return (c, format!("PREPARE {k}"));
        }
        Statement::ExplainTable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => (Read, "SHOW"),
        Statement::ShowProcessList { .. } => (Other, "SHOW PROCESSLIST"),
        Statement::Fetch { .. } => (Read, "FETCH"),
        Statement::Declare { .. } => (Read, "DECLARE CURSOR"),
        Statement::Close { .. } => (Session, "CLOSE"),
        Statement::ShowVariable { .. } => (Session, "SHOW"),
        Statement::Insert(_) => (Write, "INSERT"),
        Statement::Update(_) => (Write, "UPDATE"),
        Statement::Delete(_) => (Write, "DELETE"),
        Statement::Merge(_) => (Write, "MERGE"),
        Statement::Truncate(_) => (Write, "TRUNCATE"),
        Statement::Lock(_) | Statement::LockTables { .. } => (Write, "LOCK"),
        Statement::UnlockTables => (Session, "UNLOCK TABLES"),
        Statement::LoadData { .. } => (Write, "LOAD DATA"),
        Statement::Copy { to, source, .. } => {
            // `COPY (UPDATE ... RETURNING *) TO STDOUT` writes.
            let writes = matches!(
                source,
                sqlparser::ast::CopySource::Query(q) if matches!(
                    q.body.as_ref(),
                    SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
                )
            );
            match (to, writes) {
                (true, false) => (Read, "COPY TO"),
                (true, true) => (Write, "COPY (write) TO"),
                (false, _) => (Write, "COPY FROM"),
            }
        }
        Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::Deny(_)
        | Statement::CreateRole(_)
        | Statement::AlterRole { .. }
        | Statement::CreateUser(_)
        | Statement::AlterUser(_)
        | Statement::CreatePolicy(_)
        | Statement::AlterPolicy(_)
        | Statement::DropPolicy(_) => (Dcl, "DCL"),
        Statement::Drop {
            object_type: ObjectType::Role | ObjectType::User,
            ..
        } => (Dcl, "DROP ROLE"),
        Statement::Set(Set::SetTransaction { session: false, .. }) => {
            (Transaction, "SET TRANSACTION")
        }
        Statement::Set(_) => (Session, "SET"),
        Statement::Reset(_) => (Session, "RESET"),
        Statement::Use(_) => (Session, "USE"),
        Statement::Discard { .. } => (Session, "DISCARD"),
        // Stops this session's own listening (pools send `UNLISTEN *` when
        // a connection is returned); LISTEN stays class `other`.
        Statement::UNLISTEN { .. } => (Session, "UNLISTEN"),
        Statement::Deallocate { .. } => (Session, "DEALLOCATE"),
        Statement::Execute { .. } => (Session, "EXECUTE"),
        Statement::StartTransaction { .. } => (Transaction, "BEGIN"),
        Statement::Commit { .. } => (Transaction, "COMMIT"),
        Statement::Rollback { .. } => (Transaction, "ROLLBACK"),
        Statement::Savepoint { .. } => (Transaction, "SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => (Transaction, "RELEASE SAVEPOINT"),
        Statement::CreateView(_)
        | Statement::CreateTable(_)
        | Statement::CreateVirtualTable { .. }
        | Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateTrigger(_)
        | Statement::CreateProcedure { .. }
        | Statement::CreateSequence { .. }
        | Statement::CreateDomain(_)
        | Statement::CreateType { .. }
        | Statement::CreateExtension(_)
        | Statement::CreateCollation(_)
        | Statement::CreateOperator(_)
        | Statement::CreateServer(_)
        | Statement::AlterTable(_)
        | Statement::AlterSchema(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView { .. }
        | Statement::AlterFunction(_)
        | Statement::AlterType(_)
        | Statement::Drop { .. }
        | Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropProcedure { .. }
        | Statement::DropTrigger(_)
        | Statement::DropExtension(_)
        | Statement::Comment { .. }
        | Statement::RenameTable(_) => (Ddl, "DDL"),
        Statement::Call(_) => (Other, "CALL"),
        // Named by its first word (`VACUUM`, `CHECKPOINT`), so that a
        // refusal says what was refused.
        _ => return (Other, leading_keyword(s)),
    };
    (class, kind.to_string())
}

/// The first word of a statement as sqlparser prints it, upper-case
/// (`OTHER` when it has none).
fn leading_keyword(s: &Statement) -> String {
    s.to_string()
        .split(|c: char| !c.is_ascii_alphabetic())
        .find(|w| !w.is_empty())
        .unwrap_or("OTHER")
        .to_ascii_uppercase()
}

/// Normalizes a setting name: lower-case, `@@session.x` → `x`.
pub fn setting_name(name: &ObjectName) -> (String, bool) {
    let full = name.to_string().to_lowercase().replace(['"', '`'], "");
    let mut n = full.as_str();
    let mut global = false;
    n = n.strip_prefix("@@").unwrap_or(n);
    for (p, g) in [
        ("session.", false),
        ("local.", false),
        ("global.", true),
        ("persist.", true),
        ("persist_only.", true),
    ] {
        if let Some(rest) = n.strip_prefix(p) {
            n = rest;
            global |= g;
        }
    }
    (n.to_string(), global)
}

/// Whether a boolean setting's new value surely reads as true: one plain
/// literal that Postgres's `parse_bool` takes for true (any prefix of
/// `true` or `yes`, `on`, `1`, in any case; MySQL takes `ON`, `TRUE` and
/// `1`). Anything else, an expression (`1-1`, `(0)`, `@v`), `DEFAULT`, or
/// a prefix of `false` or `off` (`fa`, `of`), may turn it off.
fn value_is_surely_on(values: &[Expr]) -> bool {
    let [value] = values else {
        return false;
    };
    let text = match value {
        Expr::Identifier(id) => id.value.to_lowercase(),
        Expr::Value(v) => {
            let s = v.to_string().to_lowercase();
            match s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                Some(inner) => inner.to_string(),
                None => s,
            }
        }
        _ => return false,
    };
    matches!(
        text.as_str(),
        "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "on" | "1"
    )
}

/// The facts and built-in violations of setting `name` to `values` (a
/// `SET`, one assignment of a MySQL `SET a = 1, b = 2`, or a Postgres
/// `set_config` with constant arguments, which is `SET` by another name).
pub fn assign_setting(
    dialect: Dialect,
    facts: &mut Facts,
    name: &ObjectName,
    scope: Option<&ContextModifier>,
    values: &[Expr],
) {
    let (n, global) = setting_name(name);
    if global || matches!(scope, Some(ContextModifier::Global)) {
        facts.violations.push((
            ids::ADMIN,
            format!("SET GLOBAL {n} changes the whole server"),
        ));
    }
    if matches!(scope, Some(ContextModifier::Local)) {
        facts.session.local = true;
    }
    if builtin::is_role_setting(&n) {
        facts
            .violations
            .push((ids::ROLE_CHANGE, format!("changing {n} is not allowed")));
    }
    // MySQL's sql_mode set to one string naming only modes that keep the
    // default quoting and escaping (connectors send `SET sql_mode =
    // 'STRICT_TRANS_TABLES'`, or the session's own value after a reset):
    // allowed, as the session's own check allows it (`mysql::sql_mode`).
    // Also `CONCAT(@@sql_mode, '...')` adding such modes to the session's
    // own (MariaDB Connector/J logs in with it).
    let safe_sql_mode = dialect == Dialect::MySql
        && n == "sql_mode"
        && match values {
            [v] => safe_sql_mode_literal(v) || appends_safe_sql_modes(v),
            _ => false,
        };
    if builtin::is_lexer_or_loader_setting(&n) && !safe_sql_mode {
        facts.violations.push((
            ids::LEXER_SETTING,
            format!("changing {n} would change how statements are read or load code"),
        ));
    }
    if n == "password" {
        facts.violations.push((
            ids::ROLE_CHANGE,
            "SET PASSWORD changes the credentials of the account airlock logs in as".to_string(),
        ));
    }
    if dialect == Dialect::MySql && n == "character_set_results" && !result_charset_is_safe(values)
    {
        facts.violations.push((
                    ids::LEXER_SETTING,
                    "character_set_results other than utf8mb4, utf8mb3, latin1 or ascii sends results masking cannot read".to_string(),
                ));
    }
    if builtin::is_server_log_setting(&n) {
        facts.violations.push((
            ids::ADMIN,
            format!("{n} changes what the server logs or replicates of this session"),
        ));
    }
    if builtin::is_tracing_setting(&n) {
        facts.violations.push((
            ids::ADMIN,
            format!("{n} makes the server show values it read, masked data included"),
        ));
    }
    if builtin::is_read_only_setting(&n) && !value_is_surely_on(values) {
        facts.session.enables_writes = true;
    }
    if n == "search_path" {
        let path: Vec<String> = values
            .iter()
            .map(|v| match v {
                Expr::Identifier(id) => id.value.clone(),
                Expr::Value(v) => v.to_string().trim_matches('\'').to_string(),
                other => other.to_string(),
            })
            .flat_map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.is_empty())
            .collect();
        facts.session.search_path = Some(path);
    }
    if builtin::is_timeout_setting(&n) || builtin::is_idle_timeout_setting(&n) {
        let value = match values {
            [v] => constant_text(v).and_then(|t| builtin::timeout_value(&n, &t)),
            _ => None,
        };
        facts.session.timeouts.push((n.clone(), value));
    }
    facts.session.sets.push(n);
}

/// The text of a constant: a number or a string.
fn constant_text(v: &Expr) -> Option<String> {
    use sqlparser::ast::Value;
    match v {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.to_string()),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A string naming only modes that keep MySQL's quoting and escaping.
fn safe_sql_mode_literal(v: &Expr) -> bool {
    match v {
        Expr::Value(v) => match &v.value {
            sqlparser::ast::Value::SingleQuotedString(m)
            | sqlparser::ast::Value::DoubleQuotedString(m) => {
                builtin::mysql_sql_mode_value_is_safe(m).is_ok()
            }
            _ => false,
        },
        _ => false,
    }
}

/// `CONCAT(@@[session.|local.]sql_mode, '<safe modes>')` (see
/// `mysql::sql_mode::appended_modes`, which the session checks too).
fn appends_safe_sql_modes(v: &Expr) -> bool {
    use sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let Expr::Function(f) = v else { return false };
    if !f.name.to_string().eq_ignore_ascii_case("concat") {
        return false;
    }
    let FunctionArguments::List(list) = &f.args else {
        return false;
    };
    let arg = |i: usize| match list.args.get(i) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e),
        _ => None,
    };
    let (Some(current), Some(added), 2) = (arg(0), arg(1), list.args.len()) else {
        return false;
    };
    let current = current.to_string().to_lowercase().replace('`', "");
    list.duplicate_treatment.is_none()
        && list.clauses.is_empty()
        && matches!(
            current.as_str(),
            "@@sql_mode" | "@@session.sql_mode" | "@@local.sql_mode"
        )
        && safe_sql_mode_literal(added)
}

/// Fills `facts.session` and built-in session violations.
pub fn session_facts(dialect: Dialect, s: &Statement, facts: &mut Facts) {
    let assign =
        |facts: &mut Facts, name: &ObjectName, scope: Option<&ContextModifier>, values: &[Expr]| {
            assign_setting(dialect, facts, name, scope, values)
        };
    match s {
        Statement::Set(set) => match set {
            Set::SingleAssignment {
                scope,
                variable,
                values,
                ..
            } => assign(facts, variable, scope.as_ref(), values),
            Set::ParenthesizedAssignments { variables, values } => {
                for v in variables {
                    assign(facts, v, None, values)
                }
            }
            Set::MultipleAssignments { assignments } => {
                for a in assignments {
                    assign(
                        facts,
                        &a.name,
                        a.scope.as_ref(),
                        std::slice::from_ref(&a.value),
                    )
                }
            }
            Set::SetSessionAuthorization(_) | Set::SetRole { .. } => facts.violations.push((
                ids::ROLE_CHANGE,
                "SET ROLE / SET SESSION AUTHORIZATION is not allowed".to_string(),
            )),
            // MySQL connectors send `SET NAMES utf8mb4` on connect.
            // Character sets whose multi-byte characters never contain an
            // ASCII byte (so never a quote or backslash) read statements the
            // same way; the others (sjis, gbk, big5, ...) are how
            // backslash-escape bypasses are made, and are refused.
            Set::SetNames { charset_name, .. }
                if dialect == Dialect::MySql
                    && ASCII_SAFE_CHARSETS
                        .contains(&charset_name.value.to_lowercase().as_str()) => {}
            // On Postgres `SET NAMES x` is `SET client_encoding = x`, refused
            // whatever the value as that is (red-team finding: `SET NAMES
            // 'SJIS'` was allowed, and a statement pipelined behind it was
            // judged as UTF-8 before the server's ParameterStatus said
            // SJIS, hiding any SQL after an `E'Ã\'` literal).
            Set::SetNames { .. } | Set::SetNamesDefault {} => facts.violations.push((
                ids::LEXER_SETTING,
                "SET NAMES changes how statements are read".to_string(),
            )),
            Set::SetTransaction { modes, .. } => {
                if has_read_write(modes) {
                    facts.session.enables_writes = true;
                }
            }
            _ => facts.session.sets.push(set.to_string()),
        },
        // MySQL has no `RESET <setting>`: every RESET there is a server
        // command (`RESET MASTER` deletes the binary logs, `RESET SLAVE`
        // the replication position), which sqlparser reads as Postgres's
        // RESET of a setting named MASTER (ground-truth red team: allowed
        // as a session statement under read_only, and run).
        Statement::Reset(_) if dialect == Dialect::MySql => facts.violations.push((
            ids::ADMIN,
            format!("{s} resets server state (binary logs, replication, caches)"),
        )),
        // RESET restores what the session started with, which includes
        // the settings airlock sends at startup (read-only, timeouts): it
        // cannot undo them, and pools send `RESET ALL` when a connection
        // is returned. `transaction_read_only` is the exception: reset in
        // a read-only transaction, it makes the transaction read-write.
        Statement::Reset(r) => match &r.reset {
            Reset::ALL => {}
            Reset::SessionAuthorization => facts.violations.push((
                ids::ROLE_CHANGE,
                "RESET SESSION AUTHORIZATION is not allowed".to_string(),
            )),
            Reset::ConfigurationParameter(name) => {
                let (n, _) = setting_name(name);
                if builtin::is_role_setting(&n) {
                    facts
                        .violations
                        .push((ids::ROLE_CHANGE, format!("RESET {n} is not allowed")));
                }
                if builtin::is_read_only_setting(&n) && n != "default_transaction_read_only" {
                    facts.session.enables_writes = true;
                }
            }
        },
        Statement::StartTransaction { modes, .. } if has_read_write(modes) => {
            facts.session.enables_writes = true;
        }
        Statement::Use(Use::Database(n) | Use::Object(n) | Use::Schema(n)) => {
            facts.session.use_database = Some(
                n.0.last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.clone())
                    .unwrap_or_default(),
            );
        }
        Statement::Discard { object_type } => {
            if matches!(object_type, DiscardObject::ALL) {
                facts.session.deallocate_all = true;
            }
        }
        Statement::Deallocate { name, .. } => {
            if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
                facts.session.deallocate_all = true;
            } else {
                facts.session.deallocate = Some(statement_name(dialect, name));
            }
        }
        Statement::Prepare {
            name, statement, ..
        } => {
            facts.session.prepare = Some(statement_name(dialect, name));
            session_facts(dialect, statement, facts);
        }
        Statement::Execute { name, .. } => {
            facts.session.execute = Some(execute_name(dialect, name.as_ref()));
        }
        Statement::Rollback {
            savepoint: Some(_), ..
        } => {
            facts.session.rollback_to_savepoint = true;
        }
        Statement::Close { cursor } => {
            facts.session.close = Some(match cursor {
                sqlparser::ast::CloseCursor::All => None,
                sqlparser::ast::CloseCursor::Specific { name } => {
                    Some(statement_name(dialect, name))
                }
            });
        }
        Statement::Declare { stmts } => {
            for d in stmts.iter().filter(|d| d.for_query.is_some()) {
                if let Some(name) = d.names.first() {
                    facts.session.declare =
                        Some((statement_name(dialect, name), d.hold == Some(true)));
                }
            }
        }
        Statement::Copy { target, .. } => match target {
            CopyTarget::Program { .. } => facts.violations.push((
                ids::COPY_PROGRAM,
                "COPY ... PROGRAM runs a shell command on the server".to_string(),
            )),
            CopyTarget::File { .. } => facts.violations.push((
                ids::FILE_ACCESS,
                "COPY to or from a server file is not allowed; use STDIN/STDOUT".to_string(),
            )),
            _ => {}
        },
        Statement::CreateExtension(_) | Statement::Load { .. } => facts.violations.push((
            ids::ADMIN,
            "loading extensions or libraries is not allowed".to_string(),
        )),
        // A foreign server reaches another database or server files
        // (postgres_fdw, file_fdw) out of airlock's sight.
        Statement::CreateServer(_) => facts.violations.push((
            ids::ADMIN,
            "foreign servers reach data out of airlock's sight; an administrator creates them"
                .to_string(),
        )),
        Statement::LoadData { .. } => facts
            .violations
            .push((ids::FILE_ACCESS, "LOAD DATA reads files".to_string())),
        Statement::CreateFunction(_)
        | Statement::CreateProcedure { .. }
        | Statement::CreateTrigger(_) => facts.violations.push((
            ids::OPAQUE_CODE,
            "functions, procedures and triggers hold code airlock cannot inspect".to_string(),
        )),
        // An operator calls its function under another name: `a ### b`
        // ran `setval` past the function rules (ground-truth red team).
        Statement::CreateOperator(_)
        | Statement::CreateOperatorClass(_)
        | Statement::CreateOperatorFamily(_) => facts.violations.push((
            ids::OPAQUE_CODE,
            "operators call functions under names the function rules do not see".to_string(),
        )),
        Statement::Kill { .. } => facts
            .violations
            .push((ids::ADMIN, "KILL ends other sessions".to_string())),
        Statement::Explain { statement, .. } => session_facts(dialect, statement, facts),
        Statement::AlterRole { operation, .. } => {
            if let AlterRoleOperation::WithOptions { options } = operation {
                if options.iter().any(|o| matches!(o, RoleOption::Password(_))) {
                    facts.violations.push((
                        ids::ROLE_CHANGE,
                        "ALTER ROLE ... PASSWORD sets a password someone could log in with, past airlock (or locks airlock's own account out)".to_string(),
                    ));
                }
            }
            role_default_facts(operation, facts)
        }
        Statement::CreateRole(role) if role.password.is_some() => facts.violations.push((
            ids::ROLE_CHANGE,
            "CREATE ROLE ... PASSWORD makes a login that does not go through airlock".to_string(),
        )),
        _ => {
            if let Some(role) = super::ownership::new_owner(s) {
                facts.violations.push((
                    ids::ROLE_CHANGE,
                    format!(
                        "handing an object to role {role} (OWNER TO, AUTHORIZATION) is not allowed: it would outlive the session's database user"
                    ),
                ));
            }
        }
    }
}

/// Built-in violations of `ALTER ROLE|USER ... [IN DATABASE d] SET|RESET`.
/// A role's defaults are every later session's settings, and airlock
/// reads a session with the search_path, lexer settings and role it
/// started with: the settings a `SET` may not change may not be changed
/// there either ([`builtin::session_default_rule`]). `RESET ALL` may
/// change any of them. (The read-only and statement-timeout settings a
/// policy imposes are startup options, which outrank role defaults.)
fn role_default_facts(operation: &AlterRoleOperation, facts: &mut Facts) {
    let name = match operation {
        AlterRoleOperation::Set { config_name, .. }
        | AlterRoleOperation::Reset {
            config_name: ResetConfig::ConfigName(config_name),
            ..
        } => config_name,
        AlterRoleOperation::Reset {
            config_name: ResetConfig::ALL,
            ..
        } => {
            for rule in [ids::SEARCH_PATH, ids::LEXER_SETTING, ids::ROLE_CHANGE] {
                facts.violations.push((
                    rule,
                    "ALTER ROLE ... RESET ALL would change the search_path, lexer settings \
                     and role of the role's later sessions"
                        .to_string(),
                ));
            }
            return;
        }
        _ => return,
    };
    let (n, _) = setting_name(name);
    if let Some(rule) = builtin::session_default_rule(&n) {
        facts.violations.push((
            rule,
            format!(
                "changing the role default of {n} would change every later session of the role"
            ),
        ));
    }
}

fn has_read_write(modes: &[TransactionMode]) -> bool {
    modes.iter().any(|m| {
        matches!(
            m,
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite)
        )
    })
}

/// The name an `EXECUTE` runs, as SQL PREPARE names are recorded
/// ([`crate::policy::SessionContext::prepared`], see [`statement_name`]).
/// A name of several parts (which no server takes) is kept whole, so that
/// it matches no prepared statement.
pub fn execute_name(dialect: Dialect, name: Option<&sqlparser::ast::ObjectName>) -> String {
    let Some(name) = name else {
        return String::new();
    };
    match name.0.as_slice() {
        [sqlparser::ast::ObjectNamePart::Identifier(ident)] => statement_name(dialect, ident),
        _ => name.to_string(),
    }
}

/// The name of a SQL-level prepared statement (or cursor) as the server
/// knows it. Postgres: a quoted name as written, an unquoted one with
/// ASCII letters in lower case (`"S"` and `s` are two statements, and
/// `É` stays `É`), both cut to 63 bytes at a character boundary, as the
/// server cuts identifiers. MySQL compares them without case: lower case.
pub fn statement_name(dialect: Dialect, ident: &sqlparser::ast::Ident) -> String {
    match dialect {
        Dialect::Postgres => {
            let name = match ident.quote_style {
                Some(_) => ident.value.clone(),
                None => ident.value.to_ascii_lowercase(),
            };
            pg_identifier(name)
        }
        Dialect::MySql => ident.value.to_lowercase(),
    }
}

/// A Postgres identifier cut as the server cuts it: to at most 63 bytes
/// (`NAMEDATALEN - 1`, as the protocol's names), at a character boundary.
pub fn pg_identifier(mut name: String) -> String {
    use airlock_protocol::pg::frontend::NAME_KEY_LEN;
    if name.len() > NAME_KEY_LEN {
        let mut end = NAME_KEY_LEN;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::super::extract::extract;
    use super::super::parse::{parse, Limits};
    use super::super::SessionContext;
    use super::*;

    /// The built-in rules one Postgres statement violates.
    fn violations(sql: &str) -> Vec<&'static str> {
        let parsed = parse(Dialect::Postgres, sql, &Limits::default()).expect("parses");
        let [p] = parsed.as_slice() else {
            panic!("one statement: {sql}")
        };
        let facts = extract(Dialect::Postgres, &SessionContext::default(), &p.statement);
        assert!(facts.session.search_path.is_none(), "{sql}");
        facts.violations.iter().map(|(rule, _)| *rule).collect()
    }

    #[test]
    fn role_defaults_of_guarded_settings_are_violations() {
        for (sql, rule) in [
            (
                "ALTER ROLE CURRENT_USER SET search_path TO evil",
                ids::SEARCH_PATH,
            ),
            (
                "ALTER USER CURRENT_USER SET search_path = evil",
                ids::SEARCH_PATH,
            ),
            ("ALTER ROLE ALL SET search_path TO evil", ids::SEARCH_PATH),
            (
                "ALTER ROLE SESSION_USER SET search_path TO evil",
                ids::SEARCH_PATH,
            ),
            (
                "ALTER ROLE app IN DATABASE app SET search_path TO evil",
                ids::SEARCH_PATH,
            ),
            (
                "ALTER ROLE app SET search_path = 'evil, public'",
                ids::SEARCH_PATH,
            ),
            (
                "ALTER ROLE app SET search_path TO DEFAULT",
                ids::SEARCH_PATH,
            ),
            (
                "ALTER ROLE app SET search_path FROM CURRENT",
                ids::SEARCH_PATH,
            ),
            (
                r#"ALTER ROLE app SET "Search_Path" TO evil"#,
                ids::SEARCH_PATH,
            ),
            (
                r#"ALTER ROLE app SET U&"search\005fpath" TO evil"#,
                ids::SEARCH_PATH,
            ),
            ("ALTER ROLE app RESET search_path", ids::SEARCH_PATH),
            (
                "ALTER USER app IN DATABASE app RESET search_path",
                ids::SEARCH_PATH,
            ),
            (
                "ALTER ROLE app SET standard_conforming_strings TO off",
                ids::LEXER_SETTING,
            ),
            (
                "ALTER ROLE app SET backslash_quote = on",
                ids::LEXER_SETTING,
            ),
            (
                "ALTER ROLE app SET client_encoding = sjis",
                ids::LEXER_SETTING,
            ),
            (
                "ALTER ROLE app SET session_preload_libraries = 'x'",
                ids::LEXER_SETTING,
            ),
            (
                "ALTER ROLE app RESET escape_string_warning",
                ids::LEXER_SETTING,
            ),
            ("ALTER ROLE app SET role TO admin", ids::ROLE_CHANGE),
            (
                "ALTER ROLE app SET session_authorization TO admin",
                ids::ROLE_CHANGE,
            ),
            ("ALTER ROLE app RESET role", ids::ROLE_CHANGE),
        ] {
            assert_eq!(violations(sql), vec![rule], "{sql}");
        }
        assert_eq!(
            violations("ALTER ROLE app RESET ALL"),
            vec![ids::SEARCH_PATH, ids::LEXER_SETTING, ids::ROLE_CHANGE]
        );
    }

    #[test]
    fn other_role_changes_are_not_violations() {
        for sql in [
            "ALTER ROLE app SET work_mem TO '64MB'",
            "ALTER ROLE app SET statement_timeout TO 0",
            "ALTER ROLE app RESET work_mem",
            "ALTER ROLE app WITH NOLOGIN",
            "ALTER ROLE app RENAME TO app2",
        ] {
            assert!(violations(sql).is_empty(), "{sql}");
        }
    }
}

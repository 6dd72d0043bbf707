//! Statements that hand an object to another role: `ALTER … OWNER TO r`
//! (tables, views, sequences, schemas, functions, collations, operators,
//! text search objects, connectors) and `CREATE SCHEMA … AUTHORIZATION r`.
//!
//! Refused as `builtin.role-change`. An object given away outlives the
//! session's database user: with ephemeral credentials the user is a
//! member of the target's template role, so it may give its tables and
//! schemas to that role, where the `DROP OWNED` at the session's end does
//! not reach them and every later session of the template finds them
//! (red-team finding). `OWNER TO CURRENT_USER` (or `CURRENT_ROLE`,
//! `SESSION_USER`) keeps the object where it is, and is allowed.

use sqlparser::ast::{
    AlterCollationOperation, AlterFunctionOperation, AlterOperatorClassOperation,
    AlterOperatorFamilyOperation, AlterOperatorOperation, AlterSchemaOperation,
    AlterTableOperation, AlterTextSearchOperation, Owner, SchemaName, Statement,
};

/// The role `s` hands an object to, other than the session's own.
pub fn new_owner(s: &Statement) -> Option<String> {
    let other = |o: &Owner| match o {
        Owner::Ident(role) => Some(role.to_string()),
        _ => None,
    };
    match s {
        Statement::AlterTable(t) => t.operations.iter().find_map(|op| match op {
            AlterTableOperation::OwnerTo { new_owner } => other(new_owner),
            _ => None,
        }),
        Statement::AlterSchema(a) => a.operations.iter().find_map(|op| match op {
            AlterSchemaOperation::OwnerTo { owner } => other(owner),
            _ => None,
        }),
        Statement::AlterFunction(f) => match &f.operation {
            AlterFunctionOperation::OwnerTo(o) => other(o),
            _ => None,
        },
        Statement::AlterCollation(c) => match &c.operation {
            AlterCollationOperation::OwnerTo(o) => other(o),
            _ => None,
        },
        Statement::AlterOperator(o) => match &o.operation {
            AlterOperatorOperation::OwnerTo(owner) => other(owner),
            _ => None,
        },
        Statement::AlterOperatorFamily(o) => match &o.operation {
            AlterOperatorFamilyOperation::OwnerTo(owner) => other(owner),
            _ => None,
        },
        Statement::AlterOperatorClass(o) => match &o.operation {
            AlterOperatorClassOperation::OwnerTo(owner) => other(owner),
            _ => None,
        },
        Statement::AlterTextSearch(t) => match &t.operation {
            AlterTextSearchOperation::OwnerTo(o) => other(o),
            _ => None,
        },
        Statement::AlterConnector {
            owner: Some(owner), ..
        } => Some(owner.to_string()),
        Statement::CreateSchema {
            schema_name:
                SchemaName::UnnamedAuthorization(role) | SchemaName::NamedAuthorization(_, role),
            ..
        } => Some(role.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn owner(sql: &str) -> Option<String> {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        new_owner(&s[0])
    }

    #[test]
    fn objects_given_to_another_role_are_seen() {
        for sql in [
            "ALTER TABLE t OWNER TO agent_rw",
            "alter table if exists only public.t owner to \"agent_rw\"",
            "ALTER TABLE t ADD COLUMN c int, OWNER TO agent_rw",
            "ALTER SCHEMA s OWNER TO agent_rw",
            "ALTER FUNCTION f(int) OWNER TO agent_rw",
            "CREATE SCHEMA s AUTHORIZATION agent_rw",
            "CREATE SCHEMA AUTHORIZATION agent_rw",
        ] {
            assert!(owner(sql).is_some_and(|o| o.contains("agent_rw")), "{sql}");
        }
        for sql in [
            "ALTER TABLE t OWNER TO CURRENT_USER",
            "ALTER TABLE t OWNER TO SESSION_USER",
            "ALTER SCHEMA s OWNER TO CURRENT_ROLE",
            "ALTER TABLE t ADD COLUMN c int",
            "CREATE SCHEMA s",
            "SELECT 'OWNER TO agent_rw'",
        ] {
            assert_eq!(owner(sql), None, "{sql}");
        }
    }
}

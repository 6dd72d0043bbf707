//! Which result column types hold text that a masked string can replace.
//!
//! A masked value must stay valid for its column's declared type: `****`
//! is fine in a `varchar`, but in an `int4`, `uuid`, `date` or `jsonb`
//! column it would break clients, so for those every strategy except
//! `null` degrades to NULL (see [`super::strategy::mask_text`]). The tables
//! here are deliberately small; anything not listed is treated as
//! non-text.

/// Postgres type OIDs whose text output is free-form text:
/// `name` (19), `text` (25), `bpchar` (1042), `varchar` (1043),
/// `unknown` (705, untyped literals).
pub const PG_TEXT_OIDS: [u32; 5] = [19, 25, 705, 1042, 1043];

/// Is the Postgres type with this OID text-like?
pub fn pg_oid_is_text(oid: u32) -> bool {
    PG_TEXT_OIDS.contains(&oid)
}

/// Is the Postgres type with this name text-like? For extension types
/// whose OIDs differ per database (`citext`); the session looks the name
/// up once per OID.
pub fn pg_type_name_is_text(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "text" | "varchar" | "character varying" | "bpchar" | "character" | "name" | "citext"
    )
}

/// MySQL column type codes (`enum_field_types`).
pub mod mysql {
    pub const VARCHAR: u8 = 15;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    /// The `binary` character set: BLOB/BINARY columns holding bytes.
    pub const BINARY_CHARSET: u16 = 63;
}

/// Is a MySQL column of this type and character set text-like?
/// VARCHAR/CHAR (`VAR_STRING`, `STRING`, `VARCHAR`) and the BLOB family
/// (TEXT columns are BLOBs on the wire) are text unless their charset is
/// `binary`. ENUM/SET/JSON are not: a masked string is not a valid member.
pub fn mysql_type_is_text(type_code: u8, charset: u16) -> bool {
    use mysql::*;
    matches!(
        type_code,
        VARCHAR | VAR_STRING | STRING | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | BLOB
    ) && charset != BINARY_CHARSET
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_types_tables() {
        assert!(pg_oid_is_text(25) && pg_oid_is_text(1043) && pg_oid_is_text(1042));
        assert!(!pg_oid_is_text(23) && !pg_oid_is_text(2950) && !pg_oid_is_text(3802));
        assert!(pg_type_name_is_text("CITEXT"));
        assert!(!pg_type_name_is_text("jsonb"));
        assert!(mysql_type_is_text(mysql::VAR_STRING, 45));
        assert!(mysql_type_is_text(mysql::BLOB, 33));
        assert!(!mysql_type_is_text(mysql::BLOB, mysql::BINARY_CHARSET));
        assert!(!mysql_type_is_text(3, 63)); // LONG
        assert!(!mysql_type_is_text(245, 33)); // JSON
    }
}

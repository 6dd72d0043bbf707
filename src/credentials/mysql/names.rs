//! Ephemeral user names on MariaDB/MySQL, which carry airlock's marker:
//! `<prefix><instance tag, 6><expiry, 7 base-36 digits of unix s><random>`.
//!
//! MariaDB 10.11 has no user comments or attributes, so the janitor reads
//! everything it needs from the name: whose it is and when it expires. A
//! name with the prefix but not this shape is never touched.

use super::super::random_name;

/// Characters of the instance tag in a name.
pub(super) const TAG_LEN: usize = 6;
/// Base-36 digits of the expiry in a name.
pub(super) const EXPIRY_LEN: usize = 7;
/// Random characters at the end of a name.
pub(super) const NAME_RANDOM: usize = 22;
/// The fewest random characters airlock accepts (MySQL's short names).
pub(super) const MIN_RANDOM: usize = 12;
/// Longest user name: MariaDB 80 (10.x), MySQL 32.
pub(super) const MARIADB_MAX_NAME: usize = 80;
pub(super) const MYSQL_MAX_NAME: usize = 32;

/// The first characters of the instance id (hex), as the name's tag.
pub(super) fn instance_tag(instance_id: &str) -> String {
    let mut tag: String = instance_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(TAG_LEN)
        .collect();
    while tag.len() < TAG_LEN {
        tag.push('0');
    }
    tag
}

/// `<prefix><tag><expiry><random>`, at most `limit` bytes; empty when the
/// prefix leaves too little room for the random part.
pub(super) fn make_name(prefix: &str, tag: &str, expires: u64, limit: usize) -> String {
    let fixed = prefix.len() + TAG_LEN + EXPIRY_LEN;
    let random = NAME_RANDOM.min(limit.saturating_sub(fixed));
    if random < MIN_RANDOM {
        return String::new();
    }
    format!("{prefix}{tag}{}{}", base36(expires), random_name(random))
}

/// (tag, expiry) of a name airlock made with `prefix`.
pub(super) fn parse_name<'a>(name: &'a str, prefix: &str) -> Option<(&'a str, u64)> {
    let rest = name.strip_prefix(prefix)?;
    if rest.len() < TAG_LEN + EXPIRY_LEN + MIN_RANDOM
        || !rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return None;
    }
    let tag = rest.get(..TAG_LEN)?;
    let expires = u64::from_str_radix(rest.get(TAG_LEN..TAG_LEN + EXPIRY_LEN)?, 36).ok()?;
    Some((tag, expires))
}

/// `n` as exactly [`EXPIRY_LEN`] base-36 digits (saturating).
pub(super) fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    n = n.min(36u64.pow(EXPIRY_LEN as u32) - 1);
    let mut out = vec![b'0'; EXPIRY_LEN];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_tag_and_expiry() {
        let name = make_name("airlock_eph_", "3fa9c1", 1_800_000_000, MARIADB_MAX_NAME);
        assert_eq!(name.len(), 12 + TAG_LEN + EXPIRY_LEN + NAME_RANDOM);
        assert_eq!(
            parse_name(&name, "airlock_eph_"),
            Some(("3fa9c1", 1_800_000_000))
        );
        assert_ne!(
            name,
            make_name("airlock_eph_", "3fa9c1", 1_800_000_000, MARIADB_MAX_NAME)
        );
        assert_eq!(parse_name(&name, "other_"), None);
        assert_eq!(parse_name("airlock_eph_short", "airlock_eph_"), None);
        assert_eq!(
            parse_name(
                "airlock_eph_Has-Odd-Chars-0000000abcdefghijkl",
                "airlock_eph_"
            ),
            None
        );
        // No TTL: expiry 0.
        let name = make_name("p_", "abcdef", 0, MARIADB_MAX_NAME);
        assert_eq!(parse_name(&name, "p_"), Some(("abcdef", 0)));
    }

    #[test]
    fn mysql_names_fit_32_bytes() {
        assert_eq!(make_name("airlock_eph_", "abcdef", 5, MYSQL_MAX_NAME), "");
        let name = make_name("ae_", "abcdef", 5, MYSQL_MAX_NAME);
        assert_eq!(name.len(), MYSQL_MAX_NAME);
        assert_eq!(parse_name(&name, "ae_"), Some(("abcdef", 5)));
    }

    #[test]
    fn base36_is_fixed_width() {
        assert_eq!(base36(0), "0000000");
        assert_eq!(base36(35), "000000z");
        assert_eq!(
            u64::from_str_radix(&base36(1_800_000_000), 36).ok(),
            Some(1_800_000_000)
        );
        assert_eq!(base36(u64::MAX), "zzzzzzz");
    }

    #[test]
    fn instance_tags() {
        assert_eq!(instance_tag("3FA9C1d2e3f40516"), "3fa9c1");
        assert_eq!(instance_tag("ab"), "ab0000");
    }
}

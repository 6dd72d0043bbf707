//! Authentication exchanges.
//!
//! `mysql_native_password`: the server stores `SHA1(SHA1(password))` (shown
//! by MySQL as `*` + 40 upper-case hex digits); the client proves knowledge
//! of `SHA1(password)` by sending
//! `SHA1(password) XOR SHA1(scramble ++ SHA1(SHA1(password)))`.
//!
//! `caching_sha2_password`: the fast path proves knowledge of
//! `SHA256(password)` with
//! `SHA256(password) XOR SHA256(SHA256(SHA256(password)) ++ scramble)`, so a
//! server that keeps `SHA256(SHA256(password))` can verify it; the full path
//! sends the password itself (over TLS, or RSA-encrypted, which airlock does
//! not do).
//!
//! An identity's `mysql_secret` holds one or both verifiers, separated by
//! white space: `*<40 hex>` (native) and `sha2:<64 hex>`
//! (`SHA256(SHA256(password))`); see [`Secret`].

use super::sha1;

pub const NATIVE: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";

/// `SHA1(SHA1(password))`, what the server (and airlock) stores.
pub fn native_hash(password: &[u8]) -> [u8; 20] {
    sha1::digest(&[&sha1::digest(&[password])])
}

/// The stored form `*<40 upper-case hex>` of [`native_hash`].
pub fn native_hash_string(password: &[u8]) -> String {
    let mut s = String::from("*");
    for b in native_hash(password) {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// Parses `*<40 hex>` (either case) back to the 20-byte hash.
pub fn parse_native_hash(s: &str) -> Option<[u8; 20]> {
    let hex = s.strip_prefix('*')?.as_bytes();
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// The client's token for `password` (empty for an empty password).
pub fn native_token(scramble: &[u8], password: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = sha1::digest(&[password]);
    let h2 = sha1::digest(&[&h1]);
    let mix = sha1::digest(&[scramble, &h2]);
    h1.iter().zip(mix).map(|(a, b)| a ^ b).collect()
}

/// Checks a client's token against the stored hash, in constant time with
/// respect to the token's content.
pub fn native_verify(scramble: &[u8], stored: &[u8; 20], token: &[u8]) -> bool {
    if token.len() != 20 {
        return false;
    }
    let mix = sha1::digest(&[scramble, stored]);
    let mut h1 = [0u8; 20];
    for i in 0..20 {
        h1[i] = token[i] ^ mix[i];
    }
    let check = sha1::digest(&[&h1]);
    check
        .iter()
        .zip(stored)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The `caching_sha2_password` token (fast path).
pub fn caching_sha2_token(scramble: &[u8], password: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = Sha256::digest(password);
    let h2 = Sha256::digest(h1);
    let mut h = Sha256::new();
    h.update(h2);
    h.update(scramble);
    let mix = h.finalize();
    h1.iter().zip(mix).map(|(a, b)| a ^ b).collect()
}

/// `SHA256(SHA256(password))`, what airlock stores for `caching_sha2_password`.
pub fn sha2_hash(password: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(Sha256::digest(password)).into()
}

/// Checks a `caching_sha2_password` fast-path token against the stored
/// `SHA256(SHA256(password))`, in constant time with respect to the token.
pub fn caching_sha2_verify(scramble: &[u8], stored: &[u8; 32], token: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    if token.len() != 32 {
        return false;
    }
    let mut h = Sha256::new();
    h.update(stored);
    h.update(scramble);
    let mix = h.finalize();
    let mut h1 = [0u8; 32];
    for i in 0..32 {
        h1[i] = token[i] ^ mix[i];
    }
    let check = Sha256::digest(h1);
    check
        .iter()
        .zip(stored)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The verifiers of an identity's `mysql_secret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Secret {
    /// `SHA1(SHA1(password))`, for `mysql_native_password`.
    pub native: Option<[u8; 20]>,
    /// `SHA256(SHA256(password))`, for the `caching_sha2_password` fast path.
    pub sha2: Option<[u8; 32]>,
}

impl Secret {
    /// Both verifiers of `password`.
    pub fn of(password: &[u8]) -> Secret {
        Secret {
            native: Some(native_hash(password)),
            sha2: Some(sha2_hash(password)),
        }
    }

    /// Parses `*<40 hex>`, `sha2:<64 hex>` or both separated by white space.
    /// `None` for anything else (including an empty string or repeats).
    pub fn parse(s: &str) -> Option<Secret> {
        let mut out = Secret::default();
        for part in s.split_whitespace() {
            if part.starts_with('*') && out.native.is_none() {
                out.native = Some(parse_native_hash(part)?);
            } else if let (Some(hex), None) = (part.strip_prefix("sha2:"), out.sha2) {
                let mut h = [0u8; 32];
                if hex.len() != 64 {
                    return None;
                }
                for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
                    h[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
                }
                out.sha2 = Some(h);
            } else {
                return None;
            }
        }
        (out.native.is_some() || out.sha2.is_some()).then_some(out)
    }

    /// True when `password` matches a verifier (the full path, where the
    /// client sent the password itself).
    pub fn check_password(&self, password: &[u8]) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        };
        match (self.sha2, self.native) {
            (Some(h), _) => eq(&sha2_hash(password), &h),
            (None, Some(h)) => eq(&native_hash(password), &h),
            (None, None) => false,
        }
    }
}

/// The `mysql_secret` value for `password`: both verifiers.
pub fn secret_string(password: &[u8]) -> String {
    let mut s = native_hash_string(password);
    s.push_str(" sha2:");
    for b in sha2_hash(password) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The token for `plugin`, or `None` for a plugin airlock cannot speak.
pub fn token_for(plugin: &str, scramble: &[u8], password: &[u8]) -> Option<Vec<u8>> {
    match plugin {
        NATIVE => Some(native_token(scramble, password)),
        CACHING_SHA2 => Some(caching_sha2_token(scramble, password)),
        _ => None,
    }
}

/// A fresh 20-byte scramble of printable ASCII (never NUL, which would end
/// the greeting's string early).
pub fn new_scramble() -> [u8; 20] {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut s = [0u8; 20];
    for b in &mut s {
        *b = rng.random_range(0x21..0x7f);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_matches_mysql_common_and_verifies() {
        let scramble = new_scramble();
        let token = native_token(&scramble, b"s3cret");
        let theirs = mysql_common::scramble::scramble_native(&scramble, b"s3cret").unwrap();
        assert_eq!(token, theirs.to_vec());
        let stored = native_hash(b"s3cret");
        assert!(native_verify(&scramble, &stored, &token));
        assert!(!native_verify(&scramble, &native_hash(b"other"), &token));
        assert!(!native_verify(&scramble, &stored, &token[..19]));
        assert!(!native_verify(&scramble, &stored, &[]));
    }

    #[test]
    fn sha2_matches_mysql_common() {
        let scramble = new_scramble();
        let theirs = mysql_common::scramble::scramble_sha256(&scramble, b"pw").unwrap();
        assert_eq!(caching_sha2_token(&scramble, b"pw"), theirs.to_vec());
    }

    #[test]
    fn sha2_known_vector_and_verify() {
        // Computed independently (Python hashlib) for this scramble.
        let scramble: Vec<u8> = (0x21u8..0x35).collect();
        let token = caching_sha2_token(&scramble, b"password");
        let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ebe5f544dd4cd00fd370f4197e839d493415b6966277ba7c856bfd1f216d6713"
        );
        let stored = sha2_hash(b"password");
        let hex: String = stored.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "73641c99f7719f57d8f4beb11a303afcd190243a51ced8782ca6d3dbe014d146"
        );
        assert!(caching_sha2_verify(&scramble, &stored, &token));
        assert!(!caching_sha2_verify(&scramble, &sha2_hash(b"x"), &token));
        assert!(!caching_sha2_verify(&scramble[1..], &stored, &token));
        assert!(!caching_sha2_verify(&scramble, &stored, &token[..31]));
        assert!(!caching_sha2_verify(&scramble, &stored, &[]));
    }

    #[test]
    fn secrets_parse_in_every_form() {
        let both = secret_string(b"pw");
        let s = Secret::parse(&both).unwrap();
        assert_eq!(s, Secret::of(b"pw"));
        assert!(s.check_password(b"pw") && !s.check_password(b"px"));
        let native = native_hash_string(b"pw");
        let only = Secret::parse(&native).unwrap();
        assert_eq!((only.native, only.sha2), (Some(native_hash(b"pw")), None));
        assert!(only.check_password(b"pw") && !only.check_password(b"p"));
        let sha = both.split_whitespace().nth(1).unwrap();
        assert_eq!(Secret::parse(sha).unwrap().native, None);
        for bad in [
            "",
            " ",
            "sha2:12",
            "*12",
            &format!("{native} {native}"),
            "x",
        ] {
            assert_eq!(Secret::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn hash_string_matches_mysql_password() {
        // SELECT PASSWORD('password') on MySQL 5.7 / MariaDB.
        assert_eq!(
            native_hash_string(b"password"),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        let s = native_hash_string(b"x");
        assert_eq!(parse_native_hash(&s), Some(native_hash(b"x")));
        assert_eq!(
            parse_native_hash(&s.to_lowercase()),
            Some(native_hash(b"x"))
        );
        assert_eq!(parse_native_hash("2470"), None);
        assert_eq!(
            parse_native_hash("*zz70C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
            None
        );
    }
}

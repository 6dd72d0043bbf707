//! Authentication exchanges.
//!
//! `mysql_native_password`: the server stores `SHA1(SHA1(password))` (shown
//! by MySQL as `*` + 40 upper-case hex digits); the client proves knowledge
//! of `SHA1(password)` by sending
//! `SHA1(password) XOR SHA1(scramble ++ SHA1(SHA1(password)))`.
//!
//! `caching_sha2_password` (client side only, fast path):
//! `SHA256(password) XOR SHA256(SHA256(SHA256(password)) ++ scramble)`.

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

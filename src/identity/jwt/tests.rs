use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::secret::Secret;

const HS_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An ES256 key pair: the signing key and its JWKS (kid "k1").
fn es256() -> (EncodingKey, JwkSet) {
    let kp = rcgen::KeyPair::generate().unwrap();
    let raw = kp.public_key_raw();
    assert_eq!(raw.len(), 65);
    let set: JwkSet = serde_json::from_value(json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": b64url(&raw[1..33]), "y": b64url(&raw[33..]),
    }]}))
    .unwrap();
    (EncodingKey::from_ec_der(&kp.serialize_der()), set)
}

fn config(jwk_set: Option<JwkSet>) -> JwtConfig {
    let mut c: JwtConfig =
        toml::from_str("targets = [\"app\"]\nissuer = \"idp\"\naudience = \"airlock\"\n").unwrap();
    c.jwk_set = jwk_set;
    c.hs256_secret = Some(Secret::new(HS_SECRET.into()));
    c.leeway = Duration::from_secs(5);
    c
}

fn claims(exp: u64) -> serde_json::Value {
    json!({"sub": "bot", "model": "claude-x", "groups": ["ro", "ops"],
           "iss": "idp", "aud": "airlock", "exp": exp})
}

fn hs256(claims: &serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The claims of [`claims`], `exp` aside (see [`no_exp`]).
fn expected() -> JwtClaims {
    JwtClaims {
        name: "bot".into(),
        model: Some("claude-x".into()),
        groups: vec!["ro".into(), "ops".into()],
        expires: 0,
    }
}

/// `c` with its `exp` zeroed, to compare with [`expected`].
fn no_exp(c: JwtClaims) -> JwtClaims {
    assert!(c.expires > 0, "{c:?}");
    JwtClaims { expires: 0, ..c }
}

#[test]
fn valid_hs256() {
    let token = hs256(&claims(now() + 600));
    assert!(looks_like_jwt(&token));
    assert_eq!(no_exp(verify(&config(None), &token).unwrap()), expected());
}

#[test]
fn valid_es256() {
    let (key, set) = es256();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let token = encode(&header, &claims(now() + 600), &key).unwrap();
    assert_eq!(
        no_exp(verify(&config(Some(set)), &token).unwrap()),
        expected()
    );
}

#[test]
fn expired_refused() {
    let token = hs256(&claims(now() - 600));
    let e = verify(&config(None), &token).unwrap_err();
    assert!(matches!(e, JwtError::Invalid(_)), "{e}");
}

#[test]
fn missing_exp_refused() {
    let mut c = claims(0);
    c.as_object_mut().unwrap().remove("exp");
    let e = verify(&config(None), &hs256(&c)).unwrap_err();
    assert!(matches!(e, JwtError::Invalid(_)), "{e}");
}

#[test]
fn wrong_issuer_or_audience_refused() {
    let mut c = claims(now() + 600);
    c["iss"] = json!("someone-else");
    assert!(verify(&config(None), &hs256(&c)).is_err());
    let mut c = claims(now() + 600);
    c["aud"] = json!("other");
    assert!(verify(&config(None), &hs256(&c)).is_err());
}

/// Red-team finding: a configured issuer or audience was only checked when
/// the token had the claim, so a token without them was accepted.
#[test]
fn missing_issuer_or_audience_refused_when_configured() {
    for claim in ["iss", "aud"] {
        let mut c = claims(now() + 600);
        c.as_object_mut().unwrap().remove(claim);
        let e = verify(&config(None), &hs256(&c)).unwrap_err();
        assert!(matches!(e, JwtError::Invalid(_)), "{claim}: {e}");
        // Not required when not configured.
        let mut unset = config(None);
        unset.issuer = None;
        unset.audience = None;
        assert_eq!(
            no_exp(verify(&unset, &hs256(&c)).unwrap()),
            expected(),
            "{claim}"
        );
    }
}

/// RFC 7515: a header naming critical extensions the verifier does not
/// understand is refused, signature or not.
#[test]
fn critical_header_extensions_refused() {
    let body = b64url(claims(now() + 600).to_string().as_bytes());
    let signed = |header: &[u8]| {
        let signing_input = format!("{}.{body}", b64url(header));
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &EncodingKey::from_secret(HS_SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{signing_input}.{signature}")
    };
    let token = signed(br#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#);
    let e = verify(&config(None), &token).unwrap_err();
    assert!(matches!(e, JwtError::Critical), "{e}");
    // The same token without crit is accepted.
    let token = signed(br#"{"alg":"HS256","typ":"JWT"}"#);
    assert_eq!(no_exp(verify(&config(None), &token).unwrap()), expected());
}

/// Re-check finding: an array of issuers holding the configured one was
/// accepted; `iss` is one string.
#[test]
fn issuer_must_be_one_string() {
    let mut c = claims(now() + 600);
    c["iss"] = json!(["https://evil.example", "idp"]);
    let e = verify(&config(None), &hs256(&c)).unwrap_err();
    assert!(matches!(e, JwtError::MissingClaim(_)), "{e}");
}

#[test]
fn not_yet_valid_refused() {
    let mut c = claims(now() + 600);
    c["nbf"] = json!(now() + 300);
    assert!(verify(&config(None), &hs256(&c)).is_err());
}

#[test]
fn wrong_signature_refused() {
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims(now() + 600),
        &EncodingKey::from_secret(b"another-secret-entirely-not-the-one"),
    )
    .unwrap();
    let e = verify(&config(None), &token).unwrap_err();
    assert!(matches!(e, JwtError::Invalid(_)), "{e}");

    // ES256 signed by a different key under a known kid.
    let (_, set) = es256();
    let (other, _) = es256();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let token = encode(&header, &claims(now() + 600), &other).unwrap();
    assert!(verify(&config(Some(set)), &token).is_err());
}

#[test]
fn unknown_kid_refused() {
    let (key, set) = es256();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("nope".into());
    let token = encode(&header, &claims(now() + 600), &key).unwrap();
    let e = verify(&config(Some(set)), &token).unwrap_err();
    assert!(matches!(e, JwtError::UnknownKid(_)), "{e}");
}

#[test]
fn alg_none_refused() {
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64url(claims(now() + 600).to_string().as_bytes());
    let token = format!("{header}.{body}.");
    assert!(looks_like_jwt(&token));
    assert!(verify(&config(None), &token).is_err());
}

#[test]
fn key_type_must_match_alg() {
    // An RS256 header naming the EC key.
    let (_, set) = es256();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let h = b64url(serde_json::to_string(&header).unwrap().as_bytes());
    let body = b64url(claims(now() + 600).to_string().as_bytes());
    let token = format!("{h}.{body}.c2ln");
    let e = verify(&config(Some(set)), &token).unwrap_err();
    assert!(matches!(e, JwtError::KeyMismatch { .. }), "{e}");
}

#[test]
fn passwords_are_not_jwts() {
    assert!(!looks_like_jwt("agent-pw"));
    assert!(!looks_like_jwt("a.b"));
    assert!(!looks_like_jwt("a.b.c.d"));
    assert!(!looks_like_jwt("has space.b.c"));
}

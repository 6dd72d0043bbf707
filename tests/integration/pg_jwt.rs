//! Agents presenting a signed JWT as their password: accepted over TLS with
//! `[jwt]` and `tls.allow_cleartext_password`, refused when expired,
//! wrongly signed, signed by an unknown key or sent without TLS. HS256 from
//! a shared secret, ES256 and RS256 from a JWKS file, all through psql.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::common::*;

const HS_ENV: &str = "AIRLOCK_TEST_JWT_HS256_SECRET";
const HS_SECRET: &str = "integration-test-hs256-secret-0123456789";
const JWT_USER: &str = "jwtbot";

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

fn claims(exp: u64) -> serde_json::Value {
    json!({"sub": JWT_USER, "model": "claude-test", "groups": ["agents"],
           "iss": "test-idp", "aud": "airlock", "exp": exp})
}

struct JwtEnv {
    env: Env,
    ca: String,
    es_key: EncodingKey,
    _certs: tempfile::TempDir,
}

async fn start() -> JwtEnv {
    start_with("").await
}

/// [`start`] with more keys for `[jwt]`.
async fn start_with(jwt_extra: &str) -> JwtEnv {
    std::env::set_var(HS_ENV, HS_SECRET);
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let kp = rcgen::KeyPair::generate().unwrap();
    let raw = kp.public_key_raw();
    let rsa: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("rs256-jwks.json")).unwrap())
            .unwrap();
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "test-k1", "alg": "ES256",
        "x": b64url(&raw[1..33]), "y": b64url(&raw[33..]),
    }, rsa["keys"][0].clone()]});
    let jwks_path = certs.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let env = Env::start_with(EnvOptions {
        extra_toml: format!(
            "[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nallow_cleartext_password = true\n\n\
             [jwt]\njwks = \"{jwks}\"\nhs256_secret_env = \"{HS_ENV}\"\n\
             issuer = \"test-idp\"\naudience = \"airlock\"\nleeway = \"5s\"\n\
             targets = [\"{DB}\"]\n{jwt_extra}\n\n[audit]\npath = \"audit.db\"\n\n\
             [targets.legacy]\nhost = \"127.0.0.1\"\nport = 1\ndatabase = \"legacy\"\n\
             user = \"catalog\"\npassword_env = \"{HS_ENV}\"\n\
             credentials = \"passthrough\"\n[targets.legacy.passthrough.users.report_app]\n\
             groups = []\n",
            jwks = jwks_path.display(),
        ),
        ..Default::default()
    })
    .await;
    JwtEnv {
        env,
        ca,
        es_key: EncodingKey::from_ec_der(&kp.serialize_der()),
        _certs: certs,
    }
}

impl JwtEnv {
    /// psql as JWT_USER with `token` in PGPASSWORD.
    fn psql(&self, sslmode: &str, token: &str) -> std::process::Output {
        self.psql_as(JWT_USER, sslmode, token)
    }

    fn psql_as(&self, user: &str, sslmode: &str, token: &str) -> std::process::Output {
        let url = format!(
            "postgresql://{user}@127.0.0.1:{}/{DB}?sslmode={sslmode}&sslrootcert={}",
            self.env.port, self.ca
        );
        std::process::Command::new(self.env.pg.bin_dir().join("psql"))
            .args([url.as_str(), "-XAtc", "SELECT 1"])
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGPASSWORD", token)
            .output()
            .expect("run psql")
    }
}

/// A file of `testdata/jwt/` (test-only RSA keys and their JWKS).
fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/jwt")
        .join(name)
}

/// An RS256 token signed with the PEM key `key_file`, naming `kid`.
fn rs256(claims: &serde_json::Value, key_file: &str, kid: &str) -> String {
    let pem = std::fs::read(testdata(key_file)).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn hs256(claims: &serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn refused(out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "connected: {stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_logins_over_tls() {
    let j = start().await;

    let out = j.psql("verify-full", &hs256(&claims(now() + 600), HS_SECRET));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("test-k1".into());
    let es = encode(&header, &claims(now() + 600), &j.es_key).unwrap();
    let out = j.psql("verify-full", &es);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The regular identity still logs in with its secret over TLS.
    let url = j.env.agent_url();
    let out = j.env.psql(&[
        &format!("{url}?sslmode=verify-full&sslrootcert={}", j.ca),
        "-XAtc",
        "SELECT 1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jwts_refused() {
    let j = start().await;
    // Expired (beyond the leeway).
    refused(&j.psql("verify-full", &hs256(&claims(now() - 600), HS_SECRET)));
    // Wrongly signed.
    refused(&j.psql(
        "verify-full",
        &hs256(&claims(now() + 600), "not-the-configured-secret-at-all"),
    ));
    // Unknown kid.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("other".into());
    refused(&j.psql(
        "verify-full",
        &encode(&header, &claims(now() + 600), &j.es_key).unwrap(),
    ));
    // Unsigned.
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims(now() + 600).to_string().as_bytes())
    );
    refused(&j.psql("verify-full", &none));
    // A valid token for another identity name.
    let mut other = claims(now() + 600);
    other["sub"] = json!(AGENT);
    refused(&j.psql("verify-full", &hs256(&other, HS_SECRET)));
    // ... and logged in as that name: a token may not act as a configured
    // identity (red-team finding: it got that identity's policies).
    refused(&j.psql_as(AGENT, "verify-full", &hs256(&other, HS_SECRET)));
    // Nor as a database user a passthrough target lists (red-team finding:
    // it got the policies written for that user).
    other["sub"] = json!("report_app");
    refused(&j.psql_as("report_app", "verify-full", &hs256(&other, HS_SECRET)));
    // A valid token without TLS: SCRAM is offered, and a token is no secret.
    refused(&j.psql("disable", &hs256(&claims(now() + 600), HS_SECRET)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_from_the_jwks_file() {
    let mut j = start().await;
    // Valid: the identity, model and groups come from the claims.
    let out = j.psql(
        "verify-full",
        &rs256(&claims(now() + 600), "rs256-test.key", "rsa-k1"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    // Expired (beyond the leeway).
    refused(&j.psql(
        "verify-full",
        &rs256(&claims(now() - 600), "rs256-test.key", "rsa-k1"),
    ));
    // Wrongly signed: another RSA key claiming the configured kid.
    refused(&j.psql(
        "verify-full",
        &rs256(&claims(now() + 600), "rs256-other.key", "rsa-k1"),
    ));
    // Unknown key: a kid the JWKS does not have.
    refused(&j.psql(
        "verify-full",
        &rs256(&claims(now() + 600), "rs256-test.key", "rsa-unknown"),
    ));
    // No kid at all.
    let pem = std::fs::read(testdata("rs256-test.key")).unwrap();
    let no_kid = encode(
        &Header::new(Algorithm::RS256),
        &claims(now() + 600),
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    refused(&j.psql("verify-full", &no_kid));
    j.env.stop().await;

    // The token's identity and model reach the audit log.
    let all =
        airlock::audit::query(&j.env.path("audit.db"), &airlock::audit::Filter::default()).unwrap();
    let connect = all
        .iter()
        .find(|r| r.event.kind == airlock::audit::EventKind::Connect)
        .expect("a connect record");
    assert_eq!(&*connect.event.identity, JWT_USER);
    assert_eq!(connect.event.model.as_deref(), Some("claude-test"));
    assert!(
        all.iter()
            .any(|r| r.event.kind == airlock::audit::EventKind::AuthFailed
                && &*r.event.identity == JWT_USER),
        "refused tokens are audited as failed logins"
    );
}

/// With `end_sessions_at_expiry`, a session ends when its token expires
/// (`exp` plus the leeway), as an ephemeral credential's does at its TTL;
/// the token cannot log in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_their_token_expires_if_configured() {
    let j = start_with("end_sessions_at_expiry = true").await;
    // The configured leeway is 5 s: the session ends about 7 s from now.
    let token = hs256(&claims(now() + 2), HS_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sql");
    std::fs::write(&script, "SELECT 'before';\n\\! sleep 9\nSELECT 'after';\n").unwrap();
    let url = format!(
        "postgresql://{JWT_USER}@127.0.0.1:{}/{DB}?sslmode=verify-full&sslrootcert={}",
        j.env.port, j.ca
    );
    let out = std::process::Command::new(j.env.pg.bin_dir().join("psql"))
        .args([url.as_str(), "-XAt", "-f"])
        .arg(&script)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGPASSWORD", &token)
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("before"), "{stdout} {stderr}");
    assert!(!stdout.contains("after"), "{stdout} {stderr}");
    assert!(stderr.contains("login token expired"), "{stderr}");
}

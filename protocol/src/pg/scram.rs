//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), as Postgres runs it,
//! and the creation of SCRAM verifiers in Postgres's format.
//!
//! airlock authenticates its clients (agents) itself. A client's secret is
//! kept as a verifier, never as a password, in the format Postgres stores in
//! `pg_authid.rolpassword`:
//!
//! ```text
//! SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//! ```
//!
//! The exchange, carried in Postgres messages (the session does the framing):
//!
//! ```text
//! server: AuthenticationSASL            mechanisms: "SCRAM-SHA-256"
//! client: SASLInitialResponse           client-first-message   "n,,n=,r=<cnonce>"
//!                                          -> ScramServer::client_first
//! server: AuthenticationSASLContinue    server-first-message   "r=<cnonce><snonce>,s=<salt>,i=<iterations>"
//! client: SASLResponse                  client-final-message   "c=biws,r=<cnonce><snonce>,p=<ClientProof>"
//!                                          -> ScramServer::client_final
//! server: AuthenticationSASLFinal       server-final-message   "v=<ServerSignature>"
//! server: AuthenticationOk ...
//! ```
//!
//! Channel binding is not supported: airlock only offers `SCRAM-SHA-256`
//! (never `-PLUS`), so a client-first-message with a `p=` GS2 flag is refused,
//! and `y` ("I could bind but the server does not offer it") is accepted. If
//! `-PLUS` is ever offered, `y` must be refused too (it signals a downgrade).
//! The user name in the message is ignored, as in Postgres: clients send the
//! user in the StartupMessage and an empty `n=` here.
//!
//! Unknown users must not be told apart from wrong passwords: the session runs
//! the same exchange against [`ScramServer::new_mock`], whose verifier is
//! derived from a secret and the user name (so the salt is stable per user
//! name), and which fails at the proof with [`ScramError::AuthFailed`] exactly
//! like a wrong password.
//!
//! No input makes this module panic: every malformed message, and every step
//! called out of order, is an error.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The SASL mechanism name of SCRAM-SHA-256, as sent in AuthenticationSASL and
/// expected in SASLInitialResponse.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Iteration count of new verifiers (Postgres's `scram_iterations` default).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Salt length of new verifiers, in bytes (Postgres's `SCRAM_DEFAULT_SALT_LEN`).
pub const SALT_LEN: usize = 16;

/// Random bytes in the server's part of the nonce (Postgres's
/// `SCRAM_RAW_NONCE_LEN`), sent base64-encoded.
const SERVER_NONCE_LEN: usize = 18;

/// SHA-256 output length: the length of StoredKey, ServerKey and proofs.
const KEY_LEN: usize = 32;

/// SHA-256 block length: the length of an HMAC-SHA-256 key after padding.
const BLOCK_LEN: usize = 64;

const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";

type HmacSha256 = Hmac<Sha256>;

/// What can go wrong in a SCRAM exchange or with a verifier.
///
/// [`ScramError::AuthFailed`] is a wrong password (or an unknown user); every
/// other variant is a protocol violation or a bad verifier. Postgres answers
/// both with FATAL 28P01, but they deserve different log lines.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// The client's message does not follow the SCRAM grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for something airlock does not do (channel binding,
    /// an authorization identity, a mandatory extension).
    #[error("unsupported SCRAM feature: {0}")]
    Unsupported(&'static str),
    /// The `c=` attribute of client-final-message is not the GS2 header of
    /// client-first-message.
    #[error("SCRAM channel-binding data does not match the client-first-message")]
    ChannelBindingMismatch,
    /// The nonce of client-final-message is not the one the server sent.
    #[error("SCRAM nonce does not match")]
    NonceMismatch,
    /// A step was called out of order, or after the exchange ended.
    #[error("SCRAM exchange step out of order")]
    OutOfOrder,
    /// A stored verifier could not be parsed.
    #[error("invalid SCRAM verifier: {0}")]
    InvalidVerifier(&'static str),
    /// The client's proof is wrong: wrong password, or unknown user.
    #[error("SCRAM authentication failed")]
    AuthFailed,
}

/// A SCRAM-SHA-256 verifier: what the server stores instead of a password.
///
/// `Display` writes it in Postgres's format and [`ScramVerifier::parse`] (or
/// `FromStr`) reads it. `Debug` does not show the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; KEY_LEN],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; KEY_LEN],
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(s: &str) -> Result<Self, ScramError> {
        let rest = s
            .strip_prefix(VERIFIER_PREFIX)
            .ok_or(ScramError::InvalidVerifier("not a SCRAM-SHA-256 verifier"))?;
        let (iter_salt, keys) = rest
            .split_once('$')
            .ok_or(ScramError::InvalidVerifier("missing '$' before the keys"))?;
        let (iterations, salt) = iter_salt
            .split_once(':')
            .ok_or(ScramError::InvalidVerifier(
                "missing ':' after the iterations",
            ))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or(ScramError::InvalidVerifier("missing ':' between the keys"))?;

        let iterations = parse_iterations(iterations.as_bytes())
            .ok_or(ScramError::InvalidVerifier("bad iteration count"))?;
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| ScramError::InvalidVerifier("salt is not base64"))?;
        if salt.is_empty() {
            return Err(ScramError::InvalidVerifier("empty salt"));
        }
        let stored_key =
            decode_key(stored_key).ok_or(ScramError::InvalidVerifier("bad StoredKey"))?;
        let server_key =
            decode_key(server_key).ok_or(ScramError::InvalidVerifier("bad ServerKey"))?;
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Derives the verifier of `password` with the given salt and iteration
    /// count (an iteration count of 0 is taken as 1). The password goes
    /// through SASLprep as in Postgres; if SASLprep rejects it, its raw bytes
    /// are used, as Postgres and libpq do.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let iterations = iterations.max(1);
        let password = saslprep_or_raw(password);
        let salted_password = hi(password.as_bytes(), salt, iterations);
        let client_key = hmac(&salted_password, &[b"Client Key"]);
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted_password, &[b"Server Key"]),
        }
    }

    /// A deterministic stand-in verifier for a user that does not exist, so
    /// the exchange can run to the proof and fail there like a wrong password.
    ///
    /// The salt and keys are HMACs of the user name under `secret`; the salt
    /// is therefore the same on every attempt for the same name, like a real
    /// user's. `secret` should be at least 32 random bytes, kept private and
    /// stable across restarts (a salt that changes on restart would set
    /// unknown users apart from real ones). `iterations` should be the
    /// count most real verifiers have, which the server-first-message
    /// shows (and a cleartext check spends time on).
    ///
    /// Use it through [`ScramServer::new_mock`], which also refuses every
    /// proof.
    pub fn mock(secret: &[u8], username: &str, iterations: u32) -> Self {
        let part = |label: &[u8]| {
            hmac(
                secret,
                &[b"airlock-scram-mock\0", label, username.as_bytes()],
            )
        };
        let salt = part(b"salt\0");
        ScramVerifier {
            iterations,
            salt: salt.iter().take(SALT_LEN).copied().collect(),
            stored_key: part(b"stored-key\0"),
            server_key: part(b"server-key\0"),
        }
    }
}

impl FromStr for ScramVerifier {
    type Err = ScramError;

    fn from_str(s: &str) -> Result<Self, ScramError> {
        Self::parse(s)
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERIFIER_PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key),
        )
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt", &STANDARD.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

/// A verifier for `password`, in Postgres's format, with a random
/// [`SALT_LEN`]-byte salt and [`DEFAULT_ITERATIONS`] iterations.
pub fn make_verifier(password: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    make_verifier_with(password, &salt, DEFAULT_ITERATIONS)
}

/// A verifier for `password`, in Postgres's format, with the given salt and
/// iteration count. See [`ScramVerifier::derive`].
pub fn make_verifier_with(password: &str, salt: &[u8], iterations: u32) -> String {
    ScramVerifier::derive(password, salt, iterations).to_string()
}

/// The server side of one SCRAM-SHA-256 exchange.
///
/// Feed it the payload of SASLInitialResponse with [`client_first`] and send
/// the result in AuthenticationSASLContinue; then feed it the payload of
/// SASLResponse with [`client_final`] and send the result in
/// AuthenticationSASLFinal. The client is authenticated only if
/// [`client_final`] returns `Ok`. Any error ends the exchange: later calls
/// return [`ScramError::OutOfOrder`] (and so does any call after success,
/// which also clears [`is_authenticated`]).
///
/// [`is_authenticated`]: ScramServer::is_authenticated
///
/// [`client_first`]: ScramServer::client_first
/// [`client_final`]: ScramServer::client_final
pub struct ScramServer {
    verifier: ScramVerifier,
    /// Set for an unknown user: the exchange runs in full, then fails.
    doomed: bool,
    state: State,
}

enum State {
    /// Waiting for client-first-message.
    Initial,
    /// server-first-message sent; waiting for client-final-message.
    FirstSent {
        /// `n,,` or `y,,`.
        gs2_header: [u8; 3],
        client_first_bare: Vec<u8>,
        server_first: Vec<u8>,
        /// Client nonce followed by server nonce.
        nonce: Vec<u8>,
    },
    /// The client proved it knows the password.
    Authenticated,
    /// An error ended the exchange.
    Failed,
}

impl ScramServer {
    /// An exchange against a known user's verifier.
    pub fn new(verifier: ScramVerifier) -> Self {
        ScramServer {
            verifier,
            doomed: false,
            state: State::Initial,
        }
    }

    /// An exchange for a user that does not exist: indistinguishable on the
    /// wire from [`ScramServer::new`] with a wrong password, it always ends in
    /// [`ScramError::AuthFailed`]. See [`ScramVerifier::mock`] for `secret`.
    pub fn new_mock(secret: &[u8], username: &str, iterations: u32) -> Self {
        ScramServer {
            verifier: ScramVerifier::mock(secret, username, iterations),
            doomed: true,
            state: State::Initial,
        }
    }

    /// True once [`ScramServer::client_final`] has accepted the client's proof.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// Takes client-first-message (the SASLInitialResponse data) and returns
    /// server-first-message (`r=<nonce>,s=<salt>,i=<iterations>`).
    pub fn client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let mut server_nonce = [0u8; SERVER_NONCE_LEN];
        rand::rng().fill_bytes(&mut server_nonce);
        self.client_first_with_nonce(data, STANDARD.encode(server_nonce).as_bytes())
    }

    fn client_first_with_nonce(
        &mut self,
        data: &[u8],
        server_nonce: &[u8],
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(
            std::mem::replace(&mut self.state, State::Failed),
            State::Initial
        ) {
            return Err(ScramError::OutOfOrder);
        }
        let first = parse_client_first(data)?;

        let mut nonce = Vec::with_capacity(first.client_nonce.len() + server_nonce.len());
        nonce.extend_from_slice(first.client_nonce);
        nonce.extend_from_slice(server_nonce);

        let mut server_first = Vec::with_capacity(nonce.len() + 64);
        server_first.extend_from_slice(b"r=");
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(b",s=");
        server_first.extend_from_slice(STANDARD.encode(&self.verifier.salt).as_bytes());
        server_first.extend_from_slice(b",i=");
        server_first.extend_from_slice(self.verifier.iterations.to_string().as_bytes());

        self.state = State::FirstSent {
            gs2_header: first.gs2_header,
            client_first_bare: first.bare.to_vec(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Takes client-final-message (the SASLResponse data), checks the
    /// channel-binding echo, the nonce and the proof, and returns
    /// server-final-message (`v=<ServerSignature>`).
    ///
    /// A wrong proof is [`ScramError::AuthFailed`]; anything else wrong with
    /// the message is a protocol error.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::FirstSent {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(ScramError::OutOfOrder);
        };

        // The proof comes last; everything before it is signed.
        let comma = data
            .iter()
            .rposition(|&b| b == b',')
            .ok_or(ScramError::Malformed("client-final-message has no proof"))?;
        let (Some(without_proof), Some(proof_attr)) = (data.get(..comma), data.get(comma + 1..))
        else {
            return Err(ScramError::Malformed("client-final-message has no proof"));
        };
        let proof = attribute(
            Some(proof_attr),
            b'p',
            "proof missing or not last in client-final-message",
        )?;

        let mut attrs = without_proof.split(|&b| b == b',');
        let channel_binding = attribute(
            attrs.next(),
            b'c',
            "client-final-message must start with c=",
        )?;
        if channel_binding != STANDARD.encode(gs2_header).as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        let client_nonce = attribute(attrs.next(), b'r', "nonce missing in client-final-message")?;
        if client_nonce != nonce.as_slice() {
            return Err(ScramError::NonceMismatch);
        }
        for ext in attrs {
            // Optional extensions are ignored, as in Postgres; a second proof
            // is not an extension.
            match ext {
                [b'p', b'=', ..] => {
                    return Err(ScramError::Malformed(
                        "proof not last in client-final-message",
                    ))
                }
                _ => check_extension(ext)?,
            }
        }

        let proof: [u8; KEY_LEN] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed(
                "proof is not 32 base64-encoded bytes",
            ))?;

        let auth_message: [&[u8]; 5] =
            [&client_first_bare, b",", &server_first, b",", without_proof];
        let client_signature = hmac(&self.verifier.stored_key, &auth_message);
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let key_ok = ct_eq(
            &Sha256::digest(client_key).into(),
            &self.verifier.stored_key,
        );
        if !key_ok || self.doomed {
            return Err(ScramError::AuthFailed);
        }

        let server_signature = hmac(&self.verifier.server_key, &auth_message);
        let mut server_final = b"v=".to_vec();
        server_final.extend_from_slice(STANDARD.encode(server_signature).as_bytes());
        self.state = State::Authenticated;
        Ok(server_final)
    }
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Initial => "initial",
            State::FirstSent { .. } => "first-sent",
            State::Authenticated => "authenticated",
            State::Failed => "failed",
        };
        f.debug_struct("ScramServer")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

struct ClientFirst<'a> {
    gs2_header: [u8; 3],
    bare: &'a [u8],
    client_nonce: &'a [u8],
}

/// `gs2-cbind-flag "," [authzid] "," [reserved-mext ","] username "," nonce ["," extensions]`
fn parse_client_first(data: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    let (flag, rest) = match data {
        [flag @ (b'n' | b'y'), b',', rest @ ..] => (*flag, rest),
        [b'p', ..] => {
            return Err(ScramError::Unsupported(
                "channel binding (SCRAM-SHA-256-PLUS was not offered)",
            ))
        }
        _ => {
            return Err(ScramError::Malformed(
                "client-first-message must start with n, or y,",
            ))
        }
    };
    let bare = match rest {
        [b',', bare @ ..] => bare,
        [b'a', b'=', ..] => return Err(ScramError::Unsupported("authorization identity")),
        _ => return Err(ScramError::Malformed("bad GS2 header")),
    };

    let mut attrs = bare.split(|&b| b == b',');
    let user = attrs.next();
    if let Some([b'm', b'=', ..]) = user {
        return Err(ScramError::Unsupported("mandatory extension"));
    }
    // The user name is ignored: Postgres takes it from the StartupMessage.
    attribute(user, b'n', "user name missing in client-first-message")?;
    let client_nonce = attribute(attrs.next(), b'r', "nonce missing in client-first-message")?;
    if client_nonce.is_empty() || !client_nonce.iter().all(|&b| is_printable(b)) {
        return Err(ScramError::Malformed("nonce is empty or not printable"));
    }
    for ext in attrs {
        check_extension(ext)?;
    }
    Ok(ClientFirst {
        gs2_header: [flag, b',', b','],
        bare,
        client_nonce,
    })
}

/// The value of attribute `name` (`name=value`), or `Malformed(what)`.
fn attribute<'a>(
    item: Option<&'a [u8]>,
    name: u8,
    what: &'static str,
) -> Result<&'a [u8], ScramError> {
    match item {
        Some([n, b'=', value @ ..]) if *n == name => Ok(value),
        _ => Err(ScramError::Malformed(what)),
    }
}

/// An optional extension must at least look like `x=value`; it is ignored.
fn check_extension(ext: &[u8]) -> Result<(), ScramError> {
    match ext {
        [n, b'=', ..] if n.is_ascii_alphabetic() => Ok(()),
        _ => Err(ScramError::Malformed("bad attribute")),
    }
}

/// RFC 5802 `printable`: `%x21-2B / %x2D-7E` (visible ASCII except ',').
fn is_printable(b: u8) -> bool {
    matches!(b, 0x21..=0x2b | 0x2d..=0x7e)
}

fn parse_iterations(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s)
        .ok()?
        .parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
}

fn decode_key(s: &str) -> Option<[u8; KEY_LEN]> {
    STANDARD.decode(s).ok()?.try_into().ok()
}

/// SASLprep, or the raw password if SASLprep refuses it (as Postgres does).
fn saslprep_or_raw(password: &str) -> std::borrow::Cow<'_, str> {
    stringprep::saslprep(password).unwrap_or(std::borrow::Cow::Borrowed(password))
}

/// An HMAC-SHA-256 keyed with `key`, built without a fallible constructor:
/// HMAC pads a key of at most one block with zeros and hashes a longer one
/// first, which is done here to get a block-sized key.
fn hmac_keyed(key: &[u8]) -> HmacSha256 {
    let digest;
    let key: &[u8] = if key.len() > BLOCK_LEN {
        digest = Sha256::digest(key);
        &digest
    } else {
        key
    };
    let mut block = [0u8; BLOCK_LEN];
    for (dst, src) in block.iter_mut().zip(key) {
        *dst = *src;
    }
    <HmacSha256 as KeyInit>::new(&block.into())
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    hmac_finish(hmac_keyed(key), parts)
}

fn hmac_finish(mut mac: HmacSha256, parts: &[&[u8]]) -> [u8; KEY_LEN] {
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `Hi()` of RFC 5802: PBKDF2-HMAC-SHA-256 with one output block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    let keyed = hmac_keyed(password);
    let mut u = hmac_finish(keyed.clone(), &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_finish(keyed.clone(), &[&u]);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

/// Compares without an early exit, so timing does not reveal where two keys
/// differ.
fn ct_eq(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// Computed by PostgreSQL 15 for `CREATE ROLE ... PASSWORD 'pencil'`.
    const PG_PENCIL: &str = "SCRAM-SHA-256$4096:ogbpGpcs8vJecfbAZF7nsA==$5xkO6i0p12gSjxkFYBetagAAm/fyN4uvmAM7xTwKs2M=:IWoQtVQwM2qYxqP9kT8pOrQaD9Rc2gb74tiyw4/sTCY=";
    /// Computed by PostgreSQL 15 for `PASSWORD E'\u2168\u00ADa'`, which
    /// SASLprep turns into "IXa" (NFKC of U+2168, soft hyphen dropped).
    const PG_SASLPREP: &str = "SCRAM-SHA-256$4096:Ttlpfo5GSY0EW2c7mk2xjw==$1kBygrjatKlCGElxtIv6UX3LDI16nO++pdx72ycQN8k=:xn0B/X+d+35FEY0zYt20BAvIzB6LQWYZIeElFFDWcT4=";

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier(password: &str) -> ScramVerifier {
        ScramVerifier::derive(password, b"some salt bytes!", 64)
    }

    /// Runs a full exchange with postgres-protocol's client. Returns the
    /// server's result for client-final-message, after checking that the
    /// client accepts server-final-message on success.
    fn exchange(
        mut server: ScramServer,
        password: &[u8],
        cb: ChannelBinding,
    ) -> Result<(), ScramError> {
        let mut client = ScramSha256::new(password, cb);
        let server_first = server.client_first(client.message())?;
        client
            .update(&server_first)
            .expect("client accepts server-first");
        let result = server.client_final(client.message());
        match &result {
            Ok(server_final) => {
                client.finish(server_final).expect("client verifies server");
                assert!(server.is_authenticated());
            }
            Err(_) => assert!(!server.is_authenticated()),
        }
        result.map(|_| ())
    }

    /// A server that has accepted a client-first-message, and the client.
    fn after_first(cb: ChannelBinding) -> (ScramServer, ScramSha256) {
        let mut server = ScramServer::new(verifier("pencil"));
        let mut client = ScramSha256::new(b"pencil", cb);
        let server_first = server.client_first(client.message()).unwrap();
        client.update(&server_first).unwrap();
        (server, client)
    }

    /// A copy of a server in the middle of an exchange, to replay
    /// client-final-messages against the same nonce.
    fn fork(server: &ScramServer) -> ScramServer {
        let state = match &server.state {
            State::FirstSent {
                gs2_header,
                client_first_bare,
                server_first,
                nonce,
            } => State::FirstSent {
                gs2_header: *gs2_header,
                client_first_bare: client_first_bare.clone(),
                server_first: server_first.clone(),
                nonce: nonce.clone(),
            },
            _ => panic!("fork needs a server waiting for client-final-message"),
        };
        ScramServer {
            verifier: server.verifier.clone(),
            doomed: server.doomed,
            state,
        }
    }

    #[test]
    fn mechanism_name() {
        assert_eq!(SCRAM_SHA_256, "SCRAM-SHA-256");
        assert_eq!(
            SCRAM_SHA_256,
            postgres_protocol::authentication::sasl::SCRAM_SHA_256
        );
    }

    #[test]
    fn round_trip_with_postgres_protocol_client() {
        for cb in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
            let server = ScramServer::new(verifier("pencil"));
            assert_eq!(exchange(server, b"pencil", cb), Ok(()));
        }
        let server = ScramServer::new(ScramVerifier::parse(&make_verifier("pencil")).unwrap());
        assert_eq!(
            exchange(server, b"pencil", ChannelBinding::unsupported()),
            Ok(())
        );
    }

    #[test]
    fn wrong_password_fails_auth() {
        // (Not "pencil\0": HMAC pads short keys with zeros, so PBKDF2 cannot
        // tell trailing NULs apart. Postgres passwords cannot contain NUL.)
        for pw in [
            &b"Pencil"[..],
            b"",
            b"pencil ",
            b"pencil\x01",
            b"pencilpencil",
        ] {
            let server = ScramServer::new(verifier("pencil"));
            assert_eq!(
                exchange(server, pw, ChannelBinding::unsupported()),
                Err(ScramError::AuthFailed),
                "{pw:?}"
            );
        }
    }

    #[test]
    fn unknown_user_fails_auth_like_wrong_password() {
        let server = ScramServer::new_mock(SECRET, "nobody", DEFAULT_ITERATIONS);
        assert_eq!(
            exchange(server, b"pencil", ChannelBinding::unsupported()),
            Err(ScramError::AuthFailed)
        );
        // A mock exchange refuses even a proof that matches its keys.
        let mut server = ScramServer::new(verifier("pencil"));
        server.doomed = true;
        assert_eq!(
            exchange(server, b"pencil", ChannelBinding::unsupported()),
            Err(ScramError::AuthFailed)
        );
    }

    #[test]
    fn mock_verifier_is_deterministic_and_looks_real() {
        let a = ScramVerifier::mock(SECRET, "alice", DEFAULT_ITERATIONS);
        assert_eq!(a, ScramVerifier::mock(SECRET, "alice", DEFAULT_ITERATIONS));
        assert_ne!(
            a.salt,
            ScramVerifier::mock(SECRET, "bob", DEFAULT_ITERATIONS).salt
        );
        assert_ne!(
            a.salt,
            ScramVerifier::mock(b"another secret", "alice", DEFAULT_ITERATIONS).salt
        );
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.iterations, DEFAULT_ITERATIONS);
        assert_eq!(ScramVerifier::parse(&a.to_string()), Ok(a.clone()));

        // The same server-first shape as a real user's, with the same salt
        // on every attempt.
        let first = b"n,,n=,r=abcdef";
        let mut mock1 = ScramServer::new_mock(SECRET, "alice", DEFAULT_ITERATIONS);
        let mut mock2 = ScramServer::new_mock(SECRET, "alice", DEFAULT_ITERATIONS);
        let real = ScramVerifier::parse(&make_verifier("x")).unwrap();
        let mut real = ScramServer::new(real);
        let m1 = String::from_utf8(mock1.client_first(first).unwrap()).unwrap();
        let m2 = String::from_utf8(mock2.client_first(first).unwrap()).unwrap();
        let r = String::from_utf8(real.client_first(first).unwrap()).unwrap();
        let salt = |s: &str| s.split(',').nth(1).unwrap().to_owned();
        assert_eq!(salt(&m1), salt(&m2));
        assert_eq!(m1.len(), r.len());
        assert!(m1.ends_with(",i=4096") && r.ends_with(",i=4096"));
    }

    /// RFC 7677 section 3: the full example exchange, with its fixed nonces.
    #[test]
    fn rfc7677_example() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mut server = ScramServer::new(ScramVerifier::derive("pencil", &salt, 4096));
        let server_first = server
            .client_first_with_nonce(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .unwrap();
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = server
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(server.is_authenticated());
    }

    #[test]
    fn verifier_matches_postgres() {
        let pg = ScramVerifier::parse(PG_PENCIL).unwrap();
        assert_eq!(pg.iterations, 4096);
        assert_eq!(pg.to_string(), PG_PENCIL);
        assert_eq!(make_verifier_with("pencil", &pg.salt, 4096), PG_PENCIL);

        let server = ScramServer::new(pg.clone());
        assert_eq!(
            exchange(server, b"pencil", ChannelBinding::unsupported()),
            Ok(())
        );
        for wrong in [&b"pencil2"[..], b"Pencil", b""] {
            let server = ScramServer::new(pg.clone());
            assert_eq!(
                exchange(server, wrong, ChannelBinding::unsupported()),
                Err(ScramError::AuthFailed)
            );
        }
    }

    #[test]
    fn verifier_applies_saslprep_like_postgres() {
        let pg = ScramVerifier::parse(PG_SASLPREP).unwrap();
        assert_eq!(
            make_verifier_with("\u{2168}\u{AD}a", &pg.salt, 4096),
            PG_SASLPREP
        );
        assert_eq!(make_verifier_with("IXa", &pg.salt, 4096), PG_SASLPREP);
        for pw in ["\u{2168}\u{AD}a", "IXa"] {
            let server = ScramServer::new(pg.clone());
            assert_eq!(
                exchange(server, pw.as_bytes(), ChannelBinding::unsupported()),
                Ok(())
            );
        }
        let server = ScramServer::new(pg);
        assert_eq!(
            exchange(server, b"ixa", ChannelBinding::unsupported()),
            Err(ScramError::AuthFailed)
        );
    }

    #[test]
    fn saslprep_failure_uses_raw_password() {
        // A control character is prohibited by SASLprep: the raw bytes are
        // used, by us and by the client.
        let pw = "pass\u{7}word";
        assert!(stringprep::saslprep(pw).is_err());
        let v = ScramVerifier::derive(pw, b"salt", 4096);
        let salted = hi(pw.as_bytes(), b"salt", 4096);
        assert_eq!(v.server_key, hmac(&salted, &[b"Server Key"]));
        let server = ScramServer::new(v);
        assert_eq!(
            exchange(server, pw.as_bytes(), ChannelBinding::unsupported()),
            Ok(())
        );
    }

    #[test]
    fn make_verifier_is_random_and_parses() {
        let a = make_verifier("pencil");
        let b = make_verifier("pencil");
        assert_ne!(a, b);
        let v = ScramVerifier::parse(&a).unwrap();
        assert_eq!(v.iterations, DEFAULT_ITERATIONS);
        assert_eq!(v.salt.len(), SALT_LEN);
        assert_eq!(v.to_string(), a);
        assert_eq!(a.parse::<ScramVerifier>(), Ok(v));
        // Iterations 0 is taken as 1, so the result still parses.
        assert!(ScramVerifier::parse(&make_verifier_with("x", b"s", 0)).is_ok());
    }

    #[test]
    fn debug_hides_keys() {
        let v = ScramVerifier::parse(PG_PENCIL).unwrap();
        let shown = format!("{v:?} {:?}", ScramServer::new(v.clone()));
        assert!(!shown.contains(&STANDARD.encode(v.stored_key)));
        assert!(!shown.contains(&STANDARD.encode(v.server_key)));
    }

    #[test]
    fn bad_verifiers() {
        let k = "5xkO6i0p12gSjxkFYBetagAAm/fyN4uvmAM7xTwKs2M=";
        let bad = [
            String::new(),
            "md5abcdef".into(),
            "SCRAM-SHA-256$".into(),
            "SCRAM-SHA-256$4096".into(),
            "SCRAM-SHA-256$4096:c2FsdA==".into(),
            format!("SCRAM-SHA-256$4096:c2FsdA==${k}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${k}:"),
            format!("SCRAM-SHA-256$0:c2FsdA==${k}:{k}"),
            format!("SCRAM-SHA-256$-1:c2FsdA==${k}:{k}"),
            format!("SCRAM-SHA-256$+1:c2FsdA==${k}:{k}"),
            format!("SCRAM-SHA-256$99999999999:c2FsdA==${k}:{k}"),
            format!("SCRAM-SHA-256$:c2FsdA==${k}:{k}"),
            format!("SCRAM-SHA-256$4096:${k}:{k}"),
            format!("SCRAM-SHA-256$4096:!!!${k}:{k}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:{k}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${k}:{k}:{k}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${k}:{k}$"),
            format!("SCRAM-SHA-1$4096:c2FsdA==${k}:{k}"),
        ];
        for s in bad {
            assert!(
                matches!(
                    ScramVerifier::parse(&s),
                    Err(ScramError::InvalidVerifier(_))
                ),
                "{s:?}"
            );
        }
        assert!(ScramVerifier::parse(&format!("SCRAM-SHA-256$1:c2FsdA==${k}:{k}")).is_ok());
    }

    #[test]
    fn client_first_accepts() {
        for msg in [
            &b"n,,n=,r=abc"[..],
            b"y,,n=,r=abc",
            b"n,,n=user,r=a~!+-",
            b"n,,n=,r=abc,x=extension,y=",
        ] {
            let mut server = ScramServer::new(verifier("pencil"));
            let first = server.client_first(msg).unwrap();
            assert!(first.starts_with(b"r=a"), "{msg:?}");
        }
    }

    #[test]
    fn client_first_rejects() {
        let unsupported = [
            &b"p=tls-server-end-point,,n=,r=abc"[..],
            b"p=tls-unique,,n=,r=abc",
            b"n,a=admin,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
        ];
        for msg in unsupported {
            let mut server = ScramServer::new(verifier("pencil"));
            assert!(
                matches!(server.client_first(msg), Err(ScramError::Unsupported(_))),
                "{msg:?}"
            );
        }
        let malformed = [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"y",
            b"garbage",
            b"\xff\xfe",
            b"x,,n=,r=abc",
            b"N,,n=,r=abc",
            b"n,x,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=",
            b"n,,n=,",
            b"n,,n=,r",
            b"n,,n=,r=",
            b"n,,n=,x=abc",
            b"n,,n=,r=a,bc",
            b"n,,n=,r=abc,",
            b"n,,n=,r=abc,=x",
            b"n,,n=,r=abc,1=x",
            b"n,,n=,r=ab c",
            b"n,,n=,r=ab\x01c",
            b"n,,n=,r=ab\x7fc",
            b"n,,n=,r=\xc3\xa9",
            b"n,,n=,r=abc\0",
            b"n,,n=,,r=abc",
        ];
        for msg in malformed {
            let mut server = ScramServer::new(verifier("pencil"));
            assert!(
                matches!(server.client_first(msg), Err(ScramError::Malformed(_))),
                "{msg:?}"
            );
            // The exchange is over.
            assert_eq!(
                server.client_first(b"n,,n=,r=abc"),
                Err(ScramError::OutOfOrder)
            );
        }
    }

    #[test]
    fn client_final_rejects() {
        let (base, client) = after_first(ChannelBinding::unsupported());
        let good = String::from_utf8(client.message().to_vec()).unwrap();
        let (without_proof, proof) = good.rsplit_once(",p=").unwrap();
        let nonce = without_proof.strip_prefix("c=biws,r=").unwrap();

        let cases: Vec<(String, ScramError)> = vec![
            ("".into(), ScramError::Malformed("")),
            ("garbage".into(), ScramError::Malformed("")),
            (",".into(), ScramError::Malformed("")),
            ("c=biws".into(), ScramError::Malformed("")),
            (without_proof.into(), ScramError::Malformed("")),
            (format!("{without_proof},"), ScramError::Malformed("")),
            (format!("{without_proof},p="), ScramError::Malformed("")),
            (format!("{without_proof},p=!!!!"), ScramError::Malformed("")),
            (
                format!("{without_proof},p=c2hvcnQ="),
                ScramError::Malformed(""),
            ),
            (
                format!("{without_proof},p={proof},x=y"),
                ScramError::Malformed(""),
            ),
            (
                format!("{without_proof},p={proof},p={proof}"),
                ScramError::Malformed(""),
            ),
            (
                format!("{without_proof},1=x,p={proof}"),
                ScramError::Malformed(""),
            ),
            (
                format!("r={nonce},c=biws,p={proof}"),
                ScramError::Malformed(""),
            ),
            (format!("c=biws,p={proof}"), ScramError::Malformed("")),
            (
                format!("c=eSws,r={nonce},p={proof}"),
                ScramError::ChannelBindingMismatch,
            ),
            (
                format!("c=,r={nonce},p={proof}"),
                ScramError::ChannelBindingMismatch,
            ),
            (
                format!("c=biws=,r={nonce},p={proof}"),
                ScramError::ChannelBindingMismatch,
            ),
            (
                format!("c=biws,r={nonce}x,p={proof}"),
                ScramError::NonceMismatch,
            ),
            (
                format!("c=biws,r=x{nonce},p={proof}"),
                ScramError::NonceMismatch,
            ),
            (format!("c=biws,r=,p={proof}"), ScramError::NonceMismatch),
            (
                format!("c=biws,r={},p={proof}", &nonce[..nonce.len() - 1]),
                ScramError::NonceMismatch,
            ),
            // Extensions are signed: adding one invalidates the proof.
            (
                format!("{without_proof},x=y,p={proof}"),
                ScramError::AuthFailed,
            ),
        ];
        for (msg, want) in cases {
            let mut server = fork(&base);
            let got = server.client_final(msg.as_bytes()).unwrap_err();
            match want {
                ScramError::Malformed(_) => {
                    assert!(matches!(got, ScramError::Malformed(_)), "{msg:?}: {got:?}")
                }
                want => assert_eq!(got, want, "{msg:?}"),
            }
            assert!(!server.is_authenticated());
            assert_eq!(
                server.client_final(good.as_bytes()),
                Err(ScramError::OutOfOrder)
            );
        }

        // Channel binding must echo the header actually sent ("y,," here).
        let (mut server, client) = after_first(ChannelBinding::unrequested());
        let msg = String::from_utf8(client.message().to_vec()).unwrap();
        assert!(msg.starts_with("c=eSws,"));
        let tampered = msg.replacen("c=eSws", "c=biws", 1);
        assert_eq!(
            server.client_final(tampered.as_bytes()),
            Err(ScramError::ChannelBindingMismatch)
        );
    }

    #[test]
    fn truncated_and_flipped_messages_never_panic() {
        let mut client = ScramSha256::new(b"pencil", ChannelBinding::unsupported());
        let first = client.message().to_vec();
        for n in 0..first.len() {
            let mut server = ScramServer::new(verifier("pencil"));
            let _ = server.client_first(&first[..n]);
        }
        let mut server = ScramServer::new(verifier("pencil"));
        client
            .update(&server.client_first(&first).unwrap())
            .unwrap();
        let fin = client.message().to_vec();

        let fresh = || fork(&server);
        for n in 0..fin.len() {
            assert!(fresh().client_final(&fin[..n]).is_err(), "prefix {n}");
        }
        for i in 0..fin.len() {
            for bit in [0x01, 0x20, 0x80] {
                let mut msg = fin.clone();
                msg[i] ^= bit;
                assert!(fresh().client_final(&msg).is_err(), "byte {i} ^ {bit:#x}");
            }
        }
        assert!(fresh().client_final(&fin).is_ok());
        assert!(server.client_final(&fin).is_ok());
    }

    #[test]
    fn out_of_order_calls() {
        let mut server = ScramServer::new(verifier("pencil"));
        assert_eq!(
            server.client_final(b"c=biws,r=abc,p=x"),
            Err(ScramError::OutOfOrder)
        );
        assert_eq!(
            server.client_first(b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder)
        );

        let (mut server, client) = after_first(ChannelBinding::unsupported());
        assert_eq!(
            server.client_first(b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder)
        );
        // A repeated client-first-message ended the exchange.
        assert_eq!(
            server.client_final(client.message()),
            Err(ScramError::OutOfOrder)
        );

        let (mut server, mut client) = after_first(ChannelBinding::unsupported());
        let fin = server.client_final(client.message()).unwrap();
        client.finish(&fin).unwrap();
        assert!(server.is_authenticated());
        // A call after success is an error too, and ends the exchange.
        assert_eq!(
            server.client_first(b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder)
        );
        assert!(!server.is_authenticated());
        assert_eq!(
            server.client_final(b"c=biws,r=abc,p=x"),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn hmac_keying_matches_standard_hmac() {
        for len in [0usize, 1, 32, 63, 64, 65, 200] {
            let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut reference = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
            reference.update(b"message");
            let reference: [u8; KEY_LEN] = reference.finalize().into_bytes().into();
            assert_eq!(
                hmac(&key, &[b"mess", b"age"]),
                reference,
                "key length {len}"
            );
        }
    }
}

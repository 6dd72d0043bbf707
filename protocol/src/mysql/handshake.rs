//! The connection phase: the server's HandshakeV10 greeting and the client's
//! HandshakeResponse41, each parsed and built.

use bytes::{BufMut, BytesMut};

use super::caps;
use super::wire::{put_cstr, put_lenenc_str, Reader};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("unsupported protocol version {0} (need 10)")]
    Version(u8),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("the client does not speak protocol 4.1")]
    Old,
}

/// A HandshakeV10 (server greeting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    /// The full scramble (usually 20 bytes), without the trailing NUL.
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Greeting {
    /// Appends the greeting payload (no packet header).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(10);
        put_cstr(out, self.server_version.as_bytes());
        out.put_u32_le(self.connection_id);
        let (p1, p2) = self.scramble.split_at(self.scramble.len().min(8));
        out.put_slice(p1);
        out.put_bytes(0, 8 - p1.len());
        out.put_u8(0);
        out.put_u16_le(self.capabilities as u16);
        out.put_u8(self.charset);
        out.put_u16_le(self.status);
        out.put_u16_le((self.capabilities >> 16) as u16);
        out.put_u8((self.scramble.len() + 1) as u8);
        out.put_bytes(0, 10);
        // Part 2: at least 13 bytes including the NUL.
        out.put_slice(p2);
        out.put_bytes(0, 13usize.saturating_sub(p2.len()).max(1));
        put_cstr(out, self.auth_plugin.as_bytes());
    }

    pub fn parse(payload: &[u8]) -> Result<Greeting, HandshakeError> {
        let bad = || HandshakeError::Malformed("server greeting");
        let mut r = Reader::new(payload);
        let version = r.u8().ok_or_else(bad)?;
        if version != 10 {
            return Err(HandshakeError::Version(version));
        }
        let server_version = String::from_utf8_lossy(r.cstr().ok_or_else(bad)?).into_owned();
        let connection_id = r.u32().ok_or_else(bad)?;
        let mut scramble = r.bytes(8).ok_or_else(bad)?.to_vec();
        r.u8().ok_or_else(bad)?;
        let lower = u32::from(r.u16().ok_or_else(bad)?);
        let (mut charset, mut status, mut upper, mut data_len) = (0, 0, 0u32, 0usize);
        if !r.is_empty() {
            charset = r.u8().ok_or_else(bad)?;
            status = r.u16().ok_or_else(bad)?;
            upper = u32::from(r.u16().ok_or_else(bad)?);
            data_len = usize::from(r.u8().ok_or_else(bad)?);
            r.bytes(10).ok_or_else(bad)?;
        }
        let capabilities = lower | upper << 16;
        let mut auth_plugin = String::new();
        if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = data_len.saturating_sub(8).max(13);
            let p2 = r.bytes(n.min(r.remaining().len())).ok_or_else(bad)?;
            scramble.extend_from_slice(p2.strip_suffix(&[0]).unwrap_or(p2));
        }
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            auth_plugin = String::from_utf8_lossy(r.rest_str()).into_owned();
        }
        Ok(Greeting {
            server_version,
            connection_id,
            scramble,
            capabilities,
            charset,
            status,
            auth_plugin,
        })
    }
}

/// A HandshakeResponse41 (the client's login packet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub auth_plugin: Option<String>,
    /// Connection attributes, raw (key/value pairs), when sent.
    pub attributes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Response {
    /// True when the payload is an SSLRequest (a truncated response that
    /// asks for TLS).
    pub fn is_ssl_request(payload: &[u8]) -> bool {
        payload.len() == 32
            && u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) & caps::SSL != 0
    }

    /// Appends an SSLRequest payload: the first 32 bytes of a response,
    /// with `CLIENT_SSL` set.
    pub fn encode_ssl_request(capabilities: u32, max_packet: u32, charset: u8, out: &mut BytesMut) {
        out.put_u32_le(capabilities | caps::SSL);
        out.put_u32_le(max_packet);
        out.put_u8(charset);
        out.put_bytes(0, 23);
    }

    pub fn parse(payload: &[u8]) -> Result<Response, HandshakeError> {
        let bad = || HandshakeError::Malformed("handshake response");
        let mut r = Reader::new(payload);
        let capabilities = r.u32().ok_or_else(bad)?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(HandshakeError::Old);
        }
        let max_packet = r.u32().ok_or_else(bad)?;
        let charset = r.u8().ok_or_else(bad)?;
        r.bytes(23).ok_or_else(bad)?;
        let user = r.cstr().ok_or_else(bad)?.to_vec();
        let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_str().ok_or_else(bad)?
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8().ok_or_else(bad)?);
            r.bytes(n).ok_or_else(bad)?
        } else {
            r.cstr().ok_or_else(bad)?
        }
        .to_vec();
        let mut database = None;
        if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
            database = Some(r.cstr().ok_or_else(bad)?.to_vec());
        }
        let mut auth_plugin = None;
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            auth_plugin = Some(String::from_utf8_lossy(r.cstr().ok_or_else(bad)?).into_owned());
        }
        let mut attributes = Vec::new();
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            let attrs = r.lenenc_str().ok_or_else(bad)?;
            let mut a = Reader::new(attrs);
            while !a.is_empty() {
                let k = a.lenenc_str().ok_or_else(bad)?.to_vec();
                let v = a.lenenc_str().ok_or_else(bad)?.to_vec();
                attributes.push((k, v));
            }
        }
        Ok(Response {
            capabilities,
            max_packet,
            charset,
            user,
            auth_response,
            database,
            auth_plugin,
            attributes,
        })
    }

    /// Appends the payload (no packet header). Fields are written according
    /// to `capabilities`.
    pub fn encode(&self, out: &mut BytesMut) {
        let c = self.capabilities;
        out.put_u32_le(c);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.charset);
        out.put_bytes(0, 23);
        put_cstr(out, &self.user);
        if c & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_str(out, &self.auth_response);
        } else {
            out.put_u8(self.auth_response.len() as u8);
            out.put_slice(&self.auth_response);
        }
        if c & caps::CONNECT_WITH_DB != 0 {
            put_cstr(out, self.database.as_deref().unwrap_or_default());
        }
        if c & caps::PLUGIN_AUTH != 0 {
            put_cstr(
                out,
                self.auth_plugin.as_deref().unwrap_or_default().as_bytes(),
            );
        }
        if c & caps::CONNECT_ATTRS != 0 {
            let mut attrs = BytesMut::new();
            for (k, v) in &self.attributes {
                put_lenenc_str(&mut attrs, k);
                put_lenenc_str(&mut attrs, v);
            }
            put_lenenc_str(out, &attrs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_round_trip() {
        let g = Greeting {
            server_version: "5.5.5-10.11.0-airlock".into(),
            connection_id: 42,
            scramble: b"abcdefghijklmnopqrst".to_vec(),
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::MULTI_RESULTS,
            charset: 45,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
        };
        let mut out = BytesMut::new();
        g.encode(&mut out);
        assert_eq!(Greeting::parse(&out).unwrap(), g);
    }

    #[test]
    fn greeting_parse_is_total() {
        let mut out = BytesMut::new();
        Greeting {
            server_version: "x".into(),
            connection_id: 1,
            scramble: vec![b'a'; 20],
            capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH,
            charset: 8,
            status: 0,
            auth_plugin: "p".into(),
        }
        .encode(&mut out);
        for n in 0..out.len() {
            let _ = Greeting::parse(&out[..n]);
        }
        assert_eq!(Greeting::parse(&[9]), Err(HandshakeError::Version(9)));
    }

    #[test]
    fn response_round_trip_both_auth_encodings() {
        for extra in [0, caps::PLUGIN_AUTH_LENENC_CLIENT_DATA] {
            let r = Response {
                capabilities: caps::PROTOCOL_41
                    | caps::SECURE_CONNECTION
                    | caps::PLUGIN_AUTH
                    | caps::CONNECT_WITH_DB
                    | caps::CONNECT_ATTRS
                    | extra,
                max_packet: 1 << 24,
                charset: 45,
                user: b"agent".to_vec(),
                auth_response: vec![7; 20],
                database: Some(b"app".to_vec()),
                auth_plugin: Some("mysql_native_password".into()),
                attributes: vec![(b"_client_name".to_vec(), b"x".to_vec())],
            };
            let mut out = BytesMut::new();
            r.encode(&mut out);
            assert_eq!(Response::parse(&out).unwrap(), r);
            for n in 0..out.len() {
                let _ = Response::parse(&out[..n]);
            }
            assert!(!Response::is_ssl_request(&out));
        }
        let mut ssl = BytesMut::new();
        Response::encode_ssl_request(caps::PROTOCOL_41, 1 << 24, 45, &mut ssl);
        assert!(Response::is_ssl_request(&ssl));
    }
}

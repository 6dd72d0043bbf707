//! HMAC-SHA256 (RFC 2104) on top of `sha2`, with the key schedule done once.
//!
//! The `hash` and `fake` strategies need a keyed, deterministic digest so
//! equal inputs mask to equal outputs (joins and GROUP BY still line up)
//! while the mapping cannot be reversed by anyone without the key.

use sha2::{Digest, Sha256};

/// A secret HMAC key with the inner and outer pads already absorbed.
#[derive(Clone)]
pub struct HashKey {
    inner: Sha256,
    outer: Sha256,
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

impl HashKey {
    pub fn new(key: &[u8]) -> Self {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for i in 0..64 {
            ipad[i] ^= k[i];
            opad[i] ^= k[i];
        }
        HashKey {
            inner: Sha256::new().chain_update(ipad),
            outer: Sha256::new().chain_update(opad),
        }
    }

    /// A random key (for when no key is configured: hashes are then
    /// deterministic only for the life of the process).
    pub fn random() -> Self {
        let k: [u8; 32] = rand::random();
        HashKey::new(&k)
    }

    /// HMAC-SHA256 of `msg`.
    pub fn mac(&self, msg: &[u8]) -> [u8; 32] {
        let inner = self.inner.clone().chain_update(msg).finalize();
        self.outer.clone().chain_update(inner).finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hex::encode as hex;

    #[test]
    fn masking_hmac_rfc4231() {
        // RFC 4231 test case 2.
        let k = HashKey::new(b"Jefe");
        assert_eq!(
            hex(&k.mac(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: key longer than the block size.
        let k = HashKey::new(&[0xaa; 131]);
        assert_eq!(
            hex(&k.mac(b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}

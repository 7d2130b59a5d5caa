//! Sealing what tokenwatch writes to its own Kafka topics.
//!
//! A forwarder in repartition mode re-keys each gateway record into the
//! internal topic `<group_id>.repartition`, where the shard that owns the
//! key decodes it. The record carries the raw `Authorization` header (and
//! whatever else the gateway logged), and the shard needs it: identity
//! comes from the token itself (JWT claims and signature, the keyed hash of
//! an opaque token, custody for RFC 7009). So the record is not stripped
//! but sealed whole: XChaCha20-Poly1305 under a key derived from the token
//! hash key, a random 192-bit nonce per record, and the record's format as
//! associated data (a sealed record cannot be relabelled). A reader of the
//! topic without the key learns nothing from it.
//!
//! Architecture Invariant: no record tokenwatch writes to Kafka carries a
//! raw credential readable without a tokenwatch key: forwarded records are
//! sealed here, dead letters are scrubbed by `decode::scrub`.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The first byte of a sealed record (its layout's version).
const VERSION: u8 = 1;
const NONCE: usize = 24;

/// Seals and opens forwarded records.
pub struct RecordSeal {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for RecordSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSeal(key hidden)")
    }
}

impl RecordSeal {
    pub fn new(key: &[u8; 32]) -> RecordSeal {
        RecordSeal {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Version byte, nonce, ciphertext and tag.
    pub fn seal(&self, format: &str, record: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE] = rand::random();
        let ct = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: record,
                    aad: format.as_bytes(),
                },
            )
            // Encryption fails only past 256 GiB per message.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// The record, or `None` when the blob was sealed under another key,
    /// for another format, or altered.
    pub fn open(&self, format: &str, blob: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = blob.split_first()?;
        if version != VERSION {
            return None;
        }
        let (nonce, ct) = rest.split_at_checked(NONCE)?;
        let nonce = XNonce::try_from(nonce).ok()?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ct,
                    aad: format.as_bytes(),
                },
            )
            .ok()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn records_open_only_under_their_key_and_format() {
        let s = RecordSeal::new(&[7; 32]);
        let rec = br#"{"authorization":"Bearer eyJhbGciOiJub25lIn0.e30."}"#;
        let a = s.seal("envoy", rec);
        let b = s.seal("envoy", rec);
        assert_ne!(a, b, "a fresh nonce per record");
        assert!(!a.windows(6).any(|w| w == b"Bearer"));
        assert_eq!(s.open("envoy", &a).as_deref(), Some(&rec[..]));
        assert_eq!(s.open("kong", &a), None, "relabelled");
        assert_eq!(RecordSeal::new(&[8; 32]).open("envoy", &a), None);
        let mut bad = a.clone();
        if let Some(x) = bad.last_mut() {
            *x ^= 1;
        }
        assert_eq!(s.open("envoy", &bad), None);
        for short in [&[][..], &[1][..], &a[..10]] {
            assert_eq!(s.open("envoy", short), None);
        }
    }
}

//! Raw-token custody: the only place a raw bearer token lives after decode.
//!
//! Revoking a token at its authorization server (RFC 7009) needs the token
//! itself, which gateway logs carry (APISIX, custom Envoy formats) and
//! tokenwatch otherwise never keeps. Custody holds each watched token
//! sealed with XChaCha20-Poly1305 under a random 192-bit nonce per seal
//! (safe with one long-lived key shared by instances and restarts, where a
//! per-process prefix and counter were not; the token id is the associated
//! data, so a sealed blob cannot be swapped to another id), in memory only, and forgets it at the token's `exp` (or
//! `max_age_secs` after it was last seen, for tokens that do not say).
//!
//! Architecture Invariant: a raw token is never logged, never formatted
//! with `Debug`, never written to disk unsealed. Sealed blobs may be stored
//! with an outbox action (so a revocation survives a restart); they open
//! only with the custody key, which comes from the environment or a file.
//! Plaintext copies live in [`zeroize::Zeroizing`] buffers, wiped on drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The first byte of a blob sealed with XChaCha20-Poly1305.
const SEALED_V2: u8 = 2;
use dashmap::DashMap;
use zeroize::Zeroizing;

/// A token sealed under the custody key: version byte 2, 24-byte nonce,
/// ciphertext and tag. (Blobs stored by earlier versions, AES-256-GCM with
/// a 12-byte nonce, still open.)
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(pub Vec<u8>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// What custody knows about one token besides the sealed secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenFacts {
    /// JWT `sid` (session id), for session-scoped revocation templates.
    pub session_id: Option<String>,
    /// JWT `iss`.
    pub issuer: Option<String>,
    /// JWT `exp` (ms).
    pub exp_ms: Option<i64>,
}

impl std::fmt::Debug for RawToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawToken")
            .field("token_id", &self.token_id)
            .field("raw", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A raw token for custody, handed out once per distinct token. The
/// decoder does not seal it itself: sealing takes a random nonce, and the
/// pure core has no randomness; the edge seals it at once
/// ([`Custody::keep_all`]) and the string is zeroed when
/// this is dropped.
pub struct RawToken {
    pub token_id: Arc<str>,
    pub raw: zeroize::Zeroizing<String>,
    pub facts: TokenFacts,
    pub exp_ms: Option<i64>,
    /// The event's time (custody keeps a token without `exp` for a while
    /// from it).
    pub ts: i64,
}

struct Entry {
    sealed: Sealed,
    facts: TokenFacts,
    /// Forget after this wall-clock time (ms): `exp`, or last seen + max age.
    until_ms: i64,
}

/// Encrypted, bounded, expiring store of raw tokens by token id.
pub struct Custody {
    cipher: XChaCha20Poly1305,
    /// Opens blobs sealed before XChaCha20-Poly1305 (kept in the outbox
    /// across an upgrade).
    legacy: Aes256Gcm,
    entries: DashMap<Arc<str>, Entry>,
    max_tokens: usize,
    max_age_ms: i64,
    /// Tokens not kept because custody was full.
    pub refused: AtomicU64,
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Custody({} tokens, key hidden)", self.entries.len())
    }
}

/// Custody key errors name what to fix.
#[derive(Debug, thiserror::Error)]
#[error("response.custody.key: {0}")]
pub struct KeyError(pub String);

/// Parse a 32-byte key given as 64 hex digits or standard base64.
pub fn parse_key(text: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    use base64::Engine;
    let t = text.trim();
    let bytes = Zeroizing::new(
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect::<Vec<u8>>()
        } else {
            base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|_| {
                KeyError("the key must be 32 bytes as 64 hex digits or base64 (generate one with `openssl rand -hex 32`)".into())
            })?
        },
    );
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        KeyError(format!(
            "the key is {} bytes; AES-256-GCM needs 32 (`openssl rand -hex 32`)",
            bytes.len()
        ))
    })?;
    Ok(Zeroizing::new(arr))
}

impl Custody {
    pub fn new(key: &[u8; 32], max_tokens: usize, max_age_secs: u64) -> Custody {
        Custody {
            cipher: XChaCha20Poly1305::new(key.into()),
            legacy: Aes256Gcm::new(key.into()),
            entries: DashMap::new(),
            max_tokens,
            max_age_ms: i64::try_from(max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            refused: AtomicU64::new(0),
        }
    }

    /// Seal `raw` for `token_id` (the id is authenticated with it).
    pub fn seal(&self, token_id: &str, raw: &str) -> Sealed {
        let nonce: [u8; 24] = rand::random();
        let ct = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: raw.as_bytes(),
                    aad: token_id.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + 24 + ct.len());
        out.push(SEALED_V2);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Sealed(out)
    }

    /// Open a sealed token; `None` if the key, the id or the bytes do not match.
    pub fn open(&self, token_id: &str, sealed: &Sealed) -> Option<Zeroizing<String>> {
        let aad = token_id.as_bytes();
        if let Some((&SEALED_V2, rest)) = sealed.0.split_first()
            && rest.len() >= 24 + 16
        {
            let (nonce, ct) = rest.split_at(24);
            if let Ok(nonce) = XNonce::try_from(nonce)
                && let Ok(pt) = self.cipher.decrypt(&nonce, Payload { msg: ct, aad })
            {
                let pt = Zeroizing::new(pt);
                return String::from_utf8(pt.to_vec()).ok().map(Zeroizing::new);
            }
        }
        // A blob from before: AES-256-GCM, 12-byte nonce first.
        if sealed.0.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = sealed.0.split_at(12);
        let nonce = Nonce::try_from(nonce).ok()?;
        let pt = Zeroizing::new(
            self.legacy
                .decrypt(
                    &nonce,
                    Payload {
                        msg: ct,
                        aad: token_id.as_bytes(),
                    },
                )
                .ok()?,
        );
        String::from_utf8(pt.to_vec()).ok().map(Zeroizing::new)
    }

    /// Keep a token first seen at `now_ms`, for at most
    /// `min(exp, first seen + max_age_secs)`: a token claiming an `exp`
    /// years away (anyone can write one) is still forgotten after the max
    /// age, and seeing it again never extends that. Called once per
    /// distinct token (decode caches tokens). Returns false when custody is
    /// full (counted in `refused`).
    pub fn keep(
        &self,
        token_id: &Arc<str>,
        raw: &str,
        facts: TokenFacts,
        exp_ms: Option<i64>,
        now_ms: i64,
    ) -> bool {
        let max_age = now_ms.saturating_add(self.max_age_ms);
        let until_ms = exp_ms.map_or(max_age, |exp| exp.min(max_age));
        if self.entries.contains_key(token_id.as_ref()) {
            return true;
        }
        if self.entries.len() >= self.max_tokens {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let sealed = self.seal(token_id, raw);
        self.entries.insert(
            token_id.clone(),
            Entry {
                sealed,
                facts,
                until_ms,
            },
        );
        true
    }

    /// Seal the raw tokens a decoder handed out
    /// ([`crate::decode::Decoder::take_raw_tokens`]).
    pub fn keep_all(&self, tokens: impl Iterator<Item = RawToken>) {
        for t in tokens {
            self.keep(&t.token_id, &t.raw, t.facts, t.exp_ms, t.ts);
        }
    }

    /// The sealed token for an id, if in custody.
    pub fn sealed(&self, token_id: &str) -> Option<Sealed> {
        self.entries.get(token_id).map(|e| e.sealed.clone())
    }

    /// What custody knows about a token besides the secret.
    pub fn facts(&self, token_id: &str) -> Option<TokenFacts> {
        self.entries.get(token_id).map(|e| e.facts.clone())
    }

    /// Forget tokens past their expiry. Returns how many were purged.
    pub fn purge_expired(&self, now_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.until_ms > now_ms);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custody() -> Custody {
        Custody::new(&[7u8; 32], 2, 60)
    }

    #[test]
    fn seals_and_opens_only_under_the_same_id_and_key() {
        let c = custody();
        let s = c.seal("h:1", "secret-token");
        assert!(!s.0.windows(12).any(|w| w == b"secret-token"));
        assert_eq!(c.open("h:1", &s).unwrap().as_str(), "secret-token");
        assert!(c.open("h:2", &s).is_none(), "id is authenticated");
        let other = Custody::new(&[8u8; 32], 2, 60);
        assert!(
            other.open("h:1", &s).is_none(),
            "another key cannot open it"
        );
        let s2 = c.seal("h:1", "secret-token");
        assert_ne!(s, s2, "nonces never repeat");
        assert!(format!("{s:?}").starts_with("Sealed("));
    }

    /// Issue 14, point 11: random 192-bit nonces, so two processes sharing
    /// the key (instances, restarts) never reuse one; old blobs still open.
    #[test]
    fn nonces_are_random_per_seal_across_instances_and_old_blobs_open() {
        let (a, b) = (custody(), custody());
        let mut nonces = std::collections::HashSet::new();
        for i in 0..2000 {
            for c in [&a, &b] {
                let s = c.seal("h:1", &format!("t-{i}"));
                assert_eq!(s.0[0], SEALED_V2);
                assert!(nonces.insert(s.0[1..25].to_vec()), "a nonce repeated");
                assert_eq!(b.open("h:1", &s).unwrap().as_str(), format!("t-{i}"));
            }
        }
        // A blob an earlier version sealed (AES-256-GCM, 12-byte nonce first).
        let nonce = [9u8; 12];
        let ct = Aes256Gcm::new((&[7u8; 32]).into())
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: b"old-token",
                    aad: b"h:1",
                },
            )
            .unwrap();
        let old = Sealed([nonce.to_vec(), ct].concat());
        assert_eq!(a.open("h:1", &old).unwrap().as_str(), "old-token");
        assert!(a.open("h:2", &old).is_none());
    }

    #[test]
    fn keeps_a_bounded_number_and_purges_at_exp() {
        let c = custody();
        let a: Arc<str> = Arc::from("a");
        assert!(c.keep(&a, "ta", TokenFacts::default(), Some(1_000), 0));
        assert!(c.keep(&Arc::from("b"), "tb", TokenFacts::default(), None, 0));
        assert!(!c.keep(&Arc::from("c"), "tc", TokenFacts::default(), None, 0));
        assert_eq!(c.refused.load(Ordering::Relaxed), 1);
        assert_eq!(c.purge_expired(1_000), 1, "a expired at its exp");
        assert!(c.sealed("a").is_none());
        assert_eq!(c.purge_expired(59_999), 0);
        assert_eq!(c.purge_expired(60_000), 1, "b forgotten after max age");
        assert!(c.is_empty());
    }

    #[test]
    fn a_far_exp_never_outlives_the_max_age_and_a_resighting_does_not_extend() {
        let c = custody();
        let a: Arc<str> = Arc::from("a");
        // exp claims the year 2286: kept max_age (60 s) from first seen.
        assert!(c.keep(&a, "ta", TokenFacts::default(), Some(i64::MAX / 2), 0));
        assert!(c.keep(&a, "ta", TokenFacts::default(), Some(i64::MAX / 2), 50_000));
        assert_eq!(c.purge_expired(59_999), 0);
        assert_eq!(c.purge_expired(60_000), 1, "min(exp, first seen + max age)");
    }

    #[test]
    fn parses_hex_and_base64_keys_and_explains_bad_ones() {
        assert_eq!(parse_key(&"ab".repeat(32)).unwrap()[0], 0xab);
        assert_eq!(
            parse_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap()[0],
            0
        );
        let e = parse_key("c2hvcnQ=").unwrap_err().to_string();
        assert!(e.contains("5 bytes") && e.contains("32"), "{e}");
        assert!(parse_key("not base64!").is_err());
    }
}

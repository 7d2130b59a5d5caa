//! JWT verification against the operator's keys (a JWKS), pure: the keys
//! are handed in; reading, fetching and refreshing them is the edge's job
//! (`src/jwks.rs`). A verdict is computed once per distinct token (the
//! decoder caches it) and `exp`/`nbf` are judged against the event time.
//!
//! Architecture Invariant: no I/O, no wall clock; `none` is never an
//! accepted algorithm, and a token is only ever checked with the one key
//! its `kid` names (or the set's only key when it names none).

use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

use crate::config::IdentityConfig;

/// What the keys say about one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by a configured key with an accepted algorithm, `iss` and
    /// `aud` as configured.
    Verified,
    /// Why not (short, for counters and the summary).
    Failed(&'static str),
}

/// The keys in use and their generation (bumped on every refresh, so a
/// token that failed for want of its key is checked again after one).
struct Keys {
    set: JwkSet,
    generation: u64,
}

/// Verifies JWTs with the configured keys.
pub struct Verifier {
    keys: RwLock<Arc<Keys>>,
    algorithms: Vec<Algorithm>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    /// Tolerance for `exp` and `nbf`, in milliseconds.
    pub leeway_ms: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.key_count())
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `cfg` starting with the keys of `set`.
    pub fn new(cfg: &IdentityConfig, set: JwkSet) -> Result<Verifier, String> {
        let mut algorithms = Vec::new();
        for a in &cfg.algorithms {
            let alg: Algorithm = a
                .parse()
                .map_err(|_| format!("identity.algorithms: unknown algorithm `{a}`"))?;
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err("identity.algorithms: at least one algorithm is needed".into());
        }
        Ok(Verifier {
            keys: RwLock::new(Arc::new(Keys { set, generation: 0 })),
            algorithms,
            issuers: cfg.issuers.clone(),
            audiences: cfg.audiences.clone(),
            leeway_ms: (cfg.leeway_secs.min(86_400) as i64) * 1000,
        })
    }

    /// Swap in a refreshed key set.
    pub fn replace(&self, set: JwkSet) {
        let mut k = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let generation = k.generation.wrapping_add(1);
        *k = Arc::new(Keys { set, generation });
    }

    fn current(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn generation(&self) -> u64 {
        self.current().generation
    }

    pub fn key_count(&self) -> usize {
        self.current().set.keys.len()
    }

    /// Check one token's signature, algorithm, issuer and audience (not its
    /// times: those are judged per event, against event time).
    pub fn verify(&self, token: &str) -> (Verdict, u64) {
        let keys = self.current();
        let verdict = self.check(&keys.set, token);
        (verdict, keys.generation)
    }

    fn check(&self, set: &JwkSet, token: &str) -> Verdict {
        let Ok(header) = decode_header(token) else {
            return Verdict::Failed("bad_header");
        };
        if !self.algorithms.contains(&header.alg) {
            return Verdict::Failed("algorithm_not_allowed");
        }
        let jwk = match &header.kid {
            Some(kid) => set.find(kid),
            None if set.keys.len() == 1 => set.keys.first(),
            None => None,
        };
        let Some(jwk) = jwk else {
            return Verdict::Failed("unknown_key");
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            return Verdict::Failed("unusable_key");
        };
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_nbf = false;
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
        }
        if !self.issuers.is_empty() {
            v.set_issuer(&self.issuers);
        }
        match decode::<serde::de::IgnoredAny>(token, &key, &v) {
            Ok(_) => Verdict::Verified,
            Err(e) => Verdict::Failed(match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad_signature",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "wrong_issuer",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "wrong_audience",
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => "algorithm_not_allowed",
                _ => "invalid",
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const JWKS: &str = include_str!("../../tests/data/jwks/jwks.json");
    const KEY: &str = include_str!("../../tests/data/jwks/es256-test-key.pem");

    fn verifier(cfg: IdentityConfig) -> Verifier {
        Verifier::new(&cfg, serde_json::from_str(JWKS).unwrap()).unwrap()
    }

    fn signed(kid: Option<&str>, claims: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = kid.map(str::to_string);
        encode(
            &h,
            &claims,
            &EncodingKey::from_ec_pem(KEY.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_token_signed_by_the_configured_key_verifies() {
        let v = verifier(IdentityConfig::default());
        let t = signed(Some("test-es256"), json!({"jti": "j", "sub": "u"}));
        assert_eq!(v.verify(&t).0, Verdict::Verified);
        // No kid, one key in the set: that key.
        let t = signed(None, json!({"jti": "j"}));
        assert_eq!(v.verify(&t).0, Verdict::Verified);
    }

    #[test]
    fn forgeries_do_not_verify() {
        let v = verifier(IdentityConfig::default());
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = e.encode(json!({"jti": "j", "sub": "admin@corp.example"}).to_string());
        let none = format!("{}.{payload}.", e.encode(r#"{"alg":"none"}"#));
        assert_eq!(v.verify(&none).0, Verdict::Failed("bad_header"));
        // Re-signed payload with the real header: the signature breaks.
        let real = signed(Some("test-es256"), json!({"jti": "j", "sub": "u"}));
        let mut parts: Vec<&str> = real.split('.').collect();
        parts[1] = &payload;
        assert_eq!(
            v.verify(&parts.join(".")).0,
            Verdict::Failed("bad_signature")
        );
        // HS256 with the public key as the secret (algorithm confusion).
        let hs = encode(
            &Header::new(Algorithm::HS256),
            &json!({"jti": "j"}),
            &EncodingKey::from_secret(b"x").unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&hs).0, Verdict::Failed("algorithm_not_allowed"));
        let t = signed(Some("other-kid"), json!({"jti": "j"}));
        assert_eq!(v.verify(&t).0, Verdict::Failed("unknown_key"));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let v = verifier(IdentityConfig {
            issuers: vec!["https://idp.example".into()],
            audiences: vec!["api".into()],
            ..IdentityConfig::default()
        });
        let ok = signed(
            Some("test-es256"),
            json!({"iss": "https://idp.example", "aud": ["x", "api"]}),
        );
        assert_eq!(v.verify(&ok).0, Verdict::Verified);
        let t = signed(
            Some("test-es256"),
            json!({"iss": "https://evil.example", "aud": "api"}),
        );
        assert_eq!(v.verify(&t).0, Verdict::Failed("wrong_issuer"));
        let t = signed(
            Some("test-es256"),
            json!({"iss": "https://idp.example", "aud": "other"}),
        );
        assert_eq!(v.verify(&t).0, Verdict::Failed("wrong_audience"));
    }

    #[test]
    fn a_refresh_bumps_the_generation() {
        let v = verifier(IdentityConfig::default());
        assert_eq!(v.generation(), 0);
        v.replace(JwkSet { keys: Vec::new() });
        assert_eq!(v.generation(), 1);
        let t = signed(Some("test-es256"), json!({"jti": "j"}));
        assert_eq!(v.verify(&t), (Verdict::Failed("unknown_key"), 1));
    }
}

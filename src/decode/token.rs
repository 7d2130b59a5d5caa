//! Token identity: turn a bearer token into a non-secret [`TokenId`].
//!
//! Architecture Invariant: the raw token string never leaves this module and
//! its caller in `decode`; downstream code only sees the id. JWT payloads are
//! decoded **without verification**, for identity only (the gateway already
//! verified the token; we never make an authorization decision from claims).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Claims we read from a JWT payload.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Claims {
    pub jti: Option<String>,
    pub sub: Option<String>,
    #[serde(alias = "azp", alias = "cid")]
    pub client_id: Option<String>,
    pub iss: Option<String>,
    pub exp: Option<f64>,
    /// OIDC session id, for session-scoped revocation.
    pub sid: Option<String>,
    pub scope: Option<serde_json::Value>,
}

/// Strip an optional `Bearer ` prefix (case-insensitive) and whitespace.
pub fn strip_bearer(v: &str) -> &str {
    let v = v.trim();
    if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
        v[7..].trim_start()
    } else {
        v
    }
}

/// Values that mean "no token was logged".
pub fn is_absent(v: &str) -> bool {
    let v = v.trim();
    v.is_empty() || v == "-" || v.eq_ignore_ascii_case("redacted") || v == "null"
}

/// Decode a JWT's payload claims, or `None` if `token` is not a JWT.
pub fn jwt_claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || p.is_empty() || p.len() > 16 * 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Keyed hash of an opaque token: `h:` + 16 hex digits of HMAC-SHA256.
#[derive(Clone)]
pub struct TokenHasher {
    mac: Hmac<Sha256>,
}

impl TokenHasher {
    pub fn new(key: &[u8]) -> Self {
        TokenHasher {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts any key length"),
        }
    }

    pub fn id(&self, token: &str) -> String {
        let mut m = self.mac.clone();
        m.update(token.as_bytes());
        let out = m.finalize().into_bytes();
        let mut s = String::with_capacity(18);
        s.push_str("h:");
        for b in &out[..8] {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHasher(<key hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbS8iLCJzdWIiOiJ1LTEwNDQyIiwiY2xpZW50X2lkIjoid2ViLWFwcCIsImp0aSI6IjdiMTFjOWUyLTVhNGQtNGMzYi05ZDhlLTBmMWEyYjNjNGQ1ZSIsImlhdCI6MTc2NzIyNTAwMCwiZXhwIjoxNzY3MjI4NjAwLCJzY29wZSI6InJlY29yZHM6cmVhZCJ9.c2lnbmF0dXJl";

    #[test]
    fn reads_claims_of_the_sample_jwt() {
        let c = jwt_claims(strip_bearer(&format!("Bearer {SAMPLE}"))).unwrap();
        assert_eq!(
            c.jti.as_deref(),
            Some("7b11c9e2-5a4d-4c3b-9d8e-0f1a2b3c4d5e")
        );
        assert_eq!(c.sub.as_deref(), Some("u-10442"));
        assert_eq!(c.client_id.as_deref(), Some("web-app"));
        assert_eq!(c.exp, Some(1767228600.0));
    }

    #[test]
    fn opaque_hash_is_keyed_and_stable() {
        let a = TokenHasher::new(b"k1");
        let b = TokenHasher::new(b"k2");
        assert_eq!(a.id("tok"), a.id("tok"));
        assert_ne!(a.id("tok"), b.id("tok"));
        assert_eq!(a.id("tok").len(), 18);
        assert!(jwt_claims("not.a.jwt").is_none());
        assert!(is_absent("REDACTED") && is_absent("-") && !is_absent("abc"));
    }
}

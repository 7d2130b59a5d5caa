//! Token identity: turn a bearer token into a non-secret [`TokenId`].
//!
//! Architecture Invariant: the raw token string never leaves this module and
//! its caller in `decode`; downstream code only sees the id. JWT payloads are
//! decoded **without verification**, for identity only (the gateway already
//! verified the token; we never make an authorization decision from claims).
//! Claims are read field by field: a claim of an unexpected type is ignored,
//! never the whole token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Claims we read from a JWT payload. Read field by field and leniently
/// (see [`Claims::from_payload`]): one odd claim never loses the others.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Claims {
    pub jti: Option<String>,
    pub sub: Option<String>,
    /// `client_id` (RFC 9068), else `azp` (OIDC, Keycloak, Auth0), else
    /// `cid` (Okta), else `appid` (Entra ID v1).
    pub client_id: Option<String>,
    pub iss: Option<String>,
    /// `aud` as one string or an array of strings.
    pub aud: Vec<String>,
    /// Seconds since the epoch.
    pub exp: Option<f64>,
    pub iat: Option<f64>,
    pub nbf: Option<f64>,
    /// OIDC session id, for session-scoped revocation.
    pub sid: Option<String>,
    pub scope: Option<Value>,
}

/// Claims whose value is an identifier: a string, or a number written as
/// its decimal text (some IdPs issue numeric `sub`s and client ids).
fn ident(m: &Map<String, Value>, k: &str) -> Option<String> {
    match m.get(k)? {
        Value::String(s) if !is_absent(s) && s.len() <= 1024 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// NumericDate claims: a number, or a numeric string; finite only.
fn numeric_date(m: &Map<String, Value>, k: &str) -> Option<f64> {
    let v = match m.get(k)? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (v.is_finite() && v.abs() < 1e13).then_some(v)
}

impl Claims {
    /// Read the claims of one decoded JWT payload object.
    pub fn from_payload(m: &Map<String, Value>) -> Claims {
        let aud = match m.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        Claims {
            // Entra ID writes its token identifier as `uti`.
            jti: ident(m, "jti").or_else(|| ident(m, "uti")),
            sub: ident(m, "sub"),
            client_id: ["client_id", "azp", "cid", "appid"]
                .iter()
                .find_map(|k| ident(m, k)),
            iss: ident(m, "iss"),
            aud,
            exp: numeric_date(m, "exp"),
            iat: numeric_date(m, "iat"),
            nbf: numeric_date(m, "nbf"),
            sid: ident(m, "sid"),
            scope: m.get("scope").or_else(|| m.get("scp")).cloned(),
        }
    }
}

/// Strip an optional `Bearer ` prefix (case-insensitive) and whitespace.
/// Total: never slices inside a multi-byte character.
pub fn strip_bearer(v: &str) -> &str {
    let v = v.trim();
    match (v.get(..7), v.get(7..)) {
        (Some(p), Some(rest)) if !rest.is_empty() && p.eq_ignore_ascii_case("bearer ") => {
            rest.trim_start()
        }
        _ => v,
    }
}

/// Values that mean "no token was logged": empty, `-`, Kong's `REDACTED`,
/// `null`/`undefined` written as text, and Tyk's all-zero key of keyless
/// requests.
pub fn is_absent(v: &str) -> bool {
    let v = v.trim();
    v.is_empty()
        || v == "-"
        || v.eq_ignore_ascii_case("redacted")
        || v.eq_ignore_ascii_case("null")
        || v.eq_ignore_ascii_case("undefined")
        || v.eq_ignore_ascii_case("none")
        || v.bytes().all(|b| b == b'0')
}

/// Decode a JWT's payload claims (unverified), or `None` if `token` is not
/// a JWT whose payload is a JSON object.
pub fn jwt_claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || p.is_empty() || p.len() > 16 * 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Object(m) => Some(Claims::from_payload(&m)),
        _ => None,
    }
}

/// A token id in the `jti` namespace: the jti itself (what the IdP's logs
/// and admin APIs know), except that a jti shaped like one of our reserved
/// prefixes (`h:` keyed hash, `c:` credential, `j:`…: any one letter and a
/// colon) is written `j:<jti>`, so a forged jti can never name another
/// namespace's id.
pub fn jti_id(jti: &str) -> String {
    let b = jti.as_bytes();
    let reserved = matches!(b, [l, b':', ..] if l.is_ascii_alphabetic());
    if reserved {
        format!("j:{jti}")
    } else {
        jti.to_string()
    }
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

    /// A key derived from this hasher's secret for another use (`label`
    /// separates the uses); at most 32 bytes, the HMAC-SHA256 output.
    pub fn subkey<const N: usize>(&self, label: &[u8]) -> [u8; N] {
        let mut m = self.mac.clone();
        m.update(b"subkey:");
        m.update(label);
        let out = m.finalize().into_bytes();
        let mut k = [0u8; N];
        for (d, s) in k.iter_mut().zip(out.iter()) {
            *d = *s;
        }
        k
    }

    pub fn id(&self, token: &str) -> String {
        let mut m = self.mac.clone();
        m.update(token.as_bytes());
        let out = m.finalize().into_bytes();
        let mut s = String::with_capacity(18);
        s.push_str("h:");
        for b in out.iter().take(8) {
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
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests;

/// Why `id` cannot be a token id (the revoke form and API), or `None`: a
/// token id is what tokenwatch shows (a jti, `h:…`, `c:…`, `u:…`), never a
/// raw token, so a pasted bearer token or JWT is refused before it can
/// reach the audit log.
pub fn invalid_token_id(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.len() > 256 {
        return Some("a token id is 1 to 256 characters");
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("a token id has no spaces (paste the token id, not the Authorization header)");
    }
    if jwt_claims(id).is_some() || (id.starts_with("eyJ") && id.matches('.').count() >= 2) {
        return Some("that is a raw JWT, not a token id: use the id the finding shows");
    }
    None
}

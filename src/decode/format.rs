//! The vocabulary of formats, shared by `config` (which validates field
//! maps) and `decode` (which compiles them): canonical field names, value
//! transforms, the preset names and a field's source. It imports nothing of
//! this crate, so neither of the two imports the other for it.

use serde::Deserialize;

/// Canonical fields a field map may fill.
pub const CANONICAL_FIELDS: &[&str] = &[
    "timestamp",
    "peer_ip",
    "forwarded_for",
    "method",
    "path",
    "route",
    "status",
    "bytes_sent",
    "user_agent",
    "accept_language",
    "authorization",
    "token",
    "jti",
    "credential",
    "subject",
    "client_id",
    "ja3",
    "ja4",
    "response_flags",
    "consumer",
];

/// A named value transform, applied in order after a pointer matched.
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// Epoch milliseconds / seconds / nanoseconds (number or numeric string).
    EpochMs,
    EpochS,
    EpochNs,
    /// RFC 3339 / ISO 8601 date-time string.
    Rfc3339,
    /// Remove a `Bearer ` prefix.
    StripBearer,
    /// Decode the value as a JWT (after `Bearer`) and take one claim.
    JwtClaim(String),
    /// `"-"` (and empty strings) mean "absent".
    DashNull,
    /// `ip:port` or `[ipv6]:port` → ip.
    HostPort,
    /// An X-Forwarded-For list → its right-most address not in the trusted proxies.
    XffRightmostUntrusted,
    /// A secret (an API key header) → its keyed hash, `h:<16 hex>`: the
    /// value itself is never kept.
    Hash,
    /// An NGINX request line (`GET /path?q HTTP/1.1`) → its method; any
    /// other value is kept as it is.
    RequestLineMethod,
    /// An NGINX request line → its target (`/path?q`); any other value is
    /// kept as it is.
    RequestLinePath,
}

impl Transform {
    pub fn parse(s: &str) -> Result<Transform, String> {
        Ok(match s {
            "epoch_ms" => Transform::EpochMs,
            "epoch_s" => Transform::EpochS,
            "epoch_ns" => Transform::EpochNs,
            "rfc3339" => Transform::Rfc3339,
            "strip_bearer" => Transform::StripBearer,
            "dash_null" => Transform::DashNull,
            "host_port" => Transform::HostPort,
            "xff" | "xff_rightmost_untrusted" => Transform::XffRightmostUntrusted,
            "hash" => Transform::Hash,
            "request_line_method" => Transform::RequestLineMethod,
            "request_line_path" => Transform::RequestLinePath,
            _ => match s.strip_prefix("jwt_claim:") {
                Some(c) if !c.is_empty() => Transform::JwtClaim(c.to_string()),
                _ => {
                    return Err(format!(
                        "unknown transform `{s}`; known: epoch_ms, epoch_s, epoch_ns, rfc3339, \
                         strip_bearer, jwt_claim:<claim>, dash_null, host_port, xff, hash, \
                         request_line_method, request_line_path"
                    ));
                }
            },
        })
    }
}

/// Where one canonical field comes from: JSON Pointers tried in order, then
/// named transforms applied in order.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSource {
    pub from: Vec<String>,
    #[serde(default)]
    pub transforms: Vec<String>,
}

/// The built-in formats (`decode::presets`), by name.
pub const PRESETS: [&str; 7] = [
    "envoy",
    "kong",
    "apisix",
    "nginx",
    "traefik",
    "aws_apigw",
    "tyk",
];

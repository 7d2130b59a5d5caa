//! The vocabulary of formats, shared by `config` (which reads field maps)
//! and `decode` (which compiles them): the canonical fields, value
//! transforms, the built-in presets and a field's source. It imports
//! nothing of this crate, so it sits at the bottom with the event types and
//! neither `config` nor `decode` imports the other for it. Every name is a
//! closed enum: `config` turns the names a `[formats.NAME]` block writes into
//! these values as it reads the file and reports every unknown one (all of
//! them at once, each with its key and line), so the lists of known names
//! exist once, here.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use serde::Deserialize;

/// Declares a closed set of names read from `rules.toml`, with `ALL`,
/// `NAMES`, `as_str` and `parse`, so the list of names is written once.
macro_rules! names {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $var,)* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];
            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($s,)*];

            /// The name as `rules.toml` writes it.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$var => $s,)* }
            }

            /// The value of a name, or `None` for an unknown one.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$var),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use names;

names! {
    /// A canonical field a field map may fill. The declaration order is the
    /// decoder's slot order.
    Field {
        /// When the gateway saw the request (event time).
        Timestamp = "timestamp",
        /// The address the gateway's socket saw.
        PeerIp = "peer_ip",
        /// The X-Forwarded-For list.
        ForwardedFor = "forwarded_for",
        /// The HTTP method.
        Method = "method",
        /// The request target (path and query).
        Path = "path",
        /// The gateway's route or API name.
        Route = "route",
        /// The response status.
        Status = "status",
        /// Response bytes sent to the client.
        BytesSent = "bytes_sent",
        /// The User-Agent header.
        UserAgent = "user_agent",
        /// The Accept-Language header.
        AcceptLanguage = "accept_language",
        /// The Authorization header (`Bearer …`).
        Authorization = "authorization",
        /// A bare token (a header or query value without `Bearer`).
        Token = "token",
        /// A token id the gateway logged in place of the token.
        Jti = "jti",
        /// A gateway credential id (an API key id, a consumer credential).
        Credential = "credential",
        /// The subject the gateway authenticated.
        Subject = "subject",
        /// The OAuth client the gateway authenticated.
        ClientId = "client_id",
        /// The JA3 TLS fingerprint.
        Ja3 = "ja3",
        /// The JA4 TLS fingerprint.
        Ja4 = "ja4",
        /// Envoy's response flags (`UAEX`, `UH`…).
        ResponseFlags = "response_flags",
        /// The gateway's consumer (Kong, APISIX, Tyk).
        Consumer = "consumer",
    }
}

/// How many canonical fields there are (the decoder's slot count).
pub const NFIELDS: usize = Field::ALL.len();

names! {
    /// A built-in format (`decode::presets`).
    Preset {
        /// Envoy: Istio, Envoy Gateway and Contour's JSON access logs.
        Envoy = "envoy",
        /// Kong's `kong.log.serialize()` record.
        Kong = "kong",
        /// APISIX loggers' default record or a custom `log_format`.
        Apisix = "apisix",
        /// NGINX `log_format … escape=json` recipes.
        Nginx = "nginx",
        /// Traefik v2/v3 JSON access log.
        Traefik = "traefik",
        /// AWS API Gateway access logs (direct or CloudWatch envelopes).
        AwsApigw = "aws_apigw",
        /// Tyk pump analytics records.
        Tyk = "tyk",
    }
}

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
    /// The transform of a name (`jwt_claim:<claim>` takes a claim).
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
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSource {
    /// JSON Pointers (`/request/headers/authorization`), the first that
    /// matches wins.
    pub from: Vec<String>,
    /// Transforms applied in order to the matched value.
    pub transforms: Vec<Transform>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_unknown_ones_are_refused_with_the_known_ones() {
        for f in Field::ALL {
            assert_eq!(Field::parse(f.as_str()), Some(*f));
        }
        for p in Preset::ALL {
            assert_eq!(Preset::parse(p.as_str()), Some(*p));
        }
        assert_eq!(NFIELDS, Field::NAMES.len());
        assert_eq!(Field::parse("tiemstamp"), None);
        assert_eq!(
            Transform::parse("jwt_claim:sub"),
            Ok(Transform::JwtClaim("sub".into()))
        );
        let msg = Transform::parse("epoch").unwrap_err();
        assert!(msg.contains("unknown transform `epoch`") && msg.contains("epoch_ms"));
        assert!(Transform::parse("jwt_claim:").is_err());
    }
}

//! Built-in field maps for the formats gateways really ship, with what to
//! tell a user whose gateway leaves a field out. A preset is just a field
//! map, the same thing a `[formats.NAME]` block in rules.toml builds.
//!
//! Every variant here is tested against the upstream-shaped records in
//! `tests/data/upstream/` (their `PROVENANCE.md` names the source of each):
//!
//! - `envoy`: Envoy has no default JSON key set; the control plane picks
//!   it. Istio's `EnvoyJSONLogFormatIstio` (`path`, `user_agent`,
//!   `x_forwarded_for`, numbers or strings), Envoy Gateway's default
//!   (`x-envoy-origin-path`, `user-agent`, `x-forwarded-for`, `:authority`,
//!   all strings) and Contour's (`@timestamp` first).
//! - `kong`: the `kong.log.serialize()` record of file-log, http-log (one
//!   object or a batch array), tcp-log, kafka-log; repeated headers are
//!   arrays; Authorization is always `REDACTED`.
//! - `apisix`: the default `get_full_log()` record of kafka-logger,
//!   http-logger… and a custom `log_format` built from NGINX / APISIX
//!   variables (`@timestamp`, `client_ip`, `route_id`, `$request`…).
//! - `nginx`: no schema upstream; the published `log_format … escape=json`
//!   recipes: `msec` / `time_iso8601` / ELK `@timestamp` / `time_local`,
//!   the request line split into method and target, `$http_*` headers.
//! - `traefik`: v2/v3 JSON access log (`StartUTC`, `request_<Header>`;
//!   headers are dropped unless kept).
//! - `aws_apigw`: REST and HTTP API access-log JSON (`$context.*`
//!   variables, the CDK standard field names), directly or inside a
//!   CloudWatch Logs subscription envelope (see [`super::envelope`]).
//! - `tyk`: tyk-pump records (Kafka, Kinesis, SQS `AnalyticsRecord`, the
//!   stdout pump's `tyk-analytics-record` wrapper).

use std::collections::BTreeMap;

use crate::format::{Field as F, FieldSource, Preset as P, Transform};

type Spec = &'static [(F, &'static [&'static str], &'static [&'static str])];

/// One built-in format.
pub struct Builtin {
    pub preset: P,
    fields: Spec,
    /// What to configure at this gateway when a record has no identity.
    pub no_token_hint: &'static str,
    /// Per canonical field: what to configure when it is never filled.
    missing: &'static [(F, &'static str)],
}

/// Istio's keys first, then Envoy Gateway's (`x-envoy-origin-path`,
/// `user-agent`, `x-forwarded-for`) and Contour's `@timestamp`.
const ENVOY: Spec = &[
    (
        F::Timestamp,
        &["/start_time", "/@timestamp", "/timestamp"],
        &[],
    ),
    (
        F::PeerIp,
        &[
            "/downstream_remote_address",
            "/downstream_direct_remote_address",
        ],
        &["dash_null", "host_port"],
    ),
    (
        F::ForwardedFor,
        &["/x_forwarded_for", "/x-forwarded-for", "/forwarded_for"],
        &["dash_null"],
    ),
    (F::Method, &["/method", "/request_method"], &["dash_null"]),
    (
        F::Path,
        &["/path", "/x-envoy-origin-path", "/x_envoy_original_path"],
        &["dash_null"],
    ),
    (F::Route, &["/route_name"], &["dash_null"]),
    (F::Status, &["/response_code", "/status"], &[]),
    (F::BytesSent, &["/bytes_sent"], &["dash_null"]),
    (
        F::UserAgent,
        &["/user_agent", "/user-agent"],
        &["dash_null"],
    ),
    (
        F::AcceptLanguage,
        &["/accept_language", "/accept-language"],
        &["dash_null"],
    ),
    (F::Authorization, &["/authorization"], &["dash_null"]),
    (F::Ja3, &["/ja3"], &["dash_null"]),
    (F::Ja4, &["/ja4"], &["dash_null"]),
    (F::ResponseFlags, &["/response_flags"], &["dash_null"]),
];

/// `kong.log.serialize()`; `authenticated_entity` is the credential.
/// The consumer is not an identity here: an `anonymous` consumer would
/// pool every unauthenticated caller into one.
const KONG: Spec = &[
    (F::Timestamp, &["/started_at"], &[]),
    (F::PeerIp, &["/client_ip"], &[]),
    (F::ForwardedFor, &["/request/headers/x-forwarded-for"], &[]),
    (F::Method, &["/request/method"], &[]),
    (F::Path, &["/request/uri", "/upstream_uri"], &[]),
    (F::Route, &["/route/name", "/route/id"], &[]),
    (F::Status, &["/response/status"], &[]),
    (F::BytesSent, &["/response/size"], &[]),
    (F::UserAgent, &["/request/headers/user-agent"], &[]),
    (
        F::AcceptLanguage,
        &["/request/headers/accept-language"],
        &[],
    ),
    (F::Authorization, &["/request/headers/authorization"], &[]),
    (F::Credential, &["/authenticated_entity/id"], &[]),
    (
        F::Subject,
        &["/consumer/custom_id", "/consumer/username", "/consumer/id"],
        &[],
    ),
];

/// APISIX's default record, then the variable names a custom `log_format`
/// is written with (`$remote_addr`, `$request`, `$http_user_agent`…).
const APISIX: Spec = &[
    (
        F::Timestamp,
        &[
            "/start_time",
            "/@timestamp",
            "/time_iso8601",
            "/msec",
            "/time_local",
        ],
        &[],
    ),
    (F::PeerIp, &["/client_ip", "/remote_addr"], &["dash_null"]),
    (
        F::ForwardedFor,
        &["/request/headers/x-forwarded-for", "/http_x_forwarded_for"],
        &["dash_null"],
    ),
    (
        F::Method,
        &["/request/method", "/request_method", "/method", "/request"],
        &["dash_null", "request_line_method"],
    ),
    (
        F::Path,
        &["/request/uri", "/request_uri", "/request", "/uri"],
        &["dash_null", "request_line_path"],
    ),
    (F::Route, &["/route_id", "/route_name"], &["dash_null"]),
    (F::Status, &["/response/status", "/status"], &[]),
    (
        F::BytesSent,
        &["/response/size", "/body_bytes_sent", "/bytes_sent"],
        &[],
    ),
    (
        F::UserAgent,
        &["/request/headers/user-agent", "/http_user_agent"],
        &["dash_null"],
    ),
    (
        F::AcceptLanguage,
        &["/request/headers/accept-language", "/http_accept_language"],
        &["dash_null"],
    ),
    (
        F::Authorization,
        &["/request/headers/authorization", "/http_authorization"],
        &["dash_null"],
    ),
    // key-auth's default header: the key itself, so only its keyed hash.
    (
        F::Credential,
        &["/request/headers/apikey", "/http_apikey"],
        &["dash_null", "hash"],
    ),
    (F::Subject, &["/consumer/username", "/consumer_name"], &[]),
    (
        F::Consumer,
        &["/consumer/username", "/consumer_name"],
        &["dash_null"],
    ),
];

/// The request line is split when no `$request_method` / `$request_uri`
/// was logged; `$uri` (normalised, no query) is the last resort.
const NGINX: Spec = &[
    (
        F::Timestamp,
        &[
            "/msec",
            "/time_iso8601",
            "/@timestamp",
            "/time_local",
            "/time",
            "/timestamp",
        ],
        &[],
    ),
    (
        F::PeerIp,
        &["/realip_remote_addr", "/remote_addr", "/client_ip"],
        &["dash_null"],
    ),
    (
        F::ForwardedFor,
        &["/http_x_forwarded_for", "/x_forwarded_for", "/xff"],
        &["dash_null"],
    ),
    (
        F::Method,
        &["/request_method", "/method", "/request"],
        &["dash_null", "request_line_method"],
    ),
    (
        F::Path,
        &["/request_uri", "/request", "/uri"],
        &["dash_null", "request_line_path"],
    ),
    (F::Status, &["/status"], &[]),
    (F::BytesSent, &["/body_bytes_sent", "/bytes_sent"], &[]),
    (
        F::UserAgent,
        &["/http_user_agent", "/user_agent", "/ua"],
        &["dash_null"],
    ),
    (
        F::AcceptLanguage,
        &["/http_accept_language", "/accept_language"],
        &["dash_null"],
    ),
    (
        F::Authorization,
        &["/http_authorization", "/authorization"],
        &["dash_null"],
    ),
    (F::Ja3, &["/http_ssl_ja3", "/ssl_ja3"], &["dash_null"]),
    (F::Ja4, &["/http_ssl_ja4", "/ssl_ja4"], &["dash_null"]),
];

const TRAEFIK: Spec = &[
    (F::Timestamp, &["/StartUTC", "/time"], &["rfc3339"]),
    (F::PeerIp, &["/ClientHost", "/ClientAddr"], &["host_port"]),
    (F::ForwardedFor, &["/request_X-Forwarded-For"], &[]),
    (F::Method, &["/RequestMethod"], &[]),
    (F::Path, &["/RequestPath"], &[]),
    (F::Route, &["/RouterName"], &[]),
    (F::Status, &["/DownstreamStatus", "/OriginStatus"], &[]),
    (F::BytesSent, &["/DownstreamContentSize"], &[]),
    (F::UserAgent, &["/request_User-Agent"], &[]),
    (F::AcceptLanguage, &["/request_Accept-Language"], &[]),
    (F::Authorization, &["/request_Authorization"], &[]),
    // Set by the BasicAuth / DigestAuth middlewares.
    (F::Consumer, &["/ClientUsername"], &["dash_null"]),
];

const AWS_APIGW: Spec = &[
    (
        F::Timestamp,
        &["/requestTimeEpoch", "/requestTime"],
        &["dash_null"],
    ),
    (
        F::PeerIp,
        &["/ip", "/sourceIp", "/identity/sourceIp"],
        &["dash_null"],
    ),
    (F::Method, &["/httpMethod", "/method"], &["dash_null"]),
    (F::Path, &["/path", "/resourcePath"], &["dash_null"]),
    (F::Route, &["/routeKey", "/resourcePath"], &["dash_null"]),
    (F::Status, &["/status"], &[]),
    (F::BytesSent, &["/responseLength"], &["dash_null"]),
    (
        F::UserAgent,
        &["/userAgent", "/identity/userAgent"],
        &["dash_null"],
    ),
    (F::Jti, &["/jti", "/authorizer/claims/jti"], &["dash_null"]),
    (
        F::Credential,
        &["/apiKeyId", "/identity/apiKeyId", "/principalId"],
        &["dash_null"],
    ),
    (
        F::Subject,
        &["/sub", "/authorizer/claims/sub", "/principalId"],
        &["dash_null"],
    ),
    (
        F::ClientId,
        &[
            "/client_id",
            "/authorizer/claims/client_id",
            "/authorizer/claims/azp",
        ],
        &["dash_null"],
    ),
    // `$context.identity.user` / `.caller`: the IAM principal of SigV4 calls.
    (F::Consumer, &["/user", "/caller"], &["dash_null"]),
];

/// No tyk-pump record carries a response size (`network.bytes_out` is
/// always 0 at the gateway, `content_length` is the request's): bytes are
/// unknown. `ip_address` is X-Real-IP, else the left-most X-Forwarded-For,
/// else the peer: see README ("Tyk").
const TYK: Spec = &[
    (F::Timestamp, &["/timestamp"], &["rfc3339"]),
    (F::PeerIp, &["/ip_address"], &[]),
    (F::Method, &["/method"], &[]),
    (F::Path, &["/raw_path", "/path"], &[]),
    (F::Route, &["/api_name", "/api_id"], &[]),
    (F::Status, &["/response_code"], &[]),
    (F::UserAgent, &["/user_agent"], &[]),
    (F::Token, &["/api_key"], &["dash_null"]),
    (F::Subject, &["/alias"], &[]),
    (F::ClientId, &["/oauth_id"], &[]),
    (F::Consumer, &["/alias"], &["dash_null"]),
];

const ALL: &[Builtin] = &[
    Builtin {
        preset: P::Envoy,
        fields: ENVOY,
        no_token_hint: "add \"authorization\": \"%REQ(AUTHORIZATION)%\" to the access log's json_format \
             (Istio: meshConfig.accessLogFormat; Envoy Gateway: EnvoyProxy \
             telemetry.accessLog.settings[].format.json; Contour: accesslog-json-fields)",
        missing: &[
            (
                F::UserAgent,
                "add \"user_agent\": \"%REQ(USER-AGENT)%\" to the json_format",
            ),
            (
                F::Ja4,
                "add \"ja4\": \"%TLS_JA4_FINGERPRINT%\" (Envoy ≥ 1.33; TLS listeners only)",
            ),
            (F::Ja3, "add \"ja3\": \"%TLS_JA3_FINGERPRINT%\""),
            (
                F::AcceptLanguage,
                "add \"accept_language\": \"%REQ(ACCEPT-LANGUAGE)%\"",
            ),
            (
                F::ForwardedFor,
                "add \"x_forwarded_for\": \"%REQ(X-FORWARDED-FOR)%\"",
            ),
            (
                F::Route,
                "add \"route_name\": \"%ROUTE_NAME%\" (routes are templated from the path meanwhile)",
            ),
        ],
    },
    Builtin {
        preset: P::Kong,
        fields: KONG,
        no_token_hint: "Kong logs Authorization as REDACTED: enable an authentication plugin \
             (jwt, oauth2, key-auth, openid-connect) on the route so authenticated_entity is logged",
        missing: &[
            (
                F::Ja4,
                "Kong logs no TLS fingerprint; terminate TLS at a proxy that logs JA4 if you need it",
            ),
            (F::Ja3, "Kong logs no TLS fingerprint"),
            (
                F::Subject,
                "set a consumer on the credential (username or custom_id) so findings name the user",
            ),
        ],
    },
    Builtin {
        preset: P::Apisix,
        fields: APISIX,
        no_token_hint: "enable an auth plugin on the route (jwt-auth, key-auth, basic-auth, openid-connect); \
             with a custom log_format add \"authorization\": \"$http_authorization\" and \
             \"consumer_name\": \"$consumer_name\"",
        missing: &[
            (
                F::UserAgent,
                "with a custom log_format add \"http_user_agent\": \"$http_user_agent\"",
            ),
            (
                F::Method,
                "with a custom log_format add \"request\": \"$request\" (or \"request_method\")",
            ),
            (
                F::Path,
                "with a custom log_format add \"request_uri\": \"$request_uri\"",
            ),
            (
                F::Status,
                "with a custom log_format add \"status\": \"$status\"",
            ),
            (
                F::BytesSent,
                "with a custom log_format add \"body_bytes_sent\": \"$body_bytes_sent\"",
            ),
            (F::Ja4, "APISIX logs no TLS fingerprint"),
            (F::Ja3, "APISIX logs no TLS fingerprint"),
        ],
    },
    Builtin {
        preset: P::Nginx,
        fields: NGINX,
        no_token_hint: "add \"http_authorization\": \"$http_authorization\" to the log_format (escape=json)",
        missing: &[
            (
                F::Route,
                "NGINX has no route name: routes are templated from the path ({id} for id-like segments)",
            ),
            (
                F::UserAgent,
                "add \"http_user_agent\": \"$http_user_agent\" to the log_format",
            ),
            (
                F::ForwardedFor,
                "add \"http_x_forwarded_for\": \"$http_x_forwarded_for\" to the log_format",
            ),
            (
                F::AcceptLanguage,
                "add \"http_accept_language\": \"$http_accept_language\"",
            ),
            (
                F::Ja4,
                "NGINX has no JA4 variable of its own; a JA4 module's variable as \"ssl_ja4\" is read",
            ),
            (
                F::Ja3,
                "NGINX has no JA3 variable of its own; a JA3 module's variable as \"ssl_ja3\" is read",
            ),
        ],
    },
    Builtin {
        preset: P::Traefik,
        fields: TRAEFIK,
        no_token_hint: "Traefik v3 drops every request header by default: set \
             accesslog.fields.headers.names.Authorization=keep",
        missing: &[
            (
                F::UserAgent,
                "Traefik v3 drops every request header by default: set \
                 accesslog.fields.headers.names.User-Agent=keep",
            ),
            (
                F::ForwardedFor,
                "set accesslog.fields.headers.names.X-Forwarded-For=keep",
            ),
            (
                F::AcceptLanguage,
                "set accesslog.fields.headers.names.Accept-Language=keep",
            ),
            (F::Ja4, "Traefik logs no TLS fingerprint"),
            (F::Ja3, "Traefik logs no TLS fingerprint"),
        ],
    },
    Builtin {
        preset: P::AwsApigw,
        fields: AWS_APIGW,
        no_token_hint: "add \"jti\": \"$context.authorizer.claims.jti\" (JWT and Cognito authorizers) or \
             \"apiKeyId\": \"$context.identity.apiKeyId\" (API keys) to the stage's access log format",
        missing: &[
            (
                F::UserAgent,
                "add \"userAgent\": \"$context.identity.userAgent\"",
            ),
            (
                F::BytesSent,
                "add \"responseLength\": \"$context.responseLength\"",
            ),
            (
                F::Subject,
                "add \"sub\": \"$context.authorizer.claims.sub\"",
            ),
            (
                F::ClientId,
                "add \"client_id\": \"$context.authorizer.claims.client_id\"",
            ),
            (
                F::Path,
                "add \"path\": \"$context.path\" (resourcePath is a template: objects are not seen)",
            ),
            (F::Ja4, "API Gateway logs no TLS fingerprint"),
            (F::Ja3, "API Gateway logs no TLS fingerprint"),
            (
                F::AcceptLanguage,
                "API Gateway has no header variables in access logs",
            ),
        ],
    },
    Builtin {
        preset: P::Tyk,
        fields: TYK,
        no_token_hint: "api_key is 00000000 for keyless APIs and requests refused before authentication: \
             protect the API with an auth token, JWT or OAuth",
        missing: &[
            (
                F::BytesSent,
                "no tyk-pump record carries the response size: byte siphoning is blind, \
                 request, object and pagination windows still work",
            ),
            (F::Ja4, "Tyk logs no TLS fingerprint"),
            (F::Ja3, "Tyk logs no TLS fingerprint"),
            (
                F::AcceptLanguage,
                "Tyk's analytics record has no request headers",
            ),
            (
                F::ForwardedFor,
                "Tyk logs one address (ip_address): see README (Tyk)",
            ),
        ],
    },
];

fn find(p: P) -> Option<&'static Builtin> {
    ALL.iter().find(|b| b.preset == p)
}

/// The field map of a preset. Its transforms are names checked by the test
/// below (every preset compiles), so none is dropped.
pub fn preset(p: P) -> BTreeMap<F, FieldSource> {
    let Some(b) = find(p) else {
        return BTreeMap::new();
    };
    b.fields
        .iter()
        .map(|(field, from, tr)| {
            (
                *field,
                FieldSource {
                    from: from.iter().map(|s| s.to_string()).collect(),
                    transforms: tr.iter().filter_map(|s| Transform::parse(s).ok()).collect(),
                },
            )
        })
        .collect()
}

/// What to configure at the gateway of `preset` when no identity was logged.
pub fn no_token_hint(preset: P) -> &'static str {
    find(preset).map_or("", |p| p.no_token_hint)
}

/// What to configure at the gateway of `preset` when `field` is never filled.
pub fn missing_hint(preset: P, field: F) -> Option<&'static str> {
    find(preset)?
        .missing
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, h)| *h)
}

/// Guess the preset from the keys of one record (for `format = "auto"`);
/// envelopes are unwrapped before this is asked.
pub fn detect(keys: &[&str]) -> Option<P> {
    let has = |k: &str| keys.contains(&k);
    let any = |ks: &[&str]| ks.iter().any(|k| has(k));
    if has("started_at") && any(&["authenticated_entity", "upstream_uri", "latencies"]) {
        Some(P::Kong)
    } else if any(&["StartUTC", "ClientHost"]) {
        Some(P::Traefik)
    } else if has("requestTimeEpoch")
        || (has("requestId") && any(&["httpMethod", "routeKey", "resourcePath"]))
    {
        Some(P::AwsApigw)
    } else if (has("api_key") && has("response_code")) || (has("api_id") && has("org_id")) {
        Some(P::Tyk)
    } else if any(&["start_time", "@timestamp", "timestamp"])
        && any(&[
            "downstream_remote_address",
            "upstream_cluster",
            "x-envoy-origin-path",
            "response_flags",
            "upstream_service_time",
        ])
    {
        Some(P::Envoy)
    } else if has("route_id") || has("apisix_latency") || (has("start_time") && has("client_ip")) {
        Some(P::Apisix)
    } else if any(&[
        "request_uri",
        "remote_addr",
        "msec",
        "time_local",
        "http_user_agent",
        "body_bytes_sent",
    ]) {
        Some(P::Nginx)
    } else if has("start_time") && has("response_code") {
        Some(P::Envoy)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_built_in_with_transforms_that_parse() {
        for p in P::ALL {
            let b = find(*p).unwrap_or_else(|| panic!("{p} has no built-in entry"));
            assert!(!b.no_token_hint.is_empty(), "{p}");
            for (field, from, tr) in b.fields {
                assert!(!from.is_empty(), "{p}.{field}");
                for t in *tr {
                    assert!(Transform::parse(t).is_ok(), "{p}.{field}: {t}");
                }
            }
            assert!(preset(*p).contains_key(&F::Timestamp), "{p}");
            assert!(super::super::FieldMap::preset(*p).is_some(), "{p}");
        }
    }
}

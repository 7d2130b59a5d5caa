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

use super::format::FieldSource;

type Spec = &'static [(
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
)];

/// One built-in format.
pub struct Preset {
    pub name: &'static str,
    fields: Spec,
    /// What to configure at this gateway when a record has no identity.
    pub no_token_hint: &'static str,
    /// Per canonical field: what to configure when it is never filled.
    missing: &'static [(&'static str, &'static str)],
}

/// Istio's keys first, then Envoy Gateway's (`x-envoy-origin-path`,
/// `user-agent`, `x-forwarded-for`) and Contour's `@timestamp`.
const ENVOY: Spec = &[
    (
        "timestamp",
        &["/start_time", "/@timestamp", "/timestamp"],
        &[],
    ),
    (
        "peer_ip",
        &[
            "/downstream_remote_address",
            "/downstream_direct_remote_address",
        ],
        &["dash_null", "host_port"],
    ),
    (
        "forwarded_for",
        &["/x_forwarded_for", "/x-forwarded-for", "/forwarded_for"],
        &["dash_null"],
    ),
    ("method", &["/method", "/request_method"], &["dash_null"]),
    (
        "path",
        &["/path", "/x-envoy-origin-path", "/x_envoy_original_path"],
        &["dash_null"],
    ),
    ("route", &["/route_name"], &["dash_null"]),
    ("status", &["/response_code", "/status"], &[]),
    ("bytes_sent", &["/bytes_sent"], &["dash_null"]),
    (
        "user_agent",
        &["/user_agent", "/user-agent"],
        &["dash_null"],
    ),
    (
        "accept_language",
        &["/accept_language", "/accept-language"],
        &["dash_null"],
    ),
    ("authorization", &["/authorization"], &["dash_null"]),
    ("ja3", &["/ja3"], &["dash_null"]),
    ("ja4", &["/ja4"], &["dash_null"]),
    ("response_flags", &["/response_flags"], &["dash_null"]),
];

/// `kong.log.serialize()`; `authenticated_entity` is the credential.
/// The consumer is not an identity here: an `anonymous` consumer would
/// pool every unauthenticated caller into one.
const KONG: Spec = &[
    ("timestamp", &["/started_at"], &[]),
    ("peer_ip", &["/client_ip"], &[]),
    ("forwarded_for", &["/request/headers/x-forwarded-for"], &[]),
    ("method", &["/request/method"], &[]),
    ("path", &["/request/uri", "/upstream_uri"], &[]),
    ("route", &["/route/name", "/route/id"], &[]),
    ("status", &["/response/status"], &[]),
    ("bytes_sent", &["/response/size"], &[]),
    ("user_agent", &["/request/headers/user-agent"], &[]),
    (
        "accept_language",
        &["/request/headers/accept-language"],
        &[],
    ),
    ("authorization", &["/request/headers/authorization"], &[]),
    ("credential", &["/authenticated_entity/id"], &[]),
    (
        "subject",
        &["/consumer/custom_id", "/consumer/username", "/consumer/id"],
        &[],
    ),
];

/// APISIX's default record, then the variable names a custom `log_format`
/// is written with (`$remote_addr`, `$request`, `$http_user_agent`…).
const APISIX: Spec = &[
    (
        "timestamp",
        &[
            "/start_time",
            "/@timestamp",
            "/time_iso8601",
            "/msec",
            "/time_local",
        ],
        &[],
    ),
    ("peer_ip", &["/client_ip", "/remote_addr"], &["dash_null"]),
    (
        "forwarded_for",
        &["/request/headers/x-forwarded-for", "/http_x_forwarded_for"],
        &["dash_null"],
    ),
    (
        "method",
        &["/request/method", "/request_method", "/method", "/request"],
        &["dash_null", "request_line_method"],
    ),
    (
        "path",
        &["/request/uri", "/request_uri", "/request", "/uri"],
        &["dash_null", "request_line_path"],
    ),
    ("route", &["/route_id", "/route_name"], &["dash_null"]),
    ("status", &["/response/status", "/status"], &[]),
    (
        "bytes_sent",
        &["/response/size", "/body_bytes_sent", "/bytes_sent"],
        &[],
    ),
    (
        "user_agent",
        &["/request/headers/user-agent", "/http_user_agent"],
        &["dash_null"],
    ),
    (
        "accept_language",
        &["/request/headers/accept-language", "/http_accept_language"],
        &["dash_null"],
    ),
    (
        "authorization",
        &["/request/headers/authorization", "/http_authorization"],
        &["dash_null"],
    ),
    // key-auth's default header: the key itself, so only its keyed hash.
    (
        "credential",
        &["/request/headers/apikey", "/http_apikey"],
        &["dash_null", "hash"],
    ),
    ("subject", &["/consumer/username", "/consumer_name"], &[]),
    (
        "consumer",
        &["/consumer/username", "/consumer_name"],
        &["dash_null"],
    ),
];

/// The request line is split when no `$request_method` / `$request_uri`
/// was logged; `$uri` (normalised, no query) is the last resort.
const NGINX: Spec = &[
    (
        "timestamp",
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
        "peer_ip",
        &["/realip_remote_addr", "/remote_addr", "/client_ip"],
        &["dash_null"],
    ),
    (
        "forwarded_for",
        &["/http_x_forwarded_for", "/x_forwarded_for", "/xff"],
        &["dash_null"],
    ),
    (
        "method",
        &["/request_method", "/method", "/request"],
        &["dash_null", "request_line_method"],
    ),
    (
        "path",
        &["/request_uri", "/request", "/uri"],
        &["dash_null", "request_line_path"],
    ),
    ("status", &["/status"], &[]),
    ("bytes_sent", &["/body_bytes_sent", "/bytes_sent"], &[]),
    (
        "user_agent",
        &["/http_user_agent", "/user_agent", "/ua"],
        &["dash_null"],
    ),
    (
        "accept_language",
        &["/http_accept_language", "/accept_language"],
        &["dash_null"],
    ),
    (
        "authorization",
        &["/http_authorization", "/authorization"],
        &["dash_null"],
    ),
    ("ja3", &["/http_ssl_ja3", "/ssl_ja3"], &["dash_null"]),
    ("ja4", &["/http_ssl_ja4", "/ssl_ja4"], &["dash_null"]),
];

const TRAEFIK: Spec = &[
    ("timestamp", &["/StartUTC", "/time"], &["rfc3339"]),
    ("peer_ip", &["/ClientHost", "/ClientAddr"], &["host_port"]),
    ("forwarded_for", &["/request_X-Forwarded-For"], &[]),
    ("method", &["/RequestMethod"], &[]),
    ("path", &["/RequestPath"], &[]),
    ("route", &["/RouterName"], &[]),
    ("status", &["/DownstreamStatus", "/OriginStatus"], &[]),
    ("bytes_sent", &["/DownstreamContentSize"], &[]),
    ("user_agent", &["/request_User-Agent"], &[]),
    ("accept_language", &["/request_Accept-Language"], &[]),
    ("authorization", &["/request_Authorization"], &[]),
    // Set by the BasicAuth / DigestAuth middlewares.
    ("consumer", &["/ClientUsername"], &["dash_null"]),
];

const AWS_APIGW: Spec = &[
    (
        "timestamp",
        &["/requestTimeEpoch", "/requestTime"],
        &["dash_null"],
    ),
    (
        "peer_ip",
        &["/ip", "/sourceIp", "/identity/sourceIp"],
        &["dash_null"],
    ),
    ("method", &["/httpMethod", "/method"], &["dash_null"]),
    ("path", &["/path", "/resourcePath"], &["dash_null"]),
    ("route", &["/routeKey", "/resourcePath"], &["dash_null"]),
    ("status", &["/status"], &[]),
    ("bytes_sent", &["/responseLength"], &["dash_null"]),
    (
        "user_agent",
        &["/userAgent", "/identity/userAgent"],
        &["dash_null"],
    ),
    ("jti", &["/jti", "/authorizer/claims/jti"], &["dash_null"]),
    (
        "credential",
        &["/apiKeyId", "/identity/apiKeyId", "/principalId"],
        &["dash_null"],
    ),
    (
        "subject",
        &["/sub", "/authorizer/claims/sub", "/principalId"],
        &["dash_null"],
    ),
    (
        "client_id",
        &[
            "/client_id",
            "/authorizer/claims/client_id",
            "/authorizer/claims/azp",
        ],
        &["dash_null"],
    ),
    // `$context.identity.user` / `.caller`: the IAM principal of SigV4 calls.
    ("consumer", &["/user", "/caller"], &["dash_null"]),
];

/// No tyk-pump record carries a response size (`network.bytes_out` is
/// always 0 at the gateway, `content_length` is the request's): bytes are
/// unknown. `ip_address` is X-Real-IP, else the left-most X-Forwarded-For,
/// else the peer: see README ("Tyk").
const TYK: Spec = &[
    ("timestamp", &["/timestamp"], &["rfc3339"]),
    ("peer_ip", &["/ip_address"], &[]),
    ("method", &["/method"], &[]),
    ("path", &["/raw_path", "/path"], &[]),
    ("route", &["/api_name", "/api_id"], &[]),
    ("status", &["/response_code"], &[]),
    ("user_agent", &["/user_agent"], &[]),
    ("token", &["/api_key"], &["dash_null"]),
    ("subject", &["/alias"], &[]),
    ("client_id", &["/oauth_id"], &[]),
    ("consumer", &["/alias"], &["dash_null"]),
];

const ALL: &[Preset] = &[
    Preset {
        name: "envoy",
        fields: ENVOY,
        no_token_hint: "add \"authorization\": \"%REQ(AUTHORIZATION)%\" to the access log's json_format \
             (Istio: meshConfig.accessLogFormat; Envoy Gateway: EnvoyProxy \
             telemetry.accessLog.settings[].format.json; Contour: accesslog-json-fields)",
        missing: &[
            (
                "user_agent",
                "add \"user_agent\": \"%REQ(USER-AGENT)%\" to the json_format",
            ),
            (
                "ja4",
                "add \"ja4\": \"%TLS_JA4_FINGERPRINT%\" (Envoy ≥ 1.33; TLS listeners only)",
            ),
            ("ja3", "add \"ja3\": \"%TLS_JA3_FINGERPRINT%\""),
            (
                "accept_language",
                "add \"accept_language\": \"%REQ(ACCEPT-LANGUAGE)%\"",
            ),
            (
                "forwarded_for",
                "add \"x_forwarded_for\": \"%REQ(X-FORWARDED-FOR)%\"",
            ),
            (
                "route",
                "add \"route_name\": \"%ROUTE_NAME%\" (routes are templated from the path meanwhile)",
            ),
        ],
    },
    Preset {
        name: "kong",
        fields: KONG,
        no_token_hint: "Kong logs Authorization as REDACTED: enable an authentication plugin \
             (jwt, oauth2, key-auth, openid-connect) on the route so authenticated_entity is logged",
        missing: &[
            (
                "ja4",
                "Kong logs no TLS fingerprint; terminate TLS at a proxy that logs JA4 if you need it",
            ),
            ("ja3", "Kong logs no TLS fingerprint"),
            (
                "subject",
                "set a consumer on the credential (username or custom_id) so findings name the user",
            ),
        ],
    },
    Preset {
        name: "apisix",
        fields: APISIX,
        no_token_hint: "enable an auth plugin on the route (jwt-auth, key-auth, basic-auth, openid-connect); \
             with a custom log_format add \"authorization\": \"$http_authorization\" and \
             \"consumer_name\": \"$consumer_name\"",
        missing: &[
            (
                "user_agent",
                "with a custom log_format add \"http_user_agent\": \"$http_user_agent\"",
            ),
            (
                "method",
                "with a custom log_format add \"request\": \"$request\" (or \"request_method\")",
            ),
            (
                "path",
                "with a custom log_format add \"request_uri\": \"$request_uri\"",
            ),
            (
                "status",
                "with a custom log_format add \"status\": \"$status\"",
            ),
            (
                "bytes_sent",
                "with a custom log_format add \"body_bytes_sent\": \"$body_bytes_sent\"",
            ),
            ("ja4", "APISIX logs no TLS fingerprint"),
            ("ja3", "APISIX logs no TLS fingerprint"),
        ],
    },
    Preset {
        name: "nginx",
        fields: NGINX,
        no_token_hint: "add \"http_authorization\": \"$http_authorization\" to the log_format (escape=json)",
        missing: &[
            (
                "route",
                "NGINX has no route name: routes are templated from the path ({id} for id-like segments)",
            ),
            (
                "user_agent",
                "add \"http_user_agent\": \"$http_user_agent\" to the log_format",
            ),
            (
                "forwarded_for",
                "add \"http_x_forwarded_for\": \"$http_x_forwarded_for\" to the log_format",
            ),
            (
                "accept_language",
                "add \"http_accept_language\": \"$http_accept_language\"",
            ),
            (
                "ja4",
                "NGINX has no JA4 variable of its own; a JA4 module's variable as \"ssl_ja4\" is read",
            ),
            (
                "ja3",
                "NGINX has no JA3 variable of its own; a JA3 module's variable as \"ssl_ja3\" is read",
            ),
        ],
    },
    Preset {
        name: "traefik",
        fields: TRAEFIK,
        no_token_hint: "Traefik v3 drops every request header by default: set \
             accesslog.fields.headers.names.Authorization=keep",
        missing: &[
            (
                "user_agent",
                "Traefik v3 drops every request header by default: set \
                 accesslog.fields.headers.names.User-Agent=keep",
            ),
            (
                "forwarded_for",
                "set accesslog.fields.headers.names.X-Forwarded-For=keep",
            ),
            (
                "accept_language",
                "set accesslog.fields.headers.names.Accept-Language=keep",
            ),
            ("ja4", "Traefik logs no TLS fingerprint"),
            ("ja3", "Traefik logs no TLS fingerprint"),
        ],
    },
    Preset {
        name: "aws_apigw",
        fields: AWS_APIGW,
        no_token_hint: "add \"jti\": \"$context.authorizer.claims.jti\" (JWT and Cognito authorizers) or \
             \"apiKeyId\": \"$context.identity.apiKeyId\" (API keys) to the stage's access log format",
        missing: &[
            (
                "user_agent",
                "add \"userAgent\": \"$context.identity.userAgent\"",
            ),
            (
                "bytes_sent",
                "add \"responseLength\": \"$context.responseLength\"",
            ),
            ("subject", "add \"sub\": \"$context.authorizer.claims.sub\""),
            (
                "client_id",
                "add \"client_id\": \"$context.authorizer.claims.client_id\"",
            ),
            (
                "path",
                "add \"path\": \"$context.path\" (resourcePath is a template: objects are not seen)",
            ),
            ("ja4", "API Gateway logs no TLS fingerprint"),
            ("ja3", "API Gateway logs no TLS fingerprint"),
            (
                "accept_language",
                "API Gateway has no header variables in access logs",
            ),
        ],
    },
    Preset {
        name: "tyk",
        fields: TYK,
        no_token_hint: "api_key is 00000000 for keyless APIs and requests refused before authentication: \
             protect the API with an auth token, JWT or OAuth",
        missing: &[
            (
                "bytes_sent",
                "no tyk-pump record carries the response size: byte siphoning is blind, \
                 request, object and pagination windows still work",
            ),
            ("ja4", "Tyk logs no TLS fingerprint"),
            ("ja3", "Tyk logs no TLS fingerprint"),
            (
                "accept_language",
                "Tyk's analytics record has no request headers",
            ),
            (
                "forwarded_for",
                "Tyk logs one address (ip_address): see README (Tyk)",
            ),
        ],
    },
];

fn find(name: &str) -> Option<&'static Preset> {
    ALL.iter().find(|p| p.name == name)
}

/// The field map of a preset, or `None` for an unknown name.
pub fn preset(name: &str) -> Option<BTreeMap<String, FieldSource>> {
    let spec = find(name)?.fields;
    Some(
        spec.iter()
            .map(|(field, from, tr)| {
                (
                    field.to_string(),
                    FieldSource {
                        from: from.iter().map(|s| s.to_string()).collect(),
                        transforms: tr.iter().map(|s| s.to_string()).collect(),
                    },
                )
            })
            .collect(),
    )
}

/// What to configure at the gateway of `preset` when no identity was logged.
pub fn no_token_hint(preset: &str) -> Option<&'static str> {
    find(preset).map(|p| p.no_token_hint)
}

/// What to configure at the gateway of `preset` when `field` is never filled.
pub fn missing_hint(preset: &str, field: &str) -> Option<&'static str> {
    find(preset)?
        .missing
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, h)| *h)
}

/// Guess the preset from the keys of one record (for `format = "auto"`);
/// envelopes are unwrapped before this is asked.
pub fn detect(keys: &[&str]) -> Option<&'static str> {
    let has = |k: &str| keys.contains(&k);
    let any = |ks: &[&str]| ks.iter().any(|k| has(k));
    if has("started_at") && any(&["authenticated_entity", "upstream_uri", "latencies"]) {
        Some("kong")
    } else if any(&["StartUTC", "ClientHost"]) {
        Some("traefik")
    } else if has("requestTimeEpoch")
        || (has("requestId") && any(&["httpMethod", "routeKey", "resourcePath"]))
    {
        Some("aws_apigw")
    } else if (has("api_key") && has("response_code")) || (has("api_id") && has("org_id")) {
        Some("tyk")
    } else if any(&["start_time", "@timestamp", "timestamp"])
        && any(&[
            "downstream_remote_address",
            "upstream_cluster",
            "x-envoy-origin-path",
            "response_flags",
            "upstream_service_time",
        ])
    {
        Some("envoy")
    } else if has("route_id") || has("apisix_latency") || (has("start_time") && has("client_ip")) {
        Some("apisix")
    } else if any(&[
        "request_uri",
        "remote_addr",
        "msec",
        "time_local",
        "http_user_agent",
        "body_bytes_sent",
    ]) {
        Some("nginx")
    } else if has("start_time") && has("response_code") {
        Some("envoy")
    } else {
        None
    }
}

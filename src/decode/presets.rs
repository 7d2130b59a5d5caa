//! Built-in field maps for the formats gateways really ship. A preset is just
//! a field map, the same thing a `[formats.NAME]` block in rules.toml builds;
//! see `../shared/samples/` for one record of each.

use std::collections::BTreeMap;

use crate::config::FieldSource;

type Spec = &'static [(
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
)];

const ENVOY: Spec = &[
    ("timestamp", &["/start_time", "/timestamp"], &[]),
    (
        "peer_ip",
        &[
            "/downstream_remote_address",
            "/downstream_direct_remote_address",
        ],
        &["dash_null", "host_port"],
    ),
    ("forwarded_for", &["/x_forwarded_for"], &["dash_null"]),
    ("method", &["/method"], &[]),
    ("path", &["/path"], &[]),
    ("route", &["/route_name"], &["dash_null"]),
    ("status", &["/response_code"], &[]),
    ("bytes_sent", &["/bytes_sent"], &[]),
    ("user_agent", &["/user_agent"], &["dash_null"]),
    ("accept_language", &["/accept_language"], &["dash_null"]),
    ("authorization", &["/authorization"], &["dash_null"]),
    ("ja3", &["/ja3"], &["dash_null"]),
    ("ja4", &["/ja4"], &["dash_null"]),
    ("response_flags", &["/response_flags"], &["dash_null"]),
];

const KONG: Spec = &[
    ("timestamp", &["/started_at"], &["epoch_ms"]),
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

const APISIX: Spec = &[
    ("timestamp", &["/start_time"], &["epoch_ms"]),
    ("peer_ip", &["/client_ip"], &[]),
    ("forwarded_for", &["/request/headers/x-forwarded-for"], &[]),
    ("method", &["/request/method"], &[]),
    ("path", &["/request/uri"], &[]),
    ("route", &["/route_id"], &[]),
    ("status", &["/response/status"], &[]),
    ("bytes_sent", &["/response/size"], &[]),
    ("user_agent", &["/request/headers/user-agent"], &[]),
    (
        "accept_language",
        &["/request/headers/accept-language"],
        &[],
    ),
    ("authorization", &["/request/headers/authorization"], &[]),
    ("subject", &["/consumer/username"], &[]),
];

const NGINX: Spec = &[
    ("timestamp", &["/msec", "/time_iso8601", "/time"], &[]),
    (
        "peer_ip",
        &["/realip_remote_addr", "/remote_addr"],
        &["dash_null"],
    ),
    ("forwarded_for", &["/http_x_forwarded_for"], &["dash_null"]),
    ("method", &["/request_method"], &[]),
    ("path", &["/request_uri"], &[]),
    ("status", &["/status"], &[]),
    ("bytes_sent", &["/body_bytes_sent", "/bytes_sent"], &[]),
    ("user_agent", &["/http_user_agent"], &["dash_null"]),
    (
        "accept_language",
        &["/http_accept_language"],
        &["dash_null"],
    ),
    ("authorization", &["/http_authorization"], &["dash_null"]),
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
];

const AWS_APIGW: Spec = &[
    (
        "timestamp",
        &["/requestTimeEpoch", "/requestTime"],
        &["dash_null"],
    ),
    ("peer_ip", &["/ip", "/sourceIp"], &["dash_null"]),
    ("method", &["/httpMethod"], &[]),
    ("path", &["/path", "/resourcePath"], &[]),
    ("route", &["/routeKey", "/resourcePath"], &["dash_null"]),
    ("status", &["/status"], &[]),
    ("bytes_sent", &["/responseLength"], &["dash_null"]),
    ("user_agent", &["/userAgent"], &["dash_null"]),
    ("jti", &["/jti", "/authorizer/claims/jti"], &["dash_null"]),
    ("credential", &["/apiKeyId", "/principalId"], &["dash_null"]),
    (
        "subject",
        &["/sub", "/authorizer/claims/sub", "/principalId"],
        &["dash_null"],
    ),
    (
        "client_id",
        &["/client_id", "/authorizer/claims/client_id"],
        &["dash_null"],
    ),
];

const TYK: Spec = &[
    ("timestamp", &["/timestamp"], &["rfc3339"]),
    ("peer_ip", &["/ip_address"], &[]),
    ("method", &["/method"], &[]),
    ("path", &["/raw_path", "/path"], &[]),
    ("route", &["/api_name", "/api_id"], &[]),
    ("status", &["/response_code"], &[]),
    (
        "bytes_sent",
        &["/response_size", "/content_length_out"],
        &[],
    ),
    ("user_agent", &["/user_agent"], &[]),
    ("token", &["/api_key"], &["dash_null"]),
    ("subject", &["/alias"], &[]),
    ("client_id", &["/oauth_id"], &[]),
];

/// The field map of a preset, or `None` for an unknown name.
pub fn preset(name: &str) -> Option<BTreeMap<String, FieldSource>> {
    let spec = match name {
        "envoy" => ENVOY,
        "kong" => KONG,
        "apisix" => APISIX,
        "nginx" => NGINX,
        "traefik" => TRAEFIK,
        "aws_apigw" => AWS_APIGW,
        "tyk" => TYK,
        _ => return None,
    };
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

/// Guess the preset from the keys of one record (for `format = "auto"`).
pub fn detect(keys: &[&str]) -> Option<&'static str> {
    let has = |k: &str| keys.contains(&k);
    if has("started_at") && (has("authenticated_entity") || has("upstream_uri") || has("latencies"))
    {
        Some("kong")
    } else if has("start_time")
        && (has("route_id") || has("apisix_latency") || has("upstream_latency"))
    {
        Some("apisix")
    } else if has("StartUTC") || has("ClientHost") {
        Some("traefik")
    } else if has("requestTimeEpoch") || (has("requestId") && has("httpMethod")) {
        Some("aws_apigw")
    } else if has("api_key") && has("response_code") {
        Some("tyk")
    } else if has("request_uri") || has("remote_addr") || has("msec") {
        Some("nginx")
    } else if has("start_time") && (has("response_code") || has("downstream_remote_address")) {
        Some("envoy")
    } else {
        None
    }
}

//! Records as the upstream gateways ship them (tests/data/upstream, copied
//! from ../shared/samples/upstream with its PROVENANCE.md): every file
//! decodes, or drops only for a missing identity, auto-detection names the
//! right preset, and the fields are asserted through `explain`, the code
//! path a user checks a log source with. A record that carries no identity
//! is read again with one added (the key the gateway would log it under),
//! so its other fields are asserted too.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokenwatch::config::Config;
use tokenwatch::decode::DecodeSettings;
use tokenwatch::explain::Explainer;

const KC_JTI: &str = "0b4f3c2e-8a1d-4e5f-9c7b-2d3e4f5a6b7c";
const KC_SUB: &str = "f3c1d2e4-5b6a-4c7d-8e9f-0a1b2c3d4e5f";
const OKTA_JTI: &str = "AT.fH3kT9s2m5QwXyZ1aB2cD3eF4gH5iJ6kL7mN8oP9qR0";

/// As an operator configures it: the NGINX recipe sits behind a load
/// balancer at 10.0.0.5, trusted by `input.trusted_proxies` (no proxy is
/// trusted by default).
fn settings() -> DecodeSettings {
    let mut cfg = Config::default();
    cfg.input.trusted_proxies = vec!["10.0.0.5/32".parse().unwrap()];
    DecodeSettings::new(&cfg, b"test-key").expect("valid settings")
}

fn files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir("tests/data/upstream").expect("samples") {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "jsonl") {
                    out.push(f);
                }
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 25,
        "all upstream samples present: {}",
        out.len()
    );
    out
}

/// The preset a sample's folder is named after.
fn preset_of(file: &Path) -> String {
    let dir = file
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    dir.replace('-', "_")
}

fn rel(file: &Path) -> String {
    file.strip_prefix("tests/data/upstream")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// Explain every line of `text` in `format`: the JSON values and the summary.
fn explain(format: &str, name: &str, text: &str) -> (Vec<Value>, Value, String) {
    let mut ex = Explainer::new(&settings(), format).expect("known format");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        out.extend(ex.record(&format!("{name}:{}", i + 1), line.as_bytes()));
    }
    (out, ex.summary(), ex.summary_text())
}

/// Add `key: value` to every record object of a line (inside a batch
/// array or a CloudWatch envelope's messages too).
fn inject(line: &str, key: &str, value: &Value) -> String {
    fn into(v: &mut Value, key: &str, value: &Value) {
        match v {
            Value::Array(items) => items.iter_mut().for_each(|i| into(i, key, value)),
            Value::Object(o) if o.contains_key("logEvents") => {
                for e in o["logEvents"].as_array_mut().unwrap() {
                    let mut inner: Value =
                        serde_json::from_str(e["message"].as_str().unwrap()).unwrap();
                    into(&mut inner, key, value);
                    e["message"] = Value::String(inner.to_string());
                }
            }
            Value::Object(o) => {
                o.insert(key.to_string(), value.clone());
            }
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(line).unwrap();
    into(&mut v, key, value);
    v.to_string()
}

/// Every key of `want` has that value in `got` (objects compared key by key).
fn assert_subset(want: &Value, got: &Value, at: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let gv = g.get(k).unwrap_or(&Value::Null);
                assert_subset(wv, gv, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(want, got, "{at}"),
    }
}

#[test]
fn every_sample_decodes_or_lacks_only_an_identity_and_is_detected() {
    for file in files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let preset = preset_of(&file);
        for format in ["auto", preset.as_str()] {
            let (out, summary, _) = explain(format, &rel(&file), &text);
            assert!(!out.is_empty(), "{}: nothing read", rel(&file));
            for v in &out {
                assert_eq!(v["format"], json!(preset), "{}: detected as", rel(&file));
                if let Some(d) = v.get("drop") {
                    assert_eq!(d["reason"], "no_token", "{}: {d}", rel(&file));
                    assert!(
                        d["hint"].as_str().is_some_and(|h| h.len() > 20),
                        "{}: a no_token drop says what to configure: {d}",
                        rel(&file)
                    );
                }
            }
            assert_eq!(summary["summary"]["format"], json!(preset));
            // Never a raw token or secret in what explain prints.
            let printed = out.iter().map(Value::to_string).collect::<String>();
            for secret in ["eyJ", "auth-one", "6129dc1e8b64c6b4", "Bearer"] {
                assert!(
                    !printed.contains(secret),
                    "{}: `{secret}` printed",
                    rel(&file)
                );
            }
        }
    }
}

/// One sample: its file, the key an identity is added under when its
/// records have none, and the fields of each event in order (`null`
/// asserts absence).
type Expectation = (&'static str, Option<(&'static str, Value)>, Vec<Value>);

fn expectations() -> Vec<Expectation> {
    let bearer = json!("Bearer opaque-test-token-1");
    vec![
        (
            "apisix/assembled-jwt-auth.jsonl",
            None,
            vec![
                json!({"time": "2026-01-01T00:00:00.123Z", "client_ip": "198.51.100.23",
                    "identity": {"kind": "token", "id": KC_JTI}, "subject": KC_SUB, "client_id": "web-portal",
                    "method": "GET", "path": "/v1/records", "page": 1, "route": "records", "status": 200,
                    "bytes_sent": 18233, "accept_language": "en-GB,en;q=0.9"}),
                // Auth0-shaped (no jti): its keyed hash; sent without `Bearer `.
                json!({"identity": {"kind": "token"}, "subject": "auth0|64f1c2d3e4b5a6978899aabb",
                    "user_agent": "curl/8.5.0", "page": 2}),
            ],
        ),
        (
            "apisix/assembled-key-auth.jsonl",
            None,
            vec![
                json!({"identity": {"kind": "credential"}, "subject": "jack", "path": "/hello",
                "bytes_sent": 161, "user_agent": "lua-resty-http/0.16.1 (Lua) ngx_lua/10025"}),
            ],
        ),
        (
            "apisix/docs-kafka-logger-custom-log-format.jsonl",
            Some(("http_authorization", bearer.clone())),
            vec![
                json!({"time": "2023-11-10T23:09:04.000Z", "client_ip": "127.0.0.1",
                "route": "kafka-logger-route", "identity": {"kind": "token"}}),
            ],
        ),
        (
            "apisix/docs-kafka-logger-default.jsonl",
            Some(("consumer", json!({"username": "jack"}))),
            vec![
                json!({"time": "2023-11-10T06:02:44.550Z", "identity": {"kind": "consumer", "id": "u:jack"},
                "method": "GET", "path": "/get", "status": 200, "bytes_sent": 475, "user_agent": "curl/8.7.1",
                "route": "kafka-logger-route"}),
            ],
        ),
        (
            "aws-apigw/cdk-jsonWithStandardFields.jsonl",
            Some(("apiKeyId", json!("key-1"))),
            vec![
                json!({"time": "2026-01-01T00:00:00.000Z", "client_ip": "198.51.100.23",
                "identity": {"kind": "credential", "id": "c:key-1"}, "method": "GET",
                "path": "/v1/records/{id}", "status": 200, "bytes_sent": 512}),
            ],
        ),
        (
            "aws-apigw/cloudwatch-subscription-envelope.jsonl",
            Some(("apiKeyId", json!("key-1"))),
            vec![
                json!({"time": "2026-01-01T00:00:00.000Z", "client_ip": "198.51.100.23",
                "identity": {"kind": "credential", "id": "c:key-1"}, "status": 200, "bytes_sent": 512}),
            ],
        ),
        (
            "aws-apigw/http-api-default-plus-jwt-claims.jsonl",
            None,
            vec![
                json!({"identity": {"kind": "token", "id": KC_JTI}, "subject": KC_SUB,
                "client_id": "web-portal", "route": "GET /v1/records", "path": "/v1/records",
                "status": 200, "bytes_sent": 18233, "user_agent": "okhttp/4.12.0"}),
            ],
        ),
        (
            "aws-apigw/rest-api-epoch-apikeyid.jsonl",
            None,
            // responseLength "-" is unknown, not 0 bytes.
            vec![
                json!({"time": "2026-01-01T00:00:02.000Z", "identity": {"kind": "credential", "id": "c:a1b2c3d4e5"},
                "method": "POST", "path": "/prod/v1/orders", "route": "/v1/orders", "status": 201,
                "bytes_sent": null, "user_agent": "python-requests/2.32.3", "subject": null}),
            ],
        ),
        (
            "envoy/contour-default-plus-authorization.jsonl",
            None,
            vec![
                json!({"time": "2026-01-01T00:00:02.000Z", "identity": {"kind": "token", "id": KC_JTI},
                "path": "/v1/records/42", "object": "42", "route": "/v1/records/{id}",
                "user_agent": "okhttp/4.12.0", "bytes_sent": 512, "client_ip": "198.51.100.23"}),
            ],
        ),
        (
            "envoy/envoy-gateway-default-plus-authorization.jsonl",
            None,
            vec![
                json!({"time": "2026-01-01T00:00:00.123Z", "identity": {"kind": "token", "id": OKTA_JTI},
                "subject": "alice@example.com", "client_id": "0oa1b2c3d4e5f6g7h8i9",
                "method": "GET", "path": "/v1/accounts/10023", "object": "10023", "page": 3, "status": 200,
                "bytes_sent": 18233, "client_ip": "198.51.100.23",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "route": "httproute/default/api/rule/0/match/0/api_example_com"}),
            ],
        ),
        (
            "envoy/istio-json-plus-authorization-ja4.jsonl",
            None,
            vec![
                json!({"identity": {"kind": "token", "id": KC_JTI}, "route": "default", "page": 9,
                "bytes_sent": 184233, "ja4": "t13d1516h2_8daaf6152771_b186095e22b6",
                "ja3": "71d1f47d1125ac53c3c6a4863c087cfe", "accept_language": "fr-FR,fr;q=0.9"}),
            ],
        ),
        (
            "envoy/istio-sidecar-captured.jsonl",
            Some(("authorization", bearer.clone())),
            vec![
                json!({"time": "2025-12-14T15:04:12.558Z", "path": "/status/200", "status": 200,
                "bytes_sent": 59, "user_agent": "curl/8.14.1", "client_ip": "10.244.2.3"}),
            ],
        ),
        (
            "kong/assembled-jwt-plugin-batch.jsonl",
            None,
            vec![
                json!({"identity": {"kind": "credential", "id": "c:5b9e2f10-7c3d-4e21-9a8b-1f2e3d4c5b6a"},
                    "subject": "u-10442", "route": "records", "page": 1, "accept_language": "fr-FR,fr;q=0.9"}),
                json!({"client_ip": "203.0.113.77", "page": 2, "user_agent": "python-requests/2.32.3"}),
            ],
        ),
        (
            // Two X-Forwarded-For lines: an array, joined in order.
            "kong/assembled-repeated-xff-header.jsonl",
            None,
            vec![
                json!({"client_ip": "198.51.100.40", "object": "10023", "user_agent": "okhttp/4.12.0",
                "accept_language": "de-DE", "status": 200, "bytes_sent": 512}),
            ],
        ),
        (
            "kong/docs-http-log-3.8.jsonl",
            Some(("authenticated_entity", json!({"id": "cred-1"}))),
            vec![
                json!({"identity": {"kind": "credential", "id": "c:cred-1"}, "path": "/example-route",
                "route": "example_route", "user_agent": "HTTPie/3.2.3", "client_ip": "192.168.65.1",
                "bytes_sent": 9982}),
            ],
        ),
        (
            "kong/docs-log-format-3.4.jsonl",
            None,
            vec![
                json!({"identity": {"kind": "credential"}, "subject": "foo", "path": "/log",
                "user_agent": "HTTPie/2.4.0", "time": "2021-02-25T05:57:48.342Z", "bytes_sent": 827}),
            ],
        ),
        (
            "nginx/elk-timestamp-recipe.jsonl",
            Some(("http_authorization", bearer.clone())),
            vec![
                json!({"time": "2026-01-01T00:00:02.000Z", "client_ip": "198.51.100.23", "method": "GET",
                "path": "/v1/records", "status": 200, "bytes_sent": 512, "user_agent": "okhttp/4.12.0"}),
            ],
        ),
        (
            // time_local (CLF) and the request line split.
            "nginx/kong-support-json_logs-recipe.jsonl",
            Some(("http_authorization", bearer.clone())),
            vec![
                json!({"time": "2026-01-01T00:00:00.000Z", "client_ip": "198.51.100.23", "method": "GET",
                "path": "/v1/records", "page": 1, "status": 200, "bytes_sent": 18233}),
            ],
        ),
        (
            "nginx/msec-full-recipe-plus-authorization.jsonl",
            None,
            vec![
                json!({"time": "2026-01-01T00:00:03.123Z", "identity": {"kind": "token", "id": OKTA_JTI},
                "client_ip": "198.51.100.23", "page": 9, "bytes_sent": 184233,
                "accept_language": "en-US,en;q=0.9"}),
            ],
        ),
        (
            "traefik/assembled-v3-authorization-redact.jsonl",
            Some(("request_Authorization", bearer.clone())),
            vec![
                json!({"time": "2026-01-01T00:00:02.500Z", "user_agent": "curl/8.5.0",
                "route": "records@docker"}),
            ],
        ),
        (
            "traefik/assembled-v3-default-headers-dropped.jsonl",
            Some(("request_Authorization", bearer.clone())),
            vec![
                json!({"user_agent": null, "path": "/v1/records", "page": 9, "status": 200,
                "bytes_sent": 184233, "client_ip": "198.51.100.23"}),
            ],
        ),
        (
            "traefik/assembled-v3-headers-keep.jsonl",
            None,
            vec![
                json!({"identity": {"kind": "token", "id": KC_JTI}, "accept_language": "de-DE,de;q=0.9",
                "time": "2026-01-01T00:00:01.500Z"}),
            ],
        ),
        (
            "tyk/assembled-analyticsrecord-json-sqs-pump.jsonl",
            None,
            vec![
                json!({"identity": {"kind": "token"}, "subject": "alice", "route": "records",
                "bytes_sent": null, "client_id": null, "time": "2026-01-01T00:00:03.648Z"}),
            ],
        ),
        (
            "tyk/assembled-kafka-pump.jsonl",
            None,
            vec![json!({"identity": {"kind": "token"}, "subject": "alice", "status": 200})],
        ),
        (
            // Nested under tyk-analytics-record by the stdout pump.
            "tyk/assembled-stdout-pump-json.jsonl",
            None,
            vec![
                json!({"identity": {"kind": "token"}, "time": "2026-01-01T00:00:04.001Z",
                "user_agent": "curl/7.86.0"}),
            ],
        ),
    ]
}

#[test]
fn each_sample_gives_the_fields_its_gateway_logged() {
    let table = expectations();
    // Every sample has its expectation.
    let covered: Vec<&str> = table.iter().map(|(f, _, _)| *f).collect();
    for file in files() {
        assert!(
            covered.contains(&rel(&file).as_str()),
            "{}: no expectation",
            rel(&file)
        );
    }
    for (file, add, want) in table {
        let mut text = std::fs::read_to_string(format!("tests/data/upstream/{file}")).unwrap();
        if let Some((key, value)) = &add {
            text = text.lines().map(|l| inject(l, key, value) + "\n").collect();
        }
        let (out, _, _) = explain("auto", file, &text);
        let events: Vec<&Value> = out.iter().filter_map(|v| v.get("event")).collect();
        assert!(
            events.len() >= want.len(),
            "{file}: {} events, want {}: {out:?}",
            events.len(),
            want.len()
        );
        for (i, w) in want.iter().enumerate() {
            assert_subset(w, events[i], &format!("{file}[{i}]"));
        }
    }
}

#[test]
fn the_same_tyk_key_is_one_identity_in_every_pump_shape() {
    let ids: Vec<Value> = [
        "tyk/assembled-analyticsrecord-json-sqs-pump.jsonl",
        "tyk/assembled-kafka-pump.jsonl",
        "tyk/assembled-stdout-pump-json.jsonl",
    ]
    .iter()
    .map(|f| {
        let text = std::fs::read_to_string(format!("tests/data/upstream/{f}")).unwrap();
        let (out, _, _) = explain("tyk", f, &text);
        out[0]["event"]["identity"]["id"].clone()
    })
    .collect();
    assert!(ids[0].as_str().unwrap().starts_with("h:"));
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
}

#[test]
fn the_summary_names_what_the_gateway_leaves_out_and_what_to_set() {
    let f = "traefik/assembled-v3-default-headers-dropped.jsonl";
    let text = std::fs::read_to_string(format!("tests/data/upstream/{f}")).unwrap();
    let (_, summary, _) = explain("auto", f, &text);
    assert_eq!(summary["summary"]["dropped"]["no_token"], 1);
    assert!(
        summary["summary"]["drop_hints"]["no_token"]
            .as_str()
            .unwrap()
            .contains("accesslog.fields.headers.names.Authorization=keep")
    );
    let text: String = text
        .lines()
        .map(|l| inject(l, "request_Authorization", &json!("Bearer x-1")) + "\n")
        .collect();
    let (_, summary, human) = explain("auto", f, &text);
    let ua = &summary["summary"]["missing"]["user_agent"];
    assert_eq!(ua["percent"], 100.0);
    assert!(
        ua["hint"]
            .as_str()
            .unwrap()
            .contains("accesslog.fields.headers.names.User-Agent=keep"),
        "{ua}"
    );
    assert!(
        human.contains("user_agent: missing in 100 % of events; Traefik v3 drops"),
        "{human}"
    );
    // Tyk: bytes are unknown, and the summary says why.
    let f = "tyk/assembled-kafka-pump.jsonl";
    let text = std::fs::read_to_string(format!("tests/data/upstream/{f}")).unwrap();
    let (_, summary, _) = explain("auto", f, &text);
    assert!(
        summary["summary"]["missing"]["bytes_sent"]["hint"]
            .as_str()
            .unwrap()
            .contains("no tyk-pump record carries the response size")
    );
}

#[test]
fn basic_credentials_are_known_by_their_keyed_hash_and_a_consumer_is_never_revoked_by_itself() {
    let rec = |auth: &str| {
        format!(
            r#"{{"start_time":1767225600123,"client_ip":"198.51.100.23","route_id":"r","request":{{"method":"GET","uri":"/v1/a","headers":{{"authorization":"{auth}"}}}},"response":{{"status":200,"size":10}},"consumer":{{"username":"jack"}}}}"#
        )
    };
    let (out, _, _) = explain("apisix", "basic", &rec("Basic amFjazpzM2NyZXQ="));
    let e = &out[0]["event"];
    assert_eq!(e["identity"]["kind"], "credential");
    let id = e["identity"]["id"].as_str().unwrap();
    assert!(id.starts_with("c:h:"), "{id}");
    assert!(!out[0].to_string().contains("amFjazpzM2NyZXQ"));
    // No credential at all: the consumer, as the last resort.
    let (out, _, _) = explain("apisix", "none", &rec("-"));
    assert_eq!(
        out[0]["event"]["identity"],
        json!({"kind": "consumer", "id": "u:jack"})
    );
}

#[test]
fn explain_on_the_command_line_prints_json_lines_and_a_summary() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args([
            "explain",
            "tests/data/upstream/envoy/envoy-gateway-default-plus-authorization.jsonl",
            "tests/data/upstream/nginx/kong-support-json_logs-recipe.jsonl",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["source"],
        "tests/data/upstream/envoy/envoy-gateway-default-plus-authorization.jsonl:1"
    );
    assert_eq!(lines[0]["event"]["path"], "/v1/accounts/10023");
    assert_eq!(lines[1]["drop"]["reason"], "no_token");
    assert!(!stdout.contains("eyJ"), "no raw token printed");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("1 records, 1 events read as format envoy"),
        "{stderr}"
    );
    assert!(
        stderr.contains("dropped 1 as no_token: add \"http_authorization\""),
        "{stderr}"
    );
}

#[test]
fn a_cloudwatch_envelope_gives_each_of_its_lines_and_keeps_the_good_around_a_bad_one() {
    let line = |jti: &str, ts: u64| {
        json!({"requestId": "r", "ip": "198.51.100.23", "requestTimeEpoch": ts.to_string(),
            "httpMethod": "GET", "path": "/v1/a/7", "status": "200", "responseLength": "10", "jti": jti})
        .to_string()
    };
    let envelope = |messages: Vec<String>| {
        json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g", "logStream": "s",
            "subscriptionFilters": ["f"],
            "logEvents": messages.into_iter().map(|m| json!({"id": "1", "timestamp": 1, "message": m})).collect::<Vec<_>>()})
        .to_string()
    };
    let inner_envelope = envelope(vec![line("j-9", 1_767_225_609_000)]);
    let rec = envelope(vec![
        line("j-1", 1_767_225_600_000),
        "{not json".to_string(),
        line("j-2", 1_767_225_601_000),
        inner_envelope,
    ]);
    for format in ["auto", "aws_apigw"] {
        let (out, summary, _) = explain(format, "cw.jsonl", &rec);
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(out[0]["event"]["identity"]["id"], "j-1");
        assert_eq!(out[1]["drop"]["reason"], "not_json");
        assert_eq!(out[2]["event"]["identity"]["id"], "j-2");
        // An envelope inside an envelope is not opened: a drop, not a loop.
        assert!(out[3].get("drop").is_some(), "{}", out[3]);
        assert!(out.iter().all(|v| v["source"] == "cw.jsonl:1"));
        assert_eq!(summary["summary"]["events"], 2);
    }
    // A control message (sent once when the subscription is made) holds no event.
    let control =
        json!({"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "",
        "logStream": "", "subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": 1,
        "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]})
        .to_string();
    let (out, _, _) = explain("aws_apigw", "cw.jsonl", &control);
    assert!(out.is_empty(), "{out:?}");
}

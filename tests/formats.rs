//! Format tests: every preset against the real gateway samples
//! (tests/data/samples, copied from ../shared/samples), array batches,
//! auto-detection, custom field maps and malformed records.

use std::net::IpAddr;

use tokenwatch::config::{self, Config};
use tokenwatch::decode::DecodeSettings;
use tokenwatch::event::{AccessEvent, Drop, DropReason};

const JTI: &str = "7b11c9e2-5a4d-4c3b-9d8e-0f1a2b3c4d5e";

fn settings(cfg: &Config) -> DecodeSettings {
    DecodeSettings::new(cfg, b"test-key").expect("valid settings")
}

/// Decode every line of `tests/data/{dir}/{file}` in `format` under `cfg`.
fn decode_in(dir: &str, format: &str, file: &str, cfg: &Config) -> Vec<Result<AccessEvent, Drop>> {
    let s = settings(cfg);
    let mut d = s.decoder(format).expect("known format");
    let text = std::fs::read_to_string(format!("tests/data/{dir}/{file}")).expect("sample exists");
    let mut out = Vec::new();
    for line in text.lines() {
        d.decode(line.as_bytes(), &mut out);
    }
    out
}

/// The project's own samples (tests/data/samples, from ../shared/samples).
fn decode_file(format: &str, file: &str) -> Vec<Result<AccessEvent, Drop>> {
    decode_in("samples", format, file, &Config::default())
}

fn ok(v: &[Result<AccessEvent, Drop>], i: usize) -> &AccessEvent {
    match &v[i] {
        Ok(e) => e,
        Err(d) => panic!("record {i} dropped: {d:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn envoy_sample() {
    let v = decode_file("envoy", "envoy.jsonl");
    assert_eq!(v.len(), 2);
    let e = ok(&v, 0);
    assert_eq!(e.ts, 1_767_225_600_123);
    assert_eq!(e.token.as_str(), JTI);
    assert_eq!(e.subject.as_deref(), Some("u-10442"));
    assert_eq!(e.client_id.as_deref(), Some("web-app"));
    assert_eq!(e.token_exp, Some(1_767_228_600_000));
    assert_eq!(e.client_ip, ip("198.51.100.23"));
    assert_eq!(e.status, 200);
    assert_eq!(e.bytes_sent, Some(184_233));
    assert_eq!(e.route.as_ref(), "records");
    assert_eq!(e.page, Some(9));
    assert_eq!(
        e.ja4,
        tokenwatch::event::tls_hash("t13d1516h2_8daaf6152771_b186095e22b6")
    );
    assert!(e.ja3.is_some());
    // The second record has no token at all ("-"): a counted drop, not a crash.
    assert_eq!(v[1].as_ref().unwrap_err().reason, DropReason::NoToken);
}

#[test]
fn kong_sample_with_redacted_header_and_batch() {
    let v = decode_file("kong", "kong.jsonl");
    assert_eq!(v.len(), 3, "one object plus a batch of two");
    let e = ok(&v, 0);
    assert_eq!(e.ts, 1_767_225_600_123);
    // Authorization is REDACTED: identity comes from the credential id.
    assert_eq!(e.token.as_str(), "c:5b9e2f10-7c3d-4e21-9a8b-1f2e3d4c5b6a");
    assert_eq!(e.subject.as_deref(), Some("u-10442"));
    assert_eq!(e.client_ip, ip("198.51.100.23"));
    assert_eq!(e.route.as_ref(), "records");
    assert_eq!(e.bytes_sent, Some(18_233));
    assert_eq!(e.accept_language, tokenwatch::event::lang_tag("en-gb"));
    let b = ok(&v, 2);
    assert_eq!(b.ts, 1_767_225_601_650);
    assert_eq!(b.status, 403);
    assert!(b.object.is_some(), "account id is the object");
}

#[test]
fn apisix_sample_with_batch() {
    let v = decode_file("apisix", "apisix.jsonl");
    assert_eq!(v.len(), 2);
    let e = ok(&v, 0);
    assert_eq!(e.token.as_str(), JTI);
    // XFF "198.51.100.23, 10.0.0.5": the right-most untrusted hop.
    assert_eq!(e.client_ip, ip("198.51.100.23"));
    assert_eq!(e.route.as_ref(), "records");
    let b = ok(&v, 1);
    assert_eq!(b.client_ip, ip("192.0.2.200"));
    assert_eq!(b.user_agent.as_deref(), Some("curl/8.5.0"));
}

#[test]
fn nginx_sample_uses_msec_and_walks_xff() {
    // The sample's load balancer is in 10.0.0.0/8: trusted by config, not
    // by default.
    let cfg = config::load_str("[input]\ntrusted_proxies = [\"10.0.0.0/8\"]\n", "t.toml").unwrap();
    let v = decode_in("samples", "nginx", "nginx.jsonl", &cfg);
    let e = ok(&v, 0);
    assert_eq!(e.ts, 1_767_225_600_123);
    assert_eq!(e.client_ip, ip("198.51.100.23"));
    assert_eq!(e.token.as_str(), JTI);
    assert_eq!(e.path.as_ref(), "/v1/records");
}

#[test]
fn traefik_sample() {
    let v = decode_file("traefik", "traefik.jsonl");
    let e = ok(&v, 0);
    assert_eq!(e.ts, 1_767_225_600_123);
    assert_eq!(e.client_ip, ip("198.51.100.23"));
    assert_eq!(e.token.as_str(), JTI);
    assert_eq!(e.route.as_ref(), "records@file");
    assert_eq!(e.bytes_sent, Some(184_233));
}

#[test]
fn aws_sample_all_strings_and_dashes() {
    let v = decode_file("aws_apigw", "aws-apigw.jsonl");
    let e = ok(&v, 0);
    assert_eq!(e.ts, 1_767_225_600_123);
    assert_eq!(e.token.as_str(), JTI);
    assert_eq!(e.subject.as_deref(), Some("u-10442"));
    assert_eq!(e.client_id.as_deref(), Some("android-app"));
    assert_eq!(e.status, 200);
    assert_eq!(e.bytes_sent, Some(184_233));
}

#[test]
fn tyk_sample_hashes_the_api_key() {
    let v = decode_file("tyk", "tyk.jsonl");
    let e = ok(&v, 0);
    assert!(e.token.as_str().starts_with("h:"), "{}", e.token);
    assert_eq!(e.token.as_str().len(), 18);
    assert!(
        !e.token.as_str().contains("6129dc1e8b64c6b4"),
        "raw key never leaves the decoder"
    );
    assert_eq!(e.subject.as_deref(), Some("alice"));
    assert_eq!(e.client_id.as_deref(), Some("web-app"));
    assert_eq!(e.page, Some(9));
}

#[test]
fn auto_detects_every_sample() {
    for (file, preset) in [
        ("envoy.jsonl", "envoy"),
        ("kong.jsonl", "kong"),
        ("apisix.jsonl", "apisix"),
        ("nginx.jsonl", "nginx"),
        ("traefik.jsonl", "traefik"),
        ("aws-apigw.jsonl", "aws_apigw"),
        ("tyk.jsonl", "tyk"),
    ] {
        let s = settings(&Config::default());
        let mut d = s.decoder("auto").unwrap();
        let line = std::fs::read_to_string(format!("tests/data/samples/{file}")).unwrap();
        let mut out = Vec::new();
        d.decode(line.lines().next().unwrap().as_bytes(), &mut out);
        assert_eq!(d.format_name(), Some(preset), "{file}");
        assert!(out[0].is_ok(), "{file}: {:?}", out[0]);
    }
}

#[test]
fn malformed_records_are_counted_with_reasons() {
    let s = settings(&Config::default());
    let mut d = s.decoder("envoy").unwrap();
    let good = std::fs::read_to_string("tests/data/samples/envoy.jsonl").unwrap();
    let good = good.lines().next().unwrap();
    let cases: Vec<(String, DropReason, &str)> = vec![
        ("not json at all".into(), DropReason::NotJson, ""),
        (
            "{\"start_time\": ".into(),
            DropReason::NotJson,
            "invalid JSON",
        ),
        ("42".into(), DropReason::NotObject, ""),
        (
            good.replace("\"start_time\":\"2026-01-01T00:00:00.123Z\",", ""),
            DropReason::MissingTimestamp,
            "timestamp",
        ),
        (
            good.replace("2026-01-01T00:00:00.123Z", "yesterday"),
            DropReason::BadTimestamp,
            "yesterday",
        ),
        (
            good.replace("\"198.51.100.23:51544\"", "\"not-an-ip\""),
            DropReason::BadIp,
            "peer_ip",
        ),
        (
            good.replace("\"response_code\":200", "\"response_code\":{\"x\":1}"),
            DropReason::WrongType,
            "status",
        ),
        (
            good.replace("\"bytes_sent\":184233", "\"bytes_sent\":\"lots\""),
            DropReason::WrongType,
            "bytes_sent",
        ),
        (
            format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20)),
            DropReason::TooLarge,
            "max_record_bytes",
        ),
        ("[1, 2]".into(), DropReason::NotObject, ""),
    ];
    for (input, reason, detail) in cases {
        let mut out = Vec::new();
        d.decode(input.as_bytes(), &mut out);
        assert_eq!(out.len().max(1), out.len(), "at least one result");
        let err = out
            .iter()
            .find_map(|r| r.as_ref().err())
            .unwrap_or_else(|| panic!("no drop for {input:.60}"));
        assert_eq!(err.reason, reason, "{input:.80} → {err:?}");
        assert!(
            err.detail.contains(detail),
            "detail `{}` should mention `{detail}`",
            err.detail
        );
    }
    // A batch with one bad element keeps the good ones.
    let batch = format!("[{good}, 7, {good}]");
    let mut out = Vec::new();
    d.decode(batch.as_bytes(), &mut out);
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 2);
    assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1);
}

#[test]
fn xff_is_never_trusted_blindly() {
    let s = settings(&Config::default());
    let mut d = s.decoder("envoy").unwrap();
    let good = std::fs::read_to_string("tests/data/samples/envoy.jsonl").unwrap();
    let good = good.lines().next().unwrap();
    // A public peer is not a trusted proxy: its XFF claim is ignored.
    let spoof = good.replace(
        "\"x_forwarded_for\":\"198.51.100.23\"",
        "\"x_forwarded_for\":\"1.2.3.4\"",
    );
    let mut out = Vec::new();
    d.decode(spoof.as_bytes(), &mut out);
    assert_eq!(out[0].as_ref().unwrap().client_ip, ip("198.51.100.23"));
    let lb = good
        .replace(
            "\"x_forwarded_for\":\"198.51.100.23\"",
            "\"x_forwarded_for\":\"6.6.6.6, 203.0.113.9, 10.1.2.3\"",
        )
        .replace("198.51.100.23:51544", "10.0.0.2:443");
    // Issue 14, point 14: by default no proxy is trusted, not even a private
    // peer (a VPN user, a pod): its X-Forwarded-For cannot frame anyone, and
    // the decoder counts the event for the "nothing trusted" warning.
    let mut d = s.decoder("envoy").unwrap();
    let mut out = Vec::new();
    d.decode(lb.as_bytes(), &mut out);
    assert_eq!(out[0].as_ref().unwrap().client_ip, ip("10.0.0.2"));
    assert_eq!(d.xff_without_trusted_proxy(), 1);
    // Behind a load balancer listed in trusted_proxies, the right-most
    // untrusted hop wins, and nothing is counted.
    let cfg = config::load_str("[input]\ntrusted_proxies = [\"10.0.0.0/8\"]\n", "t.toml").unwrap();
    let s = settings(&cfg);
    let mut d = s.decoder("envoy").unwrap();
    let mut out = Vec::new();
    d.decode(lb.as_bytes(), &mut out);
    assert_eq!(out[0].as_ref().unwrap().client_ip, ip("203.0.113.9"));
    assert_eq!(d.xff_without_trusted_proxy(), 0);
}

#[test]
fn custom_format_with_pointers_fallbacks_and_transforms() {
    let toml = r#"
        [input]
        format = "mygw"
        trusted_proxies = ["10.0.0.0/8"]
        [formats.mygw]
        fields.timestamp = { from = ["/ts_ns", "/meta/ts"], transforms = ["epoch_ns"] }
        fields.peer_ip = { from = ["/peer"], transforms = ["host_port"] }
        fields.forwarded_for = { from = ["/hdr/xff"], transforms = ["dash_null"] }
        fields.authorization = { from = ["/hdr/auth"], transforms = ["strip_bearer"] }
        fields.subject = { from = ["/hdr/auth"], transforms = ["jwt_claim:sub"] }
        fields.path = { from = ["/req/path"] }
        fields.status = { from = ["/res/code"] }
    "#;
    let cfg = config::load_str(toml, "inline.toml").expect("valid");
    let s = settings(&cfg);
    let mut d = s.decoder("mygw").unwrap();
    let jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1LTEiLCJqdGkiOiJqLTEifQ.c2ln";
    let rec = format!(
        r#"{{"meta":{{"ts":1767225600123000000}},"peer":"10.0.0.9:5000","hdr":{{"xff":"203.0.113.5","auth":"Bearer {jwt}"}},"req":{{"path":"/v1/items/123"}},"res":{{"code":"404"}}}}"#
    );
    let mut out = Vec::new();
    d.decode(rec.as_bytes(), &mut out);
    let e = out[0].as_ref().expect("decodes");
    assert_eq!(e.ts, 1_767_225_600_123);
    assert_eq!(e.client_ip, ip("203.0.113.5"));
    assert_eq!(e.token.as_str(), "j-1");
    assert_eq!(e.subject.as_deref(), Some("u-1"));
    assert_eq!(e.status, 404);
    assert_eq!(e.route.as_ref(), "/v1/items/{id}");
}

/// Upstream-shaped records (tests/data/upstream, copied from
/// ../shared/samples/upstream with its PROVENANCE.md; tests/upstream.rs
/// covers every file).
fn decode_upstream(format: &str, file: &str, cfg: &Config) -> Vec<Result<AccessEvent, Drop>> {
    decode_in("upstream", format, file, cfg)
}

#[test]
fn kong_jwt_plugin_credentials_are_shared_identities_unless_declared_per_token() {
    // Kong's jwt plugin sets authenticated_entity to the consumer's
    // jwt_secret (oauth2: the client app): one id for many tokens.
    use tokenwatch::event::IdentityKind;
    let v = decode_upstream(
        "kong",
        "kong/assembled-jwt-plugin-batch.jsonl",
        &Config::default(),
    );
    assert!(!v.is_empty());
    for r in &v {
        let e = r.as_ref().expect("decoded");
        assert!(e.token.as_str().starts_with("c:"), "{}", e.token);
        assert_eq!(e.identity, IdentityKind::Credential);
        assert!(!e.rejected);
    }
    let mut cfg = Config::default();
    cfg.input.credential_kind = config::CredentialKind::PerToken;
    let v = decode_upstream("kong", "kong/assembled-jwt-plugin-batch.jsonl", &cfg);
    assert!(
        v.iter()
            .all(|r| r.as_ref().unwrap().identity == IdentityKind::Token)
    );
}

#[test]
fn tyk_keyless_zero_key_is_no_identity() {
    let v = decode_upstream("tyk", "tyk/assembled-kafka-pump.jsonl", &Config::default());
    let text =
        std::fs::read_to_string("tests/data/upstream/tyk/assembled-kafka-pump.jsonl").unwrap();
    for (line, r) in text.lines().zip(&v) {
        if line.contains(r#""api_key":"00000000""#) {
            let d = r
                .as_ref()
                .expect_err("keyless traffic is not one giant token");
            assert_eq!(d.reason, DropReason::NoToken);
        }
    }
    assert!(v.iter().any(|r| r.is_err()));
}

#[test]
fn a_request_the_gateway_rejected_is_marked_rejected() {
    let s = settings(&Config::default());
    let mut d = s.decoder("envoy").unwrap();
    let mut out = Vec::new();
    let rec = |status: u16, flags: &str| {
        format!(
            r#"{{"start_time":"2026-01-01T00:00:01.000Z","method":"GET","path":"/v1/r","response_code":{status},"response_flags":"{flags}","bytes_sent":10,"downstream_remote_address":"198.51.100.23:1","authorization":"Bearer opaque-1"}}"#
        )
    };
    for (status, flags) in [
        (200, "-"),
        (401, "-"),
        (407, "-"),
        (403, "UAEX"),
        (403, "-"),
    ] {
        d.decode(rec(status, flags).as_bytes(), &mut out);
    }
    let rejected: Vec<bool> = out.iter().map(|r| r.as_ref().unwrap().rejected).collect();
    assert_eq!(rejected, [false, true, true, true, false]);
}

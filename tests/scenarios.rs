//! Data-driven scenario tests: one directory per case under
//! tests/scenarios/, each with a `case.toml` describing tokens, request
//! steps and the expected findings. One harness runs them all, through the
//! whole pipeline (records in a gateway format → decode → enrich with the
//! synthetic GeoIP world → detect).
//!
//! Run one case: `CASE=impossible_travel cargo test --test scenarios`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use tokenwatch::config::{self, Config};
use tokenwatch::decode::DecodeSettings;
use tokenwatch::detect::Finding;
use tokenwatch::enrich::Enricher;
use tokenwatch::enrich::netclass::NetClassifier;
use tokenwatch::event::NetClass;
use tokenwatch::pipeline::{Pipeline, ReplayOptions};
use tokenwatch::source::LineSource;
use tokenwatch::synth::world::{CITIES, World};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    /// rules.toml text for this case (defaults otherwise).
    #[serde(default)]
    rules: Option<String>,
    #[serde(default)]
    tokens: Vec<TokenDef>,
    steps: Vec<Step>,
    #[serde(default)]
    expect: Vec<Expect>,
    /// Assert that nothing at all is found (benign look-alikes).
    #[serde(default)]
    expect_no_findings: bool,
    /// Requests the gateway rejected (401, 407, ext_authz) and that were
    /// therefore never learnt from.
    #[serde(default)]
    expect_rejected: Option<u64>,
    /// Exactly these tokens have a revocation the policy executes.
    #[serde(default)]
    expect_revoked: Option<Vec<String>>,
    #[serde(default)]
    expect_incidents: Option<u64>,
    /// The Envoy JSON key set the records are written with: `istio`
    /// (default) or `envoy_gateway` (Envoy Gateway's default: hyphenated
    /// header keys, `x-envoy-origin-path`, every value a string).
    #[serde(default)]
    shape: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenDef {
    name: String,
    subject: Option<String>,
    #[serde(default = "web_app")]
    client_id: String,
    /// Also carry an `azp` claim (RFC 9068 tokens of OIDC clients do).
    #[serde(default)]
    azp: Option<String>,
    /// JWT header `alg` (`none` for the unsigned forgeries anyone can send).
    #[serde(default = "rs256")]
    alg: String,
    /// The jti (default: the token's name).
    #[serde(default)]
    jti: Option<String>,
    /// Forge the jti as the displayed id of another token of the case.
    #[serde(default)]
    jti_of: Option<String>,
    /// An opaque token (its id is the keyed hash `h:…`).
    #[serde(default)]
    opaque: bool,
    /// Really signed (ES256, `tests/data/jwks/es256-test-key.pem`, the key
    /// of `tests/data/jwks/jwks.json`): verifies when a case configures
    /// `[identity] jwks = "file:tests/data/jwks/jwks.json"`.
    #[serde(default)]
    signed: bool,
}

fn rs256() -> String {
    "RS256".into()
}

/// The id tokenwatch shows for a token of the case.
fn id_of(tokens: &[TokenDef], name: &str) -> String {
    let t = tokens
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no token {name} in the case"));
    if t.opaque {
        return tokenwatch::decode::token::TokenHasher::new(b"k").id(&format!("opaque-{name}"));
    }
    let jti = match &t.jti_of {
        Some(other) => id_of(tokens, other),
        None => t.jti.clone().unwrap_or_else(|| t.name.clone()),
    };
    tokenwatch::decode::token::jti_id(&jti)
}

fn web_app() -> String {
    "web-app".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Step {
    /// Time of day on 2026-01-05 (UTC), `HH:MM:SS`.
    at: String,
    token: String,
    place: String,
    #[serde(default = "residential")]
    net: String,
    /// Address index inside the block; `{i}` repeats vary it when `hop` is set.
    #[serde(default)]
    host: u32,
    /// Use a different address on every repeat (mobile hopping, pods).
    #[serde(default)]
    hop: bool,
    #[serde(default)]
    ipv6: bool,
    #[serde(default = "chrome")]
    ua: String,
    #[serde(default)]
    ja4: Option<String>,
    /// Random JA3 on every request (Chrome's extension-order randomisation).
    #[serde(default)]
    ja3_churn: bool,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default = "records")]
    path: String,
    #[serde(default = "ok")]
    status: u16,
    /// Alternate statuses, cycled over repeats (e.g. [404, 403, 200]).
    #[serde(default)]
    statuses: Vec<u16>,
    #[serde(default = "kb")]
    bytes: u64,
    #[serde(default = "one")]
    repeat: u32,
    #[serde(default = "ten")]
    every_secs: f64,
}

fn residential() -> String {
    "residential".into()
}
fn chrome() -> String {
    "chrome".into()
}
fn records() -> String {
    "/v1/records?page={i}".into()
}
fn ok() -> u16 {
    200
}
fn kb() -> u64 {
    20_000
}
fn one() -> u32 {
    1
}
fn ten() -> f64 {
    10.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    kind: String,
    token: String,
    /// Exact number of findings of this kind on this token (default: at least one).
    count: Option<usize>,
    severity: Option<String>,
    summary_contains: Option<String>,
    /// The first such finding is triggered at or after this time of day…
    not_before: Option<String>,
    /// …and at or before this one (detection delay).
    not_after: Option<String>,
    /// Every such finding is at most this severity (ambiguous cases: low).
    max_severity: Option<String>,
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "low" => 0,
        "medium" => 1,
        "high" => 2,
        "critical" => 3,
        other => panic!("unknown severity {other}"),
    }
}

fn ua(short: &str) -> String {
    match short {
        "chrome" | "chrome131" => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.85 Safari/537.36".into(),
        "chrome131b" => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.108 Safari/537.36".into(),
        "chrome132" => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0.6834.57 Safari/537.36".into(),
        "firefox" => "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0".into(),
        "iphone" => "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1".into(),
        "android_app" => "okhttp/4.12.0".into(),
        "android_own" => "Ledger/3.1.0 (Android 14; Pixel 8)".into(),
        "android_webview" => "Mozilla/5.0 (Linux; Android 14; Pixel 8; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.85 Mobile Safari/537.36".into(),
        "ios_app" => "Ledger/5.12 (com.example.ledger; build:512; iOS 17.2.0) Alamofire/5.8.0".into(),
        "ios_cfnetwork" => "Ledger/51200 CFNetwork/1410.0.3 Darwin/22.6.0".into(),
        "ipad_safari" => "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1".into(),
        "mac_safari" => "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15".into(),
        "curl" => "curl/8.5.0".into(),
        "python" => "python-requests/2.32.3".into(),
        "go" => "Go-http-client/2.0".into(),
        other => other.into(),
    }
}

fn tod(at: &str) -> i64 {
    let parts: Vec<i64> = at
        .split(':')
        .map(|p| p.parse().expect("HH:MM:SS"))
        .collect();
    1_767_571_200_000 + ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000
}

fn ip_for(world: &World, s: &Step, i: u32) -> String {
    let city = CITIES
        .iter()
        .position(|c| c.0 == s.place)
        .unwrap_or_else(|| panic!("unknown place {}", s.place));
    // `carrier_pool` and `relay` are geolocated only to the place's
    // country (no city, the country's centroid, radius 1000 km).
    let (class, country_only) = match s.net.as_str() {
        "residential" => (NetClass::Residential, false),
        "mobile" => (NetClass::Mobile, false),
        "hosting" => (NetClass::Hosting, false),
        "vpn" => (NetClass::Vpn, false),
        "carrier_pool" => (NetClass::Mobile, true),
        "relay" => (NetClass::Vpn, true),
        other => panic!("unknown net {other}"),
    };
    let country = CITIES[city].1;
    let block = world
        .blocks
        .iter()
        .position(|b| {
            world.isps[b.isp].class == class
                && b.country_only == country_only
                && if country_only {
                    CITIES[b.city].1 == country
                } else {
                    b.city == city
                }
        })
        .unwrap_or_else(|| panic!("no {} block in {}", s.net, s.place));
    let host = if s.hop { s.host + i * 7 } else { s.host };
    if s.ipv6 {
        world
            .addr_v6(
                block,
                0x1000 + u64::from(host) * 0x9e37 + u64::from(i) * 0x7f4a_7c15,
            )
            .unwrap()
            .to_string()
    } else {
        world.addr(block, host).to_string()
    }
}

fn jwt(tokens: &[TokenDef], t: &TokenDef) -> String {
    if t.opaque {
        return format!("Bearer opaque-{}", t.name);
    }
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jti = match &t.jti_of {
        Some(other) => id_of(tokens, other),
        None => t.jti.clone().unwrap_or_else(|| t.name.clone()),
    };
    let mut claims = json!({"jti": jti, "client_id": t.client_id, "exp": 1_767_700_000});
    if let Some(s) = &t.subject {
        claims["sub"] = json!(s);
    }
    if let Some(a) = &t.azp {
        claims["azp"] = json!(a);
    }
    if t.signed {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("test-es256".into());
        let key = jsonwebtoken::EncodingKey::from_ec_pem(
            &std::fs::read("tests/data/jwks/es256-test-key.pem").unwrap(),
        )
        .unwrap();
        return format!(
            "Bearer {}",
            jsonwebtoken::encode(&h, &claims, &key).unwrap()
        );
    }
    let sig = if t.alg == "none" { "" } else { "c2ln" };
    format!(
        "Bearer {}.{}.{sig}",
        e.encode(json!({"alg": t.alg}).to_string()),
        e.encode(claims.to_string())
    )
}

fn records_of(case: &Case, world: &World) -> Vec<u8> {
    let tokens: BTreeMap<&str, &TokenDef> =
        case.tokens.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut recs: Vec<(i64, String)> = Vec::new();
    for s in &case.steps {
        let t = tokens
            .get(s.token.as_str())
            .unwrap_or_else(|| panic!("step uses undefined token {}", s.token));
        let t0 = tod(&s.at);
        for i in 0..s.repeat {
            let ts = t0 + (f64::from(i) * s.every_secs * 1000.0) as i64;
            let status = if s.statuses.is_empty() {
                s.status
            } else {
                s.statuses[i as usize % s.statuses.len()]
            };
            let ja3 = if s.ja3_churn {
                format!("{:032x}", (ts as u128) * 2_654_435_761)
            } else {
                "-".into()
            };
            let mut rec = json!({
                "start_time": tokenwatch::event::fmt_time(ts),
                "method": "GET",
                "path": s.path.replace("{i}", &(i + 1).to_string()),
                "response_code": status,
                "bytes_sent": s.bytes,
                "downstream_remote_address": ip_for(world, s, i),
                "user_agent": ua(&s.ua),
                "authorization": jwt(&case.tokens, t),
                "ja3": ja3,
                "ja4": s.ja4.clone().unwrap_or_else(|| "-".into()),
                "accept_language": s.lang.clone().unwrap_or_else(|| "-".into()),
            });
            if case.shape.as_deref() == Some("envoy_gateway") {
                rec = envoy_gateway_shape(rec);
            }
            recs.push((ts, rec.to_string()));
        }
    }
    recs.sort_by_key(|r| r.0);
    let mut out = Vec::new();
    for (_, r) in recs {
        out.extend_from_slice(r.as_bytes());
        out.push(b'\n');
    }
    out
}

/// An Istio-keyed record in Envoy Gateway's default key set.
fn envoy_gateway_shape(rec: Value) -> Value {
    let Value::Object(o) = rec else { return rec };
    let out: serde_json::Map<String, Value> = o
        .into_iter()
        .map(|(k, v)| {
            let k = match k.as_str() {
                "path" => "x-envoy-origin-path".to_string(),
                "user_agent" => "user-agent".to_string(),
                "accept_language" => "accept-language".to_string(),
                _ => k,
            };
            let v = match v {
                Value::Number(n) => Value::String(n.to_string()),
                v => v,
            };
            (k, v)
        })
        .collect();
    Value::Object(out)
}

fn run_case(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("case.toml")).map_err(|e| e.to_string())?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("case.toml: {e}"))?;
    let cfg: Config = match &case.rules {
        Some(r) => config::load_str(r, "case rules").map_err(|e| format!("{e:?}"))?,
        None => Config::default(),
    };
    let world = World::new();
    let (city, asn) = world.mmdb().map_err(|e| e.to_string())?;
    let enricher = Arc::new(Enricher::new(
        Some(maxminddb::Reader::from_source(city).unwrap()),
        Some(maxminddb::Reader::from_source(asn).unwrap()),
        NetClassifier::new(&cfg.network_classes),
        0,
    ));
    let mut settings = DecodeSettings::new(&cfg, b"k").unwrap();
    if let Some(v) = tokenwatch::jwks::load(&cfg.identity, Path::new(".")).unwrap() {
        settings = settings.with_verifier(v);
    }
    let mut p = Pipeline::new(&cfg, settings, enricher);
    p.actions = Some(Vec::new());
    let mut found: Vec<Finding> = Vec::new();
    let opts = ReplayOptions {
        format: "envoy".into(),
        ..Default::default()
    };
    let summary = p
        .run(
            vec![LineSource::from_bytes("case", records_of(&case, &world))],
            &opts,
            &mut |f| found.push(f.clone()),
        )
        .map_err(|e| e.to_string())?;
    if summary.total_dropped() > 0 {
        return Err(format!("records dropped: {:?}", summary.drop_examples));
    }
    let listing = || {
        found
            .iter()
            .map(|f| {
                format!(
                    "  {} {} {} @{}: {}",
                    f.kind.as_str(),
                    f.token_id,
                    f.severity.as_str(),
                    f.event_time,
                    f.summary
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Some(n) = case.expect_rejected
        && summary.rejected != n
    {
        return Err(format!(
            "{}\nexpected {n} rejected requests, counted {}",
            case.description, summary.rejected
        ));
    }
    if let Some(n) = case.expect_incidents
        && summary.response.incidents != n
    {
        return Err(format!(
            "{}\nexpected {n} incidents, got {}:\n{}",
            case.description,
            summary.response.incidents,
            listing()
        ));
    }
    if let Some(want) = &case.expect_revoked {
        use tokenwatch::config::ActionKind;
        use tokenwatch::decide::ActionState;
        let mut got: Vec<String> = p
            .actions
            .iter()
            .flatten()
            .filter(|a| a.kind == ActionKind::Revoke && a.state == ActionState::Execute)
            .map(|a| a.token_id.clone())
            .collect();
        got.sort();
        let mut want: Vec<String> = want.iter().map(|n| id_of(&case.tokens, n)).collect();
        want.sort();
        if got != want {
            return Err(format!(
                "{}\nexpected revocations of {want:?}, the policy executed {got:?}:\n{}",
                case.description,
                listing()
            ));
        }
    }
    if case.expect_no_findings && !found.is_empty() {
        return Err(format!(
            "{}\nexpected no findings, got:\n{}",
            case.description,
            listing()
        ));
    }
    for ex in &case.expect {
        let hits: Vec<&Finding> = found
            .iter()
            .filter(|f| {
                f.kind.as_str() == ex.kind && f.token_id.as_str() == id_of(&case.tokens, &ex.token)
            })
            .collect();
        let ok_count = match ex.count {
            Some(n) => hits.len() == n,
            None => !hits.is_empty(),
        };
        if !ok_count {
            return Err(format!(
                "{}\nexpected {:?} × {} on {}, got {}:\n{}",
                case.description,
                ex.count,
                ex.kind,
                ex.token,
                hits.len(),
                listing()
            ));
        }
        if let Some(first) = hits.first() {
            let fail = |what: String| {
                Err(format!(
                    "{}: {} {what}\n{}",
                    case.description,
                    ex.kind,
                    listing()
                ))
            };
            if let Some(sev) = &ex.severity
                && !hits.iter().any(|h| h.severity.as_str() == sev)
            {
                return fail(format!("has no finding with severity {sev}"));
            }
            if let Some(s) = &ex.summary_contains
                && !hits.iter().any(|h| h.summary.contains(s.as_str()))
            {
                return fail(format!("has no summary containing `{s}`"));
            }
            if let Some(nb) = &ex.not_before
                && first.event_ts < tod(nb)
            {
                return fail(format!("fired before {nb}"));
            }
            if let Some(na) = &ex.not_after
                && first.event_ts > tod(na)
            {
                return fail(format!("fired only after {na}"));
            }
            if let Some(max) = &ex.max_severity
                && hits
                    .iter()
                    .any(|h| severity_rank(h.severity.as_str()) > severity_rank(max))
            {
                return fail(format!("has a finding above severity {max}"));
            }
        }
    }
    // Nothing unexpected: every finding must be covered by an expectation.
    for f in &found {
        if !case.expect.iter().any(|e| {
            e.kind == f.kind.as_str() && id_of(&case.tokens, &e.token) == f.token_id.as_str()
        }) {
            return Err(format!(
                "{}\nunexpected finding:\n{}",
                case.description,
                listing()
            ));
        }
    }
    Ok(())
}

#[test]
fn scenarios() {
    let only = std::env::var("CASE").ok();
    let mut dirs: Vec<_> = std::fs::read_dir("tests/scenarios")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").exists())
        .filter(|p| {
            only.as_deref()
                .is_none_or(|o| p.file_name().unwrap().to_string_lossy() == o)
        })
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no scenario cases found");
    let mut failures = Vec::new();
    for d in &dirs {
        if let Err(e) = run_case(d) {
            failures.push(format!("── {} ──\n{e}", d.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
    eprintln!("{} scenarios passed", dirs.len());
}

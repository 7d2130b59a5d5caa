//! What the fuzz targets drive: one function per entry point of the pure
//! core that reads the outside world (a gateway's record in each format,
//! a config file, a gateway's check request). Each target is a one-line
//! call into here, so every format is fuzzed through the same code.
//!
//! Run one: `cargo +nightly fuzz run decode_envoy -- -max_total_time=60`;
//! all, seeded from `tests/data/` and `../shared/samples/`: `scripts/fuzz`.

use std::sync::OnceLock;

use tokenwatch::config::Config;
use tokenwatch::decode::{DecodeSettings, token};
use tokenwatch::detect::Engine;

fn settings() -> &'static DecodeSettings {
    static S: OnceLock<DecodeSettings> = OnceLock::new();
    S.get_or_init(|| DecodeSettings::new(&Config::default(), b"fuzz").unwrap())
}

/// Any bytes as a record of `format` through decode (envelopes included),
/// twice (the second pass meets the decoder's per-token memory), and
/// through the dead-letter scrubber; any text through the token helpers.
pub fn decode(format: &str, data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let raw = token::strip_bearer(text);
        let _ = token::is_absent(raw);
        let _ = token::jwt_claims(raw);
        let _ = token::jti_id(raw);
        let _ = settings().token_ids(text);
    }
    let _ = tokenwatch::decode::scrub::scrub(data);
    let mut d = settings().decoder(format).unwrap();
    let mut out = Vec::new();
    d.decode(data, &mut out);
    d.decode(data, &mut out);
}

/// Any bytes as records (`auto`) through the whole pure path: decode,
/// enrich, the engine, and `explain`.
pub fn pipeline(data: &[u8]) {
    // Built once: configuration and enricher do not depend on the input
    // (the enricher's caches never change a result).
    static WORLD: OnceLock<(Config, tokenwatch::enrich::Enricher)> = OnceLock::new();
    let (cfg, enricher) = WORLD.get_or_init(|| {
        let cfg = Config::default();
        let enricher = tokenwatch::enrich::Enricher::new(
            None,
            None,
            tokenwatch::enrich::netclass::NetClassifier::new(&cfg.network_classes),
            0,
        );
        (cfg, enricher)
    });
    let mut engine = Engine::new(cfg);
    let mut findings = Vec::new();
    let mut d = settings().decoder("auto").unwrap();
    let mut out = Vec::new();
    for _ in 0..2 {
        d.decode(data, &mut out);
        for ev in out.drain(..).flatten() {
            engine.push(enricher.enrich(ev), &mut findings);
        }
    }
    engine.flush(&mut findings);
    let mut ex = tokenwatch::explain::Explainer::new(settings(), "auto").unwrap();
    let _ = ex.record("fuzz:1", data);
    let _ = ex.summary();
}

/// Any text as a config file: parse, validate, and build what `run` builds
/// from a valid one (decode settings, every decoder, the engine).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = tokenwatch::config::load_str(text, "fuzz.toml") else {
        return;
    };
    let _ = tokenwatch::config::secrets::inline_errors(&cfg, "fuzz.toml", text);
    let _ = tokenwatch::config::secrets::redacted_response(&cfg);
    if let Ok(s) = DecodeSettings::new(&cfg, b"fuzz") {
        for f in std::iter::once("auto").chain(tokenwatch::config::Preset::NAMES.iter().copied()) {
            let _ = s.decoder(f);
        }
    }
    let _ = Engine::new(&cfg);
}

/// Any bytes as a gateway's check request: the first line is a token place
/// (`header:x`, `query:x`, `cookie:x`), the second the URI, the rest
/// `name: value` headers. Every presented id is denied, so the whole
/// verdict path runs.
pub fn deny_check(data: &[u8]) {
    use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
    let mut lines = data.split(|&b| b == b'\n');
    let place = lines.next().and_then(|l| std::str::from_utf8(l).ok());
    let mut places = vec![
        tokenwatch::config::TokenPlace::Header("authorization".into()),
        tokenwatch::config::TokenPlace::Query("access_token".into()),
        tokenwatch::config::TokenPlace::Cookie("session".into()),
    ];
    if let Some(p) = place.and_then(|p| tokenwatch::config::TokenPlace::parse(p).ok()) {
        places.push(p);
    }
    let uri = lines
        .next()
        .and_then(|l| Uri::try_from(l).ok())
        .unwrap_or_else(|| Uri::from_static("/v1/check"));
    let mut headers = HeaderMap::new();
    for l in lines {
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            continue;
        };
        let (n, v) = l.split_at(colon);
        let v = v.get(1..).unwrap_or_default();
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
            headers.append(n, v);
        }
    }
    let check = tokenwatch::ops::Check {
        deny: std::sync::Arc::new(tokenwatch::act::DenyList::default()),
        settings: settings().clone(),
        places,
    };
    // Deny whatever the first pass presents, then ask again.
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        for id in settings().token_ids(auth) {
            check.deny.insert(&id, i64::MAX);
        }
    }
    let _ = check.denied(&uri, &headers, 0);
}

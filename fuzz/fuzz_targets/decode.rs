//! The pure core is total: any bytes, in every format, through decode,
//! envelopes, `explain` and the engine, and any text through the token helpers, never panic.
//!
//! cargo +nightly fuzz run decode -- -max_total_time=60
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokenwatch::config::Config;
use tokenwatch::decode::{DecodeSettings, token};
use tokenwatch::detect::Engine;

fn settings() -> &'static DecodeSettings {
    static S: OnceLock<DecodeSettings> = OnceLock::new();
    S.get_or_init(|| DecodeSettings::new(&Config::default(), b"fuzz").unwrap())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let raw = token::strip_bearer(text);
        let _ = token::is_absent(raw);
        let _ = token::jwt_claims(raw);
        let _ = token::jti_id(raw);
    }
    let cfg = Config::default();
    let enricher = tokenwatch::enrich::Enricher::new(
        None,
        None,
        tokenwatch::enrich::netclass::NetClassifier::new(&cfg.network_classes),
        0,
    );
    let mut engine = Engine::new(&cfg);
    let mut findings = Vec::new();
    for f in std::iter::once("auto").chain(tokenwatch::config::PRESETS) {
        let mut d = settings().decoder(f).unwrap();
        let mut out = Vec::new();
        d.decode(data, &mut out);
        for ev in out.into_iter().flatten() {
            engine.push(enricher.enrich(ev), &mut findings);
        }
    }
    engine.flush(&mut findings);
    // `explain` reads the same records again through the explaining decoder.
    let mut ex = tokenwatch::explain::Explainer::new(settings(), "auto").unwrap();
    let _ = ex.record("fuzz:1", data);
    let _ = ex.summary();
});

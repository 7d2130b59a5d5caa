//! Accuracy on a generated, labeled dataset in every supported format:
//! recall ≥ 0.95 on every attack kind and ≤ 2 false-positive tokens per
//! 1,000 benign tokens. The README shows the same table for the demo.

use std::sync::Arc;

use tokenwatch::config::{self, Config};
use tokenwatch::decode::DecodeSettings;
use tokenwatch::detect::FindingKind;
use tokenwatch::eval::{self, ScoredFinding};
use tokenwatch::pipeline::{Pipeline, ReplayOptions};
use tokenwatch::source::LineSource;
use tokenwatch::synth::{self, Scenario, world};

#[test]
fn recall_and_false_positives_on_a_labeled_dataset() {
    let sc = Scenario {
        seed: 424242,
        users: 2400,
        hours: 8,
        services: 9,
        formats: config::PRESETS.iter().map(|s| s.to_string()).collect(),
        attacks: FindingKind::ALL.iter().map(|k| (*k, 20)).collect(),
        ..Scenario::default()
    };
    let ds = synth::generate(&sc, "accuracy", b"accuracy-key").expect("dataset");
    let mut cfg: Config = config::load(std::path::Path::new("rules.toml")).expect("rules.toml");
    // The world's NGINX is behind a load balancer: trusted, as its operator would.
    cfg.input.trusted_proxies = world::load_balancers();
    // The generated Kong gateway authenticates with key-auth, one key per
    // token, so its credentials are declared per-token (README: Kong). With
    // the default (`shared`), replay and travel do not run on credentials:
    // see `a_shared_credential_is_never_a_replayed_token` in src/detect.
    cfg.input.credential_kind = config::CredentialKind::PerToken;
    let enricher = Arc::new(world::enricher(&cfg));
    let mut p = Pipeline::new(
        &cfg,
        DecodeSettings::new(&cfg, b"accuracy-key").unwrap(),
        enricher,
    );
    let sources = ds
        .files
        .iter()
        .map(|(f, d)| LineSource::from_bytes(f, d.clone()))
        .collect();
    let mut scored = Vec::new();
    let opts = ReplayOptions {
        format: "auto".into(),
        ..Default::default()
    };
    let summary = p
        .run(sources, &opts, &mut |f| scored.push(ScoredFinding::from(f)))
        .unwrap();
    assert_eq!(summary.total_dropped(), 0, "{:?}", summary.drop_examples);
    assert_eq!(
        summary.formats.len(),
        7,
        "every format was used: {:?}",
        summary.formats
    );
    let report = eval::score(&ds.labels, &scored);
    eprintln!("{}", report.render());
    for (kind, s) in &report.per_kind {
        assert_eq!(s.attacks, 20);
        assert!(
            s.recall_exact >= 0.95,
            "{}: recall {:.2} < 0.95\n{}",
            kind.as_str(),
            s.recall_exact,
            report.render()
        );
    }
    assert_eq!(report.per_kind.len(), 5);
    assert!(
        report.benign_tokens > 5000,
        "thousands of benign tokens: {}",
        report.benign_tokens
    );
    assert!(
        report.false_positives_per_1000 <= 2.0,
        "{:.2} false-positive tokens per 1,000\n{}",
        report.false_positives_per_1000,
        report.render()
    );
}

/// The generated tokens carry `client_id` and `azp` together (as RFC 9068
/// tokens of OIDC clients do): every finding names the token's jti and its
/// subject, never a keyed-hash fallback.
#[test]
fn tokens_with_client_id_and_azp_are_reported_by_jti_and_subject() {
    let sc = Scenario {
        seed: 7,
        users: 300,
        hours: 3,
        services: 2,
        formats: vec!["envoy".into(), "nginx".into()],
        attacks: FindingKind::ALL.iter().map(|k| (*k, 2)).collect(),
        ..Scenario::default()
    };
    let ds = synth::generate(&sc, "azp", b"azp-key").expect("dataset");
    let cfg = Config::default();
    let mut p = Pipeline::new(
        &cfg,
        DecodeSettings::new(&cfg, b"azp-key").unwrap(),
        Arc::new(world::enricher(&cfg)),
    );
    let sources = ds
        .files
        .iter()
        .map(|(f, d)| LineSource::from_bytes(f, d.clone()))
        .collect();
    let mut found = Vec::new();
    let opts = ReplayOptions {
        format: "auto".into(),
        ..Default::default()
    };
    p.run(sources, &opts, &mut |f| found.push(f.clone()))
        .unwrap();
    let attacked: std::collections::BTreeMap<&str, &Option<String>> = ds
        .labels
        .attacks
        .iter()
        .map(|l| (l.token_id.as_str(), &l.subject))
        .collect();
    assert!(!found.is_empty());
    for f in &found {
        assert!(
            !f.token_id.as_str().starts_with("h:"),
            "identity lost: {}",
            f.token_id
        );
    }
    let mut on_attacks = 0;
    for f in &found {
        if let Some(subject) = attacked.get(f.token_id.as_str()) {
            on_attacks += 1;
            assert_eq!(f.subject.as_deref(), subject.as_deref(), "{}", f.token_id);
        }
    }
    assert!(
        on_attacks >= 10,
        "findings on the attacked jtis: {on_attacks}"
    );
}

//! Property tests: decoders never panic on arbitrary input, and findings do
//! not depend on arrival order within the lateness bound, on replaying
//! twice, or on how the input is split into files.

use std::sync::Arc;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use tokenwatch::config::Config;
use tokenwatch::decode::DecodeSettings;
use tokenwatch::pipeline::{Pipeline, ReplayOptions};
use tokenwatch::source::LineSource;
use tokenwatch::synth::{self, Scenario, world};

fn decode_all(bytes: &[u8]) {
    let s = DecodeSettings::new(&Config::default(), b"k").unwrap();
    for f in std::iter::once("auto").chain(tokenwatch::config::Preset::NAMES.iter().copied()) {
        let mut d = s.decoder(f).unwrap();
        let mut out = Vec::new();
        d.decode(bytes, &mut out);
    }
}

fn sample_lines() -> Vec<String> {
    std::fs::read_dir("tests/data/samples")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_mutated_samples(idx in 0usize..16, cuts in proptest::collection::vec((0usize..4000, any::<u8>()), 1..8)) {
        let lines = sample_lines();
        let mut b = lines[idx % lines.len()].clone().into_bytes();
        for (pos, byte) in cuts {
            if b.is_empty() { break; }
            let p = pos % b.len();
            match byte % 3 {
                0 => { b[p] = byte; }
                1 => { b.truncate(p); }
                _ => { b.insert(p, b"\"{}[]:,-0e\\"[usize::from(byte) % 11]); }
            }
        }
        decode_all(&b);
    }

    #[test]
    fn decoders_never_panic_on_wrong_json_types(v in any::<i64>(), s in "\\PC{0,40}", flag in any::<bool>()) {
        for line in sample_lines() {
            let mut obj: serde_json::Value = match serde_json::from_str(&line) { Ok(o) => o, Err(_) => continue };
            if let Some(m) = obj.as_object_mut() {
                let keys: Vec<String> = m.keys().cloned().collect();
                for (i, k) in keys.iter().enumerate() {
                    m.insert(k.clone(), match (i as i64 + v) % 4 {
                        0 => serde_json::json!(v),
                        1 => serde_json::json!(s),
                        2 => serde_json::json!(flag),
                        _ => serde_json::json!({"nested": [v, s]}),
                    });
                }
            }
            decode_all(obj.to_string().as_bytes());
        }
    }
}

/// Every leaf of a JSON value, as the path of keys and indexes to it.
fn leaves(v: &serde_json::Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                at.push(k.clone());
                leaves(x, at, out);
                at.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(i.to_string());
                leaves(x, at, out);
                at.pop();
            }
        }
        _ => out.push(at.clone()),
    }
}

fn leaf_mut<'a>(
    v: &'a mut serde_json::Value,
    path: &[String],
) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(v, |cur, k| match cur {
        serde_json::Value::Object(m) => m.get_mut(k),
        serde_json::Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// Values that have broken parsers before: multi-byte text where a prefix
/// is sliced (`Bearerй…`), JWT-shaped text with odd payloads, numbers of
/// every shape, containers where a scalar belongs.
fn hostile_value() -> impl Strategy<Value = serde_json::Value> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let payloads: Vec<String> = [
        r#"{"jti":1,"sub":[],"client_id":{},"azp":"a","cid":"b","exp":"x"}"#,
        r#"{"sub":"é","exp":1e308,"nbf":-1,"aud":[1,null]}"#,
        "[1,2,3]",
        "\"just a string\"",
        "not json",
    ]
    .iter()
    .map(|p| b64(p))
    .collect();
    let none = b64(r#"{"alg":"none"}"#);
    prop_oneof![
        "\\PC{0,30}".prop_map(serde_json::Value::from),
        "(Bearer|bearer|BEARER)[йж日€ ]{0,3}\\PC{0,12}".prop_map(serde_json::Value::from),
        (0usize..5, "\\PC{0,6}").prop_map(move |(i, sig)| {
            serde_json::Value::from(format!("Bearer {none}.{}.{sig}", payloads[i]))
        }),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)),
        Just(serde_json::json!(null)),
        Just(serde_json::json!(true)),
        Just(serde_json::json!([])),
        Just(serde_json::json!(["a", "b"])),
        Just(serde_json::json!({"k": {"k": [1]}})),
        Just(serde_json::json!("-")),
        Just(serde_json::json!("")),
        Just(serde_json::json!("1e400")),
        Just(serde_json::json!("2026-13-45T25:61:61Z")),
        Just(serde_json::json!("[::1]:")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// One field at a time: every other field stays valid, so the record
    /// gets as far as the mutated field's own parser (the authorization
    /// header's included) instead of being dropped before it is read.
    #[test]
    fn decoders_never_panic_when_one_field_changes(line in 0usize..64, leaf in 0usize..256, v in hostile_value()) {
        let lines = sample_lines();
        let text = &lines[line % lines.len()];
        let mut obj: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut paths = Vec::new();
        leaves(&obj, &mut Vec::new(), &mut paths);
        prop_assume!(!paths.is_empty());
        let path = &paths[leaf % paths.len()];
        if let Some(slot) = leaf_mut(&mut obj, path) {
            *slot = v;
        }
        decode_all(obj.to_string().as_bytes());
    }
}

#[test]
fn one_field_mutations_reach_the_authorization_parser() {
    // The authorization field mutated alone leaves a decodable record
    // around it: the rest of the record is read, then the header.
    let s = DecodeSettings::new(&Config::default(), b"k").unwrap();
    let mut reached = 0;
    for line in sample_lines() {
        let mut obj: serde_json::Value = serde_json::from_str(&line).unwrap();
        let mut paths = Vec::new();
        leaves(&obj, &mut Vec::new(), &mut paths);
        let Some(path) = paths.iter().find(|p| {
            p.last()
                .is_some_and(|k| k.to_ascii_lowercase().contains("authorization"))
        }) else {
            continue;
        };
        if let Some(slot) = leaf_mut(&mut obj, path) {
            *slot = serde_json::json!("Bearerйтокен");
        }
        let mut d = s.decoder("auto").unwrap();
        let mut out = Vec::new();
        d.decode(obj.to_string().as_bytes(), &mut out);
        // Decoded (as an opaque token) or dropped only for want of identity.
        assert!(
            out.iter().all(|r| match r {
                Ok(_) => true,
                Err(e) => e.reason.as_str() == "no_token",
            }),
            "{line}: {out:?}"
        );
        reached += 1;
    }
    assert!(
        reached >= 4,
        "samples with an authorization field: {reached}"
    );
}

fn small_dataset() -> Vec<u8> {
    let sc = Scenario {
        seed: 11,
        users: 250,
        hours: 3,
        services: 2,
        formats: vec!["envoy".into()],
        attacks: tokenwatch::detect::FindingKind::ALL
            .iter()
            .map(|k| (*k, 2))
            .collect(),
        ..Scenario::default()
    };
    synth::generate(&sc, "props", b"k")
        .unwrap()
        .files
        .remove("envoy")
        .unwrap()
}

fn findings(inputs: Vec<Vec<u8>>) -> Vec<String> {
    findings_with(&Config::default(), inputs)
}

fn findings_with(cfg: &Config, inputs: Vec<Vec<u8>>) -> Vec<String> {
    let cfg = cfg.clone();
    let enricher = Arc::new(world::enricher(&cfg));
    let mut p = Pipeline::new(&cfg, DecodeSettings::new(&cfg, b"k").unwrap(), enricher);
    let sources = inputs
        .into_iter()
        .enumerate()
        .map(|(i, d)| LineSource::from_bytes(&format!("in{i}"), d))
        .collect();
    let mut ids = Vec::new();
    let opts = ReplayOptions {
        format: "envoy".into(),
        ..Default::default()
    };
    let summary = p
        .run(sources, &opts, &mut |f| {
            ids.push(format!("{} {} {}", f.id, f.kind.as_str(), f.token_id))
        })
        .unwrap();
    assert_eq!(
        summary.dropped.get("late"),
        None,
        "nothing may be late within the bound"
    );
    ids.sort();
    ids
}

fn ts_of(line: &[u8]) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
    tokenwatch::decode::parse_rfc3339(v["start_time"].as_str().unwrap()).unwrap()
}

/// The lines of `lines` in an arrival order that lags event time by up
/// to `max_lag_ms`.
fn disordered(lines: &[&[u8]], max_lag_ms: i64, seed: u64) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut keyed: Vec<(i64, &[u8])> = lines
        .iter()
        .map(|l| (ts_of(l) + rng.gen_range(0..max_lag_ms.max(1)), *l))
        .collect();
    keyed.sort_by_key(|k| k.0);
    keyed
        .iter()
        .flat_map(|(_, l)| l.iter().copied().chain(std::iter::once(b'\n')))
        .collect()
}

#[test]
fn findings_are_identical_under_reordering_within_the_hold_and_splitting() {
    let data = small_dataset();
    let base = findings(vec![data.clone()]);
    assert!(base.len() >= 8, "the dataset has attacks to find: {base:?}");
    assert_eq!(
        base,
        findings(vec![data.clone()]),
        "replaying twice gives the same findings"
    );

    let lines: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let engine = Config::default().engine;
    for seed in 0..3u64 {
        // Arrival order: event time plus up to 90 % of the reorder hold.
        let shuffled = disordered(&lines, engine.reorder_ms as i64 * 9 / 10, seed);
        assert_eq!(base, findings(vec![shuffled]), "shuffle seed {seed}");
    }
    // Disorder beyond the hold (within the lateness) is processed, not
    // dropped: nothing is late, and the attacks are still found.
    let far = findings(vec![disordered(&lines, 5_000, 7)]);
    let kinds = |f: &[String]| {
        let mut k: Vec<String> = f
            .iter()
            .filter_map(|l| l.split(' ').nth(1).map(str::to_string))
            .collect();
        k.sort();
        k.dedup();
        k
    };
    assert_eq!(kinds(&far), kinds(&base), "5 s of disorder: {far:?}");

    // With the hold set to the lateness (the order-independent setting, for
    // inputs interleaved differently on each read), any disorder within the
    // lateness gives identical findings.
    let mut strict = Config::default();
    strict.engine.reorder_ms = strict.engine.lateness_secs * 1000;
    let strict_base = findings_with(&strict, vec![data.clone()]);
    let lateness_ms = strict.engine.lateness_secs as i64 * 1000;
    for seed in 0..2u64 {
        let shuffled = disordered(&lines, lateness_ms * 9 / 10, seed);
        assert_eq!(
            strict_base,
            findings_with(&strict, vec![shuffled]),
            "strict hold, shuffle seed {seed}"
        );
    }
    // The same events split over two files (alternating lines) are merged by event time.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, l) in lines.iter().enumerate() {
        let t = if i % 2 == 0 { &mut a } else { &mut b };
        t.extend_from_slice(l);
        t.push(b'\n');
    }
    assert_eq!(base, findings(vec![a, b]), "split over two inputs");
}

/// A checkpoint taken anywhere in the stream, restored into a fresh engine
/// that reads the input again from the checkpoint's resume position (the
/// oldest event still in the reorder buffer), gives exactly the findings of
/// an uninterrupted run: none lost, none reported twice, nothing re-learned.
#[test]
fn a_restored_checkpoint_continues_exactly_where_it_stopped() {
    use tokenwatch::detect::Engine;
    let cfg = Config::default();
    let enricher = world::enricher(&cfg);
    let settings = DecodeSettings::new(&cfg, b"k").unwrap();
    let data = small_dataset();
    let lines: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    // Each line is a "record" at offset = line number.
    let events = |from: usize, to: usize| {
        let mut d = settings.decoder("envoy").unwrap();
        let mut out = Vec::new();
        let mut evs = Vec::new();
        for (off, l) in lines.iter().enumerate().take(to).skip(from) {
            out.clear();
            d.decode(l, &mut out);
            for (i, r) in out.drain(..).enumerate() {
                let mut en = enricher.enrich(r.unwrap());
                en.source = Some(tokenwatch::event::SourcePos {
                    offset: off as i64,
                    index: i as u32,
                    broker_ts: None,
                });
                evs.push(en);
            }
        }
        evs
    };
    let ids = |fs: &[tokenwatch::detect::Finding]| -> Vec<String> {
        let mut v: Vec<String> = fs.iter().map(|f| f.id.clone()).collect();
        v.sort();
        v
    };
    let mut base = Vec::new();
    let mut e = Engine::new(&cfg);
    for ev in events(0, lines.len()) {
        e.push(ev, &mut base);
    }
    e.flush(&mut base);
    assert!(base.len() >= 8);
    let base = ids(&base);

    for cut in [1, lines.len() / 7, lines.len() / 2, lines.len() - 3] {
        let mut got = Vec::new();
        let mut first = Engine::new(&cfg);
        for ev in events(0, cut) {
            first.push(ev, &mut got);
        }
        let snap = first.snapshot().unwrap();
        let resume = first.oldest_pending_offset().unwrap_or(cut as i64) as usize;
        drop(first);

        let mut second = Engine::new(&cfg);
        let mut readmit: std::collections::HashSet<(i64, u32)> =
            second.restore(&snap).unwrap().into_iter().collect();
        assert!(second.tracked_tokens() > 0 || cut == 1, "state restored");
        for ev in events(resume, lines.len()) {
            let pos = ev.source.expect("a position");
            let already = (pos.offset as usize) < cut;
            if already && !readmit.remove(&(pos.offset, pos.index)) {
                continue;
            }
            second.push(ev, &mut got);
        }
        second.flush(&mut got);
        assert!(readmit.is_empty(), "every waiting event was fed again");
        assert_eq!(base, ids(&got), "checkpoint after record {cut}");
    }
}

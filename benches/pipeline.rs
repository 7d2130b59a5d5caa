//! Criterion benches per stage (decode per format, enrich, detect) and an
//! end-to-end replay from memory. Inputs come from the seeded generator, so
//! every run measures the same bytes. Figures: BENCHMARKS.md.
//!
//! cargo bench --bench pipeline

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use tokenwatch::config::{Config, Preset};
use tokenwatch::decode::DecodeSettings;
use tokenwatch::detect::{Engine, FindingKind};
use tokenwatch::enrich::Enricher;
use tokenwatch::event::{AccessEvent, Enriched};
use tokenwatch::pipeline::{Pipeline, ReplayOptions};
use tokenwatch::source::LineSource;
use tokenwatch::synth::{self, Scenario, world};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn dataset(formats: &[&str], users: u32, hours: u32) -> BTreeMap<String, Vec<u8>> {
    let sc = Scenario {
        seed: 5,
        users,
        hours,
        services: 3,
        formats: formats.iter().map(|s| s.to_string()).collect(),
        attacks: FindingKind::ALL.iter().map(|k| (*k, 2)).collect(),
        ..Scenario::default()
    };
    synth::generate(&sc, "bench", b"k").expect("dataset").files
}

fn enricher(cfg: &Config) -> Arc<Enricher> {
    Arc::new(world::enricher(cfg))
}

fn lines(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(n)
        .collect()
}

fn decode_events(cfg: &Config, format: &str, data: &[u8], n: usize) -> Vec<AccessEvent> {
    let s = DecodeSettings::new(cfg, b"k").unwrap();
    let mut d = s.decoder(format).unwrap();
    let mut out = Vec::new();
    for l in lines(data, n) {
        d.decode(l, &mut out);
    }
    out.into_iter().filter_map(Result::ok).collect()
}

fn benches(c: &mut Criterion) {
    let cfg = Config::default();
    let all = dataset(Preset::NAMES, 700, 4);

    let mut g = c.benchmark_group("decode");
    for (format, data) in &all {
        let ls = lines(data, 5000);
        g.throughput(Throughput::Elements(ls.len() as u64));
        let s = DecodeSettings::new(&cfg, b"k").unwrap();
        g.bench_function(format.as_str(), |b| {
            let mut d = s.decoder(format).unwrap();
            let mut out = Vec::with_capacity(4);
            b.iter(|| {
                for l in &ls {
                    out.clear();
                    d.decode(black_box(l), &mut out);
                }
            })
        });
    }
    g.finish();

    let enr = enricher(&cfg);
    let events = decode_events(&cfg, "envoy", &all["envoy"], 20_000);
    let mut g = c.benchmark_group("enrich");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("envoy_events", |b| {
        b.iter_batched(
            || events.clone(),
            |evs| {
                evs.into_iter()
                    .map(|e| enr.enrich(e))
                    .collect::<Vec<Enriched>>()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let enriched: Vec<Enriched> = events.iter().cloned().map(|e| enr.enrich(e)).collect();
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(enriched.len() as u64));
    g.bench_function("engine_push", |b| {
        b.iter_batched(
            || (Engine::new(&cfg), enriched.clone()),
            |(mut engine, evs)| {
                let mut out = Vec::new();
                for e in evs {
                    engine.push(e, &mut out);
                }
                engine.flush(&mut out);
                out.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    for format in ["envoy", "kong"] {
        let data = dataset(&[format], 1500, 3).remove(format).unwrap();
        let n = data.iter().filter(|b| **b == b'\n').count();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format, |b| {
            b.iter_batched(
                || data.clone(),
                |data| {
                    let mut p = Pipeline::new(
                        &cfg,
                        DecodeSettings::new(&cfg, b"k").unwrap(),
                        enricher(&cfg),
                    );
                    let opts = ReplayOptions {
                        format: format.into(),
                        ..Default::default()
                    };
                    let mut n = 0usize;
                    p.run(
                        vec![LineSource::from_bytes(format, data)],
                        &opts,
                        &mut |_| n += 1,
                    )
                    .unwrap();
                    n
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);

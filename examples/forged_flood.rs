//! Memory under a flood of distinct forged tokens: N Envoy records, each an
//! unsigned JWT (`alg: none`) with a fresh jti and subject, from a fresh IP,
//! through the whole replay path (decode → enrich → detect → decide).
//!
//! cargo run --release --example forged_flood -- 1000000 401      # refused by the gateway
//! cargo run --release --example forged_flood -- 1000000 200 100000  # accepted (an unauthenticated route), cap 100,000
//!
//! Prints the resident-memory growth, tokens tracked, evictions at the cap,
//! rejected requests, and events/s.

use std::sync::Arc;

use base64::Engine as _;
use tokenwatch::config::Config;
use tokenwatch::decode::DecodeSettings;
use tokenwatch::pipeline::{Pipeline, ReplayOptions};
use tokenwatch::source::LineSource;
use tokenwatch::synth::world;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("linux");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let status: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(401);
    let cap: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut cfg = Config::default();
    cfg.engine.max_tracked_tokens = cap;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = e.encode(br#"{"alg":"none"}"#);
    // The records are generated first: their bytes are not the monitor's.
    let mut data = Vec::with_capacity(n * 420);
    let t0 = 1_767_600_000_000i64;
    for i in 0..n {
        let claims = format!(
            r#"{{"jti":"forged-{i:09}","sub":"victim-{i:09}@corp.example","client_id":"web","exp":1767700000}}"#
        );
        let ip = std::net::Ipv4Addr::from(0x1400_0000u32 + i as u32);
        let line = format!(
            r#"{{"start_time":"{}","method":"GET","path":"/v1/records/{i}","response_code":{status},"bytes_sent":120,"downstream_remote_address":"{ip}:443","user_agent":"python-requests/2.32.3","authorization":"Bearer {header}.{}."}}"#,
            tokenwatch::event::fmt_time(t0 + i as i64),
            e.encode(claims),
        );
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
    }
    let bytes = data.len();
    let enricher = Arc::new(world::enricher(&cfg));
    let mut p = Pipeline::new(&cfg, DecodeSettings::new(&cfg, b"k").unwrap(), enricher);
    let before = rss_bytes();
    let opts = ReplayOptions {
        format: "envoy".into(),
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let s = p
        .run(
            vec![LineSource::from_bytes("flood", data)],
            &opts,
            &mut |_| {},
        )
        .expect("replay");
    let secs = t.elapsed().as_secs_f64();
    let after = rss_bytes();
    println!(
        "{n} forged tokens answered {status}, cap {cap}: resident growth {:.1} MiB (input {:.0} MiB held apart), tokens tracked now {}, evicted at cap {}, rejected {}, findings {}, incidents {}, revocations {}, {:.0} events/s",
        after.saturating_sub(before) as f64 / 1_048_576.0,
        bytes as f64 / 1_048_576.0,
        p.engine.tracked_tokens(),
        s.tokens_evicted_cap,
        s.rejected,
        s.findings.values().sum::<u64>(),
        s.response.incidents,
        s.response.revocations,
        s.events as f64 / secs,
    );
}

//! Measures detector state per tracked token: pushes events for N distinct
//! tokens (4 tokens per subject, 2 places, 2 devices) through the engine and
//! reports the resident-memory growth.
//!
//! cargo run --release --example state_memory -- 1000000

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tokenwatch::config::Config;
use tokenwatch::detect::Engine;
use tokenwatch::enrich::ua;
use tokenwatch::event::{AccessEvent, Enriched, NetClass, NetInfo, Place, TokenId, stable_hash};

/// mimalloc (as in the service), counting the bytes and blocks the program
/// holds: what the state asks for, beside what the process keeps resident.
struct Counting;

static LIVE_BYTES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
static LIVE_BLOCKS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        LIVE_BYTES.fetch_add(l.size() as i64, Relaxed);
        LIVE_BLOCKS.fetch_add(1, Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        use std::sync::atomic::Ordering::Relaxed;
        LIVE_BYTES.fetch_sub(l.size() as i64, Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        LIVE_BYTES.fetch_add(new as i64 - l.size() as i64, Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> (i64, i64) {
    use std::sync::atomic::Ordering::Relaxed;
    (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed))
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("linux");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let cfg = Config::default();
    let mut engine = Engine::new(&cfg);
    let nets: Vec<Arc<NetInfo>> = (0..2)
        .map(|i| {
            Arc::new(NetInfo {
                place: Some(Place {
                    city: Some(Arc::from(["Paris", "Lyon"][i])),
                    country: Some(Arc::from("FR")),
                    lat: 48.8 - i as f32 * 3.0,
                    lon: 2.3 + i as f32 * 2.5,
                    radius_km: 20,
                }),
                asn: 64600,
                as_org: None,
                class: NetClass::Residential,
            })
        })
        .collect();
    let uas = [
        Arc::new(ua::parse(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        )),
        Arc::new(ua::parse(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        )),
    ];
    let subjects: Vec<Arc<str>> = (0..n / 4 + 1)
        .map(|i| Arc::from(format!("u-{i:08}")))
        .collect();
    let client: Arc<str> = Arc::from("web-app");
    let route: Arc<str> = Arc::from("records");
    let mut out = Vec::new();
    let before = rss_bytes();
    let live_before = live();
    let t0 = 1_767_600_000_000i64;
    for i in 0..n {
        let id = format!("{:08x}-5a4d-4c3b-9d8e-{:012x}", i, i * 7919);
        for k in 0..2 {
            let ts = t0 + (i as i64) * 5 + k * 2;
            let event = AccessEvent {
                ts,
                token_key: stable_hash(id.as_bytes()),
                token: TokenId(Arc::from(id.as_str())),
                identity: tokenwatch::event::IdentityKind::Token,
                rejected: false,
                subject: Some(subjects[i / 4].clone()),
                client_id: Some(client.clone()),
                token_exp: None,
                client_ip: IpAddr::V4(Ipv4Addr::from(0x1400_0000 + i as u32)),
                method: "GET",
                route: route.clone(),
                path: "/v1/records".into(),
                object: Some(i as u64),
                page: Some(1),
                status: 200,
                bytes_sent: Some(20_000),
                user_agent: None,
                accept_language: None,
                ja3: None,
                ja4: None,
            };
            let ua = uas[i % 2].clone();
            let fp = ua::fingerprint(&ua, None, None, None);
            engine.push(
                Enriched {
                    order_key: i as u64 * 2 + k as u64,
                    source: None,
                    net: nets[i % 2].clone(),
                    ua,
                    fp,
                    event,
                },
                &mut out,
            );
        }
    }
    engine.flush(&mut out);
    let after = rss_bytes();
    let live_after = live();
    let tokens = engine.tracked_tokens();
    println!(
        "tracked tokens {tokens}, subjects {}, resident growth {:.1} MiB, {:.0} bytes per token (incl. subject profiles and token ids), findings {}",
        n / 4,
        (after - before) as f64 / 1_048_576.0,
        (after - before) as f64 / tokens as f64,
        out.len()
    );
    println!(
        "requested by the program: {:.0} bytes in {:.2} blocks per token",
        (live_after.0 - live_before.0) as f64 / tokens as f64,
        (live_after.1 - live_before.1) as f64 / tokens as f64,
    );
    println!(
        "size_of TokenState = {} bytes, Profile = {} bytes",
        std::mem::size_of::<tokenwatch::detect::state::TokenState>(),
        std::mem::size_of::<tokenwatch::detect::state::Profile>()
    );
    // A checkpoint of this state: how long, how big, and the resident peak
    // while the snapshot and the state coexist (what `tokenwatch run` needs).
    let t = std::time::Instant::now();
    let snap = engine.snapshot().expect("snapshot");
    let took = t.elapsed();
    let peak = rss_bytes();
    let t = std::time::Instant::now();
    let mut restored = tokenwatch::detect::Engine::new(&tokenwatch::config::Config::default());
    restored.restore(&snap).expect("restore");
    println!(
        "snapshot {:.1} MiB in {:.2} s ({:.0} bytes per token), restore {:.2} s, resident with state + snapshot {:.1} MiB",
        snap.len() as f64 / 1_048_576.0,
        took.as_secs_f64(),
        snap.len() as f64 / tokens as f64,
        t.elapsed().as_secs_f64(),
        peak as f64 / 1_048_576.0,
    );
    assert_eq!(restored.tracked_tokens(), tokens);
}

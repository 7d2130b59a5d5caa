//! Helpers shared by the integration tests that drive real servers: the
//! Kafka broker's address, free ports, child processes, a minimal HTTP
//! client, the OpenID provider (scripts/oauth-server) and gateway logs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokenwatch::event::NetClass;
use tokenwatch::synth::world::{CITIES, World};

/// A child process killed (and reaped) when dropped, also when a test panics.
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The OpenID provider on a free port: (child, port). Kill the child when done.
pub fn start_oauth() -> (Child, u16) {
    start_oauth_with(&[])
}

/// As [`start_oauth`], with environment for scripts/oauth-server/server.js
/// (`DASHBOARD_REDIRECT` registers the dashboard's sign-in client).
pub fn start_oauth_with(env: &[(&str, &str)]) -> (Child, u16) {
    let oauth_dir = repo().join("scripts/oauth-server");
    assert!(
        oauth_dir.join("node_modules/oidc-provider").exists(),
        "scripts/oauth-server/node_modules is missing: `bash scripts/test` runs npm ci there"
    );
    let port = free_port();
    let mut oauth = Command::new("node")
        .arg("server.js")
        .env("PORT", port.to_string())
        .envs(env.iter().copied())
        .current_dir(&oauth_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    wait_line(&mut oauth, "issuer", "the OAuth server");
    (oauth, port)
}

pub const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.85 Safari/537.36";

pub fn bootstrap() -> String {
    std::env::var("TW_KAFKA_BOOTSTRAP").expect(
        "TW_KAFKA_BOOTSTRAP is not set: run the tests with `bash scripts/test`, \
         or start a broker with `scripts/kafka start` and export its address",
    )
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tokenwatch")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_line(child: &mut Child, want: &str, what: &str) {
    let out = child.stdout.take().unwrap();
    let mut r = BufReader::new(out);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("{what} exited before it was ready (see its stderr above)");
        }
        if line.contains(want) {
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
            return;
        }
    }
    panic!("{what} did not start within 30 s");
}

pub fn python() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = Path::new(&home).join(".cache/tokenwatch/venv/bin/python3");
    assert!(
        venv.exists(),
        "{} is missing: `bash scripts/test` creates it (pip install aiosmtpd standardwebhooks pyjwt cryptography)",
        venv.display()
    );
    venv
}

/// Minimal HTTP/1.0 client: (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let _ = s.write_all(req.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

/// The sum of the series of metric `name` whose labels contain `labels`
/// (e.g. `from="changelog"`) on the Prometheus endpoint at `port`; `None`
/// while nothing answers or no such series exists yet.
pub fn metric(port: u16, name: &str, labels: &str) -> Option<f64> {
    let (status, body) = http(port, "GET", "/metrics", &[], "");
    if status != 200 {
        return None;
    }
    let mut sum = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n == name
            && l.contains(labels)
            && let Ok(v) = value.parse::<f64>()
        {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

pub fn now_ms() -> i64 {
    tokenwatch::clock::now_ms()
}

pub fn ip(world: &World, place: &str, net: NetClass, host: u32) -> String {
    let city = CITIES.iter().position(|c| c.0 == place).unwrap();
    let block = world
        .blocks
        .iter()
        .position(|b| b.city == city && world.isps[b.isp].class == net)
        .unwrap();
    world.addr(block, host).to_string()
}

/// SIGINT and wait: the service stops cleanly.
pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            assert!(st.success(), "tokenwatch run exited with {st}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("tokenwatch run did not stop within 30 s of SIGINT");
}

/// An opaque access token for client `app` (client_credentials grant).
pub fn mint(oauth_port: u16) -> String {
    let auth = basic("app", "app-secret");
    let (st, body) = http(
        oauth_port,
        "POST",
        "/token",
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "grant_type=client_credentials",
    );
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let t = v["access_token"].as_str().unwrap().to_string();
    assert!(!t.contains('.'), "an opaque token, not a JWT");
    t
}

pub fn active(oauth_port: u16, token: &str) -> bool {
    let auth = basic("tokenwatch", "tw-secret");
    let (st, body) = http(
        oauth_port,
        "POST",
        "/token/introspection",
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &format!("token={token}"),
    );
    assert_eq!(st, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["active"] == json!(true)
}

/// Envoy access-log lines (event time ending a few minutes ago): every
/// token browses from Paris; the `attacked` ones are also used, while their
/// owner still is, by a scripting client from another address.
pub fn gateway_log(world: &World, benign: &[String], attacked: &[String]) -> Vec<u8> {
    let t0 = now_ms() - 15 * 60_000;
    let mut recs: Vec<(i64, String)> = Vec::new();
    let line = |ts: i64, tok: &str, addr: &str, ua: &str, i: u32| {
        json!({
            "start_time": tokenwatch::event::fmt_time(ts),
            "method": "GET",
            "path": format!("/v1/records?page={i}"),
            "response_code": 200,
            "bytes_sent": 20_000,
            "downstream_remote_address": addr,
            "user_agent": ua,
            "authorization": format!("Bearer {tok}"),
            "ja3": "-", "ja4": "-", "accept_language": "-",
        })
        .to_string()
    };
    for (k, tok) in benign.iter().chain(attacked).enumerate() {
        let home = ip(world, "Paris", NetClass::Residential, 10 + k as u32);
        for i in 0..30 {
            let ts = t0 + i64::from(i) * 20_000 + k as i64 * 7;
            recs.push((ts, line(ts, tok, &home, CHROME, i + 1)));
        }
    }
    for (k, tok) in attacked.iter().enumerate() {
        let other = ip(world, "Paris", NetClass::Residential, 200 + k as u32);
        for i in 0..10 {
            let ts = t0 + 5 * 60_000 + i64::from(i) * 15_000 + k as i64 * 11;
            recs.push((ts, line(ts, tok, &other, "python-requests/2.32.3", i + 1)));
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

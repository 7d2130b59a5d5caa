//! The dashboard end to end, in Debian's headless Chromium driven by
//! Playwright (`playwright-core`, scripts/e2e/dashboard.mjs): real Kafka,
//! `tokenwatch run` with its dashboard, the OpenID provider from
//! scripts/oauth-server issuing opaque tokens. The browser logs in, watches
//! the live feed while a replay runs, opens an incident (map, timeline,
//! evidence), revokes the stolen token as a responder (the OpenID provider
//! confirms by introspection), is refused as a viewer, and a forged
//! cross-site form post is refused; a person signs in through the provider
//! (OpenID Connect, code flow with PKCE) and one without a role is
//! refused. Screenshots of every page go to
//! target/e2e/.
//!
//! `scripts/test` installs Chromium (apt) and playwright-core (npm); without
//! them this test fails, never skips.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tokenwatch::event::NetClass;
use tokenwatch::synth::world::World;

mod common;
use common::*;

const CUSTODY_KEY: &str = "0b1c2d3e4f5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// The owner browses from Paris; the `attacked` token is also used, while
/// the owner still is, by a scripting client in an Ashburn datacenter.
/// Returns the log before the attack and from the attack on.
fn log(world: &World, benign: &[String], attacked: &str) -> (Vec<u8>, Vec<u8>) {
    let t0 = now_ms() - 20 * 60_000;
    let line = |ts: i64, tok: &str, addr: &str, ua: &str, path: String| {
        json!({
            "start_time": tokenwatch::event::fmt_time(ts),
            "method": "GET", "path": path, "response_code": 200, "bytes_sent": 18_000,
            "downstream_remote_address": addr, "user_agent": ua,
            "authorization": format!("Bearer {tok}"),
            "ja3": "-", "ja4": "-", "accept_language": "fr-FR,fr;q=0.9",
        })
        .to_string()
    };
    let mut recs: Vec<(i64, String)> = Vec::new();
    let all: Vec<&str> = benign
        .iter()
        .map(String::as_str)
        .chain([attacked])
        .collect();
    for (k, tok) in all.iter().enumerate() {
        let home = ip(world, "Paris", NetClass::Residential, 30 + k as u32);
        for i in 0..40 {
            let ts = t0 + i64::from(i) * 20_000 + k as i64 * 13;
            recs.push((
                ts,
                line(
                    ts,
                    tok,
                    &home,
                    CHROME,
                    format!("/v1/orders?page={}", i % 5 + 1),
                ),
            ));
        }
    }
    let dc = ip(world, "Ashburn", NetClass::Hosting, 77);
    for i in 0..25 {
        let ts = t0 + 6 * 60_000 + i64::from(i) * 9_000;
        recs.push((
            ts,
            line(
                ts,
                attacked,
                &dc,
                "python-requests/2.32.3",
                format!("/v1/orders/{}", 1000 + i),
            ),
        ));
    }
    recs.sort_by_key(|r| r.0);
    let attack = t0 + 6 * 60_000;
    let bytes = |early: bool| -> Vec<u8> {
        recs.iter()
            .filter(|(ts, _)| (*ts < attack) == early)
            .flat_map(|(_, r)| format!("{r}\n").into_bytes())
            .collect()
    };
    (bytes(true), bytes(false))
}

#[test]
fn the_security_team_works_the_dashboard_in_a_real_browser() {
    let e2e = repo().join("scripts/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "scripts/e2e/node_modules is missing: `bash scripts/test` runs npm ci there"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: `bash scripts/test` installs Debian's chromium"
    );
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/login/oidc/callback");
    let (oauth, oport) = start_oauth_with(&[("DASHBOARD_REDIRECT", &callback)]);
    let _oauth = Reap(oauth);
    let benign: Vec<String> = (0..3).map(|_| mint(oport)).collect();
    let attacked = mint(oport);

    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("geo")).unwrap();
    let (city, asn) = world.mmdb().unwrap();
    std::fs::write(d.join("geo/city.mmdb"), city).unwrap();
    std::fs::write(d.join("geo/asn.mmdb"), asn).unwrap();
    let (before, attack) = log(&world, &benign, &attacked);
    std::fs::write(d.join("before.jsonl"), before).unwrap();
    std::fs::write(d.join("gw.jsonl"), attack).unwrap();
    let topic = unique("dash-in");
    // Normal use before the service starts; the browser replays the attack
    // once it watches the live feed.
    let st = Command::new(bin())
        .current_dir(d)
        .args(["replay", "before.jsonl", "--to-kafka", &bootstrap(), &topic])
        .args(["--format", "envoy", "--key-by-token"])
        .status()
        .unwrap();
    assert!(st.success());

    let hash = |p: &str| tokenwatch::web::auth::hash_password(p).unwrap();
    let o = format!("http://127.0.0.1:{oport}");
    let config = format!(
        r#"[geoip]
city = "geo/city.mmdb"
asn = "geo/asn.mmdb"

[store]
path = "tw.db"

[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = [{{ name = "{topic}", format = "envoy", keyed = true }}]
commit_interval_ms = 300
idle_flush_ms = 1000

[kafka.properties]
"session.timeout.ms" = "6000"

[[policy.rules]]
name = "stolen-token"
kinds = ["token_replay", "impossible_travel", "suspicious_network"]
min_severity = "medium"
actions = ["revoke", "alert"]
mode = "observe"

[response]
dashboard_url = "http://127.0.0.1:{port}"

[response.custody]
key = "env:TW_TEST_CUSTODY_KEY"

[response.delivery]
poll_ms = 50

[[response.revokers]]
name = "idp"
kind = "rfc7009"
endpoint = "{o}/token/revocation"
introspection_endpoint = "{o}/token/introspection"
client = {{ client_id = "tokenwatch", client_secret = "env:TW_TEST_CLIENT_SECRET" }}

[dashboard]
listen = "127.0.0.1:{port}"

[dashboard.oidc]
issuer = "{o}"
client_id = "dashboard"
client_secret = "env:TW_TEST_SSO_SECRET"
redirect_url = "{callback}"
scopes = ["openid"]
roles = {{ "sso-sam" = "viewer" }}

[[dashboard.users]]
name = "rita"
role = "responder"
password_hash = "{rita}"

[[dashboard.users]]
name = "victor"
role = "viewer"
password_hash = "{victor}"

[[dashboard.users]]
name = "ada"
role = "admin"
password_hash = "{ada}"
"#,
        brokers = bootstrap(),
        group = unique("dash"),
        rita = hash("rita-responder-pw"),
        victor = hash("victor-viewer-pw"),
        ada = hash("ada-admin-password"),
    );
    std::fs::write(d.join("run.toml"), config).unwrap();
    let ops = free_port();
    let run = Command::new(bin())
        .current_dir(d)
        .args(["run", "--config", "run.toml", "--ops-listen"])
        .arg(format!("127.0.0.1:{ops}"))
        .env("TOKENWATCH_HASH_KEY", "test-hash-key-0123456789abcdef")
        .env("TW_TEST_CUSTODY_KEY", CUSTODY_KEY)
        .env("TW_TEST_CLIENT_SECRET", "tw-secret")
        .env("TW_TEST_SSO_SECRET", "dash-secret")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = Reap(run);
    let stderr = run.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[run] {line}");
        }
    });
    // Ready: assigned and consuming (what a load balancer's probe asks).
    wait_until(60, "tokenwatch run to be ready", || {
        http(ops, "GET", "/readyz", &[], "").0 == 200
    });

    let shots = repo().join("target/e2e");
    std::fs::create_dir_all(&shots).unwrap();
    let replay = json!([
        bin(),
        "replay",
        "gw.jsonl",
        "--to-kafka",
        bootstrap(),
        topic,
        "--format",
        "envoy",
        "--key-by-token",
        "--rate",
        "60"
    ]);
    let out = Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(&e2e)
        .env("TW_URL", format!("http://127.0.0.1:{port}"))
        .env("TW_REPLAY", replay.to_string())
        .env("TW_REPLAY_CWD", d)
        .env("TW_SHOTS", &shots)
        .env("TW_RESPONDER", "rita:rita-responder-pw")
        .env("TW_VIEWER", "victor:victor-viewer-pw")
        .env("TW_ADMIN", "ada:ada-admin-password")
        .env("TW_SSO_USER", "sso-sam")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}");
    assert!(out.status.success(), "the browser test failed (see above)");
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    let revoked = result["revoked_token_id"].as_str().unwrap().to_string();
    assert!(revoked.starts_with("h:"), "{result}");

    // The OpenID provider confirms: the stolen token is dead, the others live.
    wait_until(60, "the IdP to report the token revoked", || {
        !active(oport, &attacked)
    });
    for b in &benign {
        assert!(active(oport, b), "benign tokens stay active");
    }
    // And the audit log has who did what.
    let _ = Command::new("kill")
        .args(["-INT", &run.0.id().to_string()])
        .status();
    let _ = run.0.wait();
    let conn = rusqlite::Connection::open(d.join("tw.db")).unwrap();
    let acts: Vec<(String, String)> = conn
        .prepare("SELECT actor, what FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for want in [
        ("user:rita", "login"),
        ("user:rita", "revoke requested"),
        ("user:victor", "login"),
        ("user:ada", "rule mode"),
        ("user:sso-sam", "login (sso)"),
        ("user:mallory", "login refused (sso)"),
    ] {
        assert!(
            acts.iter().any(|(a, w)| a == want.0 && w == want.1),
            "audit lacks {want:?}: {acts:?}"
        );
    }
    let db = std::fs::read(d.join("tw.db")).unwrap();
    assert!(
        !db.windows(attacked.len()).any(|w| w == attacked.as_bytes()),
        "no raw token in the store"
    );
}

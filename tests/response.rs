//! The response path against real servers: a real Kafka broker
//! (`TW_KAFKA_BOOTSTRAP`, started by `scripts/test`), a real OpenID provider
//! (`oidc-provider` from npm, scripts/oauth-server) issuing opaque access
//! tokens with RFC 7009 revocation and RFC 7662 introspection, and real
//! receivers (scripts/sink.py: aiosmtpd for SMTP, the official
//! `standardwebhooks` library and PyJWT to verify signatures). Each test
//! starts its own servers on free ports and stops them after.
//!
//! `scripts/test` installs their dependencies (npm ci, a Python venv in
//! ~/.cache/tokenwatch); without them these tests fail, never skip.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokenwatch::decide::ActionStatus;
use tokenwatch::synth::world::World;

mod common;
use common::*;

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CUSTODY_KEY: &str = "4f1c2b7a9e0d3c5b8a7f6e1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f7";

/// Child processes killed on drop.
struct Servers {
    oauth: Child,
    sink: Child,
    oauth_port: u16,
    http_port: u16,
    smtp_port: u16,
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.oauth.kill();
        let _ = self.sink.kill();
        let _ = self.oauth.wait();
        let _ = self.sink.wait();
    }
}

fn start_servers(dir: &Path) -> Servers {
    let (oauth, oauth_port) = start_oauth();
    let (http_port, smtp_port) = (free_port(), free_port());
    // The CAEP signing key (ES256, PKCS#8), made with openssl.
    let key = dir.join("caep.pem");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out {}",
            key.display()
        ))
        .status()
        .unwrap();
    assert!(st.success(), "openssl");
    let mut sink = Command::new(python())
        .arg(repo().join("scripts/sink.py"))
        .args(["--smtp-port", &smtp_port.to_string()])
        .args(["--http-port", &http_port.to_string()])
        .args(["--webhook-secret", WEBHOOK_SECRET])
        .args(["--caep-key", key.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    wait_line(&mut sink, "ready", "the sink");
    Servers {
        oauth,
        sink,
        oauth_port,
        http_port,
        smtp_port,
    }
}

fn mint(s: &Servers) -> String {
    common::mint(s.oauth_port)
}

fn active(s: &Servers, token: &str) -> bool {
    common::active(s.oauth_port, token)
}

fn sink_records(s: &Servers) -> Vec<Value> {
    serde_json::from_str(&http(s.http_port, "GET", "/__records", &[], "").1).unwrap_or_default()
}

fn sink_mail(s: &Servers) -> Vec<Value> {
    serde_json::from_str(&http(s.http_port, "GET", "/__mail", &[], "").1).unwrap_or_default()
}

fn set_fault(s: &Servers, fault: Value) {
    let (st, _) = http(s.oauth_port, "POST", "/__faults", &[], &fault.to_string());
    assert_eq!(st, 200);
}

fn revocation_log(s: &Servers) -> Vec<Value> {
    serde_json::from_str(&http(s.oauth_port, "GET", "/__log", &[], "").1).unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    topic: String,
    group: String,
}

fn setup(world: &World, records: &[u8]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("geo")).unwrap();
    let (city, asn) = world.mmdb().unwrap();
    std::fs::write(d.join("geo/city.mmdb"), city).unwrap();
    std::fs::write(d.join("geo/asn.mmdb"), asn).unwrap();
    std::fs::write(d.join("gw.jsonl"), records).unwrap();
    let topic = unique("resp-in");
    let st = Command::new(bin())
        .current_dir(d)
        .args([
            "replay",
            "gw.jsonl",
            "--to-kafka",
            &bootstrap(),
            &topic,
            "--format",
            "envoy",
            "--key-by-token",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    Setup {
        dir,
        topic,
        group: unique("resp"),
    }
}

/// run.toml: enforce the stolen-token rule, a tight fuse, every strategy and channel.
fn write_config(st: &Setup, s: &Servers, ops_port: u16, extra: &str, per_minute: u32) {
    let o = format!("http://127.0.0.1:{}", s.oauth_port);
    let h = format!("http://127.0.0.1:{}", s.http_port);
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
ops_listen = "127.0.0.1:{ops_port}"

[kafka.properties]
"session.timeout.ms" = "6000"

[dashboard]
listen = "127.0.0.1:0"

[policy]
max_revocations_per_minute = 100
max_revocations_per_hour = 1000

[[policy.rules]]
name = "stolen-token"
kinds = ["token_replay", "impossible_travel"]
min_severity = "high"
actions = ["revoke", "alert"]
mode = "enforce"
max_revocations_per_minute = {per_minute}
max_revocations_per_hour = 100

[response]
dashboard_url = "https://tokenwatch.test"

[response.custody]
key = "env:TW_TEST_CUSTODY_KEY"

[response.delivery]
timeout_ms = 1000
backoff_initial_ms = 200
backoff_max_ms = 1500
breaker_failures = 3
breaker_open_ms = 1500
poll_ms = 50

[[response.revokers]]
name = "idp"
kind = "rfc7009"
endpoint = "{o}/token/revocation"
introspection_endpoint = "{o}/token/introspection"
client = {{ client_id = "tokenwatch", client_secret = "env:TW_TEST_CLIENT_SECRET" }}

[[response.revokers]]
name = "gateway"
kind = "deny_list"

[[response.revokers]]
name = "ssf"
kind = "caep"
endpoint = "{h}/caep"
issuer = "https://tokenwatch.test"
audience = "https://receiver.test"
algorithm = "ES256"
signing_key = "file:caep.pem"

[[response.revokers]]
name = "admin-api"
kind = "http"
method = "POST"
url = "{h}/admin/tokens/{{token_id}}/revoke"
body = '{{"reason": "{{reason}}"}}'
admin_auth = {{ token_endpoint = "{o}/token", client_id = "tokenwatch-post", client_secret = "file:admin.secret", auth_method = "client_secret_post" }}

[[response.channels]]
name = "mail"
kind = "email"
smtp_url = "smtp://127.0.0.1:{smtp}"
tls = "none"
from = "tokenwatch <tokenwatch@example.com>"
to = ["secops@example.com"]

[[response.channels]]
name = "hook"
kind = "webhook"
url = "{h}/generic"
secret = "env:TW_TEST_WEBHOOK_SECRET"

[[response.channels]]
name = "slack"
kind = "slack"
url = "file:slack.url"

[[response.channels]]
name = "teams"
kind = "teams"
url = "file:teams.url"

[[response.channels]]
name = "pd"
kind = "pagerduty"
url = "{h}/pagerduty"
routing_key = "env:TW_TEST_PD_KEY"

[[response.channels]]
name = "am"
kind = "alertmanager"
url = "{h}/alertmanager"
{extra}
"#,
        brokers = bootstrap(),
        group = st.group,
        topic = st.topic,
        smtp = s.smtp_port,
    );
    std::fs::write(st.dir.path().join("run.toml"), config).unwrap();
    // Secrets by reference only (check-config refuses inline ones): the
    // Slack and Teams URLs are credentials.
    for (file, value) in [
        ("admin.secret", "tw-post-secret".to_string()),
        ("slack.url", format!("{h}/slack")),
        ("teams.url", format!("{h}/teams")),
    ] {
        std::fs::write(st.dir.path().join(file), value).unwrap();
    }
    let out = Command::new(bin())
        .args(["check-config", "run.toml"])
        .current_dir(st.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tokenwatch run`, its stderr mirrored and collected into `log` (which
/// the tests search for raw tokens; they watch state, not log lines).
fn spawn_run(d: &Path, log: &std::sync::Arc<std::sync::Mutex<String>>) -> Child {
    let mut child = Command::new(bin())
        .current_dir(d)
        .args(["run", "--config", "run.toml"])
        .env("TOKENWATCH_HASH_KEY", "test-hash-key-0123456789abcdef")
        .env("TW_TEST_CUSTODY_KEY", CUSTODY_KEY)
        .env("TW_TEST_CLIENT_SECRET", "tw-secret")
        .env("TW_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("TW_TEST_PD_KEY", "pd-routing-key")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[run] {line}");
            log.lock().unwrap().push_str(&line);
            log.lock().unwrap().push('\n');
        }
    });
    child
}

fn act(d: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .current_dir(d)
        .args(["act", "--config", "run.toml", "--by", "alice"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "act {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No raw token in any file under `dir`, in the log, or in what the sink got.
fn assert_no_raw_tokens(dir: &Path, log: &str, s: &Servers, tokens: &[String]) {
    let mut files = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "gw.jsonl") {
                // gw.jsonl is the gateway's own log (the input), not ours.
                files.push(path);
            }
        }
    }
    let sink = format!("{:?}{:?}", sink_records(s), sink_mail(s));
    for t in tokens {
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "raw token found in {}",
                f.display()
            );
        }
        assert!(!log.contains(t.as_str()), "raw token in the service log");
        assert!(
            !sink.contains(t.as_str()),
            "raw token sent to an alert channel"
        );
    }
    assert!(
        files.iter().any(|f| f.ends_with("tw.db")),
        "the store was checked"
    );
}

static BROKER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_replayed_opaque_token_is_revoked_at_the_idp_denied_at_the_gateway_and_alerted() {
    let _g = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let tmp = tempfile::tempdir().unwrap();
    let s = start_servers(tmp.path());
    let benign: Vec<String> = (0..2).map(|_| mint(&s)).collect();
    let attacked = vec![mint(&s)];
    let st = setup(&world, &gateway_log(&world, &benign, &attacked));
    let d = st.dir.path();
    std::fs::copy(tmp.path().join("caep.pem"), d.join("caep.pem")).unwrap();
    let ops = free_port();
    write_config(&st, &s, ops, "", 5);

    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let child = spawn_run(d, &log);
    wait_for_outbox(
        &d.join("tw.db"),
        90,
        "the attacked token to be revoked",
        || !active(&s, &attacked[0]),
    );
    // Every revoker and channel did its part.
    wait_for_outbox(&d.join("tw.db"), 30, "all channels", || {
        let r = sink_records(&s);
        [
            "/generic",
            "/slack",
            "/teams",
            "/pagerduty",
            "/alertmanager/api/v2/alerts",
            "/caep",
        ]
        .iter()
        .all(|p| r.iter().any(|x| x["path"] == *p))
            && r.iter()
                .any(|x| x["path"].as_str().unwrap().starts_with("/admin/tokens/"))
            && !sink_mail(&s).is_empty()
    });
    for b in &benign {
        assert!(active(&s, b), "a benign token stays active");
    }
    let recs = sink_records(&s);
    let by = |p: &str| recs.iter().find(|x| x["path"] == p).unwrap().clone();
    let generic = by("/generic");
    assert_eq!(
        generic["verified"], true,
        "Standard Webhooks signature: {generic}"
    );
    let g: Value = serde_json::from_str(generic["body"].as_str().unwrap()).unwrap();
    assert_eq!(g["type"], "tokenwatch.alert");
    let incident = g["data"]["incident_id"].as_str().unwrap().to_string();
    let token_id = g["data"]["token_id"].as_str().unwrap().to_string();
    assert!(token_id.starts_with("h:"));
    assert!(g["data"]["done"].to_string().contains("revoke"), "{g}");
    let slack: Value = serde_json::from_str(by("/slack")["body"].as_str().unwrap()).unwrap();
    assert_eq!(slack["blocks"][0]["type"], "header");
    let teams: Value = serde_json::from_str(by("/teams")["body"].as_str().unwrap()).unwrap();
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
    let pd: Value = serde_json::from_str(by("/pagerduty")["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (pd["event_action"].as_str(), pd["dedup_key"].as_str()),
        (Some("trigger"), Some(incident.as_str()))
    );
    assert_eq!(pd["routing_key"], "pd-routing-key");
    let am: Value =
        serde_json::from_str(by("/alertmanager/api/v2/alerts")["body"].as_str().unwrap()).unwrap();
    assert_eq!(am[0]["labels"]["incident"], incident.as_str());
    let caep = by("/caep");
    assert_eq!(caep["verified"], true, "SET signature and typ: {caep}");
    assert!(caep["claims"]["events"]["https://schemas.openid.net/secevent/caep/event-type/session-revoked"].is_object());
    let admin = recs
        .iter()
        .find(|x| x["path"].as_str().unwrap().starts_with("/admin/tokens/"))
        .unwrap();
    assert!(
        admin["headers"]["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer "),
        "admin token by client credentials"
    );
    assert!(admin["headers"]["idempotency-key"].is_string());
    // Email: recipients, subject, the evidence in words and numbers, a link.
    let mail = sink_mail(&s);
    let m = &mail[0];
    assert_eq!(m["to"], json!(["secops@example.com"]));
    assert!(
        m["subject"].as_str().unwrap().contains("token_replay"),
        "{m}"
    );
    let text = m["parts"]["text/plain"].as_str().unwrap();
    assert!(
        text.contains("python-requests") && text.contains("Evidence:"),
        "{text}"
    );
    assert!(text.contains(&format!("https://tokenwatch.test/incidents/{incident}")));
    assert!(m["parts"]["text/html"].as_str().unwrap().contains("<ul>"));
    // The gateway check refuses the token, and only it.
    let bearer = format!("Bearer {}", attacked[0]);
    assert_eq!(
        http(
            ops,
            "GET",
            "/v1/check/orders/1",
            &[("authorization", &bearer)],
            ""
        )
        .0,
        403
    );
    let ok = format!("Bearer {}", benign[0]);
    assert_eq!(
        http(
            ops,
            "GET",
            "/v1/check/orders/1",
            &[("authorization", &ok)],
            ""
        )
        .0,
        200
    );
    // Revoked once: the IdP saw one call for it.
    assert_eq!(revocation_log(&s).len(), 1);

    // A person resolves the incident: PagerDuty and Alertmanager are told.
    act(d, &["resolve", &incident]);
    wait_for_outbox(&d.join("tw.db"), 20, "the PagerDuty resolve event", || {
        sink_records(&s).iter().any(|x| {
            x["path"] == "/pagerduty"
                && serde_json::from_str::<Value>(x["body"].as_str().unwrap()).unwrap()["event_action"] == "resolve"
        })
    });
    let status = act(d, &["status"]);
    assert!(status.contains("Outbox backlog"), "{status}");
    stop(child);
    let audit = tokenwatch::store::Store::open(&d.join("tw.db"))
        .unwrap()
        .audit_log()
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.0 == "rule:stolen-token" && a.1 == "revoke pending"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|a| a.1 == "revoke delivered"
                && a.3.contains("introspection confirms active=false")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|a| a.0 == "user:alice" && a.1 == "incident resolved")
    );
    let mut all = benign.clone();
    all.extend(attacked.iter().cloned());
    assert_no_raw_tokens(d, &log.lock().unwrap(), &s, &all);
}

#[test]
fn a_failing_idp_is_retried_its_breaker_opens_and_the_outbox_delivers_after_a_restart() {
    let _g = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let tmp = tempfile::tempdir().unwrap();
    let s = start_servers(tmp.path());
    let attacked = vec![mint(&s)];
    let st = setup(&world, &gateway_log(&world, &[], &attacked));
    let d = st.dir.path();
    std::fs::copy(tmp.path().join("caep.pem"), d.join("caep.pem")).unwrap();
    let ops = free_port();
    write_config(&st, &s, ops, "", 5);
    // Two calls time out, then the IdP answers 503 until further notice.
    set_fault(&s, json!({"mode": "hang", "count": 2}));
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let child = spawn_run(d, &log);
    // The breaker's state as an operator's Prometheus sees it.
    let breaker = || metric(ops, "tokenwatch_breaker_open", "endpoint=\"idp\"");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut opened = false;
    let mut set_503 = false;
    while Instant::now() < deadline && !opened {
        if !set_503 && revocation_log(&s).len() >= 2 {
            set_fault(&s, json!({"mode": "503", "count": -1}));
            set_503 = true;
        }
        opened = breaker() == Some(1.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(opened, "the breaker opened");
    // The breaker alert went out on the other channels.
    wait_for_outbox(&d.join("tw.db"), 20, "the breaker alert", || {
        sink_records(&s).iter().any(|x| {
            x["path"] == "/generic" && x["body"].as_str().unwrap().contains("circuit breaker open")
        })
    });
    assert!(active(&s, &attacked[0]), "not revoked while the IdP fails");
    stop(child);
    let calls_before = revocation_log(&s).len();
    assert!(calls_before >= 3, "retried: {calls_before} calls");

    // The IdP recovers while tokenwatch is down; the restarted service
    // presents the sealed token from the outbox (custody key from env).
    set_fault(&s, json!({"mode": "none"}));
    let child = spawn_run(d, &log);
    wait_for_outbox(
        &d.join("tw.db"),
        60,
        "the revocation after the restart",
        || !active(&s, &attacked[0]),
    );
    // The restarted process sets the gauge only when its breaker (restored
    // open from the store) closes.
    let mut closed = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !closed {
        closed = breaker() == Some(0.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(closed, "the breaker closed");
    stop(child);
    let calls = revocation_log(&s);
    let keys: std::collections::BTreeSet<&str> =
        calls.iter().filter_map(|c| c["key"].as_str()).collect();
    assert_eq!(
        keys.len(),
        1,
        "every attempt carried one idempotency key: {calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c["status"] == 200).count(),
        1,
        "performed once: {calls:?}"
    );
    let store = tokenwatch::store::Store::open(&d.join("tw.db")).unwrap();
    let del = store.deliveries(None).unwrap();
    let idp = del.iter().find(|x| x.endpoint == "idp").unwrap();
    assert_eq!(idp.state, "delivered");
    assert!(idp.attempts as usize >= calls_before, "{idp:?}");
    assert_no_raw_tokens(d, &log.lock().unwrap(), &s, &attacked);
}

/// Wait until `f` holds, for as long as the outbox promises it may take:
/// a delivery deferred by a channel's rate limit or a breaker carries the
/// time it is due, so the deadline is `secs` from now or the latest such
/// time plus 30 s of grace (for a slow machine), whichever is later; never
/// a fixed bound that the position in the wall-clock minute can exceed.
fn wait_for_outbox(db: &Path, secs: i64, what: &str, mut f: impl FnMut() -> bool) {
    let mut deadline = now_ms() + secs * 1000;
    loop {
        if f() {
            return;
        }
        let due = rusqlite::Connection::open(db)
            .and_then(|c| {
                c.query_row(
                    "SELECT COALESCE(MAX(next_attempt_ms), 0) FROM deliveries WHERE state = 'pending'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap_or(0);
        deadline = deadline.max(due + 30_000);
        assert!(
            now_ms() < deadline,
            "timed out waiting for {what} (30 s after the last delivery was due)"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn outbox_is_empty(db: &Path) -> bool {
    tokenwatch::store::Store::open(db)
        .and_then(|st| st.outbox_backlog())
        .is_ok_and(|n| n == 0)
}

#[test]
fn a_false_positive_storm_trips_the_fuse_and_says_so() {
    let _g = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let tmp = tempfile::tempdir().unwrap();
    let s = start_servers(tmp.path());
    let attacked: Vec<String> = (0..12).map(|_| mint(&s)).collect();
    let st = setup(&world, &gateway_log(&world, &[], &attacked));
    let d = st.dir.path();
    std::fs::copy(tmp.path().join("caep.pem"), d.join("caep.pem")).unwrap();
    write_config(&st, &s, free_port(), "", 3);
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let child = spawn_run(d, &log);
    // The fuse alert queues behind the storm's alerts on each channel, so it
    // may wait for the next rate-limit window.
    wait_for_outbox(&d.join("tw.db"), 90, "the fuse alert", || {
        sink_records(&s).iter().any(|x| {
            x["path"] == "/generic" && x["body"].as_str().unwrap().contains("SAFETY FUSE TRIPPED")
        })
    });
    // Let everything decided be delivered, then count.
    wait_until(30, "three revocations", || {
        attacked.iter().filter(|t| !active(&s, t)).count() >= 3
    });
    // Nothing decided is still on its way: then no more can be revoked.
    let db = d.join("tw.db");
    wait_for_outbox(&db, 30, "an empty outbox", || outbox_is_empty(&db));
    let revoked = attacked.iter().filter(|t| !active(&s, t)).count();
    assert_eq!(
        revoked, 3,
        "no revocation beyond the rule's budget of 3 per minute"
    );
    let status = act(d, &["status"]);
    assert!(
        status.contains("stolen-token"),
        "the tripped fuse is listed: {status}"
    );
    act(d, &["reset-fuse", "stolen-token"]);
    stop(child);
    let store = tokenwatch::store::Store::open(&d.join("tw.db")).unwrap();
    assert!(store.tripped_fuses().unwrap().is_empty());
    let audit = store.audit_log().unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.0 == "user:alice" && a.1 == "fuse reset")
    );
    assert!(
        store
            .actions_in_state(ActionStatus::Observed)
            .unwrap()
            .len()
            >= 9,
        "the rest recorded as would-have"
    );
}

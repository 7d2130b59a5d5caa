//! Integration tests against a real Apache Kafka broker (started by
//! `scripts/test` through `scripts/kafka start`, address in
//! `TW_KAFKA_BOOTSTRAP`). Without a broker these tests fail: they never skip.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

use tokenwatch::decide::ActionStatus;
use tokenwatch::detect::FindingKind;
use tokenwatch::synth::{self, Scenario};

mod common;
use common::{bin, bootstrap, free_port, http, unique};

/// Everything in a topic: (payload, headers as key=value).
fn read_topic(
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<(String, Vec<(String, String)>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    let mut last_new = Instant::now();
    while start.elapsed() < timeout {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
                    headers,
                ));
                last_new = Instant::now();
            }
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {}
        }
        if out.len() >= at_least && last_new.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    out
}

fn ids(lines: impl Iterator<Item = String>) -> BTreeSet<String> {
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(&l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// A small labeled Envoy dataset and the synthetic GeoIP databases in a
/// temporary directory; returns the directory and the records.
fn dataset(seed: u64, users: u32) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let sc = Scenario {
        seed,
        users,
        hours: 3,
        services: 1,
        formats: vec!["envoy".into()],
        attacks: FindingKind::ALL.iter().map(|k| (*k, 2)).collect(),
        ..Scenario::default()
    };
    let mut ds = synth::generate(&sc, "kafka", b"tokenwatch-default-hash-key").unwrap();
    synth::write_geo(&dir.path().join("geo")).unwrap();
    let data = ds.files.remove("envoy").unwrap();
    (dir, data)
}

/// A labeled dataset written to `all.jsonl` in a fresh directory, its
/// record count, and the findings its file replay gives (by id).
fn replayed_dataset(seed: u64) -> (tempfile::TempDir, usize, BTreeSet<String>) {
    let (dir, data) = dataset(seed, 250);
    std::fs::write(dir.path().join("all.jsonl"), &data).unwrap();
    let total = lines_of(&data).len();
    let expected = replay_ids(dir.path(), "all.jsonl");
    (dir, total, expected)
}

/// Findings of the file replay of `file` (in `dir`), by id.
fn replay_ids(dir: &std::path::Path, file: &str) -> BTreeSet<String> {
    let st = Command::new(bin())
        .current_dir(dir)
        .env("TOKENWATCH_HASH_KEY", "test-hash-key-0123456789abcdef")
        .args([
            "replay",
            file,
            "--geoip-city",
            "geo/city.mmdb",
            "--geoip-asn",
            "geo/asn.mmdb",
        ])
        .args(["--findings", "expected.jsonl", "--no-progress"])
        .status()
        .unwrap();
    assert!(st.success());
    let ids = ids(std::fs::read_to_string(dir.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string));
    assert!(
        ids.len() >= 10,
        "the dataset has attacks to find: {}",
        ids.len()
    );
    ids
}

/// Read the findings topic until it holds every expected id (the service
/// releases the last events' findings once the input has been quiet for
/// `idle_flush_ms`), then SIGTERM the service (it checkpoints, commits and
/// leaves the group), check it caught up and exited cleanly, and return every
/// finding record (payloads, duplicates included).
fn stop_when_found(
    mut child: std::process::Child,
    caught_up: bool,
    findings: &str,
    expected: &BTreeSet<String>,
) -> Vec<String> {
    let got = wait_for_ids(findings, expected, Duration::from_secs(120));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(
        caught_up,
        "the service did not consume every record in time"
    );
    assert!(status.success(), "service exit: {status:?}");
    got
}

/// Every record of `topic`, read until the ids in it include `expected`
/// (and then 3 s of quiet), or the timeout.
fn wait_for_ids(topic: &str, expected: &BTreeSet<String>, timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let got: Vec<String> = read_topic(topic, 0, Duration::from_secs(8))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        if ids(got.iter().cloned()).is_superset(expected) || start.elapsed() > timeout {
            return read_topic(topic, got.len(), Duration::from_secs(30))
                .into_iter()
                .map(|(p, _)| p)
                .collect();
        }
    }
}

/// The `run.toml` of a test: synthetic GeoIP, the given topics (TOML inline
/// tables), findings topic, optional DLQ, fast commits, fast failure detection.
fn write_run_config(
    d: &std::path::Path,
    group: &str,
    topics: &str,
    findings: &str,
    dlq: Option<&str>,
) {
    write_run_config_with(d, group, topics, findings, dlq, "");
}

/// As [`write_run_config`], with more keys for the `[kafka]` table.
fn write_run_config_with(
    d: &std::path::Path,
    group: &str,
    topics: &str,
    findings: &str,
    dlq: Option<&str>,
    extra_kafka: &str,
) {
    let dlq = dlq
        .map(|t| format!("dlq_topic = \"{t}\"\n"))
        .unwrap_or_default();
    let config = format!(
        "[geoip]\ncity = \"geo/city.mmdb\"\nasn = \"geo/asn.mmdb\"\n\n[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\n\
         topics = [{topics}]\nfindings_topic = \"{findings}\"\n{dlq}commit_interval_ms = 300\nidle_flush_ms = 1500\n{extra_kafka}\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\n\
         [dashboard]\nlisten = \"127.0.0.1:0\"\n",
        bootstrap(),
    );
    std::fs::write(d.join("run.toml"), config).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "run.toml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Load `file` into `topic` (`replay --to-kafka`), keyed or not, at an optional rate.
fn load_cmd(
    d: &std::path::Path,
    file: &str,
    topic: &str,
    keyed: bool,
    rate: Option<u32>,
) -> Command {
    let mut c = Command::new(bin());
    c.env("TOKENWATCH_HASH_KEY", "test-hash-key-0123456789abcdef");
    c.current_dir(d).args([
        "replay",
        file,
        "--to-kafka",
        &bootstrap(),
        topic,
        "--format",
        "envoy",
    ]);
    if keyed {
        c.arg("--key-by-token");
    }
    if let Some(r) = rate {
        c.args(["--rate", &r.to_string()]);
    }
    c
}

fn load(d: &std::path::Path, file: &str, topic: &str, keyed: bool) {
    let st = load_cmd(d, file, topic, keyed, None).status().unwrap();
    assert!(st.success(), "loading {file}");
}

fn assert_same_findings(got: &[String], expected: &BTreeSet<String>, what: &str) {
    let got_ids = ids(got.iter().cloned());
    let missing: Vec<_> = expected.difference(&got_ids).collect();
    let extra: Vec<_> = got_ids.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} missing {missing:?}, {} extra {extra:?}",
        missing.len(),
        extra.len()
    );
    // Idempotent out: a finding present twice is the same finding.
    let mut by_id = std::collections::BTreeMap::new();
    for p in got {
        let v: serde_json::Value = serde_json::from_str(p).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        if let Some(prev) = by_id.insert(id.clone(), v.clone()) {
            assert_eq!(prev, v, "{what}: two different findings with id {id}");
        }
    }
}

#[test]
fn streaming_gives_the_replay_findings_and_dead_letters_poison() {
    let _guard = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, data) = dataset(77, 250);
    let d = dir.path();
    let clean = &data;
    std::fs::write(d.join("clean.jsonl"), clean).unwrap();

    // Poison interleaved with the good records.
    let poison = [
        "this is not json".to_string(),
        "{\"start_time\":".to_string(),
        // Undecodable (no timestamp, no address) and carrying credentials.
        "{\"method\":\"GET\",\"path\":\"/v1/x?access_token=QSECRET\",\"authorization\":\"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.SIGSECRET\"}".to_string(),
        "[1,2,3]".to_string(),
    ];
    let mut poisoned = Vec::new();
    for (i, line) in clean
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i % 5000 == 17 && i / 5000 < poison.len() {
            poisoned.extend_from_slice(poison[i / 5000].as_bytes());
            poisoned.push(b'\n');
        }
        poisoned.extend_from_slice(line);
        poisoned.push(b'\n');
    }
    let poison_count = poisoned
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
        - clean
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
    assert_eq!(poison_count, poison.len());
    let total = poisoned
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    std::fs::write(d.join("poisoned.jsonl"), &poisoned).unwrap();

    let expected = replay_ids(d, "clean.jsonl");

    // Load the poisoned file into Kafka, keyed.
    let (logs, findings, dlq) = (unique("tw-logs"), unique("tw-findings"), unique("tw-dlq"));
    load(d, "poisoned.jsonl", &logs, true);
    write_run_config(
        d,
        &unique("tw-group"),
        &format!("{{ name = \"{logs}\", format = \"envoy\", keyed = true }}"),
        &findings,
        Some(&dlq),
    );
    let (child, run) = spawn_run(d);
    let caught_up = run.consumed(total, 180);
    let got = stop_when_found(child, caught_up, &findings, &expected);
    assert_same_findings(&got, &expected, "streaming vs file replay");
    assert_eq!(got.len(), expected.len(), "no finding produced twice");

    // What the findings caused is in the store's outbox and audit log
    // (default policy: revocations observed; alerts for the dispatcher,
    // which finds no channel configured here and records that).
    let store = tokenwatch::store::Store::open(&d.join("tokenwatch.db")).unwrap();
    let observed = store.actions_in_state(ActionStatus::Observed).unwrap();
    let alerts = [
        store.actions_in_state(ActionStatus::Pending).unwrap(),
        store.actions_in_state(ActionStatus::NoEndpoint).unwrap(),
    ]
    .concat();
    assert!(!observed.is_empty(), "observed revocations recorded");
    assert!(!alerts.is_empty(), "alerts recorded");
    let audit = store.audit_log().unwrap();
    let by_rules = audit.iter().filter(|a| a.0.starts_with("rule:")).count();
    assert_eq!(
        by_rules,
        observed.len() + alerts.len(),
        "every decision audited once"
    );
    let no_channel = store
        .actions_in_state(ActionStatus::NoEndpoint)
        .unwrap()
        .len();
    assert!(
        audit
            .iter()
            .filter(|a| a.0 == "dispatcher")
            .all(|a| a.1 == "alert no_endpoint" && a.3.contains("no alert channel")),
        "the dispatcher says why nothing was sent"
    );
    assert_eq!(audit.len(), by_rules + no_channel);

    let dead = read_topic(&dlq, poison_count, Duration::from_secs(30));
    assert_eq!(
        dead.len(),
        poison_count,
        "every poison record is dead-lettered once"
    );
    // Issue 14, point 10: dead letters keep the record, not its credentials.
    let scrubbed: Vec<String> = poison
        .iter()
        .map(|p| String::from_utf8(tokenwatch::decode::scrub::scrub(p.as_bytes())).unwrap())
        .collect();
    assert!(
        scrubbed
            .iter()
            .any(|p| p.contains("\"method\":\"GET\"") && p.contains("[redacted]"))
    );
    for (payload, headers) in &dead {
        assert!(
            scrubbed.contains(payload),
            "unexpected dead letter {payload}"
        );
        for secret in ["QSECRET", "SIGSECRET", "eyJ", "Bearer"] {
            assert!(
                !payload.contains(secret),
                "{secret} in dead letter {payload}"
            );
        }
        let h: std::collections::BTreeMap<_, _> = headers.iter().cloned().collect();
        assert!(h.contains_key("tokenwatch-reason"), "{h:?}");
        assert_eq!(h.get("tokenwatch-source-topic"), Some(&logs));
        assert!(
            h.get("tokenwatch-source-offset")
                .is_some_and(|o| o.parse::<i64>().is_ok())
        );
    }
}

/// Tests in this file share one broker and one of them restarts it.
static BROKER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lines_of(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

/// `tokenwatch run` in `dir` with its ops endpoints on a free port (the
/// tests watch the service through /metrics, as an operator's Prometheus
/// would, not through its log wording); stderr is mirrored.
fn spawn_run(dir: &std::path::Path) -> (std::process::Child, Ops) {
    let ops = free_port();
    let mut child = Command::new(bin())
        .current_dir(dir)
        .args(["run", "--config", "run.toml", "--ops-listen"])
        .arg(format!("127.0.0.1:{ops}"))
        .env("TOKENWATCH_HASH_KEY", "test-hash-key-0123456789abcdef")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[run] {line}");
        }
    });
    (child, Ops(ops))
}

/// The ops port of one `tokenwatch run`.
#[derive(Clone, Copy)]
struct Ops(u16);

impl Ops {
    /// The sum of the series of `name` whose labels contain `labels`
    /// (e.g. `from="changelog"`); `None` while nothing answers or no
    /// series of it exists yet.
    fn metric(self, name: &str, labels: &str) -> Option<f64> {
        common::metric(self.0, name, labels)
    }

    /// Wait until `ok` holds for the metric (polled every 200 ms).
    fn wait(self, name: &str, labels: &str, secs: u64, ok: impl Fn(f64) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.metric(name, labels).is_some_and(&ok) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// At least `n` records read from Kafka by this process (records read
    /// again after a restore count again).
    fn consumed(self, n: usize, secs: u64) -> bool {
        self.wait("tokenwatch_records_total", "source=\"kafka\"", secs, |v| {
            v >= n as f64
        })
    }

    /// Holding exactly `n` partitions.
    fn assigned(self, n: usize, secs: u64) -> bool {
        self.wait("tokenwatch_assigned_partitions", "", secs, |v| {
            v == n as f64
        })
    }

    /// Partitions restored with their state (`from` store or changelog;
    /// "" for either) and the tokens they brought, once at least
    /// `partitions` came back with tokens.
    fn restored(self, from: &str, partitions: usize, secs: u64) -> Option<(u64, u64)> {
        let labels = if from.is_empty() {
            String::new()
        } else {
            format!("from=\"{from}\"")
        };
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let p = self.metric("tokenwatch_restored_partitions_total", &labels);
            let t = self.metric("tokenwatch_restored_tokens_total", &labels);
            if let (Some(p), Some(t)) = (p, t)
                && p >= partitions as f64
                && t > 0.0
            {
                return Some((p as u64, t as u64));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

#[test]
fn a_broker_restart_during_consumption_loses_nothing() {
    let _guard = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, data) = dataset(78, 200);
    let d = dir.path();
    let data = &data;
    std::fs::write(d.join("all.jsonl"), data).unwrap();
    let lines = lines_of(data);
    let half = lines.len() / 2;
    let join = |ls: &[&[u8]]| {
        ls.iter()
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect::<Vec<u8>>()
    };
    std::fs::write(d.join("first.jsonl"), join(&lines[..half])).unwrap();
    std::fs::write(d.join("second.jsonl"), join(&lines[half..])).unwrap();

    let expected = replay_ids(d, "all.jsonl");

    let (logs, findings) = (unique("tw-rs-logs"), unique("tw-rs-findings"));
    load(d, "first.jsonl", &logs, true);
    // The configured ops_listen is what --ops-listen overrides.
    write_run_config_with(
        d,
        &unique("tw-rs-group"),
        &format!("{{ name = \"{logs}\", format = \"envoy\", keyed = true }}"),
        &findings,
        None,
        &format!("ops_listen = \"127.0.0.1:{}\"\n", free_port()),
    );
    let (child, run) = spawn_run(d);
    let ops = run.0;
    assert!(run.consumed(half, 120), "first half not consumed");
    assert_eq!(http_status(ops, "/readyz"), 200, "ready while consuming");

    // The broker goes away and comes back while the service runs; readiness
    // follows it.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                seen.insert(http_status(ops, "/readyz"));
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };
    let st = Command::new("scripts/kafka")
        .arg("restart")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "broker restart");
    load(d, "second.jsonl", &logs, true);
    let caught_up = run.consumed(lines.len(), 180);
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert!(
        seen.contains(&503),
        "/readyz said 503 while the broker was down: {seen:?}"
    );
    assert_eq!(http_status(ops, "/readyz"), 200, "ready again");
    let metrics = http_body(ops, "/metrics");
    assert!(metrics.contains("tokenwatch_events_total"), "{metrics}");
    assert!(
        metrics.contains("tokenwatch_checkpoint_age_seconds"),
        "{metrics}"
    );
    let got = stop_when_found(child, caught_up, &findings, &expected);
    assert_same_findings(&got, &expected, "across the broker restart");
}

/// GET over plain HTTP/1.0: (status, body); status 0 if nothing answers.
fn http_get(port: u16, path: &str) -> (u16, String) {
    http(port, "GET", path, &[], "")
}

fn http_status(port: u16, path: &str) -> u16 {
    http_get(port, path).0
}

fn http_body(port: u16, path: &str) -> String {
    http_get(port, path).1
}

/// SIGKILL: no checkpoint, no commit, no goodbye to the group.
fn kill9(mut child: std::process::Child) {
    child.kill().unwrap();
    let _ = child.wait();
}

fn create_topic(name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let res = rt
        .block_on(admin.create_topics([&t], &AdminOptions::new()))
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
}

/// Crash: the service is killed with SIGKILL at random points while an
/// unkeyed topic (repartition mode) streams in, and restarted each time.
/// Every expected finding reaches the output topic, none is lost or
/// different, and each restart gets its detector state back from the
/// checkpoints instead of re-learning from zero.
#[test]
fn kill_9_mid_stream_loses_nothing_and_restores_state() {
    let _guard = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, total, expected) = replayed_dataset(79);
    let d = dir.path();

    // One unkeyed input partition re-keyed into two: cross-partition skew of
    // a 900x accelerated replay would exceed the lateness bound otherwise
    // (see the repartition notes in ARCHITECTURE.md).
    let (logs, findings) = (unique("tw-crash-logs"), unique("tw-crash-findings"));
    create_topic(&logs, 1);
    let group = unique("tw-crash-group");
    write_run_config_with(
        d,
        &group,
        &format!("{{ name = \"{logs}\", format = \"envoy\", keyed = false }}"),
        &findings,
        None,
        "repartition_partitions = 2\n",
    );
    // The gateway keeps writing (unkeyed) while the service crashes, three
    // times: each restart rejoins the group (≈ 6–8 s), so the load spans
    // ≈ 45 s and the last run still has records to consume.
    let rate = (total / 45).max(1000) as u32;
    let mut loader = load_cmd(d, "all.jsonl", &logs, false, Some(rate))
        .spawn()
        .unwrap();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut child, mut run) = spawn_run(d);
    // Kill mid-stream: once the first run is consuming (not while it joins).
    assert!(run.consumed(1, 60), "first run started consuming");
    let mut restored = Vec::new();
    for round in 0..3 {
        let after = Duration::from_millis(800 + next() % 1700);
        eprintln!("crash test (seed {seed}): kill -9 in round {round} after {after:?}");
        std::thread::sleep(after);
        kill9(child);
        (child, run) = spawn_run(d);
        let n = run.restored("store", 1, 60);
        assert!(
            n.is_some(),
            "restart {round} restored no state from the checkpoints"
        );
        restored.push(n.map_or(0, |(_, tokens)| tokens));
    }
    assert!(loader.wait().unwrap().success(), "loader");
    let caught_up = run.consumed(1, 60);
    let got = stop_when_found(child, caught_up, &findings, &expected);
    assert_same_findings(&got, &expected, "after three kill -9");
    // Issue 14, point 10: the forwarded copies carry the gateway's raw
    // Authorization header sealed, never readable.
    let forwarded = read_topic(
        &format!("{group}.repartition"),
        1000,
        Duration::from_secs(20),
    );
    assert!(forwarded.len() >= 1000, "{}", forwarded.len());
    for (payload, headers) in &forwarded {
        assert!(
            // Long needles: three random bytes of ciphertext can spell `eyJ`.
            !payload.contains("Bearer eyJ") && !payload.contains("\"start_time\""),
            "a readable forwarded record: {payload:?}"
        );
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "tokenwatch-seal" && v == "1")
        );
    }
    eprintln!(
        "crash test: {} findings expected, {} records in the output topic, state restored: {restored:?} tokens",
        expected.len(),
        got.len()
    );
}

/// Scale-out: two instances share a 4-partition keyed topic; one is killed
/// halfway; the survivor takes its partitions with their state (from the
/// store the instances share on this machine) and every finding is there.
#[test]
fn scale_out_survivor_takes_over_partitions_with_their_state() {
    let _guard = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, total, expected) = replayed_dataset(80);
    let d = dir.path();

    let (logs, findings) = (unique("tw-scale-logs"), unique("tw-scale-findings"));
    create_topic(&logs, 4);
    write_run_config(
        d,
        &unique("tw-scale-group"),
        &format!("{{ name = \"{logs}\", format = \"envoy\", keyed = true }}"),
        &findings,
        None,
    );
    let (a, run_a) = spawn_run(d);
    let (b, run_b) = spawn_run(d);
    assert!(run_a.assigned(2, 60), "A got half");
    assert!(run_b.assigned(2, 60), "B got half");
    let rate = (total / 10).max(1000) as u32;
    let mut loader = load_cmd(d, "all.jsonl", &logs, true, Some(rate))
        .spawn()
        .unwrap();
    // Halfway: A has read half of its share (it owns half the partitions).
    assert!(run_a.consumed(total / 4, 120), "A is consuming");
    kill9(a);
    // Incremental (cooperative) rebalance: the survivor keeps its own two
    // partitions in memory and gets the dead instance's two from the store.
    let restored = run_b.restored("store", 2, 60);
    assert!(
        restored.is_some_and(|(p, _)| p == 2),
        "the survivor restored the dead instance's state: {restored:?}"
    );
    assert!(run_b.assigned(4, 30), "the survivor took every partition");
    assert!(loader.wait().unwrap().success(), "loader");
    let caught_up = run_b.consumed(1, 60);
    let got = stop_when_found(b, caught_up, &findings, &expected);
    assert_same_findings(&got, &expected, "after losing one of two instances");
}

/// Two instances on "different machines" (separate stores), handing state
/// over through the compacted changelog topic: one is killed, the survivor
/// restores its partitions from the changelog and every finding is there.
#[test]
fn state_moves_between_machines_through_the_changelog_topic() {
    let _guard = BROKER.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, total, expected) = replayed_dataset(81);
    let d = dir.path();

    let (logs, findings) = (unique("tw-cl-logs"), unique("tw-cl-findings"));
    let changelog = unique("tw-cl-changelog");
    create_topic(&logs, 2);
    let group = unique("tw-cl-group");
    let topics = format!("{{ name = \"{logs}\", format = \"envoy\", keyed = true }}");
    let extra = format!("changelog_topic = \"{changelog}\"\n");
    // Machine B: its own directory, store and copy of the GeoIP databases.
    let other = d.join("machine-b");
    std::fs::create_dir_all(other.join("geo")).unwrap();
    for f in ["city.mmdb", "asn.mmdb"] {
        std::fs::copy(d.join("geo").join(f), other.join("geo").join(f)).unwrap();
    }
    write_run_config_with(d, &group, &topics, &findings, None, &extra);
    write_run_config_with(&other, &group, &topics, &findings, None, &extra);

    let (a, run_a) = spawn_run(d);
    let (b, run_b) = spawn_run(&other);
    assert!(run_a.assigned(1, 60), "A got one partition");
    assert!(run_b.assigned(1, 60), "B got one partition");
    let rate = (total / 10).max(1000) as u32;
    let mut loader = load_cmd(d, "all.jsonl", &logs, true, Some(rate))
        .spawn()
        .unwrap();
    // Halfway: A has read half of its share (it owns half the partitions).
    assert!(run_a.consumed(total / 4, 120), "A is consuming");
    kill9(a);
    assert!(
        run_b.restored("changelog", 1, 60).is_some(),
        "the survivor restored the dead instance's state from the changelog"
    );
    assert!(loader.wait().unwrap().success(), "loader");
    let caught_up = run_b.consumed(1, 60);
    let got = stop_when_found(b, caught_up, &findings, &expected);
    assert_same_findings(&got, &expected, "after a move between machines");
}

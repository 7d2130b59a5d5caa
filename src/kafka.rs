//! The Kafka edge: `tokenwatch run` (consume gateway logs in a consumer
//! group, detect, produce findings and dead letters) and `replay --to-kafka`
//! (load a dataset into a topic).
//!
//! **Partition-scoped state.** Detector state is kept per partition (one
//! engine each), so a token's events must share a partition. A topic with
//! `keyed = true` is keyed that way by its producer (`replay --to-kafka
//! --key-by-token` keys by subject, else client_id, else token id, which also
//! keeps a subject's successive tokens together). A topic with `keyed =
//! false` (most gateways) is in **repartition mode**: its partitions are
//! stateless forwarders that re-key every record the same way into the
//! internal topic `<group_id>.repartition` (created with as many partitions
//! as the input), whose partitions hold the state. Instances in one group
//! share both.
//!
//! **At-least-once in, idempotent out.** A dedicated thread polls the
//! consumer and hands batches and rebalance events, in order, to the
//! processing thread over a bounded channel. Findings are recorded in the
//! store (which recognises a finding derived again after a restart) and
//! produced with an idempotent producer. Every `commit_interval_ms`, on
//! revocation and on shutdown, the processing thread flushes the producer,
//! checkpoints each partition's detector state (reorder buffer included, as
//! source coordinates) in the store, and only then commits the partition's
//! offset at the checkpoint's resume position, naming the checkpoint in the
//! commit metadata. On assignment a partition whose committed offset names a
//! checkpoint in this store gets its state back and re-reads from there,
//! feeding again only the events that were still waiting; instances sharing
//! a store (one machine) hand state over on rebalance. Without it, state
//! starts empty from the committed offset (said in the log).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashSet;

use crate::config::{Config, KafkaConfig};
use crate::decode::{DecodeSettings, Decoder};
use crate::detect::{Engine, Finding};
use crate::enrich::Enricher;
use crate::event::{Drop, DropReason};
use crate::store::{Checkpoint, Store, StoreError, StoredFinding};

/// Errors that stop the service (everything else is retried and logged).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("kafka.properties.{key}: {message}")]
    Property { key: String, message: String },
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counters of a running service.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RunStats {
    pub consumed: u64,
    pub events: u64,
    pub dropped: u64,
    pub findings: u64,
    /// Findings derived again after a restart and recognised in the store.
    pub findings_deduplicated: u64,
    pub commits: u64,
    pub checkpoints: u64,
    /// Records of the repartition topic forwarded twice (after a crash), dropped.
    pub duplicates_dropped: u64,
    /// Tokens whose state came back from checkpoints.
    pub restored_tokens: u64,
    /// Partitions currently assigned.
    pub assigned: usize,
    /// Broker timestamp of the triggering record → finding produced (µs).
    pub latency_us: Option<LatencySummary>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// Which client a librdkafka property is for (the other one would warn).
#[derive(Clone, Copy, PartialEq)]
enum ClientKind {
    Consumer,
    Producer,
    Admin,
}

fn consumer_only(k: &str) -> bool {
    k.starts_with("group.")
        || k.starts_with("fetch.")
        || k.starts_with("queued.")
        || k.starts_with("auto.")
        || k.starts_with("enable.auto.")
        || matches!(
            k,
            "session.timeout.ms"
                | "heartbeat.interval.ms"
                | "max.poll.interval.ms"
                | "max.partition.fetch.bytes"
                | "partition.assignment.strategy"
                | "isolation.level"
                | "check.crcs"
                | "enable.partition.eof"
        )
}

fn producer_only(k: &str) -> bool {
    matches!(
        k,
        "acks"
            | "request.required.acks"
            | "linger.ms"
            | "queue.buffering.max.ms"
            | "queue.buffering.max.messages"
            | "queue.buffering.max.kbytes"
            | "batch.size"
            | "batch.num.messages"
            | "compression.type"
            | "compression.codec"
            | "enable.idempotence"
            | "message.timeout.ms"
            | "delivery.timeout.ms"
            | "retries"
            | "message.send.max.retries"
            | "partitioner"
            | "transactional.id"
    )
}

/// Resolve `env:NAME` and `file:/path` property values.
pub fn client_config(kc: &KafkaConfig) -> Result<ClientConfig, ServiceError> {
    client_config_for(kc, ClientKind::Consumer)
}

fn client_config_for(kc: &KafkaConfig, kind: ClientKind) -> Result<ClientConfig, ServiceError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kc.brokers);
    for (k, v) in &kc.properties {
        let skip = match kind {
            ClientKind::Consumer => producer_only(k),
            ClientKind::Producer => consumer_only(k),
            ClientKind::Admin => producer_only(k) || consumer_only(k),
        };
        if skip {
            continue;
        }
        let value = if let Some(var) = v.strip_prefix("env:") {
            std::env::var(var).map_err(|_| ServiceError::Property {
                key: k.clone(),
                message: format!("environment variable {var} is not set"),
            })?
        } else if let Some(path) = v.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .map_err(|e| ServiceError::Property {
                    key: k.clone(),
                    message: format!("cannot read {path}: {e}"),
                })?
                .trim()
                .to_string()
        } else {
            v.clone()
        };
        c.set(k, value);
    }
    Ok(c)
}

/// Delivery reports: a record produced with a non-zero ticket reports it
/// here once the broker has it (findings: marked produced in the store
/// right away, so a crash re-produces as little as possible).
#[derive(Default)]
struct Deliveries {
    delivered: Mutex<Vec<usize>>,
    last_logged: Mutex<Option<(String, Instant)>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!("librdkafka producer {fac}: {log_message}")
            }
            _ => tracing::debug!("librdkafka producer {fac}: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if first_in_a_while(&self.last_logged, format!("{error}")) {
            tracing::warn!("kafka producer: {error}: {reason}");
        }
    }
}

/// Whether an error is new, or last logged more than 30 s ago (a broker
/// outage repeats the same error many times a second).
fn first_in_a_while(last: &Mutex<Option<(String, Instant)>>, key: String) -> bool {
    let Ok(mut last) = last.lock() else {
        return true;
    };
    let repeat = last
        .as_ref()
        .is_some_and(|(k, at)| *k == key && at.elapsed() < Duration::from_secs(30));
    if !repeat {
        *last = Some((key, Instant::now()));
    }
    !repeat
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        if ticket != 0
            && result.is_ok()
            && let Ok(mut d) = self.delivered.lock()
        {
            d.push(ticket);
        }
    }
}

type TwProducer = ThreadedProducer<Deliveries>;

fn producer(kc: &KafkaConfig) -> Result<TwProducer, ServiceError> {
    let mut c = client_config_for(kc, ClientKind::Producer)?;
    for (k, v) in [
        ("enable.idempotence", "true"),
        ("linger.ms", "5"),
        ("compression.type", "lz4"),
    ] {
        if !kc.properties.contains_key(k) {
            c.set(k, v);
        }
    }
    Ok(c.create_with_context(Deliveries::default())?)
}

/// Record headers from `(key, value)` pairs.
fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(*value),
        })
    })
}

/// A record without a delivery ticket.
fn record(topic: &str) -> BaseRecord<'_, [u8], [u8], usize> {
    BaseRecord::with_opaque_to(topic, 0)
}

/// Send, waiting while the local queue is full (backpressure, not loss).
fn send(p: &TwProducer, mut rec: BaseRecord<'_, [u8], [u8], usize>) -> Result<(), KafkaError> {
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Readiness of the running service, shared with whoever reports it.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// What the dashboard shows live.
    pub live: crate::live::Hub,
}

impl Health {
    /// Joined the group and the brokers answer.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The last broker or client error, while it lasts.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn set_ok(&self) {
        if !self.ready.swap(true, Ordering::Relaxed) {
            tracing::info!("kafka: ready");
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
    }

    pub fn set_error(&self, message: String) {
        if self.ready.swap(false, Ordering::Relaxed) {
            tracing::warn!("kafka: not ready: {message}");
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(message);
        }
    }
}

/// What the poll thread hands to the processing thread, in order.
enum Control {
    Batch(Vec<OwnedMessage>),
    /// Partitions assigned to this instance: restore their checkpoints.
    Assigned(Vec<(String, i32)>),
    /// Partitions about to be taken away: checkpoint and commit them, then
    /// acknowledge (the rebalance waits for it).
    Revoked(Vec<(String, i32)>, SyncSender<()>),
    /// The poll thread stopped (shutdown).
    End,
}

/// librdkafka callbacks: rebalances, statistics (consumer lag), errors.
struct Ctx {
    tx: SyncSender<Control>,
    closing: AtomicBool,
    health: Arc<Health>,
    /// The last error logged and when: the same error is logged once per 30 s.
    last_logged: Mutex<Option<(String, Instant)>>,
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        for (topic, t) in &s.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    crate::telemetry::consumer_lag(topic, *p, part.consumer_lag);
                    self.health.live.set_lag(topic, *p, part.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let hint = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                " (no broker reachable: retrying with backoff; check kafka.brokers and the network)"
            }
            Some(
                RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed,
            ) => " (check the SASL/SSL settings in [kafka.properties] and the ACLs)",
            _ => "",
        };
        if first_in_a_while(&self.last_logged, format!("{error}")) {
            tracing::error!("kafka: {error}: {reason}{hint}");
        } else {
            tracing::debug!("kafka: {error}: {reason}");
        }
        self.health.set_error(format!("{error}: {reason}"));
    }

    // librdkafka's own log lines: what matters reaches `error` above.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!("librdkafka {fac}: {log_message}")
            }
            RDKafkaLogLevel::Warning if fac != "CONFWARN" => {
                tracing::warn!("librdkafka {fac}: {log_message}")
            }
            _ => tracing::debug!("librdkafka {fac}: {log_message}"),
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if self.closing.load(Ordering::SeqCst) {
                return;
            }
            let (ack, done) = std::sync::mpsc::sync_channel(1);
            if self
                .tx
                .send(Control::Revoked(partitions_of(tpl), ack))
                .is_ok()
            {
                // The processing thread checkpoints and commits first.
                let _ = done.recv_timeout(Duration::from_secs(120));
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let _ = self.tx.send(Control::Assigned(partitions_of(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!("kafka: rebalance failed: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

type TwConsumer = BaseConsumer<Ctx>;

/// How a subscribed topic's partitions are handled.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    /// Keyed by token: detect here.
    Keyed,
    /// Unkeyed input: re-key each record into the repartition topic.
    Forward,
    /// The repartition topic: detect here.
    Internal,
}

struct TopicRole {
    name: String,
    format: String,
    role: Role,
}

/// A partition with detector state.
struct Shard {
    engine: Engine,
    /// By format name (the repartition topic carries several).
    decoders: Vec<(String, Decoder)>,
    /// Next offset to process (last processed + 1).
    next: Option<i64>,
    /// After a restore, offsets below this were processed before…
    ckpt_next: i64,
    /// …except these events, which were waiting in the reorder buffer.
    readmit: FxHashSet<(i64, u32)>,
    last_record: Instant,
    last_checkpoint: Instant,
    /// Latest checkpoint sequence number in the store.
    seq: i64,
    dirty: bool,
    /// Repartition topic: per source partition, the highest source offset
    /// processed. Forwarding is at-least-once (a forwarder that crashes
    /// forwards again from its committed offset); this drops the copies.
    sources: HashMap<String, HashMap<i32, i64>>,
}

/// A shard's checkpoint: `[u32 LE length][source marks (postcard)][engine snapshot]`.
fn encode_shard_state(s: &Shard) -> Result<Vec<u8>, String> {
    let marks: Vec<(&str, i32, i64)> = s
        .sources
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |(p, o)| (t.as_str(), *p, *o)))
        .collect();
    let marks = postcard::to_allocvec(&marks).map_err(|e| e.to_string())?;
    let engine = s.engine.snapshot().map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(4 + marks.len() + engine.len());
    out.extend_from_slice(&(marks.len() as u32).to_le_bytes());
    out.extend_from_slice(&marks);
    out.extend_from_slice(&engine);
    Ok(out)
}

/// Restore a shard; returns the events to feed again.
fn decode_shard_state(s: &mut Shard, bytes: &[u8]) -> Result<Vec<(i64, u32)>, String> {
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("checkpoint too short")?;
    let marks = bytes.get(4..4 + len).ok_or("checkpoint truncated")?;
    let marks: Vec<(String, i32, i64)> = postcard::from_bytes(marks).map_err(|e| e.to_string())?;
    let pending = s
        .engine
        .restore(&bytes[4 + len..])
        .map_err(|e| e.to_string())?;
    s.sources.clear();
    for (t, p, o) in marks {
        s.sources.entry(t).or_default().insert(p, o);
    }
    Ok(pending)
}

/// Source coordinates a forwarder puts on a repartitioned record.
fn source_of(m: &OwnedMessage) -> Option<(&str, i32, i64)> {
    let h = m.headers()?;
    let get = |k: &str| {
        h.iter()
            .find(|x| x.key == k)
            .and_then(|x| x.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    Some((
        get("tokenwatch-source-topic")?,
        get("tokenwatch-source-partition")?.parse().ok()?,
        get("tokenwatch-source-offset")?.parse().ok()?,
    ))
}

impl Shard {
    fn decoder(&mut self, settings: &DecodeSettings, format: &str) -> Result<&mut Decoder, String> {
        let i = match self.decoders.iter().position(|(f, _)| f == format) {
            Some(i) => i,
            None => {
                self.decoders
                    .push((format.to_string(), settings.decoder(format)?));
                self.decoders.len() - 1
            }
        };
        Ok(&mut self.decoders[i].1)
    }
}

/// An unkeyed input partition in repartition mode: no state.
struct Forward {
    decoder: Decoder,
    next: Option<i64>,
}

enum Part {
    Shard(Box<Shard>),
    Forward(Box<Forward>),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The streaming service: `tokenwatch run`.
struct Service<'a> {
    cfg: &'a Config,
    kc: &'a KafkaConfig,
    settings: DecodeSettings,
    enricher: Arc<Enricher>,
    roles: Vec<TopicRole>,
    repartition_topic: Option<String>,
    changelog: Option<String>,
    /// Per partition, the changelog generations written: (seq, chunks).
    changelog_gens: HashMap<(String, i32), VecDeque<(i64, usize)>>,
    consumer: Arc<TwConsumer>,
    producer: TwProducer,
    store: Store,
    /// The response policy (one per instance: budgets count this instance's
    /// revocations); its decisions go to the store's outbox with the findings.
    decider: crate::decide::Decider,
    health: Arc<Health>,
    parts: HashMap<(usize, i32), Part>,
    findings: Vec<Finding>,
    /// Findings produced and not yet confirmed by the broker, by ticket.
    in_flight: HashMap<usize, String>,
    next_ticket: usize,
    decoded: Vec<Result<crate::event::AccessEvent, Drop>>,
    /// Seals records forwarded through the repartition topic (and opens
    /// them at the shard): they carry the gateway's raw credentials.
    seal: crate::seal::RecordSeal,
    /// Said once: X-Forwarded-For is present but no proxy is trusted.
    xff_warned: bool,
    stats: RunStats,
    /// Broker timestamp of the triggering record → finding produced, in µs.
    latency: hdrhistogram::Histogram<u64>,
    interval: Duration,
    last_checkpoint: Instant,
}

/// `rule=observe|enforce`, as the dashboard writes it.
fn set_mode(decider: &mut crate::decide::Decider, target: &str) -> bool {
    let Some((rule, mode)) = target.split_once('=') else {
        return false;
    };
    let mode = match mode {
        "observe" => crate::config::Mode::Observe,
        "enforce" => crate::config::Mode::Enforce,
        _ => return false,
    };
    decider.set_mode(rule, mode)
}

/// Tell the dashboard's live feed about new findings and what was decided.
pub fn publish(
    hub: &crate::live::Hub,
    findings: &[Finding],
    fresh: &[bool],
    decided: &[crate::decide::Decision],
) {
    use crate::live::LiveItem;
    let new = fresh.iter().filter(|n| **n).count() as u64;
    hub.add_findings(new);
    if hub.listeners() == 0 {
        return;
    }
    for (f, _) in findings.iter().zip(fresh).filter(|(_, n)| **n) {
        let incident = decided
            .iter()
            .find(|d| d.finding_id == f.id)
            .map(|d| d.incident.id.as_str())
            .unwrap_or("");
        hub.publish(&LiveItem::Finding {
            id: &f.id,
            kind: f.kind.as_str(),
            severity: f.severity.as_str(),
            mode: f.mode.as_str(),
            token_id: f.token_id.as_str(),
            subject: f.subject.as_deref(),
            client_id: f.client_id.as_deref(),
            incident_id: incident,
            event_time: &f.event_time,
            summary: &f.summary,
            country: f.country.as_deref(),
            city: f.city.as_deref(),
            network: f.network,
            asn: f.asn,
        });
    }
    for d in decided {
        for a in &d.actions {
            let (state, why) = a.state.describe();
            hub.publish(&LiveItem::Action {
                id: &a.id,
                kind: a.kind.as_str(),
                rule: &a.rule,
                state,
                why,
                token_id: &a.token_id,
                incident_id: &a.incident_id,
                summary: &a.summary,
            });
        }
    }
}

/// The streaming service. Returns when `stop` is set (SIGINT / SIGTERM),
/// after checkpointing, committing and leaving the group.
pub fn run(
    cfg: &Config,
    settings: DecodeSettings,
    custody: Option<Arc<crate::custody::Custody>>,
    enricher: Arc<Enricher>,
    stop: Arc<AtomicBool>,
    health: Arc<Health>,
    mut progress: impl FnMut(&RunStats),
) -> Result<RunStats, ServiceError> {
    let kc = cfg
        .kafka
        .as_ref()
        .ok_or_else(|| ServiceError::Setup("no [kafka] section in the configuration".into()))?;
    let mut store = Store::open(&cfg.store.path)?;
    if let Some(c) = custody {
        store.set_custody(c);
    }
    // Commands queued while no instance ran are already in the restored state.
    let _ = store.take_commands();
    let mut decider = crate::decide::Decider::new(&cfg.policy);
    decider.restore(
        store.open_incidents()?,
        &store.tripped_fuses()?,
        &store.executed_revocations()?,
    );
    for (rule, mode) in store.rule_modes()? {
        set_mode(&mut decider, &format!("{rule}={mode}"));
    }
    let mut roles: Vec<TopicRole> = kc
        .topics
        .iter()
        .map(|t| TopicRole {
            name: t.name.clone(),
            format: t.format.clone(),
            role: if t.keyed { Role::Keyed } else { Role::Forward },
        })
        .collect();
    let repartition_topic = roles
        .iter()
        .any(|r| r.role == Role::Forward)
        .then(|| kc.repartition_topic());
    if let Some(t) = &repartition_topic {
        ensure_repartition_topic(kc, t)?;
        roles.push(TopicRole {
            name: t.clone(),
            format: "auto".into(),
            role: Role::Internal,
        });
    }

    if let Some(t) = &kc.changelog_topic {
        ensure_topic(kc, t, 1, &[("cleanup.policy", "compact")], "changelog")?;
    }

    let mut cc = client_config(kc)?;
    cc.set("group.id", &kc.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    // Throughput defaults for small log records (1 KB): big fetches, a deep
    // local queue. Measured in BENCHMARKS.md; any of them can be overridden.
    for (k, v) in [
        ("auto.offset.reset", "earliest"),
        ("max.partition.fetch.bytes", "8388608"),
        ("fetch.min.bytes", "1048576"),
        ("queued.max.messages.kbytes", "262144"),
        ("statistics.interval.ms", "5000"),
        // Incremental rebalances: a partition that stays put keeps its state
        // in memory; only moved partitions go through a checkpoint.
        ("partition.assignment.strategy", "cooperative-sticky"),
    ] {
        if !kc.properties.contains_key(k) {
            cc.set(k, v);
        }
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Control>(32);
    let ctx = Ctx {
        tx: tx.clone(),
        closing: AtomicBool::new(false),
        health: health.clone(),
        last_logged: Mutex::new(None),
    };
    let consumer: Arc<TwConsumer> = Arc::new(cc.create_with_context(ctx)?);
    let topics: Vec<&str> = roles.iter().map(|t| t.name.as_str()).collect();
    consumer.subscribe(&topics)?;

    let seal = crate::seal::RecordSeal::new(&settings.forward_key());
    let mut svc = Service {
        cfg,
        kc,
        settings,
        enricher,
        roles,
        repartition_topic,
        changelog: kc.changelog_topic.clone(),
        changelog_gens: HashMap::new(),
        consumer: consumer.clone(),
        producer: producer(kc)?,
        store,
        decider,
        health,
        parts: HashMap::new(),
        findings: Vec::new(),
        in_flight: HashMap::new(),
        next_ticket: 1,
        decoded: Vec::new(),
        seal,
        xff_warned: false,
        stats: RunStats::default(),
        latency: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| ServiceError::Setup(e.to_string()))?,
        interval: Duration::from_millis(kc.commit_interval_ms.max(100)),
        last_checkpoint: Instant::now(),
    };
    svc.redeliver_unproduced()?;

    // The consumer is polled on its own thread, which hands batches of
    // messages (and rebalance events, in order) to this one over a bounded
    // channel: librdkafka's fetch path and our decode/detect overlap. When
    // the channel is full the poller pauses its partitions instead of
    // blocking past max.poll.interval.ms.
    let poller = {
        let consumer = consumer.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn(move || {
                poll_loop(&consumer, &tx, &stop);
                let _ = tx.send(Control::End);
            })
            .map_err(|e| ServiceError::Setup(format!("cannot start the poll thread: {e}")))?
    };

    let idle = Duration::from_millis(kc.idle_flush_ms);
    let mut last_progress = Instant::now();
    let mut last_idle_check = Instant::now();
    let mut reported = (u64::MAX, u64::MAX);
    let mut last_commands = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Control::Batch(batch)) => svc.batch(&batch)?,
            Ok(Control::Assigned(list)) => svc.assign(&list),
            Ok(Control::Revoked(list, ack)) => {
                svc.revoke(&list);
                let _ = ack.send(());
            }
            Ok(Control::End) | Err(RecvTimeoutError::Disconnected) => break,
            // The poll thread died without saying so (a panic): stop too.
            Err(RecvTimeoutError::Timeout) if poller.is_finished() => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if !idle.is_zero() && last_idle_check.elapsed() >= Duration::from_millis(100) {
            svc.flush_idle(idle)?;
            last_idle_check = Instant::now();
        }
        if svc.last_checkpoint.elapsed() >= svc.interval {
            svc.checkpoint(None);
        }
        if last_commands.elapsed() >= Duration::from_secs(1) {
            svc.apply_commands();
            last_commands = Instant::now();
        }
        if last_progress.elapsed() >= Duration::from_millis(500)
            && (svc.stats.consumed, svc.stats.findings) != reported
        {
            svc.report_gauges();
            progress(&svc.stats);
            reported = (svc.stats.consumed, svc.stats.findings);
            last_progress = Instant::now();
        }
    }
    if poller.join().is_err() {
        return Err(ServiceError::Setup("the poll thread panicked".into()));
    }
    // Graceful shutdown: what the events caused is produced and durable, the
    // state is checkpointed (reorder buffers included: a restart continues
    // exactly here), offsets are committed, then the group is left.
    svc.checkpoint(None);
    svc.fill_latency();
    progress(&svc.stats);
    let stats = svc.stats.clone();
    if let Some(ctx) = Some(consumer.context()) {
        ctx.closing.store(true, Ordering::SeqCst);
    }
    drop(svc);
    drop(consumer);
    Ok(stats)
}

/// Create the repartition topic if it does not exist: as many partitions as
/// the largest unkeyed input topic (or `repartition_partitions`).
fn ensure_repartition_topic(kc: &KafkaConfig, topic: &str) -> Result<(), ServiceError> {
    let mut partitions = kc.repartition_partitions as i32;
    if partitions == 0 {
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            client_config_for(kc, ClientKind::Admin)?.create()?;
        for t in kc.topics.iter().filter(|t| !t.keyed) {
            let md = admin
                .inner()
                .fetch_metadata(Some(&t.name), Duration::from_secs(30))?;
            let n = md
                .topics()
                .iter()
                .map(|t| t.partitions().len())
                .max()
                .unwrap_or(0);
            partitions = partitions.max(n as i32);
        }
    }
    ensure_topic(kc, topic, partitions.max(1), &[], "repartition")
}

/// Create a topic if it does not exist.
fn ensure_topic(
    kc: &KafkaConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
    what: &str,
) -> Result<(), ServiceError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        client_config_for(kc, ClientKind::Admin)?.create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServiceError::Setup(format!("runtime: {e}")))?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let res = rt.block_on(admin.create_topics([&new], &AdminOptions::new()))?;
    for r in res {
        match r {
            Ok(_) => {
                tracing::info!("kafka: created the {what} topic {topic} ({partitions} partitions)")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(ServiceError::Setup(format!(
                    "cannot create the {what} topic {t}: {code} (create it with {partitions} partitions, or allow tokenwatch to)"
                )));
            }
        }
    }
    Ok(())
}

/// Checkpoints in the changelog topic are cut into records of this size.
const CHANGELOG_CHUNK: usize = 512 * 1024;

/// Write checkpoints to the changelog topic, one generation per key prefix:
/// chunks keyed `<topic>/<partition>/<seq>/<i>`, then the manifest keyed
/// `<topic>/<partition>/<seq>` (`<store id>:<seq>:<chunks>:<resume>:<next>:<created ms>`).
/// A checkpoint cut short by a crash never overwrites the generation the
/// committed offset names; generations two behind are deleted (tombstones)
/// once a newer one is committed, so compaction keeps the topic small.
fn changelog_write(
    producer: &TwProducer,
    changelog: &str,
    store_id: &str,
    cps: &[Checkpoint],
) -> Result<(), KafkaError> {
    for c in cps {
        let seq = c.seq.to_string();
        let chunks: Vec<&[u8]> = c.state.chunks(CHANGELOG_CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let key = format!("{}/{}/{}/{i}", c.topic, c.partition, c.seq);
            let headers = headers(&[("tokenwatch-store", store_id), ("tokenwatch-seq", &seq)]);
            send(
                producer,
                record(changelog)
                    .key(key.as_bytes())
                    .payload(chunk)
                    .headers(headers),
            )?;
        }
        let manifest = format!(
            "{store_id}:{}:{}:{}:{}:{}",
            c.seq,
            chunks.len(),
            c.resume_offset,
            c.next_offset,
            c.created_ms
        );
        let key = format!("{}/{}/{}", c.topic, c.partition, c.seq);
        send(
            producer,
            record(changelog)
                .key(key.as_bytes())
                .payload(manifest.as_bytes()),
        )?;
    }
    Ok(())
}

/// Delete a generation from the changelog (tombstones; compaction removes it).
fn changelog_delete(
    producer: &TwProducer,
    changelog: &str,
    topic: &str,
    partition: i32,
    seq: i64,
    chunks: usize,
) -> Result<(), KafkaError> {
    let mut keys: Vec<String> = (0..chunks)
        .map(|i| format!("{topic}/{partition}/{seq}/{i}"))
        .collect();
    keys.push(format!("{topic}/{partition}/{seq}"));
    for k in keys {
        send(producer, record(changelog).key(k.as_bytes()))?;
    }
    Ok(())
}

/// Read the changelog topic to its end and rebuild the checkpoints `wanted`
/// (`(topic, partition) → (store id, seq)`, as named by committed offsets).
fn changelog_read(
    kc: &KafkaConfig,
    changelog: &str,
    wanted: &HashMap<(String, i32), (String, i64)>,
) -> Result<HashMap<(String, i32), Checkpoint>, ServiceError> {
    let consumer: BaseConsumer = client_config_for(kc, ClientKind::Consumer)?
        .set("group.id", format!("{}.changelog-reader", kc.group_id))
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(changelog), Duration::from_secs(30))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let prefixes: Vec<String> = wanted
        .iter()
        .map(|((t, p), (_, seq))| format!("{t}/{p}/{seq}"))
        .collect();
    // key → (store, seq, payload); the latest record of a key wins.
    let mut latest: HashMap<String, (String, i64, Vec<u8>)> = HashMap::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(changelog, p, Duration::from_secs(30))?;
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(changelog, p, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut at = low;
        while at < high && Instant::now() < deadline {
            let Some(m) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let m = m?;
            at = m.offset() + 1;
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            if !prefixes.iter().any(|pre| {
                key == pre
                    || key
                        .strip_prefix(pre.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }) {
                continue;
            }
            let header = |name: &str| {
                m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == name)
                        .and_then(|x| x.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_string)
                })
            };
            let Some(payload) = m.payload() else {
                // A tombstone: that generation is gone.
                latest.remove(key);
                continue;
            };
            let store = header("tokenwatch-store").unwrap_or_default();
            let seq = header("tokenwatch-seq")
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1);
            latest.insert(key.to_string(), (store, seq, payload.to_vec()));
        }
    }
    tracing::debug!(
        "changelog {changelog}: {} keys kept for {wanted:?}: {:?}",
        latest.len(),
        latest.keys().collect::<Vec<_>>()
    );
    let mut out = HashMap::new();
    for ((topic, partition), (store, seq)) in wanted {
        let Some((_, _, manifest)) = latest.get(&format!("{topic}/{partition}/{seq}")) else {
            continue;
        };
        let manifest = String::from_utf8_lossy(manifest);
        let f: Vec<&str> = manifest.split(':').collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<i64>().ok());
        let (Some(mseq), Some(chunks), Some(resume), Some(next), Some(created)) =
            (num(1), num(2), num(3), num(4), num(5))
        else {
            continue;
        };
        if f.first() != Some(&store.as_str()) || mseq != *seq {
            continue;
        }
        let mut state = Vec::new();
        let complete =
            (0..chunks).all(
                |i| match latest.get(&format!("{topic}/{partition}/{seq}/{i}")) {
                    Some((s, q, bytes)) if s == store && q == seq => {
                        state.extend_from_slice(bytes);
                        true
                    }
                    _ => false,
                },
            );
        if complete {
            out.insert(
                (topic.clone(), *partition),
                Checkpoint {
                    topic: topic.clone(),
                    partition: *partition,
                    seq: *seq,
                    resume_offset: resume,
                    next_offset: next,
                    created_ms: created,
                    state,
                },
            );
        }
    }
    Ok(out)
}

impl Service<'_> {
    fn ticket(&mut self, id: String) -> usize {
        let t = self.next_ticket;
        self.next_ticket += 1;
        self.in_flight.insert(t, id);
        t
    }

    /// Record in the store which findings the broker confirmed.
    fn mark_delivered(&mut self) -> Result<(), StoreError> {
        let tickets = match self.producer.context().delivered.lock() {
            Ok(mut d) if !d.is_empty() => std::mem::take(&mut *d),
            _ => return Ok(()),
        };
        let ids: Vec<String> = tickets
            .iter()
            .filter_map(|t| self.in_flight.remove(t))
            .collect();
        self.store.mark_produced(&ids)
    }

    fn role_of(&self, topic: &str) -> Option<usize> {
        self.roles.iter().position(|r| r.name == topic)
    }

    /// Findings recorded by an earlier run but not confirmed produced.
    /// Manual acts done through the store (reset a fuse, resolve an
    /// incident) reach this instance's policy state.
    fn apply_commands(&mut self) {
        match self.store.take_commands() {
            Ok(cmds) => {
                for (cmd, target) in cmds {
                    let applied = match cmd.as_str() {
                        "reset_fuse" => self.decider.reset_fuse(&target),
                        "resolve" => self.decider.resolve(&target),
                        "set_mode" => set_mode(&mut self.decider, &target),
                        _ => false,
                    };
                    tracing::info!(
                        "policy: {cmd} {target} ({})",
                        if applied {
                            "applied"
                        } else {
                            "nothing to change"
                        }
                    );
                }
            }
            Err(e) => tracing::warn!("reading commands: {e}"),
        }
    }

    fn redeliver_unproduced(&mut self) -> Result<(), ServiceError> {
        let Some(topic) = &self.kc.findings_topic else {
            return Ok(());
        };
        let rows = self.store.unproduced()?;
        if !rows.is_empty() {
            tracing::info!(
                "kafka: producing {} findings recorded before a crash",
                rows.len()
            );
        }
        for (id, token_id, json) in rows {
            let rec = BaseRecord::with_opaque_to(topic, self.ticket(id))
                .key(token_id.as_bytes())
                .payload(json.as_bytes());
            send(&self.producer, rec)?;
        }
        Ok(())
    }

    fn batch(&mut self, batch: &[OwnedMessage]) -> Result<(), ServiceError> {
        crate::telemetry::records("kafka", batch.len() as u64);
        let events_before = self.stats.events;
        let now = Instant::now();
        for m in batch {
            self.message(m, now)?;
        }
        crate::telemetry::events(self.stats.events - events_before);
        self.health
            .live
            .add_events(self.stats.events - events_before);
        self.emit()?;
        self.mark_delivered()?;
        if !batch.is_empty() {
            self.health.set_ok();
        }
        Ok(())
    }

    fn message(&mut self, m: &OwnedMessage, now: Instant) -> Result<(), ServiceError> {
        let Some(ti) = self.role_of(m.topic()) else {
            return Ok(());
        };
        let key = (ti, m.partition());
        // Not (or no longer) ours: a message fetched before a rebalance.
        let Some(part) = self.parts.get_mut(&key) else {
            return Ok(());
        };
        self.stats.consumed += 1;
        let off = m.offset();
        let payload = m.payload().unwrap_or_default();
        let role = self.roles[ti].role;
        match part {
            Part::Forward(f) => {
                if f.next.is_some_and(|n| off < n) {
                    return Ok(());
                }
                f.next = Some(off + 1);
                self.decoded.clear();
                f.decoder.decode(payload, &mut self.decoded);
                warn_xff(&mut self.xff_warned, &f.decoder);
                let mut first_drop: Option<(Drop, usize)> = None;
                let mut key: Option<String> = None;
                for r in self.decoded.drain(..) {
                    match r {
                        Ok(e) if key.is_none() => key = Some(partition_key(&e).to_string()),
                        Ok(_) => {}
                        Err(d) => count_drop(&mut first_drop, d),
                    }
                }
                if let Some((d, n)) = first_drop {
                    self.stats.dropped += n as u64;
                    dead_letter(self.kc, &self.producer, m, &d, n)?;
                }
                if let (Some(k), Some(topic)) = (key, &self.repartition_topic) {
                    let format = self.roles[ti].format.as_str();
                    let (sp, so) = (m.partition().to_string(), off.to_string());
                    let headers = headers(&[
                        ("tokenwatch-format", format),
                        ("tokenwatch-source-topic", m.topic()),
                        ("tokenwatch-source-partition", &sp),
                        ("tokenwatch-source-offset", &so),
                        ("tokenwatch-seal", "1"),
                    ]);
                    let sealed = self.seal.seal(format, payload);
                    let mut rec = record(topic)
                        .key(k.as_bytes())
                        .payload(&sealed)
                        .headers(headers);
                    if let Some(ts) = m.timestamp().to_millis() {
                        rec = rec.timestamp(ts);
                    }
                    send(&self.producer, rec)?;
                }
            }
            Part::Shard(s) => {
                let replaying = off < s.ckpt_next;
                if replaying && s.readmit.is_empty() {
                    return Ok(());
                }
                if !replaying && s.next.is_some_and(|n| off < n) {
                    return Ok(());
                }
                if !replaying
                    && role == Role::Internal
                    && let Some((st, sp, so)) = source_of(m)
                {
                    // Looked up by &str: no allocation per record.
                    let marks = match s.sources.get_mut(st) {
                        Some(m) => m,
                        None => s.sources.entry(st.to_string()).or_default(),
                    };
                    match marks.get_mut(&sp) {
                        Some(mark) if so <= *mark => {
                            // A copy forwarded again after a forwarder crash.
                            s.next = Some(off + 1);
                            self.stats.duplicates_dropped += 1;
                            crate::telemetry::repartition_duplicate();
                            return Ok(());
                        }
                        Some(mark) => *mark = so,
                        None => {
                            marks.insert(sp, so);
                        }
                    }
                }
                s.last_record = now;
                s.dirty = true;
                let format = match role {
                    Role::Internal => m
                        .headers()
                        .and_then(|h| {
                            h.iter()
                                .find(|h| h.key == "tokenwatch-format")
                                .and_then(|h| h.value)
                        })
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .unwrap_or("auto")
                        .to_string(),
                    _ => self.roles[ti].format.clone(),
                };
                let decoder = s
                    .decoder(&self.settings, &format)
                    .map_err(ServiceError::Setup)?;
                self.decoded.clear();
                // Forwarded records are sealed (they carry raw credentials);
                // ones forwarded by a version before sealing are read as
                // they are, so a rolling upgrade loses nothing.
                let sealed = role == Role::Internal
                    && m.headers()
                        .is_some_and(|h| h.iter().any(|h| h.key == "tokenwatch-seal"));
                let opened = sealed.then(|| self.seal.open(&format, payload));
                match opened {
                    None => decoder.decode(payload, &mut self.decoded),
                    Some(Some(p)) => decoder.decode(&p, &mut self.decoded),
                    Some(None) => self.decoded.push(Err(Drop::new(
                        DropReason::Unsealable,
                        "a repartitioned record that does not open under this instance's \
                         key: give every instance of the group the same TOKENWATCH_HASH_KEY",
                    ))),
                }
                warn_xff(&mut self.xff_warned, decoder);
                let source_ts = m.timestamp().to_millis().unwrap_or(-1);
                let mut first_drop: Option<(Drop, usize)> = None;
                for (i, r) in self.decoded.drain(..).enumerate() {
                    match r {
                        Ok(ev) => {
                            if replaying && !s.readmit.remove(&(off, i as u32)) {
                                continue;
                            }
                            if ev.rejected {
                                crate::telemetry::rejected(1);
                                self.health.live.add_rejected(1);
                            }
                            let mut en = self.enricher.enrich(ev);
                            en.source_offset = off;
                            en.source_index = i as u32;
                            en.source_ts = source_ts;
                            self.stats.events += 1;
                            if !s.engine.push(en, &mut self.findings) {
                                self.stats.dropped += 1;
                                crate::telemetry::dropped(DropReason::Late, 1);
                            }
                        }
                        Err(d) if !replaying => count_drop(&mut first_drop, d),
                        Err(_) => {}
                    }
                }
                if !replaying {
                    s.next = Some(off + 1);
                }
                // One dead letter per record, however many of its objects were
                // bad; records of the repartition topic were dead-lettered
                // when they were forwarded.
                if let Some((d, n)) = first_drop {
                    self.stats.dropped += n as u64;
                    if role == Role::Keyed {
                        dead_letter(self.kc, &self.producer, m, &d, n)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// New findings: recorded in the store (a finding derived again after a
    /// restart is recognised there and not produced twice), then produced.
    fn emit(&mut self) -> Result<(), ServiceError> {
        if self.findings.is_empty() {
            return Ok(());
        }
        let jsons: Vec<Vec<u8>> = self
            .findings
            .iter()
            .map(|f| serde_json::to_vec(f).unwrap_or_default())
            .collect();
        let rows: Vec<StoredFinding<'_>> = self
            .findings
            .iter()
            .zip(&jsons)
            .map(|(f, j)| StoredFinding::of(f, j))
            .collect();
        let (findings, decider) = (&self.findings, &mut self.decider);
        let mut decided = Vec::new();
        let fresh = self
            .store
            .insert_findings_and_decide(&rows, now_ms(), |i| {
                let d = decider.decide(&findings[i]);
                decided.push(d.clone());
                Some(d)
            })?;
        drop(rows);
        publish(&self.health.live, &self.findings, &fresh, &decided);
        // A finding derived again that its first deriver recorded but never
        // got confirmed as produced (it died in between: a partition taken
        // over from a killed instance sharing this store) is produced now.
        let again: Vec<&str> = self
            .findings
            .iter()
            .zip(&fresh)
            .filter(|(_, new)| !**new)
            .map(|(f, _)| f.id.as_str())
            .filter(|id| !self.in_flight.values().any(|x| x == id))
            .collect();
        let unproduced = if again.is_empty() {
            Vec::new()
        } else {
            self.store.unproduced_ids(&again)?
        };
        let now_ms = now_ms();
        let now_us = now_us();
        let findings = std::mem::take(&mut self.findings);
        for ((f, json), fresh) in findings.into_iter().zip(&jsons).zip(fresh) {
            if !fresh {
                self.stats.findings_deduplicated += 1;
                crate::telemetry::finding_deduplicated();
                if let Some(topic) = &self.kc.findings_topic
                    && unproduced.contains(&f.id)
                {
                    let ticket = self.ticket(f.id.clone());
                    let rec = BaseRecord::with_opaque_to(topic, ticket)
                        .key(f.token_id.as_str().as_bytes())
                        .payload(json.as_slice());
                    send(&self.producer, rec)?;
                }
                continue;
            }
            self.stats.findings += 1;
            crate::telemetry::finding(f.kind);
            crate::telemetry::finding_latency((now_ms - f.event_ts) as f64 / 1000.0);
            if f.source_ts >= 0 {
                let us = (now_us - f.source_ts * 1000).max(1) as u64;
                let _ = self.latency.record(us.min(self.latency.high()));
                crate::telemetry::processing_latency(us as f64 / 1e6);
            }
            if let Some(topic) = &self.kc.findings_topic {
                let ticket = self.ticket(f.id);
                let rec = BaseRecord::with_opaque_to(topic, ticket)
                    .key(f.token_id.as_str().as_bytes())
                    .payload(json.as_slice());
                send(&self.producer, rec)?;
            }
        }
        Ok(())
    }

    /// Partitions assigned: a partition whose committed offset names a
    /// checkpoint in this store gets its state back; the consumer starts at
    /// that committed offset (the checkpoint's resume position).
    fn assign(&mut self, list: &[(String, i32)]) {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in list {
            tpl.add_partition(t, *p);
        }
        let committed = match self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(30))
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("kafka: cannot read committed offsets ({e}); state starts empty");
                None
            }
        };
        // Partitions last checkpointed by another store (another machine):
        // their checkpoints come from the changelog topic.
        let mut foreign: HashMap<(String, i32), Checkpoint> = HashMap::new();
        if let (Some(changelog), Some(c)) = (&self.changelog, &committed) {
            let wanted: HashMap<(String, i32), (String, i64)> = c
                .elements()
                .iter()
                .filter_map(|e| {
                    let (store, seq) = crate::store::parse_metadata(e.metadata())?;
                    (store != self.store.id()).then(|| {
                        (
                            (e.topic().to_string(), e.partition()),
                            (store.to_string(), seq),
                        )
                    })
                })
                .collect();
            if !wanted.is_empty() {
                match changelog_read(self.kc, changelog, &wanted) {
                    Ok(found) => {
                        tracing::info!(
                            "kafka: changelog {changelog}: {} of {} checkpoints found",
                            found.len(),
                            wanted.len()
                        );
                        foreign = found
                    }
                    Err(e) => tracing::warn!("kafka: reading the changelog {changelog}: {e}"),
                }
            }
        }
        for (topic, p) in list {
            let Some(ti) = self.role_of(topic) else {
                continue;
            };
            let part = match self.roles[ti].role {
                Role::Forward => match self.settings.decoder(&self.roles[ti].format) {
                    Ok(decoder) => Part::Forward(Box::new(Forward {
                        decoder,
                        next: None,
                    })),
                    Err(e) => {
                        tracing::error!("kafka: {topic}: {e}");
                        continue;
                    }
                },
                Role::Keyed | Role::Internal => {
                    let mut s = Box::new(Shard {
                        engine: Engine::new(self.cfg),
                        decoders: Vec::new(),
                        next: None,
                        ckpt_next: i64::MIN,
                        readmit: FxHashSet::default(),
                        last_record: Instant::now(),
                        last_checkpoint: Instant::now(),
                        seq: self.store.latest_seq(topic, *p).unwrap_or(0),
                        dirty: false,
                        sources: HashMap::new(),
                    });
                    let from_changelog = foreign.remove(&(topic.clone(), *p));
                    self.restore(&mut s, topic, *p, committed.as_ref(), from_changelog);
                    Part::Shard(s)
                }
            };
            self.parts.insert((ti, *p), part);
        }
        self.stats.assigned = self.parts.len();
        tracing::info!(
            "kafka: assigned {} partitions (now {}): {}",
            list.len(),
            self.parts.len(),
            list.iter()
                .map(|(t, p)| format!("{t}/{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    fn restore(
        &mut self,
        s: &mut Shard,
        topic: &str,
        partition: i32,
        committed: Option<&TopicPartitionList>,
        from_changelog: Option<Checkpoint>,
    ) {
        let Some(elem) = committed.and_then(|c| c.find_partition(topic, partition)) else {
            return;
        };
        let (cp, source) = match from_changelog {
            Some(cp) if elem.offset() == Offset::Offset(cp.resume_offset) => (cp, "the changelog"),
            _ => match self.local_checkpoint(topic, partition, &elem) {
                Some(cp) => (cp, "the store"),
                None => return,
            },
        };
        let seq = cp.seq;
        match decode_shard_state(s, &cp.state) {
            Ok(pending) => {
                s.readmit = pending.into_iter().collect();
                s.ckpt_next = cp.next_offset;
                s.next = Some(cp.next_offset);
                let tokens = s.engine.tracked_tokens();
                self.stats.restored_tokens += tokens as u64;
                crate::telemetry::restored(tokens);
                tracing::info!(
                    "kafka: restored {topic}/{partition} from checkpoint {seq}: {tokens} tokens, \
                     {} waiting events, resuming at offset {} ({} s old, from {source})",
                    s.readmit.len(),
                    cp.resume_offset,
                    (now_ms() - cp.created_ms) / 1000
                );
            }
            Err(e) => {
                tracing::warn!("kafka: {topic}/{partition}: {e}; detector state starts empty");
            }
        }
    }

    /// The checkpoint of this store that a committed offset names.
    fn local_checkpoint(
        &self,
        topic: &str,
        partition: i32,
        elem: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>,
    ) -> Option<Checkpoint> {
        let Some(seq) = self.store.seq_from_metadata(elem.metadata()) else {
            if elem.offset() != Offset::Invalid {
                tracing::warn!(
                    "kafka: {topic}/{partition}: its committed offset names no checkpoint in {} \
                     (another machine's store? set kafka.changelog_topic to hand state over \
                     between machines); detector state starts empty",
                    self.cfg.store.path.display()
                );
            }
            return None;
        };
        match self.store.checkpoint(topic, partition, seq) {
            Ok(Some(cp)) if elem.offset() == Offset::Offset(cp.resume_offset) => Some(cp),
            Ok(_) => {
                tracing::warn!(
                    "kafka: {topic}/{partition}: checkpoint {seq} is missing or does not match \
                     the committed offset; detector state starts empty"
                );
                None
            }
            Err(e) => {
                tracing::error!("kafka: {e}; detector state of {topic}/{partition} starts empty");
                None
            }
        }
    }

    fn revoke(&mut self, list: &[(String, i32)]) {
        let keys: Vec<(usize, i32)> = list
            .iter()
            .filter_map(|(t, p)| self.role_of(t).map(|i| (i, *p)))
            .collect();
        self.checkpoint(Some(&keys));
        for k in &keys {
            self.parts.remove(k);
        }
        self.stats.assigned = self.parts.len();
        tracing::info!(
            "kafka: {} partitions revoked, state checkpointed (now {})",
            keys.len(),
            self.parts.len()
        );
    }

    /// Quiet partitions release their reorder buffers, unless the broker
    /// still has records for them (then they are only behind, not quiet).
    fn flush_idle(&mut self, idle: Duration) -> Result<(), ServiceError> {
        let mut due = Vec::new();
        for (k, part) in &self.parts {
            if let Part::Shard(s) = part
                && s.engine.pending_len() > 0
                && s.readmit.is_empty()
                && s.last_record.elapsed() >= idle
            {
                due.push(*k);
            }
        }
        for k in due {
            let topic = self.roles[k.0].name.clone();
            let high = self
                .consumer
                .fetch_watermarks(&topic, k.1, Duration::from_secs(5))
                .map(|(_, h)| h)
                .ok();
            let Some(Part::Shard(s)) = self.parts.get_mut(&k) else {
                continue;
            };
            s.last_record = Instant::now();
            if high.is_some_and(|h| s.next.is_none_or(|n| n >= h)) {
                s.engine.flush_idle(&mut self.findings);
                s.dirty = true;
            }
        }
        self.emit()
    }

    /// Make everything produced so far durable, checkpoint the detector
    /// state of `only` (or all) partitions in the store, then commit their
    /// offsets naming the checkpoints. Returns whether it committed.
    fn checkpoint(&mut self, only: Option<&[(usize, i32)]>) -> bool {
        self.last_checkpoint = Instant::now();
        if self.parts.is_empty() {
            return true;
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(30)) {
            tracing::warn!("kafka: producer flush failed ({e}); offsets not committed, will retry");
            self.health.set_error(format!("producer flush: {e}"));
            return false;
        }
        if let Err(e) = self.mark_delivered() {
            tracing::error!("kafka: {e}; offsets not committed, will retry");
            return false;
        }
        let started = Instant::now();
        let created_ms = now_ms();
        let mut cps = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for (k, part) in &self.parts {
            if only.is_some_and(|o| !o.contains(k)) {
                continue;
            }
            let topic = self.roles[k.0].name.as_str();
            match part {
                Part::Forward(f) => {
                    if let Some(n) = f.next {
                        let _ = tpl.add_partition_offset(topic, k.1, Offset::Offset(n));
                    }
                }
                Part::Shard(s) => {
                    // Still reading back what a restore needs: the previous
                    // checkpoint (and its committed offset) stands.
                    let (Some(next), true, true) = (s.next, s.readmit.is_empty(), s.dirty) else {
                        continue;
                    };
                    let resume = s
                        .engine
                        .oldest_pending_offset()
                        .map_or(next, |o| o.min(next));
                    match encode_shard_state(s) {
                        Ok(state) => cps.push(Checkpoint {
                            topic: topic.to_string(),
                            partition: k.1,
                            seq: s.seq + 1,
                            resume_offset: resume,
                            next_offset: next,
                            created_ms,
                            state,
                        }),
                        Err(e) => tracing::error!("kafka: {topic}/{}: {e}", k.1),
                    }
                }
            }
        }
        if let Err(e) = self.store.save_checkpoints(&cps) {
            tracing::error!("kafka: {e}; offsets not committed, will retry");
            return false;
        }
        if let Some(changelog) = &self.changelog
            && !cps.is_empty()
        {
            let written = changelog_write(&self.producer, changelog, self.store.id(), &cps)
                .and_then(|()| self.producer.flush(Duration::from_secs(60)));
            if let Err(e) = written {
                tracing::warn!(
                    "kafka: changelog {changelog}: {e}; offsets not committed, will retry"
                );
                return false;
            }
        }
        let bytes: usize = cps.iter().map(|c| c.state.len()).sum();
        for c in &cps {
            let _ =
                tpl.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.resume_offset));
            if let Some(mut e) = tpl.find_partition(&c.topic, c.partition) {
                e.set_metadata(self.store.commit_metadata(c.seq));
            }
            if let Some(ti) = self.role_of(&c.topic)
                && let Some(Part::Shard(s)) = self.parts.get_mut(&(ti, c.partition))
            {
                s.seq = c.seq;
                s.dirty = false;
                s.last_checkpoint = Instant::now();
            }
        }
        let took = started.elapsed();
        crate::telemetry::checkpoint(took.as_secs_f64(), bytes);
        self.stats.checkpoints += cps.len() as u64;
        // Checkpointing may use at most a tenth of the time.
        self.interval = Duration::from_millis(self.kc.commit_interval_ms.max(100)).max(took * 10);
        if tpl.count() == 0 {
            return true;
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.stats.commits += 1;
                crate::telemetry::commit(true);
                self.changelog_prune(&cps);
                true
            }
            Err(e) => {
                crate::telemetry::commit(false);
                tracing::warn!("kafka: offset commit failed ({e}); will retry");
                self.health.set_error(format!("offset commit: {e}"));
                false
            }
        }
    }

    /// After a commit: generations older than the previous one leave the changelog.
    fn changelog_prune(&mut self, cps: &[Checkpoint]) {
        let Some(changelog) = &self.changelog else {
            return;
        };
        for c in cps {
            let gens = self
                .changelog_gens
                .entry((c.topic.clone(), c.partition))
                .or_default();
            gens.push_back((c.seq, c.state.len().div_ceil(CHANGELOG_CHUNK)));
            while gens.len() > 2 {
                if let Some((seq, chunks)) = gens.pop_front()
                    && let Err(e) = changelog_delete(
                        &self.producer,
                        changelog,
                        &c.topic,
                        c.partition,
                        seq,
                        chunks,
                    )
                {
                    tracing::warn!("kafka: changelog {changelog}: {e}");
                }
            }
        }
    }

    fn report_gauges(&self) {
        for ((ti, p), part) in &self.parts {
            if let Part::Shard(s) = part {
                let topic = &self.roles[*ti].name;
                crate::telemetry::tracked_tokens(topic, *p, s.engine.tracked_tokens());
                crate::telemetry::checkpoint_age(
                    topic,
                    *p,
                    s.last_checkpoint.elapsed().as_secs_f64(),
                );
            }
        }
    }

    fn fill_latency(&mut self) {
        let h = &self.latency;
        if !h.is_empty() {
            self.stats.latency_us = Some(LatencySummary {
                count: h.len(),
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
            });
        }
    }
}

fn count_drop(first: &mut Option<(Drop, usize)>, d: Drop) {
    crate::telemetry::dropped(d.reason, 1);
    match first {
        Some((_, n)) => *n += 1,
        None => *first = Some((d, 1)),
    }
}

/// The partitioning key of an event: subject, else client_id, else token id,
/// so a subject's successive tokens (and their carried baselines) meet.
fn partition_key(e: &crate::event::AccessEvent) -> &str {
    e.subject
        .as_deref()
        .or(e.client_id.as_deref())
        .unwrap_or(e.token.as_str())
}

/// Once per service: records carry X-Forwarded-For but `trusted_proxies`
/// is empty, so every client is the gateway's peer address.
fn warn_xff(warned: &mut bool, decoder: &crate::decode::Decoder) {
    if !*warned && decoder.xff_without_trusted_proxy() > 0 {
        *warned = true;
        tracing::warn!(
            "records carry X-Forwarded-For but input.trusted_proxies is empty: each client is \
             the gateway's peer address; if a load balancer sits in front of the gateway, list \
             its networks in input.trusted_proxies"
        );
    }
}

fn dead_letter(
    kc: &KafkaConfig,
    producer: &TwProducer,
    m: &OwnedMessage,
    d: &Drop,
    bad_objects: usize,
) -> Result<(), ServiceError> {
    tracing::debug!(
        topic = m.topic(),
        partition = m.partition(),
        offset = m.offset(),
        reason = d.reason.as_str(),
        "dead letter"
    );
    crate::telemetry::dead_letter();
    let Some(topic) = &kc.dlq_topic else {
        return Ok(());
    };
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let bad = bad_objects.to_string();
    let headers = headers(&[
        ("tokenwatch-bad-objects", &bad),
        ("tokenwatch-reason", d.reason.as_str()),
        ("tokenwatch-detail", &d.detail),
        ("tokenwatch-source-topic", m.topic()),
        ("tokenwatch-source-partition", &partition),
        ("tokenwatch-source-offset", &offset),
    ]);
    // Dead letters stay readable for whoever debugs the gateway, so their
    // credentials go (decode::scrub).
    let scrubbed = crate::decode::scrub::scrub(m.payload().unwrap_or_default());
    let rec = record(topic).payload(&scrubbed).headers(headers);
    let rec = match m.key() {
        Some(k) => rec.key(k),
        None => rec,
    };
    Ok(send(producer, rec)?)
}

/// The poll thread: batches of up to 1,024 messages; pauses the assignment
/// while the pipeline is behind; ends on `stop`.
fn poll_loop(consumer: &TwConsumer, tx: &SyncSender<Control>, stop: &AtomicBool) {
    // Messages returned while paused (already in the local queue) go first
    // into the next batch: nothing polled is ever dropped.
    let mut carry: Vec<OwnedMessage> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut batch = std::mem::take(&mut carry);
        batch.reserve(1024);
        let mut timeout = Duration::from_millis(100);
        while batch.len() < 1024 {
            match consumer.poll(timeout) {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => {
                    // Broker-level errors are logged (once) by `Ctx::error`.
                    tracing::debug!("kafka: consumer error: {e}; retrying");
                    consumer
                        .context()
                        .health
                        .set_error(format!("consumer: {e}"));
                    break;
                }
                None => break,
            }
            timeout = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        match tx.try_send(Control::Batch(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(batch)) => {
                // Backpressure. Short waits just wait (pausing would drop the
                // prefetched queue and stall on a refetch); past a second the
                // assignment is paused and polled, so the group protocol keeps
                // running however long the pipeline needs.
                let waited = Instant::now();
                let mut paused = None;
                let mut pending = Some(batch);
                while let Some(b) = pending.take() {
                    match tx.try_send(b) {
                        Ok(()) => {}
                        Err(TrySendError::Full(b)) => {
                            pending = Some(b);
                            if paused.is_none() && waited.elapsed() > Duration::from_secs(1) {
                                paused = consumer.assignment().ok();
                                if let Some(a) = &paused {
                                    let _ = consumer.pause(a);
                                }
                            }
                            if paused.is_some() {
                                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                                    carry.push(m.detach());
                                }
                            } else {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
                if let Some(a) = &paused {
                    let _ = consumer.resume(a);
                }
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Load records into a topic (`replay --to-kafka`). With `key_by_token`,
/// each record is decoded to key it by subject, else client_id, else token id.
pub fn load(
    kc: &KafkaConfig,
    topic: &str,
    lines: &mut dyn FnMut(&mut Vec<u8>) -> std::io::Result<bool>,
    mut decoder: Option<Decoder>,
    rate: Option<f64>,
) -> Result<u64, ServiceError> {
    let producer = producer(kc)?;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut n = 0u64;
    let started = Instant::now();
    let started_ms = now_ms();
    while lines(&mut buf).map_err(|e| ServiceError::Setup(format!("reading input: {e}")))? {
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let key: Option<String> = decoder.as_mut().and_then(|d| {
            out.clear();
            d.decode(&buf, &mut out);
            out.iter()
                .find_map(|r| r.as_ref().ok())
                .map(|e| partition_key(e).to_string())
        });
        let mut rec = record(topic).payload(buf.as_slice());
        if let Some(r) = rate {
            // The record's timestamp is when it was due, not when it was
            // sent: a stalled producer then shows up as latency downstream
            // instead of hiding it (no coordinated omission).
            rec = rec.timestamp(started_ms + (n as f64 * 1000.0 / r) as i64);
        }
        let rec = match &key {
            Some(k) => rec.key(k.as_bytes()),
            None => rec,
        };
        send(&producer, rec)?;
        n += 1;
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(n as f64 / r);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(n)
}

//! The Kafka edge: `tokenwatch run` (consume gateway logs in a consumer
//! group, detect, produce findings and dead letters) and `replay --to-kafka`
//! (load a dataset into a topic).
//!
//! State is kept per input partition (one engine each), so a token's events
//! must share a partition: `replay --to-kafka --key-by-token` keys records
//! by subject, else client_id, else token id, which also keeps a subject's
//! successive tokens (and their carried-over baselines) together.
//!
//! Delivery: findings and dead letters are produced with an idempotent
//! producer and flushed before offsets are committed; a partition's
//! committed offset never passes the oldest event its engine still holds in
//! the reorder buffer. Findings carry deterministic ids, so a re-read after a
//! crash yields duplicates with the same id, never different findings.
//! Not yet here (see the issue note): detector-state checkpoints, state
//! handover on rebalance, the repartition topic, metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{Config, KafkaConfig};
use crate::decode::{DecodeSettings, Decoder};
use crate::detect::{Engine, Finding};
use crate::enrich::Enricher;
use crate::event::Drop;

/// Errors that stop the service (everything else is retried and logged).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("kafka.properties.{key}: {message}")]
    Property { key: String, message: String },
    #[error("{0}")]
    Setup(String),
}

/// Counters of a running service.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RunStats {
    pub consumed: u64,
    pub events: u64,
    pub dropped: u64,
    pub findings: u64,
    pub commits: u64,
}

/// Resolve `env:NAME` and `file:/path` property values.
pub fn client_config(kc: &KafkaConfig) -> Result<ClientConfig, ServiceError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kc.brokers);
    for (k, v) in &kc.properties {
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

fn producer(kc: &KafkaConfig) -> Result<ThreadedProducer<DefaultProducerContext>, ServiceError> {
    let mut c = client_config(kc)?;
    c.set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("compression.type", "lz4");
    Ok(c.create()?)
}

/// Send, waiting while the local queue is full (backpressure, not loss).
fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    mut rec: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), KafkaError> {
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

struct Partition {
    decoder: Decoder,
    engine: Engine,
    /// Next offset to read (last consumed + 1).
    next: i64,
}

/// The streaming service. Returns when `stop` is set (SIGINT / SIGTERM),
/// after flushing engines, producing their findings and committing.
pub fn run(
    cfg: &Config,
    settings: DecodeSettings,
    enricher: Arc<Enricher>,
    stop: Arc<AtomicBool>,
    mut progress: impl FnMut(&RunStats),
) -> Result<RunStats, ServiceError> {
    let kc = cfg
        .kafka
        .as_ref()
        .ok_or_else(|| ServiceError::Setup("no [kafka] section in the configuration".into()))?;
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
    ] {
        if !kc.properties.contains_key(k) {
            cc.set(k, v);
        }
    }
    let consumer: Arc<BaseConsumer> = Arc::new(cc.create()?);
    let topics: Vec<&str> = kc.topics.iter().map(|t| t.name.as_str()).collect();
    consumer.subscribe(&topics)?;
    let producer = producer(kc)?;

    // The consumer is polled on its own thread, which hands batches of
    // messages to this one over a bounded channel: librdkafka's fetch path
    // and our decode/detect overlap. When the channel is full the poller
    // pauses its partitions instead of blocking past max.poll.interval.ms.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<OwnedMessage>>(32);
    let poller = {
        let consumer = consumer.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn(move || poll_loop(&consumer, &tx, &stop))
            .map_err(|e| ServiceError::Setup(format!("cannot start the poll thread: {e}")))?
    };

    // Keyed by the configured topic name (borrowed: no allocation per message).
    let mut parts: HashMap<(&str, i32), Partition> = HashMap::new();
    let mut stats = RunStats::default();
    let mut findings: Vec<Finding> = Vec::new();
    let mut decoded = Vec::new();
    let mut last_commit = Instant::now();
    let mut last_progress = Instant::now();
    let mut reported = 0u64;
    let commit_every = Duration::from_millis(kc.commit_interval_ms.max(100));

    loop {
        let batch = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(b) => b,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Vec::new(),
            // The poller stopped (shutdown) and everything it sent is processed.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        crate::telemetry::records("kafka", batch.len() as u64);
        let events_before = stats.events;
        for m in &batch {
            stats.consumed += 1;
            let Some(topic) = kc.topics.iter().find(|t| t.name == m.topic()) else {
                continue;
            };
            let key = (topic.name.as_str(), m.partition());
            let part = match parts.get_mut(&key) {
                Some(p) => p,
                None => {
                    let decoder = settings
                        .decoder(&topic.format)
                        .map_err(ServiceError::Setup)?;
                    parts.entry(key).or_insert(Partition {
                        decoder,
                        engine: Engine::new(cfg),
                        next: m.offset(),
                    })
                }
            };
            decoded.clear();
            part.decoder
                .decode(m.payload().unwrap_or_default(), &mut decoded);
            let mut first_drop: Option<(Drop, usize)> = None;
            for r in decoded.drain(..) {
                match r {
                    Ok(ev) => {
                        let mut en = enricher.enrich(ev);
                        en.source_offset = m.offset();
                        stats.events += 1;
                        if !part.engine.push(en, &mut findings) {
                            stats.dropped += 1;
                            crate::telemetry::dropped(crate::event::DropReason::Late, 1);
                        }
                    }
                    Err(d) => {
                        stats.dropped += 1;
                        crate::telemetry::dropped(d.reason, 1);
                        match &mut first_drop {
                            Some((_, n)) => *n += 1,
                            None => first_drop = Some((d, 1)),
                        }
                    }
                }
            }
            // One dead letter per record, however many of its objects were bad.
            if let Some((d, n)) = first_drop {
                dead_letter(kc, &producer, m, &d, n)?;
            }
            part.next = m.offset() + 1;
            emit(kc, &producer, &mut findings, &mut stats)?;
        }
        crate::telemetry::events(stats.events - events_before);
        if last_commit.elapsed() >= commit_every {
            commit(&consumer, &producer, &parts, &mut stats);
            for ((topic, partition), p) in &parts {
                crate::telemetry::tracked_tokens(topic, *partition, p.engine.tracked_tokens());
            }
            last_commit = Instant::now();
        }
        if last_progress.elapsed() >= Duration::from_millis(500) && stats.consumed != reported {
            progress(&stats);
            reported = stats.consumed;
            last_progress = Instant::now();
        }
    }
    if poller.join().is_err() {
        return Err(ServiceError::Setup("the poll thread panicked".into()));
    }
    // Graceful shutdown: finish what the reorder buffers hold, make it
    // durable, commit, leave the group (dropping the consumer).
    for part in parts.values_mut() {
        part.engine.flush(&mut findings);
    }
    emit(kc, &producer, &mut findings, &mut stats)?;
    commit(&consumer, &producer, &parts, &mut stats);
    progress(&stats);
    Ok(stats)
}

fn emit(
    kc: &KafkaConfig,
    producer: &ThreadedProducer<DefaultProducerContext>,
    findings: &mut Vec<Finding>,
    stats: &mut RunStats,
) -> Result<(), ServiceError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    for f in findings.drain(..) {
        stats.findings += 1;
        crate::telemetry::finding(f.kind);
        crate::telemetry::finding_latency((now_ms - f.event_ts) as f64 / 1000.0);
        if let Some(topic) = &kc.findings_topic {
            let payload = serde_json::to_vec(&f).expect("findings serialize");
            let rec = BaseRecord::to(topic)
                .key(f.token_id.as_str().as_bytes())
                .payload(payload.as_slice());
            send(producer, rec)?;
        }
    }
    Ok(())
}

fn dead_letter(
    kc: &KafkaConfig,
    producer: &ThreadedProducer<DefaultProducerContext>,
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
    let Some(topic) = &kc.dlq_topic else {
        return Ok(());
    };
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let bad = bad_objects.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "tokenwatch-bad-objects",
            value: Some(bad.as_str()),
        })
        .insert(Header {
            key: "tokenwatch-reason",
            value: Some(d.reason.as_str()),
        })
        .insert(Header {
            key: "tokenwatch-detail",
            value: Some(d.detail.as_str()),
        })
        .insert(Header {
            key: "tokenwatch-source-topic",
            value: Some(m.topic()),
        })
        .insert(Header {
            key: "tokenwatch-source-partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "tokenwatch-source-offset",
            value: Some(offset.as_str()),
        });
    let rec = BaseRecord::to(topic)
        .payload(m.payload().unwrap_or_default())
        .headers(headers);
    let rec = match m.key() {
        Some(k) => rec.key(k),
        None => rec,
    };
    Ok(send(producer, rec)?)
}

/// The poll thread: batches of up to 1,024 messages; pauses the assignment
/// while the pipeline is behind; ends (closing the channel) on `stop`.
fn poll_loop(
    consumer: &BaseConsumer,
    tx: &std::sync::mpsc::SyncSender<Vec<OwnedMessage>>,
    stop: &AtomicBool,
) {
    use std::sync::mpsc::TrySendError;
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
                    tracing::warn!(error = %e, "kafka consumer error; retrying");
                    break;
                }
                None => break,
            }
            timeout = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        match tx.try_send(batch) {
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

/// Flush the producer (findings and dead letters durable), then commit each
/// partition up to its oldest event still waiting in the reorder buffer.
fn commit(
    consumer: &BaseConsumer,
    producer: &ThreadedProducer<DefaultProducerContext>,
    parts: &HashMap<(&str, i32), Partition>,
    stats: &mut RunStats,
) {
    if parts.is_empty() {
        return;
    }
    if let Err(e) = producer.flush(Duration::from_secs(30)) {
        tracing::warn!(error = %e, "producer flush failed; not committing offsets");
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), p) in parts {
        let safe = p
            .engine
            .oldest_pending_offset()
            .map_or(p.next, |o| o.min(p.next));
        if tpl
            .add_partition_offset(topic, *partition, Offset::Offset(safe))
            .is_err()
        {
            continue;
        }
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            stats.commits += 1;
            crate::telemetry::commit(true);
        }
        Err(e) => {
            crate::telemetry::commit(false);
            tracing::warn!(error = %e, "offset commit failed; will retry");
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
    while lines(&mut buf).map_err(|e| ServiceError::Setup(format!("reading input: {e}")))? {
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let key: Option<String> = decoder.as_mut().and_then(|d| {
            out.clear();
            d.decode(&buf, &mut out);
            out.iter().find_map(|r| r.as_ref().ok()).map(|e| {
                e.subject
                    .as_deref()
                    .or(e.client_id.as_deref())
                    .unwrap_or(e.token.as_str())
                    .to_string()
            })
        });
        let rec = BaseRecord::to(topic).payload(buf.as_slice());
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

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
//! consumer and lends batches of messages (no copy) to the decode threads
//! (one per core, each taking whole partitions), which decode and enrich
//! them and hand them on to the processing thread, each over a bounded
//! channel; rebalance events are relayed on another, taken before each
//! batch. Findings are recorded in the
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
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashSet;

use crate::clock::{now_ms, now_us};
use crate::config::{Config, KafkaConfig};
use crate::decode::{DecodeSettings, Decoder};
use crate::detect::{Engine, Finding};
use crate::enrich::Enricher;
use crate::event::{Drop, DropReason, Enriched};
use crate::health::Health;
use crate::process::RecordPos;
use crate::shutdown::Shutdown;
use crate::store::{Checkpoint, Store, StoreError};

// One job per file. The children share this module's imports and each
// other's items through `use super::*` (the edge's vocabulary: rdkafka,
// the store, the engine); only `run`, `load` and `client_config` leave it.
mod changelog;
mod client;
mod load;
mod poll;
mod prepare;
mod service;
mod shard;
mod topics;

use changelog::*;
use client::*;
use poll::*;
use prepare::*;
use service::*;
use shard::*;
use topics::*;

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

pub use client::client_config;
pub use load::load;
pub use service::run;

//! `[kafka]`: the consumer group, its topics and the client properties.

use super::*;

/// `[kafka]`: consume gateway logs in a consumer group, produce findings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, e.g. `broker-1:9092,broker-2:9092`.
    pub brokers: String,
    /// Consumer group: instances with the same id share the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Input topics and the gateway format of each.
    pub topics: Vec<KafkaTopic>,
    /// Findings are produced here as JSON, keyed by token_id.
    #[serde(default)]
    pub findings_topic: Option<String>,
    /// Undecodable records go here with the reason and source coordinates in headers.
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// How often detector state is checkpointed and offsets committed (after
    /// the findings they caused are durable). Stretched automatically so that
    /// checkpointing never takes more than a tenth of the time.
    #[serde(default = "default_commit_ms")]
    pub commit_interval_ms: u64,
    /// A partition with nothing to read for this long has its reorder buffer
    /// processed (as at the end of a file), so quiet hours do not hold
    /// findings back. 0 = never.
    #[serde(default = "default_idle_flush_ms")]
    pub idle_flush_ms: u64,
    /// Threads that decode and enrich records ahead of detection, each
    /// taking whole partitions (0 = one per core, at most four).
    #[serde(default)]
    pub decode_threads: usize,
    /// Internal topic used by the repartition mode (topics with
    /// `keyed = false`). Default: `<group_id>.repartition`.
    #[serde(default)]
    pub repartition_topic: Option<String>,
    /// A compacted topic that also receives every checkpoint (in chunks), so
    /// a partition moving to an instance on another machine (another store)
    /// gets its state from there. Unset: checkpoints stay in the store.
    #[serde(default)]
    pub changelog_topic: Option<String>,
    /// Partitions of the repartition topic when tokenwatch creates it
    /// (0 = as many as the input topic has).
    #[serde(default)]
    pub repartition_partitions: u32,
    /// Address of the operational endpoints (`/healthz`, `/readyz`,
    /// `/metrics`), e.g. `127.0.0.1:9464`. Unset: not served.
    #[serde(default)]
    pub ops_listen: Option<std::net::SocketAddr>,
    /// librdkafka properties passed through (SASL, SSL, timeouts). A value
    /// `env:NAME` is read from the environment, `file:/path` from a file, so
    /// secrets never appear in the config or on the command line.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_group() -> String {
    "tokenwatch".into()
}

fn default_commit_ms() -> u64 {
    2000
}

fn default_idle_flush_ms() -> u64 {
    500
}

/// The defaults a `[kafka]` section gets for what it leaves out (no brokers
/// and no topics: `run` refuses those, `replay --to-kafka` sets its own).
impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            group_id: default_group(),
            topics: Vec::new(),
            findings_topic: None,
            dlq_topic: None,
            commit_interval_ms: default_commit_ms(),
            idle_flush_ms: default_idle_flush_ms(),
            decode_threads: 0,
            repartition_topic: None,
            changelog_topic: None,
            repartition_partitions: 0,
            ops_listen: None,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The internal topic of the repartition mode.
    pub fn repartition_topic(&self) -> String {
        self.repartition_topic
            .clone()
            .unwrap_or_else(|| format!("{}.repartition", self.group_id))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopic {
    /// The topic's name.
    pub name: String,
    /// A preset, a `[formats.NAME]`, or `auto`.
    #[serde(default = "default_auto")]
    pub format: String,
    /// `true` when the producer keys records by token (or subject / client):
    /// events go straight to their partition's state. `false` (the default,
    /// what most gateways do) turns on the repartition mode: records are
    /// re-keyed by subject, else client_id, else token id through the
    /// internal repartition topic, so one token's events always meet.
    #[serde(default)]
    pub keyed: bool,
}

fn default_auto() -> String {
    "auto".into()
}

//! `rules.toml`: the whole configuration, one documented struct per part.
//!
//! Every struct denies unknown keys, every field has its default in one
//! place (the `Default` impls below, mirrored by the top-level `rules.toml`),
//! and [`Config::validate`] does the cross-field checks. Errors name the key
//! and the line: [`load_str`] maps a failing key path back to its line.
//!
//! Loading reads a file; everything else here is pure.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use crate::event::NetClass;
pub use crate::event::{Mode, Severity};
pub use crate::format::{Field, FieldSource, Preset, Transform};

mod dashboard;
mod response;
pub mod secrets;
pub use dashboard::*;
pub use response::*;

/// The configuration root.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How records are read and turned into events.
    pub input: InputConfig,
    /// Verified identity: the keys JWT access tokens must be signed with.
    pub identity: IdentityConfig,
    /// MaxMind-format databases for geo and network enrichment.
    pub geoip: GeoIpConfig,
    /// Extra ASN → network-class assignments, on top of the built-in list.
    pub network_classes: NetworkClassesConfig,
    /// Event-time engine settings: lateness, state lifetime.
    pub engine: EngineConfig,
    /// The detectors, one block each.
    pub detectors: DetectorsConfig,
    /// Traffic that never produces findings.
    pub allow: AllowConfig,
    /// Route prefixes mapped to a route class (first match wins).
    pub routes: Vec<RouteRule>,
    /// Route classes: per-class sensitivity and absolute ceilings.
    pub route_classes: BTreeMap<String, RouteClass>,
    /// Custom formats: a field map from canonical fields to JSON Pointers.
    pub formats: BTreeMap<String, FormatConfig>,
    /// The streaming service (`tokenwatch run`): where to consume and produce.
    pub kafka: Option<KafkaConfig>,
    /// The embedded store: detector-state checkpoints and the findings log.
    pub store: StoreConfig,
    /// Response policy: which findings open incidents and trigger actions,
    /// in which mode, within which safety budgets.
    pub policy: PolicyConfig,
    /// How actions are carried out: revocation strategies, alert channels,
    /// delivery (retries, breakers), raw-token custody.
    pub response: ResponseConfig,
    /// The web console and its JSON API.
    pub dashboard: DashboardConfig,
}

/// `[policy]`: findings → incidents → actions, with safety fuses.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Global dry run: every action is recorded as "would have", none is done.
    pub dry_run: bool,
    /// A token expiring within this many seconds is not revoked itself; its
    /// grant (session, refresh token) is, where the strategy supports it.
    pub exp_margin_secs: u64,
    /// Revocations allowed across all rules (event time). Past either, every
    /// rule trips to observe until a person resets the fuse.
    pub max_revocations_per_minute: u32,
    /// Revocations allowed across all rules per hour (event time).
    pub max_revocations_per_hour: u32,
    /// More alerts than this in one minute are folded into a digest.
    pub digest_after_alerts_per_minute: u32,
    /// Never revoked automatically: their incidents wait for approval.
    pub protected: ProtectedConfig,
    /// Never acted on (checked before any action); findings are still shown.
    pub never_act: NeverActConfig,
    /// The rules, first match per action kind wins.
    pub rules: Vec<PolicyRule>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectedConfig {
    /// Subjects (`sub`) whose revocations always wait for a person.
    pub subjects: Vec<String>,
    /// OAuth clients whose tokens' revocations always wait for a person.
    pub client_ids: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NeverActConfig {
    /// Client networks never acted on (a corporate egress, a test range).
    pub cidrs: Vec<IpNet>,
    /// Client ASNs never acted on.
    pub asns: Vec<u32>,
    /// Subjects never acted on.
    pub subjects: Vec<String>,
    /// OAuth clients never acted on.
    pub client_ids: Vec<String>,
}

/// What an incident may trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Cut the token off (the circuit breaker).
    Revoke,
    /// Tell people.
    Alert,
}

/// `[[policy.rules]]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// The rule's name, shown with every action it asks for and in the audit log.
    pub name: String,
    /// Finding kinds (`token_replay`, …); empty = every kind.
    #[serde(default)]
    pub kinds: Vec<crate::event::FindingKind>,
    /// The lowest severity the rule applies to.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Scope: route prefixes or route names; empty = every route.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Scope (tenant): client_ids; empty = every client.
    #[serde(default)]
    pub client_ids: Vec<String>,
    /// What an incident this rule matches may trigger (`revoke`, `alert`).
    pub actions: Vec<ActionKind>,
    /// `observe` records what would have been done; `enforce` does it.
    #[serde(default = "default_observe")]
    pub mode: Mode,
    /// This rule's revocation budget (event time); past it, the rule trips to observe.
    #[serde(default = "default_rule_per_minute")]
    pub max_revocations_per_minute: u32,
    /// This rule's revocation budget per hour (event time).
    #[serde(default = "default_rule_per_hour")]
    pub max_revocations_per_hour: u32,
}

fn default_min_severity() -> Severity {
    Severity::High
}
fn default_observe() -> Mode {
    Mode::Observe
}
fn default_rule_per_minute() -> u32 {
    5
}
fn default_rule_per_hour() -> u32 {
    30
}

impl Default for PolicyConfig {
    fn default() -> Self {
        use crate::event::FindingKind as K;
        let rule =
            |name: &str, kinds: Vec<K>, min_severity, actions: Vec<ActionKind>, mode| PolicyRule {
                name: name.into(),
                kinds,
                min_severity,
                routes: Vec::new(),
                client_ids: Vec::new(),
                actions,
                mode,
                max_revocations_per_minute: default_rule_per_minute(),
                max_revocations_per_hour: default_rule_per_hour(),
            };
        PolicyConfig {
            dry_run: false,
            exp_margin_secs: 120,
            max_revocations_per_minute: 20,
            max_revocations_per_hour: 100,
            digest_after_alerts_per_minute: 10,
            protected: ProtectedConfig::default(),
            never_act: NeverActConfig::default(),
            rules: vec![
                rule(
                    "stolen-token",
                    vec![K::TokenReplay, K::ImpossibleTravel],
                    Severity::High,
                    vec![ActionKind::Revoke, ActionKind::Alert],
                    Mode::Observe,
                ),
                rule(
                    "data-theft",
                    vec![K::BulkSiphon, K::Enumeration],
                    Severity::High,
                    vec![ActionKind::Revoke, ActionKind::Alert],
                    Mode::Observe,
                ),
                rule(
                    "notify",
                    Vec::new(),
                    Severity::Medium,
                    vec![ActionKind::Alert],
                    Mode::Enforce,
                ),
            ],
        }
    }
}

/// `[store]`: the embedded SQLite database of `tokenwatch run`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Path of the database file (created if missing). Instances on one
    /// machine may share it: partitions then move between them with their
    /// state. Holds token ids, never raw tokens.
    pub path: std::path::PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: "tokenwatch.db".into(),
        }
    }
}

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
    3000
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

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// A preset (`envoy`, `kong`, `apisix`, `nginx`, `traefik`, `aws_apigw`,
    /// `tyk`), the name of a `[formats.NAME]` block, or `auto` (detect per file).
    pub format: String,
    /// Proxies whose X-Forwarded-For entries are trusted: the client IP is the
    /// right-most address not in these networks. Empty by default: a private
    /// peer address (a VPN user, a pod) is not a proxy, and trusting one
    /// lets it choose its apparent address. List your load balancers.
    pub trusted_proxies: Vec<IpNet>,
    /// Records longer than this are dropped as `too_large`.
    pub max_record_bytes: usize,
    /// Order in which token identities are tried: `jwt` (the `jti` of a JWT
    /// bearer token), `jti_field`, `credential` (a credential id field, or
    /// the keyed hash of a Basic or API-key credential), `opaque_hash`
    /// (keyed hash of an opaque token), `consumer` (the gateway's consumer
    /// name: every credential of a user or app; last resort).
    pub token_identity: Vec<TokenIdentity>,
    /// Response statuses that mean the gateway rejected the credential
    /// (default 401 and 407; Envoy's `UAEX` ext_authz flag always counts).
    /// Such records are counted but never teach, open incidents, spend
    /// budgets or reach a revoker: anyone can send a forged token and be
    /// refused.
    pub rejected_statuses: Vec<u16>,
    /// What a `credential` identity stands for: `shared` (default: a key,
    /// consumer or OAuth app that many tokens and people may use, so it gets
    /// baselines, siphoning and enumeration but never "replayed token" or
    /// travel), or `per_token` (every credential is one token on one device,
    /// e.g. Kong key-auth with one key per install).
    pub credential_kind: CredentialKind,
    /// Key for the HMAC-SHA256 of opaque tokens. Prefer `token_hash_key_env`.
    pub token_hash_key: Option<String>,
    /// Environment variable holding the HMAC key (used when set).
    pub token_hash_key_env: String,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            format: "auto".into(),
            trusted_proxies: Vec::new(),
            max_record_bytes: 1 << 20,
            token_identity: vec![
                TokenIdentity::Jwt,
                TokenIdentity::JtiField,
                TokenIdentity::Credential,
                TokenIdentity::OpaqueHash,
                TokenIdentity::Consumer,
            ],
            rejected_statuses: vec![401, 407],
            credential_kind: CredentialKind::Shared,
            token_hash_key: None,
            token_hash_key_env: "TOKENWATCH_HASH_KEY".into(),
        }
    }
}

/// `[identity]`: verify JWT access tokens against the issuer's keys. Without
/// keys a JWT's claims are read unverified (the gateway verified it, unless
/// the route is unauthenticated); with keys, a JWT that does not verify is
/// treated as a rejected request: counted, never learnt from or acted on.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The JWKS: `file:/path/jwks.json` (relative to the config file) or an
    /// `https://` URL (fetched at start, refreshed every `refresh_secs`;
    /// plain `http://` only to 127.0.0.1, for tests).
    pub jwks: Option<String>,
    /// Signature algorithms accepted (`none` never is; HMAC ones only if
    /// listed here and the JWKS carries the secret).
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; empty: any.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one must match); empty: not checked.
    pub audiences: Vec<String>,
    /// Clock-skew tolerance for `exp` and `nbf`, checked against the
    /// gateway's event time (so a replay gives the same verdicts).
    pub leeway_secs: u64,
    /// How often a JWKS URL is fetched again (key rotation).
    pub refresh_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            jwks: None,
            algorithms: [
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: 60,
            refresh_secs: 3600,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Shared,
    PerToken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenIdentity {
    Jwt,
    JtiField,
    Credential,
    OpaqueHash,
    Consumer,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoIpConfig {
    /// GeoLite2/GeoIP2 City database (`.mmdb`).
    pub city: Option<String>,
    /// GeoLite2/GeoIP2 ASN database (`.mmdb`).
    pub asn: Option<String>,
    /// Entries in the IP → result cache (0 = 262144).
    pub cache_entries: usize,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkClassesConfig {
    /// ASNs of home broadband networks.
    pub residential: Vec<u32>,
    /// ASNs of mobile carriers (addresses shared, places coarse).
    pub mobile: Vec<u32>,
    /// ASNs of hosting and cloud providers.
    pub hosting: Vec<u32>,
    /// ASNs of commercial VPN and relay exits.
    pub vpn: Vec<u32>,
    /// Class of ASNs in no list and with no telling organisation name.
    pub default: Option<NetClass>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Events may arrive up to this many seconds out of order; later ones are
    /// counted as `late` and dropped.
    pub lateness_secs: u64,
    /// Per-token state is forgotten after this long without events.
    pub token_idle_ttl_secs: u64,
    /// Per-subject and per-client history is forgotten after this long.
    pub profile_ttl_secs: u64,
    /// At most this many tokens (and as many subject and client profiles)
    /// are tracked per engine (per input partition); past it the least
    /// recently seen are evicted first, counted as `tokens_evicted_cap`.
    /// Bounds memory under a flood of distinct tokens (≈ 520 bytes each).
    pub max_tracked_tokens: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lateness_secs: 10,
            token_idle_ttl_secs: 6 * 3600,
            profile_ttl_secs: 30 * 86400,
            max_tracked_tokens: 1_000_000,
        }
    }
}

impl ActionKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionKind::Revoke => "revoke",
            ActionKind::Alert => "alert",
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorsConfig {
    /// A token used from a second device while its owner still uses it.
    pub token_replay: TokenReplayConfig,
    /// Moves faster than travel allows, after the geolocation's error bars.
    pub impossible_travel: ImpossibleTravelConfig,
    /// Datacenter or VPN addresses with scripting clients on user tokens.
    pub suspicious_network: SuspiciousNetworkConfig,
    /// Far more data than the subject's (or client's) baseline, at several time scales.
    pub bulk_siphon: BulkSiphonConfig,
    /// Distinct object ids with many 403/404s, fast or low and slow.
    pub enumeration: EnumerationConfig,
}

/// A token used by a second, materially different client.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenReplayConfig {
    /// Run this detector.
    pub enabled: bool,
    /// `observe` (findings only) or `enforce` (the policy may act).
    pub mode: Mode,
    /// The severity of its findings.
    pub severity: Severity,
    /// The first client counts as still active if seen this recently.
    pub concurrency_window_secs: u64,
    /// Fingerprint distance that counts as a different device (see
    /// ARCHITECTURE.md: device class, OS, browser family 2 each; TLS, language 1).
    pub min_distance: u8,
    /// Also report a non-concurrent switch when it is implausible (to a
    /// scripting client or another device class) and the subject never used
    /// that device.
    pub report_switches: bool,
    /// No second finding of this kind for the same token within this many seconds.
    pub cooldown_secs: u64,
}

impl Default for TokenReplayConfig {
    fn default() -> Self {
        TokenReplayConfig {
            enabled: true,
            mode: Mode::Enforce,
            severity: Severity::High,
            concurrency_window_secs: 900,
            min_distance: 2,
            report_switches: true,
            cooldown_secs: 3600,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImpossibleTravelConfig {
    /// Run this detector.
    pub enabled: bool,
    /// `observe` (findings only) or `enforce` (the policy may act).
    pub mode: Mode,
    /// The severity of its findings.
    pub severity: Severity,
    /// Speeds above this (after subtracting both accuracy radii) are impossible.
    pub max_speed_kmh: f64,
    /// Jumps shorter than this (after radii) are ignored: mobile hopping, CGNAT.
    pub min_distance_km: f64,
    /// Use from the earlier place again within this window after the jump
    /// counts as overlapping use, the strongest signal (severity critical).
    pub overlap_window_secs: u64,
    /// No second finding of this kind for the same token within this many seconds.
    pub cooldown_secs: u64,
}

impl Default for ImpossibleTravelConfig {
    fn default() -> Self {
        ImpossibleTravelConfig {
            enabled: true,
            mode: Mode::Enforce,
            severity: Severity::High,
            max_speed_kmh: 1000.0,
            min_distance_km: 300.0,
            overlap_window_secs: 1800,
            cooldown_secs: 3600,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuspiciousNetworkConfig {
    /// Run this detector.
    pub enabled: bool,
    /// `observe` (findings only) or `enforce` (the policy may act).
    pub mode: Mode,
    /// The severity of its findings.
    pub severity: Severity,
    /// Events of history needed first: on residential/mobile networks, or,
    /// for a user token, on any network but this exit (a user behind relay
    /// egress or a VPN of their own).
    pub min_history_events: u32,
    /// Only fire when the client is a scripting client (curl, requests…).
    pub require_scripting_client: bool,
    /// No second finding of this kind for the same token within this many seconds.
    pub cooldown_secs: u64,
}

impl Default for SuspiciousNetworkConfig {
    fn default() -> Self {
        SuspiciousNetworkConfig {
            enabled: true,
            mode: Mode::Observe,
            severity: Severity::Medium,
            min_history_events: 3,
            require_scripting_client: true,
            cooldown_secs: 3600,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkSiphonConfig {
    /// Run this detector.
    pub enabled: bool,
    /// `observe` (findings only) or `enforce` (the policy may act).
    pub mode: Mode,
    /// The severity of its findings.
    pub severity: Severity,
    /// Sliding window length (minutes, 1-minute buckets, at most 15).
    pub window_minutes: u8,
    /// Fire when the window exceeds the baseline window by this factor…
    pub factor: f64,
    /// …and holds at least this many requests (no alarms on tiny numbers).
    pub min_requests: u32,
    /// …or at least this many response bytes.
    pub min_bytes: u64,
    /// Active minutes of history before a baseline (the token's, carried
    /// over from its subject's or client's earlier tokens) is trusted. Until
    /// then only the route classes' absolute ceilings apply: a token we have
    /// not learned yet cannot be "far above its baseline".
    pub warmup_minutes: u32,
    /// Also fire when distinct object ids exceed the baseline by `factor`
    /// and reach this many in the window.
    pub min_distinct_objects: u32,
    /// EWMA weight of each new active minute (small = slow to adapt, so a
    /// sudden burst stands out but a ramp over hours is followed).
    pub ewma_alpha: f64,
    /// Burst scale: the last 60 s (sliding over two minute buckets) hold
    /// this many times the baseline's busy minute, with the shape of a pull
    /// (bigger answers, deeper pages or mostly distinct objects; twice the
    /// factor without)…
    pub burst_factor: f64,
    /// …and at least this many requests (12 a minute is a siphon for a phone
    /// app that usually makes 0.5).
    pub burst_min_requests: u32,
    /// Sustained scales (5, 15 and 60 minutes, decayed sums): this many
    /// times the baseline's rate per session minute (1.6 times it over 5
    /// minutes, 0.8 times over 60), in requests with the shape of a pull
    /// (twice the factor without, never over 5 minutes) or in bytes…
    pub sustained_factor: f64,
    /// …with at least this many requests over the 15-minute scale (the
    /// 60-minute scale needs twice the count at 0.8 times the factor).
    pub sustained_min_requests: u32,
    /// …or this many response bytes over the 15-minute scale (with half
    /// the request count), at the same factor over the usual bytes.
    pub sustained_min_bytes: u64,
    /// Pagination depth reached within 30 minutes that, at `factor / 2`
    /// times the usual depth and 1.5 times the usual pace, is an export.
    pub min_page_depth: u32,
    /// Session minutes of history before the sustained scales judge (the
    /// subject's or client's, across its tokens).
    pub sustained_warmup_minutes: u32,
    /// No second finding of this kind for the same token within this many seconds.
    pub cooldown_secs: u64,
}

impl Default for BulkSiphonConfig {
    fn default() -> Self {
        BulkSiphonConfig {
            enabled: true,
            mode: Mode::Enforce,
            severity: Severity::High,
            window_minutes: 5,
            factor: 8.0,
            min_requests: 150,
            min_bytes: 200 * 1024 * 1024,
            warmup_minutes: 10,
            min_distinct_objects: 150,
            ewma_alpha: 0.05,
            burst_factor: 8.0,
            burst_min_requests: 10,
            sustained_factor: 2.5,
            sustained_min_requests: 8,
            sustained_min_bytes: 16 * 1024 * 1024,
            min_page_depth: 12,
            sustained_warmup_minutes: 20,
            cooldown_secs: 3600,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnumerationConfig {
    /// Run this detector.
    pub enabled: bool,
    /// `observe` (findings only) or `enforce` (the policy may act).
    pub mode: Mode,
    /// The severity of its findings.
    pub severity: Severity,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Distinct object ids in the window needed to fire.
    pub min_distinct_objects: u32,
    /// Share of 403/404 responses in the window needed to fire (over the
    /// long window: of requests, or of distinct ids if that is higher).
    pub min_error_ratio: f64,
    /// The long window (the last 15 to 30 minutes): "low and slow"
    /// enumeration, a few ids a minute, reaches this many distinct ids with
    /// the same share of 403/404 (0 turns the long window off).
    pub slow_min_distinct_objects: u32,
    /// No second finding of this kind for the same token within this many seconds.
    pub cooldown_secs: u64,
}

impl Default for EnumerationConfig {
    fn default() -> Self {
        EnumerationConfig {
            enabled: true,
            mode: Mode::Enforce,
            severity: Severity::High,
            window_secs: 120,
            min_distinct_objects: 40,
            min_error_ratio: 0.5,
            slow_min_distinct_objects: 50,
            cooldown_secs: 3600,
        }
    }
}

/// Allow-lists: matching events never produce findings (state is still
/// learned from them).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowConfig {
    /// Client networks (a corporate egress, a monitoring range).
    pub cidrs: Vec<IpNet>,
    /// Client ASNs.
    pub asns: Vec<u32>,
    /// Subjects (`sub`).
    pub subjects: Vec<String>,
    /// OAuth clients.
    pub client_ids: Vec<String>,
    /// Substrings of the user agent.
    pub user_agents: Vec<String>,
    /// Path prefixes.
    pub routes: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Path prefix (`/v1/export`) or gateway route name.
    pub prefix: String,
    /// Name of a `[route_classes.NAME]` block.
    pub class: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteClass {
    /// Multiplies detector thresholds: < 1 is more sensitive, > 1 less.
    pub sensitivity: f64,
    /// Absolute ceiling on requests per siphon window, whatever the baseline
    /// (0 = none).
    pub max_requests_per_window: u32,
    /// Absolute ceiling on response bytes per siphon window (0 = none).
    pub max_bytes_per_window: u64,
}

impl Default for RouteClass {
    fn default() -> Self {
        RouteClass {
            sensitivity: 1.0,
            max_requests_per_window: 0,
            max_bytes_per_window: 0,
        }
    }
}

/// A custom format: canonical field → where to find it. Read through
/// [`RawFormat`], so that every unknown name in a block is reported, not
/// only the first.
#[derive(Clone, Debug, Default)]
pub struct FormatConfig {
    /// Start from a preset and override some fields.
    pub base: Option<Preset>,
    /// Canonical field → source (see README "Custom formats").
    pub fields: BTreeMap<Field, FieldSource>,
    /// Names the block used that are not known: (key under the block,
    /// message); reported by [`Config::validate`].
    unknown: Vec<(String, String)>,
}

/// A `[formats.NAME]` block as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFormat {
    #[serde(default)]
    base: Option<String>,
    fields: BTreeMap<String, RawSource>,
}

/// One `fields.NAME = { from, transforms }` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    from: Vec<String>,
    #[serde(default)]
    transforms: Vec<String>,
}

impl<'de> Deserialize<'de> for FormatConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawFormat::deserialize(d)?;
        let mut f = FormatConfig::default();
        if let Some(b) = raw.base {
            match Preset::parse(&b) {
                Some(p) => f.base = Some(p),
                None => f.unknown.push((
                    "base".into(),
                    format!("unknown preset `{b}`; known: {}", Preset::NAMES.join(", ")),
                )),
            }
        }
        for (name, src) in raw.fields {
            let key = format!("fields.{name}");
            let Some(field) = Field::parse(&name) else {
                f.unknown.push((
                    key,
                    format!(
                        "unknown canonical field `{name}`; known: {}",
                        Field::NAMES.join(", ")
                    ),
                ));
                continue;
            };
            let mut transforms = Vec::new();
            for t in &src.transforms {
                match Transform::parse(t) {
                    Ok(t) => transforms.push(t),
                    Err(m) => f.unknown.push((key.clone(), m)),
                }
            }
            f.fields.insert(
                field,
                FieldSource {
                    from: src.from,
                    transforms,
                },
            );
        }
        Ok(f)
    }
}

/// A configuration error with the key and (when known) the line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: String,
    /// The line of the key, when it can be found.
    pub line: Option<usize>,
    /// The dotted key (`detectors.token_replay.mode`), empty for the whole file.
    pub key: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: `{}`: {}", self.file, l, self.key, self.message),
            None => write!(f, "{}: `{}`: {}", self.file, self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Load and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.display().to_string(),
            line: None,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    load_str(&text, &path.display().to_string())
}

/// Parse and validate configuration text; `file` is used in messages.
pub fn load_str(text: &str, file: &str) -> Result<Config, Vec<ConfigError>> {
    let de = toml::de::Deserializer::new(text);
    let mut path = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(de, &mut path);
    let config: Config = match Config::deserialize(tracked) {
        Ok(c) => c,
        Err(e) => {
            let key = path.path().to_string();
            let line = e.span().map(|s| line_of(text, s.start));
            return Err(vec![ConfigError {
                file: file.into(),
                line: line.or_else(|| key_line(text, &key)),
                key: if key == "." { String::new() } else { key },
                message: first_line_of_toml_error(&e),
            }]);
        }
    };
    let errs: Vec<ConfigError> = config
        .validate()
        .into_iter()
        .map(|(key, message)| ConfigError {
            file: file.into(),
            line: key_line(text, &key),
            key,
            message,
        })
        .collect();
    if errs.is_empty() {
        Ok(config)
    } else {
        Err(errs)
    }
}

fn first_line_of_toml_error(e: &toml::de::Error) -> String {
    e.message().trim().to_string()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// Find the line where a dotted key path (`detectors.bulk_siphon.factor`,
/// `routes[2].class`) is defined; falls back to the nearest parent.
fn key_line(text: &str, key: &str) -> Option<usize> {
    use toml_edit::{Item, TableLike, Value};
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut table: &dyn TableLike = doc.as_table();
    let mut best = None;
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, idx) = match part.find('[') {
            Some(i) => (
                &part[..i],
                part[i + 1..].trim_end_matches(']').parse::<usize>().ok(),
            ),
            None => (part, None),
        };
        let Some((k, item)) = table.get_key_value(name) else {
            break;
        };
        if let Some(span) = k.span().or_else(|| item.span()) {
            best = Some(line_of(text, span.start));
        }
        match (item, idx) {
            (Item::ArrayOfTables(a), Some(i)) => {
                let Some(t) = a.get(i) else { break };
                if let Some(span) = t.span() {
                    best = Some(line_of(text, span.start));
                }
                table = t;
            }
            (Item::Table(t), None) => table = t,
            (Item::Value(Value::InlineTable(t)), None) => table = t,
            _ => break,
        }
    }
    best
}

impl Config {
    /// `auto`, a preset or a `[formats.NAME]` block.
    fn knows_format(&self, name: &str) -> bool {
        name == "auto" || Preset::parse(name).is_some() || self.formats.contains_key(name)
    }

    /// Cross-field checks. Returns (key path, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let mut err = |k: &str, m: String| errs.push((k.to_string(), m));
        let fmt = self.input.format.as_str();
        if !self.knows_format(fmt) {
            err(
                "input.format",
                format!(
                    "unknown format `{fmt}`: use `auto`, a preset ({}) or define [formats.{fmt}]",
                    Preset::NAMES.join(", ")
                ),
            );
        }
        if self.input.token_identity.is_empty() {
            err(
                "input.token_identity",
                "must list at least one identity".into(),
            );
        }
        if self.input.max_record_bytes < 256 {
            err("input.max_record_bytes", "must be at least 256".into());
        }
        for (name, f) in &self.formats {
            if Preset::parse(name).is_some() {
                err(
                    &format!("formats.{name}"),
                    "a custom format cannot take a preset's name".into(),
                );
            }
            for (field, src) in &f.fields {
                let key = format!("formats.{name}.fields.{field}");
                if src.from.is_empty() {
                    err(&key, "`from` needs at least one JSON Pointer".into());
                }
                for p in &src.from {
                    if !p.starts_with('/') {
                        err(
                            &key,
                            format!("`{p}` is not a JSON Pointer (must start with `/`)"),
                        );
                    }
                }
            }
            for (key, m) in &f.unknown {
                err(&format!("formats.{name}.{key}"), m.clone());
            }
            if f.base.is_none() && !f.fields.contains_key(&Field::Timestamp) {
                err(
                    &format!("formats.{name}.fields"),
                    "a format without `base` needs a `timestamp` field".into(),
                );
            }
        }
        let d = &self.detectors;
        if d.token_replay.concurrency_window_secs == 0 {
            err(
                "detectors.token_replay.concurrency_window_secs",
                "must be > 0".into(),
            );
        }
        if d.impossible_travel.max_speed_kmh <= 0.0 {
            err(
                "detectors.impossible_travel.max_speed_kmh",
                "must be > 0".into(),
            );
        }
        if d.impossible_travel.min_distance_km < 0.0 {
            err(
                "detectors.impossible_travel.min_distance_km",
                "must be >= 0".into(),
            );
        }
        if !(1..=15).contains(&d.bulk_siphon.window_minutes) {
            err(
                "detectors.bulk_siphon.window_minutes",
                "must be between 1 and 15".into(),
            );
        }
        if d.bulk_siphon.factor <= 1.0 {
            err(
                "detectors.bulk_siphon.factor",
                "must be > 1 (a factor of the baseline)".into(),
            );
        }
        if !(0.0..=1.0).contains(&d.bulk_siphon.ewma_alpha) || d.bulk_siphon.ewma_alpha == 0.0 {
            err(
                "detectors.bulk_siphon.ewma_alpha",
                "must be in (0, 1]".into(),
            );
        }
        if !(0.0..=1.0).contains(&d.enumeration.min_error_ratio) {
            err(
                "detectors.enumeration.min_error_ratio",
                "must be between 0 and 1".into(),
            );
        }
        if d.enumeration.window_secs == 0 || d.enumeration.window_secs > 3600 {
            err(
                "detectors.enumeration.window_secs",
                "must be between 1 and 3600".into(),
            );
        }
        if self.engine.token_idle_ttl_secs < self.engine.lateness_secs {
            err(
                "engine.token_idle_ttl_secs",
                "must be at least engine.lateness_secs".into(),
            );
        }
        if self.engine.token_idle_ttl_secs < d.token_replay.concurrency_window_secs {
            err(
                "engine.token_idle_ttl_secs",
                "must be at least detectors.token_replay.concurrency_window_secs".into(),
            );
        }
        if let Some(k) = &self.kafka {
            if k.brokers.trim().is_empty() {
                err(
                    "kafka.brokers",
                    "must name at least one bootstrap server".into(),
                );
            }
            if k.topics.is_empty() {
                err("kafka.topics", "must list at least one input topic".into());
            }
            for (i, t) in k.topics.iter().enumerate() {
                let f = t.format.as_str();
                if !self.knows_format(f) {
                    err(
                        &format!("kafka.topics[{i}].format"),
                        format!("unknown format `{f}`"),
                    );
                }
            }
            for (key, v) in &k.properties {
                if let Some(var) = v.strip_prefix("env:")
                    && var.is_empty()
                {
                    err(
                        &format!("kafka.properties.{key}"),
                        "`env:` needs a variable name".into(),
                    );
                }
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !self.route_classes.contains_key(&r.class) {
                err(
                    &format!("routes[{i}].class"),
                    format!("no [route_classes.{}] block defines this class", r.class),
                );
            }
        }
        for (name, c) in &self.route_classes {
            if c.sensitivity <= 0.0 {
                err(
                    &format!("route_classes.{name}.sensitivity"),
                    "must be > 0".into(),
                );
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.policy.rules.iter().enumerate() {
            if r.name.trim().is_empty() || !names.insert(r.name.as_str()) {
                err(
                    &format!("policy.rules[{i}].name"),
                    format!(
                        "`{}`: rule names must be non-empty and unique (audit entries name them)",
                        r.name
                    ),
                );
            }
            if r.actions.is_empty() {
                err(
                    &format!("policy.rules[{i}].actions"),
                    "list at least one action: \"revoke\" or \"alert\"".into(),
                );
            }
            if r.max_revocations_per_minute > r.max_revocations_per_hour {
                err(
                    &format!("policy.rules[{i}].max_revocations_per_minute"),
                    "cannot exceed max_revocations_per_hour".into(),
                );
            }
        }
        self.response.validate(&mut |k: &str, m: String| err(k, m));
        self.dashboard.validate(&mut |k: &str, m: String| err(k, m));
        if self.policy.max_revocations_per_minute > self.policy.max_revocations_per_hour {
            err(
                "policy.max_revocations_per_minute",
                "cannot exceed policy.max_revocations_per_hour".into(),
            );
        }
        errs
    }
}

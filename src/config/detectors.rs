//! `[engine]`, `[detectors]`, `[allow]` and `[routes]`: the event-time
//! engine and each detector's settings.

use super::*;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Events may arrive up to this many seconds out of order; later ones are
    /// counted as `late` and dropped.
    pub lateness_secs: u64,
    /// How long (in event time) the reorder buffer holds an event so that
    /// near-simultaneous records are processed in event-time order however
    /// they were interleaved. It is the wait a finding adds on live
    /// traffic. An event arriving later than this behind newer ones (but
    /// within `lateness_secs`) is still processed, at once, at the newest
    /// time already processed, and counted as a straggler.
    pub reorder_ms: u64,
    /// Per-token state is forgotten after this long without events.
    pub token_idle_ttl_secs: u64,
    /// Per-subject and per-client history is forgotten after this long.
    pub profile_ttl_secs: u64,
    /// At most this many tokens (and as many subject and client profiles)
    /// are tracked per engine (per input partition); past it the least
    /// recently seen are evicted first, counted as `tokens_evicted_cap`.
    /// Bounds memory under a flood of distinct tokens (≈ 450 bytes each).
    pub max_tracked_tokens: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lateness_secs: 10,
            reorder_ms: 100,
            token_idle_ttl_secs: 6 * 3600,
            profile_ttl_secs: 30 * 86400,
            max_tracked_tokens: 1_000_000,
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
    /// scripting client, another device class, another operating system, or
    /// another browser on another TLS stack) and the subject never used that
    /// device.
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
    /// (bigger answers: 1.5x, more for a few requests; deeper pages or
    /// mostly distinct objects; twice the
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
            warmup_minutes: 6,
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

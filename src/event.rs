//! The typed records that flow through the pipeline: [`AccessEvent`] (what a
//! gateway saw), [`Enriched`] (what we know about it after enrichment) and
//! [`DropReason`] (why a record never became an event).
//!
//! Nothing here holds a raw bearer token: the decoder turns tokens into a
//! [`TokenId`] before an `AccessEvent` exists.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Event time in milliseconds since the Unix epoch (UTC), always taken from
/// the gateway's own timestamp, never from arrival time.
pub type EventTime = i64;

/// A stable, non-secret identifier of one access token: the JWT `jti`, a
/// credential id (`c:` prefix) or a keyed hash of an opaque token (`h:` prefix).
/// The namespaces never collide: a jti that itself looks like `x:…` (one
/// letter and a colon) is written `j:<jti>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TokenId(pub Arc<str>);

impl TokenId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an identity stands for. Only a `Token` is one bearer token: the
/// detectors that reason about one token's devices and places (replay,
/// travel, network) run on tokens only. A `Credential` (an API key, a
/// consumer's JWT secret, an OAuth app: Kong's `authenticated_entity`,
/// AWS's `apiKeyId`) may be shared by many tokens and people, so it gets
/// baselines, siphoning and enumeration, never "replayed token". A
/// `Consumer` is the gateway's name for the user or app behind every one
/// of its credentials (APISIX `consumer.username`, Tyk `alias`): the
/// identity of last resort, shared like a credential and never revoked
/// automatically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    #[default]
    Token,
    Credential,
    Consumer,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Token => "token",
            IdentityKind::Credential => "credential",
            IdentityKind::Consumer => "consumer",
        }
    }
}

/// One decoded gateway access-log record.
#[derive(Clone, Debug)]
pub struct AccessEvent {
    pub ts: EventTime,
    pub token: TokenId,
    /// Keyed 64-bit hash of `token`, the key of per-token state.
    pub token_key: u64,
    /// What `token` stands for.
    pub identity: IdentityKind,
    /// The gateway rejected the credential (401, 407, an authorizer's
    /// denial): the record says nothing trustworthy about who sent it, so
    /// it never teaches or acts on any identity's state.
    pub rejected: bool,
    pub subject: Option<Arc<str>>,
    pub client_id: Option<Arc<str>>,
    /// Token expiry (ms) when the token said so (JWT `exp`).
    pub token_exp: Option<EventTime>,
    pub client_ip: IpAddr,
    pub method: &'static str,
    /// Route name from the gateway, or the path with id-like segments templated.
    pub route: Arc<str>,
    /// Raw request path without the query string (used for allow-lists).
    pub path: Box<str>,
    /// Hash of the object id addressed by the request (last id-like path segment).
    pub object: Option<u64>,
    /// Pagination depth: `page=N`, or `offset / limit` (+1).
    pub page: Option<u32>,
    pub status: u16,
    /// Response bytes; `None` when the gateway did not say (AWS's `-`, Tyk,
    /// a recipe without the field): unknown, not zero.
    pub bytes_sent: Option<u64>,
    pub user_agent: Option<Box<str>>,
    /// Hash of the primary accept-language tag (`fr-fr` of `fr-FR,fr;q=0.9`).
    pub accept_language: Option<u16>,
    /// Hashes of the TLS fingerprints; only equality matters downstream.
    pub ja3: Option<u32>,
    pub ja4: Option<u32>,
}

/// Class of network an address belongs to, from its ASN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetClass {
    Residential,
    Mobile,
    Hosting,
    Vpn,
    Unknown,
}

impl NetClass {
    pub fn bit(self) -> u8 {
        match self {
            NetClass::Residential => 1,
            NetClass::Mobile => 2,
            NetClass::Hosting => 4,
            NetClass::Vpn => 8,
            NetClass::Unknown => 16,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            NetClass::Residential => "residential",
            NetClass::Mobile => "mobile",
            NetClass::Hosting => "hosting",
            NetClass::Vpn => "vpn",
            NetClass::Unknown => "unknown",
        }
    }
    /// Hosting and anonymisers: where scripted abuse usually comes from.
    pub fn is_datacenter_like(self) -> bool {
        matches!(self, NetClass::Hosting | NetClass::Vpn)
    }
}

/// Where an address is, as far as the GeoIP databases know.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Place {
    pub city: Option<Arc<str>>,
    pub country: Option<Arc<str>>,
    pub lat: f32,
    pub lon: f32,
    /// MaxMind's accuracy radius in km (67 % confidence).
    pub radius_km: u16,
}

/// Accuracy radius from which a record locates a country, not a place.
pub const COUNTRY_LEVEL_RADIUS_KM: u16 = 500;

impl Place {
    /// A record that names only a country (no city, or a radius of
    /// [`COUNTRY_LEVEL_RADIUS_KM`] or more: carrier pools, VPN exits and
    /// hosting ranges placed at the country's centroid). Never a point for
    /// travel: at most "in this country".
    pub fn country_level(&self) -> bool {
        self.city.is_none() || self.radius_km >= COUNTRY_LEVEL_RADIUS_KM
    }
}

/// Geo and network facts for one IP address (cached per address).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct NetInfo {
    pub place: Option<Place>,
    pub asn: u32,
    pub as_org: Option<Arc<str>>,
    pub class: NetClass,
}

/// What the user agent says about the client, reduced to what matters for
/// "is this the same device": minor versions are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UaInfo {
    pub family: Arc<str>,
    pub major: u16,
    pub os: Arc<str>,
    pub device: DeviceClass,
    /// curl, python-requests, Go-http-client…: clients people script with.
    pub scripting: bool,
    /// Precomputed fingerprint parts (family + OS + device class, and each alone).
    pub agent_hash: u32,
    pub os_id: u8,
    pub family_id: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    Desktop,
    Mobile,
    Library,
    Bot,
    Other,
    /// A native app or a platform's HTTP stack (the app's own agent,
    /// CFNetwork, okhttp, Dalvik, Dart): one phone may send several.
    App,
}

/// A small fixed-size summary of a client: enough to tell devices apart,
/// stable across the benign churn (JA3 randomisation, UA minor versions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// Hash of browser family + OS + device class (no version).
    pub agent: u32,
    /// Hash of the TLS fingerprint (JA4, or JA3 when trustworthy); 0 = unknown.
    pub tls: u32,
    /// Hash of the primary accept-language tag; 0 = unknown.
    pub lang: u16,
    pub major: u16,
    pub device: u8,
    pub os: u8,
    pub family: u8,
    pub scripting: bool,
}

impl Fingerprint {
    /// How different two clients are: 0 = same device; >= 2 is "materially
    /// different" by default. Version bumps and unknown parts never count.
    pub fn distance(&self, other: &Fingerprint) -> u8 {
        let mut d = 0;
        if self.device != other.device {
            d += 2;
        }
        if self.os != other.os {
            d += 2;
        }
        if self.family != other.family {
            d += 2;
        }
        if self.tls != 0 && other.tls != 0 && self.tls != other.tls {
            d += 1;
        }
        if self.lang != 0 && other.lang != 0 && self.lang != other.lang {
            d += 1;
        }
        d
    }
    /// Whether the user agent named an operating system (woothee says
    /// `UNKNOWN`, native-app and library agents often say nothing).
    pub fn os_known(&self) -> bool {
        static UNKNOWN: std::sync::LazyLock<[u8; 2]> = std::sync::LazyLock::new(|| {
            [(h32("unknown") & 0xff) as u8, (h32("UNKNOWN") & 0xff) as u8]
        });
        !UNKNOWN.contains(&self.os)
    }
    /// A compact identity of the device, used in per-subject history.
    pub fn device_key(&self) -> u32 {
        self.agent ^ self.tls.rotate_left(7) ^ u32::from(self.lang).rotate_left(19)
    }
}

/// An event plus what enrichment learned about it.
#[derive(Clone, Debug)]
pub struct Enriched {
    pub event: AccessEvent,
    pub net: Arc<NetInfo>,
    pub ua: Arc<UaInfo>,
    pub fp: Fingerprint,
    /// A deterministic content hash: tie-breaker for ordering equal timestamps.
    pub order_key: u64,
    /// Where it came from in a Kafka partition (files: none).
    pub source: Option<SourcePos>,
}

/// An event's place in its Kafka partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourcePos {
    /// Offset of the source record: the engine reports the oldest one it
    /// still holds, which bounds the offset that may be committed.
    pub offset: i64,
    /// Position among the objects of its record (a record may hold a
    /// batch): with `offset`, the event's identity in a checkpoint.
    pub index: u32,
    /// The broker's timestamp of the record (ms): the start of the
    /// processing-latency measurement.
    pub broker_ts: Option<i64>,
}

/// Why a record was not turned into an event. Counted, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    NotJson,
    NotObject,
    TooLarge,
    MissingTimestamp,
    BadTimestamp,
    MissingIp,
    BadIp,
    WrongType,
    NoToken,
    Late,
    UnknownFormat,
    Io,
    /// A record of tokenwatch's own repartition topic that does not open
    /// under this instance's key (instances with different hash keys).
    Unsealable,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::NotJson,
        DropReason::NotObject,
        DropReason::TooLarge,
        DropReason::MissingTimestamp,
        DropReason::BadTimestamp,
        DropReason::MissingIp,
        DropReason::BadIp,
        DropReason::WrongType,
        DropReason::NoToken,
        DropReason::Late,
        DropReason::UnknownFormat,
        DropReason::Io,
        DropReason::Unsealable,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotJson => "not_json",
            DropReason::NotObject => "not_object",
            DropReason::TooLarge => "too_large",
            DropReason::MissingTimestamp => "missing_timestamp",
            DropReason::BadTimestamp => "bad_timestamp",
            DropReason::MissingIp => "missing_ip",
            DropReason::BadIp => "bad_ip",
            DropReason::WrongType => "wrong_type",
            DropReason::NoToken => "no_token",
            DropReason::Late => "late",
            DropReason::UnknownFormat => "unknown_format",
            DropReason::Io => "io",
            DropReason::Unsealable => "unsealable",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A drop with the detail a person needs to fix it (which field, what value).
#[derive(Clone, Debug, PartialEq)]
pub struct Drop {
    pub reason: DropReason,
    pub detail: String,
    /// What to configure so records like this one are read (for
    /// `no_token`: how to make this gateway log a token or credential).
    pub hint: Option<&'static str>,
}

impl Drop {
    pub fn new(reason: DropReason, detail: impl Into<String>) -> Self {
        Drop {
            reason,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: Option<&'static str>) -> Self {
        self.hint = hint;
        self
    }
}

/// Format an event time as RFC 3339 with milliseconds.
pub fn fmt_time(ts: EventTime) -> String {
    match chrono::DateTime::from_timestamp_millis(ts) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ts.to_string(),
    }
}

/// Stable 32-bit hash of a string (non-zero).
pub fn h32(s: &str) -> u32 {
    let h = stable_hash(s.as_bytes());
    ((h ^ (h >> 32)) as u32) | 1
}

/// Hash of a TLS fingerprint string; `-` and empty mean "not logged".
pub fn tls_hash(s: &str) -> Option<u32> {
    let s = s.trim();
    (!s.is_empty() && s != "-").then(|| h32(s))
}

/// Hash of the primary tag of an accept-language header.
pub fn lang_tag(header: &str) -> Option<u16> {
    let first = header.split(',').next()?;
    let tag = first.split(';').next().unwrap_or(first).trim();
    if tag.is_empty() || tag == "*" || tag == "-" {
        return None;
    }
    Some((h32(&tag.to_ascii_lowercase()) as u16) | 1)
}

/// FNV-1a: a stable 64-bit hash (same value on every platform and version),
/// used wherever a hash ends up in an id or must be reproducible.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// The vocabulary every layer shares (config, detect, decide, store, web):
// kept here at the bottom so that none of them imports another for it.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    TokenReplay,
    ImpossibleTravel,
    SuspiciousNetwork,
    BulkSiphon,
    Enumeration,
}

impl FindingKind {
    pub const ALL: [FindingKind; 5] = [
        FindingKind::TokenReplay,
        FindingKind::ImpossibleTravel,
        FindingKind::SuspiciousNetwork,
        FindingKind::BulkSiphon,
        FindingKind::Enumeration,
    ];
    /// Every kind's name.
    // Evaluated at compile time: an index out of range fails the build.
    #[allow(clippy::indexing_slicing)]
    pub const NAMES: [&'static str; 5] = {
        let mut names = [""; 5];
        let mut i = 0;
        while i < 5 {
            names[i] = FindingKind::ALL[i].as_str();
            i += 1;
        }
        names
    };
    pub const fn as_str(self) -> &'static str {
        match self {
            FindingKind::TokenReplay => "token_replay",
            FindingKind::ImpossibleTravel => "impossible_travel",
            FindingKind::SuspiciousNetwork => "suspicious_network",
            FindingKind::BulkSiphon => "bulk_siphon",
            FindingKind::Enumeration => "enumeration",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
    /// Kinds that reason about one bearer token's devices, places and
    /// networks: they run on [`IdentityKind::Token`] identities only, never
    /// on a credential that many tokens and people may share.
    pub fn token_scoped(self) -> bool {
        matches!(
            self,
            FindingKind::TokenReplay
                | FindingKind::ImpossibleTravel
                | FindingKind::SuspiciousNetwork
        )
    }
}

/// What the response layer may do with a detector's findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Observe,
    Enforce,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Enforce => "enforce",
        }
    }

    /// From its name (`observe`, `enforce`).
    pub fn parse(name: &str) -> Option<Mode> {
        [Mode::Observe, Mode::Enforce]
            .into_iter()
            .find(|m| m.as_str() == name)
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

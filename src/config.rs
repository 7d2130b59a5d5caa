//! `rules.toml`: the whole configuration, one documented struct per part,
//! one file per section: `input.rs` (`[input]`, `[identity]`, `[geoip]`,
//! `[network_classes]`, `[formats.NAME]`), `detectors.rs` (`[engine]`,
//! `[detectors]`, `[allow]`, `[routes]`), `policy.rs`, `kafka.rs`,
//! `response.rs`, `dashboard.rs`; `secrets.rs` lists the secret-bearing
//! settings. This file holds the root, `[store]`, loading and validation.
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
mod detectors;
mod input;
mod kafka;
mod policy;
mod response;
pub mod secrets;
pub use dashboard::*;
pub use detectors::*;
pub use input::*;
pub use kafka::*;
pub use policy::*;
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

//! `[policy]`: findings → incidents → actions, with the safety fuses, the
//! protected and never-acted-on identities and the rules.

use super::*;

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

impl ActionKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionKind::Revoke => "revoke",
            ActionKind::Alert => "alert",
        }
    }
}

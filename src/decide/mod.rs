//! Decide: findings become incidents, incidents become action requests
//! (revoke, alert), under the response policy of `[policy]`: per-rule
//! scope and mode, a global dry run, never-act lists checked first,
//! protected subjects and clients that wait for a person's approval,
//! expiring tokens whose grant is cut instead, and safety fuses: revocation
//! budgets per rule and overall that, when exceeded, trip to observe mode
//! (and say so loudly) until a person resets them. Alerts are one per
//! incident and per escalation; a storm becomes a digest.
//!
//! Architecture Invariant: like detection, deciding is pure: no I/O, no
//! wall clock. Budgets and digests count in event time, so a replay of the
//! same findings makes the same decisions. Manual acts (approve, reset a
//! fuse, resolve) are inputs, not side effects.

// The pure core is total: no indexing or string slicing that can panic.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

mod command;
mod status;

use std::collections::VecDeque;

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{ActionKind, Mode, PolicyConfig, PolicyRule, Severity};
use crate::detect::Finding;
use crate::event::EventTime;
pub use command::Command;
pub use status::ActionStatus;

/// What happens to an action request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "why")]
pub enum ActionState {
    /// To be carried out by the dispatcher.
    Execute,
    /// Recorded as "would have been done" (observe mode, dry run, tripped fuse).
    Observe(String),
    /// A protected subject or client: waits for a person.
    AwaitingApproval(String),
    /// Not done at all (never-act list), with the reason.
    Skipped(String),
    /// Folded into the next alert digest (alert storm).
    Digest,
}

impl ActionState {
    /// The state it is stored in, and why.
    pub fn describe(&self) -> (ActionStatus, &str) {
        match self {
            ActionState::Execute => (ActionStatus::Pending, ""),
            ActionState::Observe(w) => (ActionStatus::Observed, w),
            ActionState::AwaitingApproval(w) => (ActionStatus::AwaitingApproval, w),
            ActionState::Skipped(w) => (ActionStatus::Skipped, w),
            ActionState::Digest => (ActionStatus::Digest, ""),
        }
    }
}

/// What a revocation cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The token itself.
    Token,
    /// Its grant (session, refresh token): the token expires on its own soon.
    Grant,
}

/// One thing the response layer should do (or record), with a deterministic id.
#[derive(Clone, Debug, Serialize)]
pub struct ActionRequest {
    pub id: String,
    pub kind: ActionKind,
    /// For revocations.
    pub target: Option<Target>,
    /// The rule that asked for it (`policy` for fuse alerts).
    pub rule: String,
    pub state: ActionState,
    pub incident_id: String,
    pub finding_id: String,
    pub token_id: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub event_ts: EventTime,
    /// One line for people: what and why.
    pub summary: String,
}

/// An incident: one token's (or one subject's) findings, grouped.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Incident {
    pub id: String,
    /// `sub:<subject>` or `tok:<token_id>`.
    pub key: String,
    pub opened_ts: EventTime,
    pub last_ts: EventTime,
    pub severity: Severity,
    pub findings: u32,
    pub revoked: bool,
    /// A revocation was decided for some token of this incident.
    pub revocation_decided: bool,
    /// The tokens a revocation was decided for (done, observed, waiting or
    /// skipped): later findings of *those* tokens do not ask again, but
    /// another token of the same subject gets its own decision, so a token
    /// that joined the incident first can never take the revocation a later,
    /// really stolen token needs.
    #[serde(default)]
    pub decided_tokens: Vec<String>,
    pub open: bool,
}

/// Tokens per incident whose revocation is remembered as decided; past it,
/// a further token's findings are no longer revoked automatically (a subject
/// with this many flagged tokens is a case for a person, and the budgets
/// would have tripped long before).
const MAX_DECIDED_TOKENS: usize = 64;

/// The outcome of one finding.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub incident: Incident,
    /// The finding opened the incident (rather than joining it).
    pub opened: bool,
    /// The finding decided on.
    pub finding_id: String,
    pub actions: Vec<ActionRequest>,
}

/// A revocation budget over event time.
#[derive(Debug, Default)]
struct Fuse {
    per_minute: u32,
    per_hour: u32,
    recent: VecDeque<EventTime>,
    tripped: bool,
}

impl Fuse {
    fn new(per_minute: u32, per_hour: u32) -> Fuse {
        Fuse {
            per_minute,
            per_hour,
            ..Fuse::default()
        }
    }

    /// Would one more revocation at `ts` stay within the budget?
    fn allows(&mut self, ts: EventTime) -> bool {
        while self.recent.front().is_some_and(|t| ts - *t >= 3_600_000) {
            self.recent.pop_front();
        }
        let last_minute = self.recent.iter().filter(|t| ts - **t < 60_000).count();
        last_minute < self.per_minute as usize && self.recent.len() < self.per_hour as usize
    }
}

pub struct Decider {
    policy: PolicyConfig,
    never_cidrs: Vec<IpNet>,
    incidents: FxHashMap<String, Incident>,
    rule_fuses: Vec<Fuse>,
    global: Fuse,
    /// (event-time minute, alerts executed in it).
    alert_minute: (i64, u32),
}

impl Decider {
    pub fn new(policy: &PolicyConfig) -> Decider {
        Decider {
            never_cidrs: policy.never_act.cidrs.clone(),
            rule_fuses: policy
                .rules
                .iter()
                .map(|r| Fuse::new(r.max_revocations_per_minute, r.max_revocations_per_hour))
                .collect(),
            global: Fuse::new(
                policy.max_revocations_per_minute,
                policy.max_revocations_per_hour,
            ),
            policy: policy.clone(),
            incidents: FxHashMap::default(),
            alert_minute: (i64::MIN, 0),
        }
    }

    /// Continue from what the store remembers after a restart: open
    /// incidents, tripped fuses and the revocations charged to the budgets.
    pub fn restore(
        &mut self,
        incidents: Vec<Incident>,
        tripped: &[String],
        revocations: &[(String, EventTime)],
    ) {
        for i in incidents {
            self.incidents.insert(i.key.clone(), i);
        }
        for (rule, ts) in revocations {
            self.global.recent.push_back(*ts);
            if let Some(f) = self.rule_fuse(rule) {
                f.recent.push_back(*ts);
            }
        }
        for t in tripped {
            if t == "policy" {
                self.global.tripped = true;
            } else if let Some(f) = self.rule_fuse(t) {
                f.tripped = true;
            }
        }
    }

    /// The fuse of the rule named `rule`.
    fn rule_fuse(&mut self, rule: &str) -> Option<&mut Fuse> {
        let i = self.policy.rules.iter().position(|r| r.name == rule)?;
        self.rule_fuses.get_mut(i)
    }

    /// Rules whose fuse is tripped (and `"policy"` for the global fuse).
    pub fn tripped(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .policy
            .rules
            .iter()
            .zip(&self.rule_fuses)
            .filter(|(_, f)| f.tripped)
            .map(|(r, _)| r.name.clone())
            .collect();
        if self.global.tripped {
            out.push("policy".into());
        }
        out
    }

    /// Apply a person's act. Returns whether it changed something.
    pub fn apply(&mut self, command: &Command) -> bool {
        match command {
            Command::ResetFuse { rule } => self.reset_fuse(rule),
            Command::Resolve { incident_id } => self.resolve(incident_id),
            Command::SetMode { rule, mode } => self.set_mode(rule, *mode),
        }
    }

    /// A person resets a tripped fuse (`"policy"`: the global one). Returns
    /// whether something was tripped.
    pub fn reset_fuse(&mut self, rule: &str) -> bool {
        let fuse = if rule == "policy" {
            Some(&mut self.global)
        } else {
            self.rule_fuse(rule)
        };
        match fuse {
            Some(f) if f.tripped => {
                f.tripped = false;
                f.recent.clear();
                true
            }
            _ => false,
        }
    }

    /// A person switches a rule between observe and enforce. Returns
    /// whether the rule exists and changed.
    pub fn set_mode(&mut self, rule: &str, mode: Mode) -> bool {
        match self.policy.rules.iter_mut().find(|r| r.name == rule) {
            Some(r) if r.mode != mode => {
                r.mode = mode;
                true
            }
            _ => false,
        }
    }

    /// A person resolves an incident; the next finding opens a new one.
    pub fn resolve(&mut self, incident_id: &str) -> bool {
        let key = self
            .incidents
            .iter()
            .find(|(_, i)| i.id == incident_id && i.open)
            .map(|(k, _)| k.clone());
        key.is_some_and(|k| self.incidents.remove(&k).is_some())
    }

    pub fn open_incidents(&self) -> usize {
        self.incidents.values().filter(|i| i.open).count()
    }

    fn rule_applies(rule: &PolicyRule, f: &Finding) -> bool {
        (rule.kinds.is_empty() || rule.kinds.contains(&f.kind))
            && f.severity >= rule.min_severity
            && (rule.routes.is_empty()
                || rule.routes.iter().any(|r| f.route.starts_with(r.as_str())))
            && (rule.client_ids.is_empty()
                || f.client_id
                    .as_deref()
                    .is_some_and(|c| rule.client_ids.iter().any(|x| x == c)))
    }

    fn never_act(&self, f: &Finding) -> Option<String> {
        let n = &self.policy.never_act;
        if let Ok(ip) = f.client_ip.parse::<std::net::IpAddr>()
            && let Some(net) = self.never_cidrs.iter().find(|c| c.contains(&ip))
        {
            return Some(format!("client IP {ip} is in never_act.cidrs ({net})"));
        }
        if n.asns.contains(&f.asn) {
            return Some(format!("AS{} is in never_act.asns", f.asn));
        }
        if let Some(s) = f
            .subject
            .as_deref()
            .filter(|s| n.subjects.iter().any(|x| x == s))
        {
            return Some(format!("subject {s} is in never_act.subjects"));
        }
        if let Some(c) = f
            .client_id
            .as_deref()
            .filter(|c| n.client_ids.iter().any(|x| x == c))
        {
            return Some(format!("client {c} is in never_act.client_ids"));
        }
        None
    }

    fn protected(&self, f: &Finding) -> Option<String> {
        let p = &self.policy.protected;
        if let Some(s) = f
            .subject
            .as_deref()
            .filter(|s| p.subjects.iter().any(|x| x == s))
        {
            return Some(format!("subject {s} is protected: a person must approve"));
        }
        if let Some(c) = f
            .client_id
            .as_deref()
            .filter(|c| p.client_ids.iter().any(|x| x == c))
        {
            return Some(format!("client {c} is protected: a person must approve"));
        }
        None
    }

    /// Decide what one finding causes.
    pub fn decide(&mut self, f: &Finding) -> Decision {
        let key = match &f.subject {
            Some(s) => format!("sub:{s}"),
            None => format!("tok:{}", f.token_id),
        };
        let ts = f.event_ts;
        let mut opened = false;
        let inc = self.incidents.entry(key.clone()).or_insert_with(|| {
            opened = true;
            Incident {
                id: short_id("i", &[key.as_bytes(), f.id.as_bytes()]),
                key: key.clone(),
                opened_ts: ts,
                last_ts: ts,
                severity: f.severity,
                findings: 0,
                revoked: false,
                revocation_decided: false,
                decided_tokens: Vec::new(),
                open: true,
            }
        });
        let escalated = !opened && f.severity > inc.severity;
        inc.findings += 1;
        inc.last_ts = inc.last_ts.max(ts);
        inc.severity = inc.severity.max(f.severity);
        let mut incident = inc.clone();
        let incident_id = incident.id.clone();
        let already_decided = incident
            .decided_tokens
            .iter()
            .any(|t| t.as_str() == f.token_id.as_str())
            || incident.decided_tokens.len() >= MAX_DECIDED_TOKENS;

        let mut actions = Vec::new();
        let mut revoked_now = false;
        let never = self.never_act(f);
        let rules = self.policy.rules.clone();
        let applying: Vec<(usize, &PolicyRule)> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| Self::rule_applies(r, f))
            .collect();
        // Revocation: the first applying rule that asks for one.
        let mut decided_now = false;
        if !already_decided
            && let Some((ri, rule)) = applying
                .iter()
                .find(|(_, r)| r.actions.contains(&ActionKind::Revoke))
        {
            let (target, state) = self.revocation(*ri, rule, f, never.clone());
            revoked_now = matches!(state, ActionState::Execute);
            decided_now = true;
            let summary = match &state {
                ActionState::Execute => format!(
                    "revoke the {} of token {}: {}",
                    target_word(target),
                    f.token_id,
                    f.summary
                ),
                other => format!(
                    "not revoking token {} ({}): {}",
                    f.token_id,
                    state_word(other),
                    f.summary
                ),
            };
            actions.push(self.request(
                ActionKind::Revoke,
                Some(target),
                &rule.name,
                state,
                &incident_id,
                f,
                summary,
            ));
        }
        // Alert: once per incident and per escalation; an enforcing rule
        // wins over an observing one.
        let alerting = applying
            .iter()
            .filter(|(_, r)| r.actions.contains(&ActionKind::Alert))
            .min_by_key(|(_, r)| r.mode != Mode::Enforce);
        if (opened || escalated)
            && let Some((_, rule)) = alerting
        {
            let state = if let Some(why) = &never {
                ActionState::Skipped(why.clone())
            } else if self.policy.dry_run {
                ActionState::Observe("dry run".into())
            } else if rule.mode == Mode::Observe {
                ActionState::Observe(format!("rule {} is in observe mode", rule.name))
            } else if self.count_alert(ts) {
                ActionState::Execute
            } else {
                ActionState::Digest
            };
            let summary = format!(
                "{} {} incident for {}: {}",
                if escalated { "escalated" } else { "new" },
                f.severity.as_str(),
                key,
                f.summary
            );
            actions.push(self.request(
                ActionKind::Alert,
                None,
                &rule.name,
                state,
                &incident_id,
                f,
                summary,
            ));
        }
        // Loud alerts for fuses that tripped on this finding.
        for a in actions.clone() {
            if let ActionState::Observe(why) = &a.state
                && why.starts_with("fuse tripped now")
            {
                let fuse_alert = self.request(
                    ActionKind::Alert,
                    None,
                    "policy",
                    ActionState::Execute,
                    &incident_id,
                    f,
                    format!(
                        "SAFETY FUSE TRIPPED ({why}): automatic revocation is off for rule {} until a person resets it",
                        a.rule
                    ),
                );
                actions.push(fuse_alert);
            }
        }
        incident.revoked |= revoked_now;
        incident.revocation_decided |= decided_now;
        if decided_now && incident.decided_tokens.len() < MAX_DECIDED_TOKENS {
            incident
                .decided_tokens
                .push(f.token_id.as_str().to_string());
        }
        self.incidents.insert(key, incident.clone());
        Decision {
            incident,
            opened,
            finding_id: f.id.clone(),
            actions,
        }
    }

    /// The state of a revocation the rule asks for, charging the budgets.
    fn revocation(
        &mut self,
        ri: usize,
        rule: &PolicyRule,
        f: &Finding,
        never: Option<String>,
    ) -> (Target, ActionState) {
        let ts = f.event_ts;
        let margin = (self.policy.exp_margin_secs * 1000) as i64;
        let target = match f.token_exp {
            Some(exp) if exp - ts <= margin => Target::Grant,
            _ => Target::Token,
        };
        if let Some(why) = never {
            return (target, ActionState::Skipped(why));
        }
        if f.token_id.as_str().starts_with("u:") {
            // A consumer is every credential of a user or app at once.
            return (
                target,
                ActionState::Skipped(format!(
                    "{} is a gateway consumer (all of its credentials), not one token: \
                     revoke one of its tokens by hand",
                    f.token_id
                )),
            );
        }
        if let Some(why) = self.protected(f) {
            return (target, ActionState::AwaitingApproval(why));
        }
        if self.policy.dry_run {
            return (target, ActionState::Observe("dry run".into()));
        }
        if rule.mode == Mode::Observe {
            return (
                target,
                ActionState::Observe(format!("rule {} is in observe mode", rule.name)),
            );
        }
        // One fuse per rule, built with the rules: `ri` is always in range;
        // were it not, the global fuse alone would still hold.
        let mut spare = Fuse::new(u32::MAX, u32::MAX);
        let Decider {
            global,
            rule_fuses,
            policy,
            ..
        } = self;
        let fuse = rule_fuses.get_mut(ri).unwrap_or(&mut spare);
        if global.tripped || fuse.tripped {
            return (
                target,
                ActionState::Observe(format!(
                    "fuse tripped earlier ({}): waiting for a person to reset it",
                    if global.tripped {
                        "policy"
                    } else {
                        rule.name.as_str()
                    }
                )),
            );
        }
        let rule_ok = fuse.allows(ts);
        let global_ok = global.allows(ts);
        if !rule_ok || !global_ok {
            let which = if !global_ok {
                global.tripped = true;
                format!(
                    "policy budget of {}/min, {}/h",
                    policy.max_revocations_per_minute, policy.max_revocations_per_hour
                )
            } else {
                fuse.tripped = true;
                format!(
                    "rule {} budget of {}/min, {}/h",
                    rule.name, rule.max_revocations_per_minute, rule.max_revocations_per_hour
                )
            };
            return (
                target,
                ActionState::Observe(format!("fuse tripped now: {which} exceeded")),
            );
        }
        fuse.recent.push_back(ts);
        global.recent.push_back(ts);
        (target, ActionState::Execute)
    }

    /// Count an alert in its event-time minute; false past the digest threshold.
    fn count_alert(&mut self, ts: EventTime) -> bool {
        let minute = ts.div_euclid(60_000);
        if self.alert_minute.0 != minute {
            self.alert_minute = (minute, 0);
        }
        self.alert_minute.1 += 1;
        self.alert_minute.1 <= self.policy.digest_after_alerts_per_minute
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        kind: ActionKind,
        target: Option<Target>,
        rule: &str,
        state: ActionState,
        incident_id: &str,
        f: &Finding,
        summary: String,
    ) -> ActionRequest {
        let kind_s = match kind {
            ActionKind::Revoke => "revoke",
            ActionKind::Alert => "alert",
        };
        ActionRequest {
            id: short_id(
                "a",
                &[
                    incident_id.as_bytes(),
                    kind_s.as_bytes(),
                    rule.as_bytes(),
                    f.id.as_bytes(),
                ],
            ),
            kind,
            target,
            rule: rule.to_string(),
            state,
            incident_id: incident_id.to_string(),
            finding_id: f.id.clone(),
            token_id: f.token_id.to_string(),
            subject: f.subject.as_deref().map(str::to_string),
            client_id: f.client_id.as_deref().map(str::to_string),
            event_ts: f.event_ts,
            summary,
        }
    }
}

fn target_word(t: Target) -> &'static str {
    match t {
        Target::Token => "token itself",
        Target::Grant => "grant (the token expires within the margin)",
    }
}

fn state_word(s: &ActionState) -> String {
    match s {
        ActionState::Execute => "executing".into(),
        ActionState::Observe(w) => format!("observe: {w}"),
        ActionState::AwaitingApproval(w) => format!("awaiting approval: {w}"),
        ActionState::Skipped(w) => format!("skipped: {w}"),
        ActionState::Digest => "digest".into(),
    }
}

/// 20 hex digits of SHA-256 over one string (ids of manual actions).
pub fn short_hash(s: &str) -> String {
    let id = short_id("", &[s.as_bytes()]);
    id.strip_prefix('-').unwrap_or(&id).to_string()
}

/// `<prefix>-` + 20 hex digits of SHA-256 over the parts.
fn short_id(prefix: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update(b"\0");
    }
    let d = h.finalize();
    let mut s = String::with_capacity(prefix.len() + 21);
    s.push_str(prefix);
    s.push('-');
    for b in d.iter().take(10) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests;

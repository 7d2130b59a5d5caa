//! What the pages and the JSON API both read and do: the incident filter,
//! one incident, the rules with their modes, the detectors' settings and
//! the mode switch. Neither `pages` nor `api` imports the other.

use serde::Deserialize;

use super::{Caller, WebError, WebState, require, url_escape};
use crate::config::Role;
use crate::decide::ActionStatus;
use crate::store::{
    ActionView, DeliveryStatus, FindingRecord, IncidentFilter, IncidentRow, RuleCounts, SEVERITIES,
    STATUSES,
};

/// The finding kinds, as the filters name them.
pub const KINDS: [&str; 5] = crate::detect::FindingKind::NAMES;
/// The states of an action, as the filters name them.
pub const ACTION_STATES: [&str; 10] = ActionStatus::NAMES;

/// An action state filter as given (empty = any).
pub fn action_state(v: Option<String>) -> Result<Option<ActionStatus>, WebError> {
    Ok(one_of("state", v, &ACTION_STATES)?.and_then(|s| ActionStatus::parse(&s)))
}

/// The incident filters as they come in a query string (all text).
#[derive(Debug, Default, Deserialize)]
pub struct FilterQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

pub fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// A choice as given (not trimmed: ` high` is not `high`); empty = any.
fn given(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn parse_time(field: &str, s: &str) -> Result<Option<i64>, WebError> {
    let Some(t) = opt(s) else { return Ok(None) };
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(&t)
        .map(|d| Some(d.timestamp_millis()))
        .map_err(|_| {
            WebError::BadRequest(format!(
                "`{field}`: `{t}` is not a time; use RFC 3339 (2026-11-23T10:00:00Z) or epoch milliseconds"
            ))
        })
}

pub fn one_of(
    field: &str,
    v: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, WebError> {
    match v {
        Some(x) if !allowed.contains(&x.as_str()) => Err(WebError::BadRequest(format!(
            "`{field}` must be one of {}; got `{x}`",
            allowed.join(", ")
        ))),
        v => Ok(v),
    }
}

impl FilterQuery {
    pub fn filter(&self) -> Result<(IncidentFilter, u32, u32), WebError> {
        let per_page = self.per_page.unwrap_or(50);
        if !(1..=500).contains(&per_page) {
            return Err(WebError::BadRequest(
                "`per_page` must be between 1 and 500".into(),
            ));
        }
        let page = self.page.unwrap_or(1);
        if page == 0 || page > 100_000 {
            return Err(WebError::BadRequest(
                "`page` starts at 1 (and stops at 100000)".into(),
            ));
        }
        Ok((
            IncidentFilter {
                kind: one_of("kind", given(&self.kind), &KINDS)?,
                severity: one_of("severity", given(&self.severity), &SEVERITIES)?,
                status: one_of("status", given(&self.status), &STATUSES)?,
                subject: opt(&self.subject),
                client_id: opt(&self.client_id),
                q: opt(&self.q),
                from_ms: parse_time("from", &self.from)?,
                to_ms: parse_time("to", &self.to)?,
                offset: (page - 1) * per_page,
                limit: per_page,
            },
            page,
            per_page,
        ))
    }

    pub fn link(&self, page: u32) -> String {
        let mut parts = vec![format!("page={page}")];
        for (k, v) in [
            ("q", &self.q),
            ("kind", &self.kind),
            ("severity", &self.severity),
            ("status", &self.status),
            ("subject", &self.subject),
            ("client_id", &self.client_id),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", url_escape(v)));
            }
        }
        if let Some(p) = self.per_page {
            parts.push(format!("per_page={p}"));
        }
        parts.join("&")
    }
}

/// Everything an incident page shows.
pub struct IncidentData {
    pub row: IncidentRow,
    pub findings: Vec<FindingRecord>,
    pub actions: Vec<ActionView>,
    pub deliveries: Vec<DeliveryStatus>,
}

pub async fn load_incident(st: &WebState, id: String) -> Result<IncidentData, WebError> {
    let missing = format!("no incident `{id}`");
    let data = st
        .db(move |s| {
            let Some(row) = s.incident(&id)? else {
                return Ok(None);
            };
            let findings = s.incident_findings(&id, 200)?;
            let (actions, _) = s.actions_page(Some(&id), None, 0, 200)?;
            let deliveries = s.deliveries(Some(&id))?;
            Ok(Some(IncidentData {
                row,
                findings,
                actions,
                deliveries,
            }))
        })
        .await?;
    data.ok_or(WebError::NotFound(missing))
}

pub struct RuleView {
    pub name: String,
    pub scope: String,
    pub actions: String,
    pub mode: String,
    pub other: String,
    pub overridden: bool,
    pub budget: String,
    pub counts: RuleCounts,
}

/// The rules with their effective modes and counts.
pub async fn rule_views(st: &WebState) -> Result<(Vec<RuleView>, Vec<(String, i64)>), WebError> {
    let (modes, counts, by_kind) = st
        .db(|s| Ok((s.rule_modes()?, s.rule_counts()?, s.findings_by_kind()?)))
        .await?;
    let rules = st
        .cfg
        .policy
        .rules
        .iter()
        .map(|r| {
            let set = modes
                .iter()
                .find(|(n, _)| *n == r.name)
                .map(|x| x.1.clone());
            let mode = set.clone().unwrap_or_else(|| r.mode.as_str().to_string());
            let kinds = if r.kinds.is_empty() {
                "every kind".to_string()
            } else {
                r.kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut scope = format!("{kinds}, {} and up", r.min_severity.as_str());
            if !r.routes.is_empty() {
                scope.push_str(&format!("; routes {}", r.routes.join(", ")));
            }
            if !r.client_ids.is_empty() {
                scope.push_str(&format!("; clients {}", r.client_ids.join(", ")));
            }
            RuleView {
                name: r.name.clone(),
                scope,
                actions: r
                    .actions
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(" + "),
                other: if mode == "enforce" {
                    "observe"
                } else {
                    "enforce"
                }
                .into(),
                overridden: set.is_some_and(|m| m != r.mode.as_str()),
                mode,
                budget: format!(
                    "{}/min, {}/h",
                    r.max_revocations_per_minute, r.max_revocations_per_hour
                ),
                counts: counts
                    .iter()
                    .find(|c| c.rule == r.name)
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok((rules, by_kind))
}

/// `(kind, enabled, severity, cooldown_secs)` of each detector.
pub fn detector_settings(cfg: &crate::config::Config) -> Vec<(String, bool, String, u64)> {
    crate::detect::registry::entries(&cfg.detectors)
        .iter()
        .map(|e| {
            (
                e.kind().as_str().to_string(),
                e.enabled,
                e.severity.as_str().to_string(),
                e.cooldown_secs,
            )
        })
        .collect()
}

pub async fn set_rule_mode(
    st: &WebState,
    caller: &Caller,
    name: &str,
    mode: &str,
) -> Result<(), WebError> {
    require(caller, Role::Admin)?;
    let Some(mode) = crate::config::Mode::parse(mode) else {
        return Err(WebError::BadRequest(format!(
            "`mode` must be observe or enforce; got `{mode}`"
        )));
    };
    if !st.cfg.policy.rules.iter().any(|r| r.name == name) {
        return Err(WebError::NotFound(format!("no rule `{name}` in [policy]")));
    }
    let now = crate::clock::now_ms();
    let (who, n) = (caller.name.clone(), name.to_string());
    st.db(move |s| s.set_rule_mode(&n, mode, &who, now)).await
}

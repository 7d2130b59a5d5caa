//! What the dashboard and its API read: incidents with their findings,
//! actions and deliveries, the overview's counts and series, the audit log,
//! and what people set by hand (incident triage, rule modes).
//!
//! "Recent" is measured in event time, back from the newest finding, so a
//! replay of last week's logs shows the same overview as live processing.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{FindingRecord, Store, StoreError};
use crate::config::Mode;
use crate::decide::{ActionStatus, Command};

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS incident_findings (
        incident_id TEXT NOT NULL, finding_id TEXT NOT NULL, kind TEXT NOT NULL,
        severity TEXT NOT NULL, event_ts INTEGER NOT NULL, token_id TEXT NOT NULL,
        subject TEXT, client_id TEXT, asn INTEGER,
        PRIMARY KEY (incident_id, finding_id));
    CREATE INDEX IF NOT EXISTS incident_findings_ts ON incident_findings (event_ts);
    CREATE INDEX IF NOT EXISTS incident_findings_token ON incident_findings (token_id);
    CREATE INDEX IF NOT EXISTS findings_ts ON findings (event_ts);
    CREATE INDEX IF NOT EXISTS incidents_last ON incidents (last_ts);
    CREATE INDEX IF NOT EXISTS actions_incident ON actions (incident_id);
    CREATE TABLE IF NOT EXISTS incident_status (
        incident_id TEXT PRIMARY KEY, status TEXT NOT NULL, actor TEXT NOT NULL,
        at_ms INTEGER NOT NULL, note TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS rule_modes (
        rule TEXT PRIMARY KEY, mode TEXT NOT NULL, actor TEXT NOT NULL, at_ms INTEGER NOT NULL);";

/// Link a decided finding to its incident (in the decision's transaction).
pub(super) fn link_finding(
    tx: &rusqlite::Transaction<'_>,
    incident_id: &str,
    finding_id: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO incident_findings
           (incident_id, finding_id, kind, severity, event_ts, token_id, subject, client_id, asn)
         SELECT ?1, id, kind, COALESCE(json_extract(json, '$.severity'), 'medium'), event_ts, token_id,
                json_extract(json, '$.subject'), json_extract(json, '$.client_id'), json_extract(json, '$.asn')
         FROM findings WHERE id = ?2",
        params![incident_id, finding_id],
    )?;
    Ok(())
}

/// Triage states a person can set; `open` and `resolved` also follow the
/// policy's own state.
pub const STATUSES: [&str; 4] = ["open", "acknowledged", "resolved", "false_positive"];
pub const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// Filters of the incident list (all optional) and the page.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub kind: Option<String>,
    pub severity: Option<String>,
    pub status: Option<String>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// Part of the incident id, subject or a token id.
    pub q: Option<String>,
    /// Event-time range (ms): incidents active in it.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub offset: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentRow {
    pub id: String,
    pub key: String,
    pub subject: Option<String>,
    pub token_id: Option<String>,
    pub client_id: Option<String>,
    pub kinds: Vec<String>,
    pub severity: String,
    pub status: String,
    pub findings: u32,
    pub revoked: bool,
    pub opened_ts: i64,
    pub last_ts: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionView {
    pub id: String,
    pub incident_id: String,
    pub kind: String,
    pub rule: String,
    pub state: String,
    pub why: String,
    pub token_id: String,
    pub event_ts: i64,
    pub created_ms: i64,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub what: String,
    pub target: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    /// Newest finding's event time (ms); the series end there.
    pub now_ts: i64,
    pub open_by_severity: Vec<(String, i64)>,
    /// Findings and opened incidents per hour, the last 24 h of event time.
    pub hours: Vec<HourPoint>,
    pub top_tokens: Vec<(String, i64)>,
    pub top_subjects: Vec<(String, i64)>,
    pub top_clients: Vec<(String, i64)>,
    pub top_asns: Vec<(String, i64)>,
    pub findings_total: i64,
    pub incidents_open: i64,
    pub awaiting_approval: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HourPoint {
    pub ts: i64,
    pub findings: i64,
    pub incidents: i64,
}

/// Per rule: findings it applies to, and what it did or would have done.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleCounts {
    pub rule: String,
    pub revoked: i64,
    pub would_have_revoked: i64,
    pub alerts: i64,
    pub awaiting_approval: i64,
}

const STATUS_EXPR: &str =
    "COALESCE(s.status, CASE WHEN i.open = 1 THEN 'open' ELSE 'resolved' END)";

fn like(q: &str) -> String {
    let escaped: String = q
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

impl Store {
    /// One page of incidents, newest activity first, and the total matching.
    pub fn incidents(&self, f: &IncidentFilter) -> Result<(Vec<IncidentRow>, i64), StoreError> {
        let filter = format!(
            "FROM incidents i LEFT JOIN incident_status s ON s.incident_id = i.id
             WHERE (?1 IS NULL OR EXISTS (SELECT 1 FROM incident_findings x WHERE x.incident_id = i.id AND x.kind = ?1))
               AND (?2 IS NULL OR i.severity = ?2)
               AND (?3 IS NULL OR {STATUS_EXPR} = ?3)
               AND (?4 IS NULL OR i.key = 'sub:' || ?4)
               AND (?5 IS NULL OR EXISTS (SELECT 1 FROM incident_findings x WHERE x.incident_id = i.id AND x.client_id = ?5))
               AND (?6 IS NULL OR i.id LIKE ?6 ESCAPE '\\' OR i.key LIKE ?6 ESCAPE '\\'
                    OR EXISTS (SELECT 1 FROM incident_findings x WHERE x.incident_id = i.id AND x.token_id LIKE ?6 ESCAPE '\\'))
               AND (?7 IS NULL OR i.last_ts >= ?7)
               AND (?8 IS NULL OR i.opened_ts <= ?8)"
        );
        let q = f.q.as_deref().map(like);
        let args = params![
            f.kind,
            f.severity,
            f.status,
            f.subject,
            f.client_id,
            q,
            f.from_ms,
            f.to_ms
        ];
        let total: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) {filter}"), args, |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let sql = format!(
            "SELECT i.id, i.key, i.opened_ts, i.last_ts, i.severity, i.findings, i.revoked, {STATUS_EXPR},
               (SELECT group_concat(kind) FROM (SELECT DISTINCT kind FROM incident_findings x WHERE x.incident_id = i.id)),
               (SELECT client_id FROM incident_findings x WHERE x.incident_id = i.id AND client_id IS NOT NULL LIMIT 1),
               (SELECT token_id FROM incident_findings x WHERE x.incident_id = i.id ORDER BY event_ts DESC LIMIT 1)
             {filter} ORDER BY i.last_ts DESC, i.id LIMIT {} OFFSET {}",
            f.limit.clamp(1, 500),
            f.offset
        );
        let rows = self.rows(&sql, args, |r| {
            let key: String = r.get(1)?;
            let kinds: Option<String> = r.get(8)?;
            Ok(IncidentRow {
                id: r.get(0)?,
                subject: key.strip_prefix("sub:").map(str::to_string),
                token_id: r
                    .get::<_, Option<String>>(10)?
                    .or_else(|| key.strip_prefix("tok:").map(str::to_string)),
                key,
                opened_ts: r.get(2)?,
                last_ts: r.get(3)?,
                severity: r.get(4)?,
                findings: r.get(5)?,
                revoked: r.get(6)?,
                status: r.get(7)?,
                kinds: kinds
                    .map(|k| k.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                client_id: r.get(9)?,
            })
        })?;
        Ok((rows, total))
    }

    /// One incident.
    pub fn incident(&self, id: &str) -> Result<Option<IncidentRow>, StoreError> {
        let (rows, _) = self.incidents(&IncidentFilter {
            q: Some(id.to_string()),
            limit: 50,
            ..Default::default()
        })?;
        Ok(rows.into_iter().find(|r| r.id == id))
    }

    /// The findings of an incident (JSON as produced), oldest first.
    pub fn incident_findings(
        &self,
        incident_id: &str,
        limit: u32,
    ) -> Result<Vec<FindingRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT f.json FROM incident_findings x JOIN findings f ON f.id = x.finding_id
                 WHERE x.incident_id = ?1 ORDER BY x.event_ts DESC, f.id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let mut rows: Vec<FindingRecord> = stmt
            .query_map(params![incident_id, limit], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .filter_map(|r| r.ok())
            .filter_map(|j| FindingRecord::parse(&j))
            .collect();
        rows.reverse();
        Ok(rows)
    }

    /// Findings, newest first, optionally of one kind or token.
    pub fn findings_page(
        &self,
        kind: Option<&str>,
        token_id: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<FindingRecord>, i64), StoreError> {
        let filter =
            "FROM findings WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR token_id = ?2)";
        let total: i64 = self
            .conn
            .query_row(
                &format!("SELECT count(*) {filter}"),
                params![kind, token_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT json {filter} ORDER BY event_ts DESC, id LIMIT {} OFFSET {offset}",
                limit.clamp(1, 500)
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![kind, token_id], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .filter_map(|r| r.ok())
            .filter_map(|j| FindingRecord::parse(&j))
            .collect();
        Ok((rows, total))
    }

    /// Actions, newest first, of an incident or in a state.
    pub fn actions_page(
        &self,
        incident_id: Option<&str>,
        state: Option<ActionStatus>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<ActionView>, i64), StoreError> {
        let filter =
            "FROM actions WHERE (?1 IS NULL OR incident_id = ?1) AND (?2 IS NULL OR state = ?2)";
        let total: i64 = self
            .conn
            .query_row(
                &format!("SELECT count(*) {filter}"),
                params![incident_id, state],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let rows = self.rows(
            &format!(
                "SELECT id, incident_id, kind, rule, state, why, token_id, event_ts, created_ms,
                        COALESCE(json_extract(json, '$.summary'), '')
                 {filter} ORDER BY created_ms DESC, id LIMIT {} OFFSET {offset}",
                limit.clamp(1, 500)
            ),
            params![incident_id, state],
            |r| {
                Ok(ActionView {
                    id: r.get(0)?,
                    incident_id: r.get(1)?,
                    kind: r.get(2)?,
                    rule: r.get(3)?,
                    state: r.get(4)?,
                    why: r.get(5)?,
                    token_id: r.get(6)?,
                    event_ts: r.get(7)?,
                    created_ms: r.get(8)?,
                    summary: r.get(9)?,
                })
            },
        )?;
        Ok((rows, total))
    }

    /// The audit log, newest first.
    pub fn audit_page(
        &self,
        q: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<AuditRow>, i64), StoreError> {
        let q = q.map(like);
        let filter =
            "FROM audit WHERE (?1 IS NULL OR actor LIKE ?1 ESCAPE '\\' OR what LIKE ?1 ESCAPE '\\'
                      OR target LIKE ?1 ESCAPE '\\' OR detail LIKE ?1 ESCAPE '\\')";
        let total: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) {filter}"), params![q], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))?;
        let rows = self.rows(
            &format!(
                "SELECT seq, at_ms, actor, what, target, detail {filter}
                 ORDER BY seq DESC LIMIT {} OFFSET {offset}",
                limit.clamp(1, 500)
            ),
            params![q],
            |r| {
                Ok(AuditRow {
                    seq: r.get(0)?,
                    at_ms: r.get(1)?,
                    actor: r.get(2)?,
                    what: r.get(3)?,
                    target: r.get(4)?,
                    detail: r.get(5)?,
                })
            },
        )?;
        Ok((rows, total))
    }

    fn pairs(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.rows(sql, args, |r| Ok((r.get(0)?, r.get(1)?)))
    }

    /// The overview page's numbers, over the last 24 h of event time.
    pub fn overview(&self) -> Result<Overview, StoreError> {
        let now_ts: i64 = self
            .conn
            .query_row("SELECT COALESCE(max(event_ts), 0) FROM findings", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))?;
        let hour = 3_600_000i64;
        let end = (now_ts / hour + 1) * hour;
        let since = end - 24 * hour;
        let mut hours: Vec<HourPoint> = (0..24)
            .map(|i| HourPoint {
                ts: since + i * hour,
                ..Default::default()
            })
            .collect();
        for (h, n) in self.pairs(
            "SELECT CAST(event_ts / 3600000 AS TEXT), count(*) FROM findings WHERE event_ts >= ?1 GROUP BY event_ts / 3600000",
            params![since],
        )? {
            let i = (h.parse::<i64>().unwrap_or(0) * hour - since) / hour;
            if let Some(p) = hours.get_mut(i as usize) {
                p.findings = n;
            }
        }
        for (h, n) in self.pairs(
            "SELECT CAST(opened_ts / 3600000 AS TEXT), count(*) FROM incidents WHERE opened_ts >= ?1 GROUP BY opened_ts / 3600000",
            params![since],
        )? {
            let i = (h.parse::<i64>().unwrap_or(0) * hour - since) / hour;
            if let Some(p) = hours.get_mut(i as usize) {
                p.incidents = n;
            }
        }
        let open_by_severity = self.pairs(
            &format!(
                "SELECT i.severity, count(*) FROM incidents i LEFT JOIN incident_status s ON s.incident_id = i.id
                 WHERE {STATUS_EXPR} IN ('open', 'acknowledged') GROUP BY i.severity"
            ),
            [],
        )?;
        let top = |col: &str| {
            self.pairs(
                &format!(
                    "SELECT CAST({col} AS TEXT), count(*) n FROM incident_findings
                     WHERE event_ts >= ?1 AND {col} IS NOT NULL GROUP BY {col} ORDER BY n DESC, 1 LIMIT 8"
                ),
                params![since],
            )
        };
        let one = |sql: &str| -> Result<i64, StoreError> {
            self.conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|e| self.err(e))
        };
        Ok(Overview {
            now_ts,
            open_by_severity,
            hours,
            top_tokens: top("token_id")?,
            top_subjects: top("subject")?,
            top_clients: top("client_id")?,
            top_asns: top("asn")?,
            findings_total: one("SELECT count(*) FROM findings")?,
            incidents_open: one(&format!(
                "SELECT count(*) FROM incidents i LEFT JOIN incident_status s ON s.incident_id = i.id
                 WHERE {STATUS_EXPR} IN ('open', 'acknowledged')"
            ))?,
            awaiting_approval: one(
                "SELECT count(*) FROM actions WHERE state = 'awaiting_approval'",
            )?,
        })
    }

    /// Findings per kind over the last 24 h of event time.
    pub fn findings_by_kind(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.pairs(
            "SELECT kind, count(*) FROM findings
             WHERE event_ts >= (SELECT COALESCE(max(event_ts), 0) FROM findings) - 86400000
             GROUP BY kind",
            [],
        )
    }

    /// What each rule did and would have done.
    pub fn rule_counts(&self) -> Result<Vec<RuleCounts>, StoreError> {
        self.rows(
            "SELECT rule,
                   sum(kind = 'revoke' AND state IN ('pending', 'dispatched', 'done')),
                   sum(kind = 'revoke' AND state = 'observed'),
                   sum(kind = 'alert'),
                   sum(kind = 'revoke' AND state = 'awaiting_approval')
                 FROM actions GROUP BY rule ORDER BY rule",
            [],
            |r| {
                Ok(RuleCounts {
                    rule: r.get(0)?,
                    revoked: r.get(1)?,
                    would_have_revoked: r.get(2)?,
                    alerts: r.get(3)?,
                    awaiting_approval: r.get(4)?,
                })
            },
        )
    }

    /// A person sets an incident's triage status (audited).
    pub fn set_status(
        &mut self,
        incident_id: &str,
        status: &str,
        actor: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let exists: Option<i64> = self
            .conn
            .query_row(
                "SELECT 1 FROM incidents WHERE id = ?1",
                params![incident_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if exists.is_none() {
            return Ok(false);
        }
        self.conn
            .execute(
                "INSERT OR REPLACE INTO incident_status (incident_id, status, actor, at_ms, note)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![incident_id, status, actor, now_ms, note],
            )
            .map_err(|e| self.err(e))?;
        self.audit(
            now_ms,
            &format!("user:{actor}"),
            &format!("incident {}", status.replace('_', " ")),
            incident_id,
            note,
        )?;
        Ok(true)
    }

    /// A person switches a rule's mode; the running service applies it
    /// within a second and keeps it across restarts (audited).
    pub fn set_rule_mode(
        &mut self,
        rule: &str,
        mode: Mode,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO rule_modes (rule, mode, actor, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![rule, mode.as_str(), actor, now_ms],
            )
            .map_err(|e| self.err(e))?;
        self.audit(
            now_ms,
            &format!("user:{actor}"),
            "rule mode",
            rule,
            &format!("set to {}", mode.as_str()),
        )?;
        self.push_command(
            actor,
            &Command::SetMode {
                rule: rule.to_string(),
                mode,
            },
            now_ms,
        )?;
        Ok(())
    }

    /// Rule modes set by people, `(rule, mode)`.
    pub fn rule_modes(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.rows("SELECT rule, mode FROM rule_modes ORDER BY rule", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }

    /// Tripped fuses with when they tripped (ms).
    pub fn fuses(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.pairs("SELECT rule, tripped_ms FROM fuses ORDER BY rule", [])
    }
}

//! The outbox's delivery side: actions the policy decided (`actions`, state
//! `pending`) are expanded into one delivery per endpoint (a revoker or an
//! alert channel), claimed with a lease by a dispatcher, retried with
//! backoff, and finished; endpoint breaker states, the gateway deny-list,
//! manual commands and the audit log live here too.
//!
//! Architecture Invariant: a delivery is claimed with a lease before its
//! call is made, and its id is the call's idempotency key, so two
//! dispatchers (instances sharing a store) never call an endpoint for the
//! same delivery at once, and a retry after a crash is recognisable.

use rusqlite::{OptionalExtension, params};

use super::{FindingRecord, Store, StoreError};
use crate::decide::{ActionStatus, Command};

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS deliveries (
        id TEXT PRIMARY KEY, action_id TEXT NOT NULL, endpoint TEXT NOT NULL,
        kind TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL, lease_until_ms INTEGER NOT NULL DEFAULT 0,
        last_status INTEGER, last_error TEXT, detail TEXT,
        created_ms INTEGER NOT NULL, done_ms INTEGER);
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_ms);
    CREATE INDEX IF NOT EXISTS deliveries_action ON deliveries (action_id);
    CREATE TABLE IF NOT EXISTS endpoints (
        name TEXT PRIMARY KEY, state TEXT NOT NULL, failures INTEGER NOT NULL,
        open_until_ms INTEGER NOT NULL, last_error TEXT, updated_ms INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS denylist (
        token_id TEXT PRIMARY KEY, until_ms INTEGER NOT NULL, action_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS commands (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, actor TEXT NOT NULL,
        command TEXT NOT NULL, target TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0);";

/// An action waiting to be expanded into deliveries.
#[derive(Debug, Clone)]
pub struct ActionRow {
    pub id: String,
    /// `revoke`, `alert` or `resolve`.
    pub kind: String,
    pub rule: String,
    pub token_id: String,
    pub incident_id: String,
    pub finding_id: String,
    /// The [`crate::decide::ActionRequest`] as JSON.
    pub json: String,
    /// The raw token sealed by custody, when it was in custody at decision time.
    pub sealed: Option<Vec<u8>>,
}

/// A delivery claimed for execution.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    /// `<action id>/<endpoint>`: also the idempotency key of the call.
    pub id: String,
    pub action: ActionRow,
    pub endpoint: String,
    pub attempts: u32,
}

/// One delivery as shown to people (status per alert and revocation).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryStatus {
    pub id: String,
    pub action_id: String,
    pub endpoint: String,
    pub kind: String,
    pub state: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub detail: Option<String>,
}

/// An endpoint's circuit breaker, as last recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointState {
    pub name: String,
    /// `closed`, `open`, `half_open`.
    pub state: String,
    pub failures: u32,
    pub open_until_ms: i64,
    pub last_error: Option<String>,
}

/// An alert's context: its finding, its incident, the incident's
/// revocations `(kind, state, why)`.
pub type AlertContext = (
    Option<FindingRecord>,
    Option<crate::decide::Incident>,
    Vec<(String, String, String)>,
);

/// What happened to a delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// Done; `detail` says what the endpoint confirmed.
    Delivered { status: Option<u16>, detail: String },
    /// Not applicable to this endpoint (e.g. no raw token in custody).
    Skipped { why: String },
    /// Failed for good (a 4xx, or attempts exhausted).
    Failed { status: Option<u16>, error: String },
    /// Try again at `next_ms` (counts as an attempt).
    Retry {
        status: Option<u16>,
        error: String,
        next_ms: i64,
    },
    /// Not attempted (breaker open, rate limited): wait until `next_ms`.
    Defer { why: String, next_ms: i64 },
}

/// The `commands` row of one command: its name, for people reading the
/// table, and the command itself as JSON in `target`.
fn push_command(
    conn: &rusqlite::Connection,
    actor: &str,
    command: &Command,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO commands (at_ms, actor, command, target) VALUES (?1, ?2, ?3, ?4)",
        params![now_ms, actor, command.name(), command.to_json()],
    )
    .map(|_| ())
}

const ACTION_COLS: &str =
    "a.id, a.kind, a.rule, a.token_id, a.incident_id, a.finding_id, a.json, a.sealed";

fn action_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ActionRow> {
    Ok(ActionRow {
        id: r.get(at)?,
        kind: r.get(at + 1)?,
        rule: r.get(at + 2)?,
        token_id: r.get(at + 3)?,
        incident_id: r.get(at + 4)?,
        finding_id: r.get(at + 5)?,
        json: r.get(at + 6)?,
        sealed: r.get(at + 7)?,
    })
}

pub(super) fn audit(
    conn: &rusqlite::Connection,
    now_ms: i64,
    actor: &str,
    what: &str,
    target: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit (at_ms, actor, what, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms, actor, what, target, detail],
    )?;
    Ok(())
}

impl Store {
    /// Append to the audit log.
    pub fn audit(
        &self,
        now_ms: i64,
        actor: &str,
        what: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        audit(&self.conn, now_ms, actor, what, target, detail).map_err(|e| self.err(e))
    }

    /// Actions decided for execution and not yet expanded into deliveries.
    pub fn pending_actions(&self, limit: usize) -> Result<Vec<ActionRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ACTION_COLS} FROM actions a WHERE a.state = 'pending' ORDER BY a.created_ms, a.id LIMIT ?1"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| action_row(r, 0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Expand an action into one delivery per endpoint (all at once, in one
    /// transaction) and mark it `dispatched`; with no endpoint it becomes
    /// `no_endpoint`, audited with `why`.
    pub fn expand(
        &mut self,
        action: &ActionRow,
        endpoints: &[String],
        why_none: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for e in endpoints {
            tx.execute(
                "INSERT OR IGNORE INTO deliveries (id, action_id, endpoint, kind, state, next_attempt_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
                params![format!("{}/{e}", action.id), action.id, e, action.kind, now_ms],
            )
            .map_err(err)?;
        }
        let state = if endpoints.is_empty() {
            audit(
                &tx,
                now_ms,
                "dispatcher",
                &format!("{} no_endpoint", action.kind),
                &action.token_id,
                why_none,
            )
            .map_err(err)?;
            ActionStatus::NoEndpoint
        } else {
            ActionStatus::Dispatched
        };
        tx.execute(
            "UPDATE actions SET state = ?2 WHERE id = ?1 AND state = 'pending'",
            params![action.id, state],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Claim up to `limit` due deliveries for `lease_ms` (others sharing
    /// the store skip them meanwhile).
    pub fn claim_due(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let rows: Vec<DeliveryRow> = {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT d.id, d.endpoint, d.attempts, {ACTION_COLS}
                     FROM deliveries d JOIN actions a ON a.id = d.action_id
                     WHERE d.state = 'pending' AND d.next_attempt_ms <= ?1 AND d.lease_until_ms <= ?1
                     ORDER BY d.next_attempt_ms LIMIT ?2"
                ))
                .map_err(err)?;
            let rows = stmt
                .query_map(params![now_ms, limit as i64], |r| {
                    Ok(DeliveryRow {
                        id: r.get(0)?,
                        endpoint: r.get(1)?,
                        attempts: r.get(2)?,
                        action: action_row(r, 3)?,
                    })
                })
                .map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        for d in &rows {
            tx.execute(
                "UPDATE deliveries SET lease_until_ms = ?2 WHERE id = ?1",
                params![d.id, now_ms + lease_ms],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(rows)
    }

    /// Record the outcome of a delivery attempt (and audit it). When the
    /// action's last delivery finishes, the action becomes `done` (at least
    /// one endpoint delivered) or `failed`. Returns the action's new state
    /// when it changed.
    pub fn finish(
        &mut self,
        d: &DeliveryRow,
        outcome: &Finish,
        now_ms: i64,
    ) -> Result<Option<ActionStatus>, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let target = &d.action.token_id;
        match outcome {
            Finish::Delivered { status, detail } => {
                tx.execute(
                    "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = ?2,
                     last_error = NULL, detail = ?3, done_ms = ?4, lease_until_ms = 0 WHERE id = ?1",
                    params![d.id, status, detail, now_ms],
                )
                .map_err(err)?;
                audit(
                    &tx,
                    now_ms,
                    "dispatcher",
                    &format!("{} delivered", d.action.kind),
                    target,
                    &format!("{}: {detail}", d.endpoint),
                )
                .map_err(err)?;
            }
            Finish::Skipped { why } => {
                tx.execute(
                    "UPDATE deliveries SET state = 'skipped', detail = ?2, done_ms = ?3, lease_until_ms = 0 WHERE id = ?1",
                    params![d.id, why, now_ms],
                )
                .map_err(err)?;
                audit(
                    &tx,
                    now_ms,
                    "dispatcher",
                    &format!("{} skipped", d.action.kind),
                    target,
                    &format!("{}: {why}", d.endpoint),
                )
                .map_err(err)?;
            }
            Finish::Failed { status, error } => {
                tx.execute(
                    "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, last_status = ?2,
                     last_error = ?3, done_ms = ?4, lease_until_ms = 0 WHERE id = ?1",
                    params![d.id, status, error, now_ms],
                )
                .map_err(err)?;
                audit(
                    &tx,
                    now_ms,
                    "dispatcher",
                    &format!("{} failed", d.action.kind),
                    target,
                    &format!("{}: {error}", d.endpoint),
                )
                .map_err(err)?;
            }
            Finish::Retry {
                status,
                error,
                next_ms,
            } => {
                tx.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, last_status = ?2, last_error = ?3,
                     next_attempt_ms = ?4, lease_until_ms = 0 WHERE id = ?1",
                    params![d.id, status, error, next_ms],
                )
                .map_err(err)?;
            }
            Finish::Defer { why, next_ms } => {
                tx.execute(
                    "UPDATE deliveries SET last_error = ?2, next_attempt_ms = ?3, lease_until_ms = 0 WHERE id = ?1",
                    params![d.id, why, next_ms],
                )
                .map_err(err)?;
            }
        }
        let (left, delivered): (i64, i64) = tx
            .query_row(
                "SELECT SUM(state = 'pending'), SUM(state = 'delivered') FROM deliveries WHERE action_id = ?1",
                params![d.action.id],
                |r| Ok((r.get::<_, Option<i64>>(0)?.unwrap_or(0), r.get::<_, Option<i64>>(1)?.unwrap_or(0))),
            )
            .map_err(err)?;
        let mut changed = None;
        if left == 0 {
            let state = if delivered > 0 {
                ActionStatus::Done
            } else {
                ActionStatus::Failed
            };
            let n = tx
                .execute(
                    "UPDATE actions SET state = ?2 WHERE id = ?1 AND state = 'dispatched'",
                    params![d.action.id, state],
                )
                .map_err(err)?;
            if n == 1 {
                if d.action.kind == "revoke" && state == ActionStatus::Done {
                    tx.execute(
                        "UPDATE incidents SET revoked = 1 WHERE id = ?1",
                        params![d.action.incident_id],
                    )
                    .map_err(err)?;
                }
                changed = Some(state);
            }
        }
        tx.commit().map_err(err)?;
        Ok(changed)
    }

    /// The context of an alert: the finding, the incident and what was done
    /// for the incident so far: `(finding json, incident json, [(kind, state, why)])`.
    pub fn alert_context(
        &self,
        finding_id: &str,
        incident_id: &str,
    ) -> Result<AlertContext, StoreError> {
        let finding: Option<String> = self
            .conn
            .query_row(
                "SELECT json FROM findings WHERE id = ?1",
                params![finding_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let incident: Option<String> = self
            .conn
            .query_row(
                "SELECT json FROM incidents WHERE id = ?1",
                params![incident_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kind, state, why FROM actions WHERE incident_id = ?1 AND kind = 'revoke' ORDER BY created_ms")
            .map_err(|e| self.err(e))?;
        let done = stmt
            .query_map(params![incident_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        Ok((
            finding.and_then(|j| FindingRecord::parse(&j)),
            incident.and_then(|j| serde_json::from_str(&j).ok()),
            done,
        ))
    }

    /// Every delivery of the actions of an incident (or all, newest first).
    pub fn deliveries(&self, incident_id: Option<&str>) -> Result<Vec<DeliveryStatus>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.id, d.action_id, d.endpoint, d.kind, d.state, d.attempts, d.last_status, d.last_error, d.detail
                 FROM deliveries d JOIN actions a ON a.id = d.action_id
                 WHERE ?1 IS NULL OR a.incident_id = ?1 ORDER BY d.created_ms DESC, d.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![incident_id], |r| {
                Ok(DeliveryStatus {
                    id: r.get(0)?,
                    action_id: r.get(1)?,
                    endpoint: r.get(2)?,
                    kind: r.get(3)?,
                    state: r.get(4)?,
                    attempts: r.get(5)?,
                    last_status: r.get(6)?,
                    last_error: r.get(7)?,
                    detail: r.get(8)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Deliveries not finished yet (the outbox backlog).
    pub fn outbox_backlog(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'pending') + (SELECT COUNT(*) FROM actions WHERE state = 'pending')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Remember an endpoint's breaker state (for people and after restarts).
    pub fn set_endpoint(
        &self,
        name: &str,
        state: &str,
        failures: u32,
        open_until_ms: i64,
        last_error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO endpoints (name, state, failures, open_until_ms, last_error, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, state, failures, open_until_ms, last_error, now_ms],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Endpoint breaker states.
    pub fn endpoints(&self) -> Result<Vec<EndpointState>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, state, failures, open_until_ms, last_error FROM endpoints ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(EndpointState {
                    name: r.get(0)?,
                    state: r.get(1)?,
                    failures: r.get(2)?,
                    open_until_ms: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Deny a token id at the gateway until `until_ms`.
    pub fn deny(
        &self,
        token_id: &str,
        until_ms: i64,
        action_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO denylist (token_id, until_ms, action_id, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (token_id) DO UPDATE SET until_ms = MAX(until_ms, excluded.until_ms)",
                params![token_id, until_ms, action_id, now_ms],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Token ids denied after `now_ms`: `(token_id, until_ms)`; older rows are deleted.
    pub fn denied(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.conn
            .execute("DELETE FROM denylist WHERE until_ms <= ?1", params![now_ms])
            .map_err(|e| self.err(e))?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT token_id, until_ms FROM denylist")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Queue a command for the running service (its policy state), after
    /// the store already reflects it.
    pub fn push_command(
        &self,
        actor: &str,
        command: &Command,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        push_command(&self.conn, actor, command, now_ms).map_err(|e| self.err(e))
    }

    /// Commands not yet applied, in order, marked applied as they are read.
    /// A row that is not a command (written by another version) is an
    /// `Err` saying what it held, for the reader to report.
    pub fn take_commands(&mut self) -> Result<Vec<Result<Command, String>>, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let rows: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare_cached("SELECT seq, target FROM commands WHERE done = 0 ORDER BY seq")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        if let Some((last, _)) = rows.last() {
            tx.execute(
                "UPDATE commands SET done = 1 WHERE seq <= ?1",
                params![last],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(_, stored)| Command::from_json(&stored))
            .collect())
    }

    /// A person approves a revocation waiting for approval: it is executed.
    pub fn approve(
        &mut self,
        action_id: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.manual_transition(action_id, actor, "approved", ActionStatus::Pending, now_ms)
    }

    /// A person rejects a revocation waiting for approval.
    pub fn reject(
        &mut self,
        action_id: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.manual_transition(action_id, actor, "rejected", ActionStatus::Rejected, now_ms)
    }

    fn manual_transition(
        &mut self,
        action_id: &str,
        actor: &str,
        what: &str,
        to: ActionStatus,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let token: Option<String> = tx
            .query_row(
                "SELECT token_id FROM actions WHERE id = ?1 AND state = 'awaiting_approval'",
                params![action_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        let Some(token) = token else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE actions SET state = ?2, why = ?3 WHERE id = ?1",
            params![action_id, to, format!("{what} by {actor}")],
        )
        .map_err(err)?;
        audit(
            &tx,
            now_ms,
            &format!("user:{actor}"),
            &format!("revoke {what}"),
            &token,
            action_id,
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }

    /// A person resets a tripped fuse (`policy` or a rule name).
    pub fn reset_fuse(&mut self, rule: &str, actor: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM fuses WHERE rule = ?1", params![rule])
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Ok(false);
        }
        self.audit(
            now_ms,
            &format!("user:{actor}"),
            "fuse reset",
            rule,
            "revocations may run again",
        )?;
        self.push_command(
            actor,
            &Command::ResetFuse {
                rule: rule.to_string(),
            },
            now_ms,
        )?;
        Ok(true)
    }

    /// A person resolves an incident: closed, and channels that track
    /// incidents (PagerDuty, Alertmanager) are told.
    pub fn resolve(
        &mut self,
        incident_id: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let row: Option<(String, String)> = tx
            .query_row(
                "SELECT key, json FROM incidents WHERE id = ?1 AND open = 1",
                params![incident_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        let Some((key, json)) = row else {
            return Ok(false);
        };
        let mut inc: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        inc["open"] = false.into();
        tx.execute(
            "UPDATE incidents SET open = 0, json = ?2 WHERE id = ?1",
            params![incident_id, inc.to_string()],
        )
        .map_err(err)?;
        let finding: String = tx
            .query_row(
                "SELECT finding_id FROM actions WHERE incident_id = ?1 ORDER BY created_ms LIMIT 1",
                params![incident_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?
            .unwrap_or_default();
        let token = key
            .split_once(':')
            .map(|(_, t)| t)
            .unwrap_or(&key)
            .to_string();
        let id = format!("r-{incident_id}");
        let req = serde_json::json!({
            "id": id, "kind": "resolve", "rule": "manual", "incident_id": incident_id,
            "finding_id": finding, "token_id": token, "summary": format!("incident {incident_id} resolved by {actor}"),
        });
        tx.execute(
            "INSERT OR IGNORE INTO actions (id, incident_id, kind, rule, state, why, finding_id, token_id, event_ts, created_ms, json)
             VALUES (?1, ?2, 'resolve', 'manual', 'pending', ?3, ?4, ?5, 0, ?6, ?7)",
            params![id, incident_id, format!("resolved by {actor}"), finding, token, now_ms, req.to_string()],
        )
        .map_err(err)?;
        audit(
            &tx,
            now_ms,
            &format!("user:{actor}"),
            "incident resolved",
            incident_id,
            &key,
        )
        .map_err(err)?;
        let resolve = Command::Resolve {
            incident_id: incident_id.to_string(),
        };
        push_command(&tx, actor, &resolve, now_ms).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }

    /// A person revokes a token by hand: an action the dispatcher carries
    /// out with every revoker in scope (the running service presents the
    /// raw token from its custody). Returns the action id.
    pub fn manual_revoke(
        &mut self,
        token_id: &str,
        actor: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let id = format!("m-{now_ms:x}-{}", &crate::decide::short_hash(token_id)[..8]);
        let incident: String = self
            .conn
            .query_row(
                "SELECT incident_id FROM actions WHERE token_id = ?1 ORDER BY created_ms DESC LIMIT 1",
                params![token_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?
            .unwrap_or_else(|| format!("manual-{token_id}"));
        let req = serde_json::json!({
            "id": id, "kind": "revoke", "target": "token", "rule": "manual", "incident_id": incident,
            "finding_id": "", "token_id": token_id, "summary": format!("revoked by {actor}: {reason}"),
        });
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO actions (id, incident_id, kind, rule, state, why, finding_id, token_id, event_ts, created_ms, json)
             VALUES (?1, ?2, 'revoke', 'manual', 'pending', ?3, '', ?4, 0, ?5, ?6)",
            params![id, incident, format!("by {actor}: {reason}"), token_id, now_ms, req.to_string()],
        )
        .map_err(err)?;
        audit(
            &tx,
            now_ms,
            &format!("user:{actor}"),
            "revoke requested",
            token_id,
            reason,
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(id)
    }

    /// Attach a sealed token to an action that has none (manual revocations).
    pub fn attach_sealed(&self, action_id: &str, sealed: &[u8]) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE actions SET sealed = ?2 WHERE id = ?1 AND sealed IS NULL",
                params![action_id, sealed],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Queue an alert about the response itself (a breaker opened, a
    /// revocation failed), tied to the action it concerns; `exclude` names
    /// a channel not to use (the failing one).
    pub fn insert_system_alert(
        &self,
        about: &ActionRow,
        exclude: Option<&str>,
        summary: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let id = format!(
            "s-{}",
            &crate::decide::short_hash(&format!("{}|{summary}|{now_ms}", about.id))[..16]
        );
        let req = serde_json::json!({
            "id": id, "kind": "alert", "rule": "delivery", "incident_id": about.incident_id,
            "finding_id": about.finding_id, "token_id": about.token_id, "summary": summary, "exclude": exclude,
        });
        self.conn
            .execute(
                "INSERT OR IGNORE INTO actions (id, incident_id, kind, rule, state, why, finding_id, token_id, event_ts, created_ms, json)
                 VALUES (?1, ?2, 'alert', 'delivery', 'pending', '', ?3, ?4, 0, ?5, ?6)",
                params![id, about.incident_id, about.finding_id, about.token_id, now_ms, req.to_string()],
            )
            .map_err(|e| self.err(e))?;
        audit(
            &self.conn,
            now_ms,
            "dispatcher",
            "alert pending",
            &about.token_id,
            summary,
        )
        .map_err(|e| self.err(e))
    }
}

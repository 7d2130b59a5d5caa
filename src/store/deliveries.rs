//! The outbox's delivery side: actions the policy decided (`actions`, state
//! `pending`) are expanded into one delivery per endpoint (a revoker or an
//! alert channel), claimed with a lease by a dispatcher, retried with
//! backoff, and finished.
//!
//! Architecture Invariant: a delivery is claimed with a lease before its
//! call is made, and its id is the call's idempotency key, so two
//! dispatchers (instances sharing a store) never call an endpoint for the
//! same delivery at once, and a retry after a crash is recognisable.

use rusqlite::{OptionalExtension, params};

use super::actions::{ACTION_COLS, ActionRow, NewAction, action_row, insert_action};
use super::audit::audit;
use super::{FindingRecord, Store, StoreError, query_rows};
use crate::decide::ActionStatus;

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS deliveries (
        id TEXT PRIMARY KEY, action_id TEXT NOT NULL, endpoint TEXT NOT NULL,
        kind TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL, lease_until_ms INTEGER NOT NULL DEFAULT 0,
        last_status INTEGER, last_error TEXT, detail TEXT,
        created_ms INTEGER NOT NULL, done_ms INTEGER);
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_ms);
    CREATE INDEX IF NOT EXISTS deliveries_action ON deliveries (action_id);";

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

impl Store {
    /// Actions decided for execution and not yet expanded into deliveries.
    pub fn pending_actions(&self, limit: usize) -> Result<Vec<ActionRow>, StoreError> {
        self.rows(
            &format!(
                "SELECT {ACTION_COLS} FROM actions a WHERE a.state = 'pending' ORDER BY a.created_ms, a.id LIMIT ?1"
            ),
            params![limit as i64],
            |r| action_row(r, 0),
        )
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
        self.in_tx(rusqlite::TransactionBehavior::Deferred, |tx| {
        for e in endpoints {
            tx.execute(
                "INSERT OR IGNORE INTO deliveries (id, action_id, endpoint, kind, state, next_attempt_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
                params![format!("{}/{e}", action.id), action.id, e, action.kind, now_ms],
            )?;
        }
        let state = if endpoints.is_empty() {
            audit(
                tx,
                now_ms,
                "dispatcher",
                &format!("{} no_endpoint", action.kind),
                &action.token_id,
                why_none,
            )?;
            ActionStatus::NoEndpoint
        } else {
            ActionStatus::Dispatched
        };
        tx.execute(
            "UPDATE actions SET state = ?2 WHERE id = ?1 AND state = 'pending'",
            params![action.id, state],
        )?;
        Ok(())
        })
    }

    /// Claim up to `limit` due deliveries for `lease_ms` (others sharing
    /// the store skip them meanwhile).
    pub fn claim_due(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.in_tx(rusqlite::TransactionBehavior::Immediate, |tx| {
            let rows: Vec<DeliveryRow> = query_rows(
                tx,
                &format!(
                    "SELECT d.id, d.endpoint, d.attempts, {ACTION_COLS}
                 FROM deliveries d JOIN actions a ON a.id = d.action_id
                 WHERE d.state = 'pending' AND d.next_attempt_ms <= ?1 AND d.lease_until_ms <= ?1
                 ORDER BY d.next_attempt_ms LIMIT ?2"
                ),
                params![now_ms, limit as i64],
                |r| {
                    Ok(DeliveryRow {
                        id: r.get(0)?,
                        endpoint: r.get(1)?,
                        attempts: r.get(2)?,
                        action: action_row(r, 3)?,
                    })
                },
            )?;
            for d in &rows {
                tx.execute(
                    "UPDATE deliveries SET lease_until_ms = ?2 WHERE id = ?1",
                    params![d.id, now_ms + lease_ms],
                )?;
            }
            Ok(rows)
        })
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
        self.in_tx(rusqlite::TransactionBehavior::Deferred, |tx| {
        let target = &d.action.token_id;
        match outcome {
            Finish::Delivered { status, detail } => {
                tx.execute(
                    "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = ?2,
                     last_error = NULL, detail = ?3, done_ms = ?4, lease_until_ms = 0 WHERE id = ?1",
                    params![d.id, status, detail, now_ms],
                )?;
                audit(
                    tx,
                    now_ms,
                    "dispatcher",
                    &format!("{} delivered", d.action.kind),
                    target,
                    &format!("{}: {detail}", d.endpoint),
                )?;
            }
            Finish::Skipped { why } => {
                tx.execute(
                    "UPDATE deliveries SET state = 'skipped', detail = ?2, done_ms = ?3, lease_until_ms = 0 WHERE id = ?1",
                    params![d.id, why, now_ms],
                )?;
                audit(
                    tx,
                    now_ms,
                    "dispatcher",
                    &format!("{} skipped", d.action.kind),
                    target,
                    &format!("{}: {why}", d.endpoint),
                )?;
            }
            Finish::Failed { status, error } => {
                tx.execute(
                    "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, last_status = ?2,
                     last_error = ?3, done_ms = ?4, lease_until_ms = 0 WHERE id = ?1",
                    params![d.id, status, error, now_ms],
                )?;
                audit(
                    tx,
                    now_ms,
                    "dispatcher",
                    &format!("{} failed", d.action.kind),
                    target,
                    &format!("{}: {error}", d.endpoint),
                )?;
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
                )?;
            }
            Finish::Defer { why, next_ms } => {
                tx.execute(
                    "UPDATE deliveries SET last_error = ?2, next_attempt_ms = ?3, lease_until_ms = 0 WHERE id = ?1",
                    params![d.id, why, next_ms],
                )?;
            }
        }
        let (left, delivered): (i64, i64) = tx
            .query_row(
                "SELECT SUM(state = 'pending'), SUM(state = 'delivered') FROM deliveries WHERE action_id = ?1",
                params![d.action.id],
                |r| Ok((r.get::<_, Option<i64>>(0)?.unwrap_or(0), r.get::<_, Option<i64>>(1)?.unwrap_or(0))),
            )?;
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
                )?;
            if n == 1 {
                if d.action.kind == "revoke" && state == ActionStatus::Done {
                    tx.execute(
                        "UPDATE incidents SET revoked = 1 WHERE id = ?1",
                        params![d.action.incident_id],
                    )?;
                }
                changed = Some(state);
            }
        }
        Ok(changed)
        })
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
        let done = self.rows(
            "SELECT kind, state, why FROM actions WHERE incident_id = ?1 AND kind = 'revoke' ORDER BY created_ms",
            params![incident_id],
            |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            },
        )?;
        Ok((
            finding.and_then(|j| FindingRecord::parse(&j)),
            incident.and_then(|j| serde_json::from_str(&j).ok()),
            done,
        ))
    }

    /// Every delivery of the actions of an incident (or all, newest first).
    pub fn deliveries(&self, incident_id: Option<&str>) -> Result<Vec<DeliveryStatus>, StoreError> {
        self.rows(
            "SELECT d.id, d.action_id, d.endpoint, d.kind, d.state, d.attempts, d.last_status, d.last_error, d.detail
                 FROM deliveries d JOIN actions a ON a.id = d.action_id
                 WHERE ?1 IS NULL OR a.incident_id = ?1 ORDER BY d.created_ms DESC, d.id",
            params![incident_id],
            |r| {
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
            },
        )
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
        insert_action(
            &self.conn,
            &NewAction {
                id: &id,
                incident_id: &about.incident_id,
                kind: "alert",
                rule: "delivery",
                state: ActionStatus::Pending,
                why: "",
                finding_id: &about.finding_id,
                token_id: &about.token_id,
                event_ts: 0,
                created_ms: now_ms,
                json: &req.to_string(),
                sealed: None,
            },
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

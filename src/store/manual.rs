//! People's acts on the response: approve or reject a revocation waiting
//! for approval, reset a fuse, resolve an incident, revoke a token by hand.
//! Each is audited, in the same transaction as its change, and those the
//! running policy must know of are queued as commands.

use rusqlite::{OptionalExtension, params};

use super::actions::{NewAction, insert_action};
use super::audit::audit;
use super::commands::push_command;
use super::{Store, StoreError};
use crate::decide::{ActionStatus, Command};

impl Store {
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
        self.in_tx(rusqlite::TransactionBehavior::Deferred, |tx| {
            let token: Option<String> = tx
                .query_row(
                    "SELECT token_id FROM actions WHERE id = ?1 AND state = 'awaiting_approval'",
                    params![action_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(token) = token else {
                return Ok(false);
            };
            tx.execute(
                "UPDATE actions SET state = ?2, why = ?3 WHERE id = ?1",
                params![action_id, to, format!("{what} by {actor}")],
            )?;
            audit(
                tx,
                now_ms,
                &format!("user:{actor}"),
                &format!("revoke {what}"),
                &token,
                action_id,
            )?;
            Ok(true)
        })
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
        self.in_tx(rusqlite::TransactionBehavior::Deferred, |tx| {
        let row: Option<(String, String)> = tx
            .query_row(
                "SELECT key, json FROM incidents WHERE id = ?1 AND open = 1",
                params![incident_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((key, json)) = row else {
            return Ok(false);
        };
        let mut inc: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        inc["open"] = false.into();
        tx.execute(
            "UPDATE incidents SET open = 0, json = ?2 WHERE id = ?1",
            params![incident_id, inc.to_string()],
        )?;
        let finding: String = tx
            .query_row(
                "SELECT finding_id FROM actions WHERE incident_id = ?1 ORDER BY created_ms LIMIT 1",
                params![incident_id],
                |r| r.get(0),
            )
            .optional()?
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
        insert_action(
            tx,
            &NewAction {
                id: &id,
                incident_id,
                kind: "resolve",
                rule: "manual",
                state: ActionStatus::Pending,
                why: &format!("resolved by {actor}"),
                finding_id: &finding,
                token_id: &token,
                event_ts: 0,
                created_ms: now_ms,
                json: &req.to_string(),
                sealed: None,
            },
        )?;
        audit(
            tx,
            now_ms,
            &format!("user:{actor}"),
            "incident resolved",
            incident_id,
            &key,
        )?;
        let resolve = Command::Resolve {
            incident_id: incident_id.to_string(),
        };
        push_command(tx, actor, &resolve, now_ms)?;
        Ok(true)
        })
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
        let id = format!("m-{now_ms:x}-{}", &crate::decide::short_hash(token_id)[..8]);
        let incident: String = self
            .conn
            .query_row(
                "SELECT incident_id FROM actions WHERE token_id = ?1 ORDER BY created_ms DESC LIMIT 1",
                params![token_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or_else(|| format!("manual-{token_id}"));
        let req = serde_json::json!({
            "id": id, "kind": "revoke", "target": "token", "rule": "manual", "incident_id": incident,
            "finding_id": "", "token_id": token_id, "summary": format!("revoked by {actor}: {reason}"),
        });
        self.in_tx(rusqlite::TransactionBehavior::Deferred, |tx| {
            insert_action(
                tx,
                &NewAction {
                    id: &id,
                    incident_id: &incident,
                    kind: "revoke",
                    rule: "manual",
                    state: ActionStatus::Pending,
                    why: &format!("by {actor}: {reason}"),
                    finding_id: "",
                    token_id,
                    event_ts: 0,
                    created_ms: now_ms,
                    json: &req.to_string(),
                    sealed: None,
                },
            )?;
            audit(
                tx,
                now_ms,
                &format!("user:{actor}"),
                "revoke requested",
                token_id,
                reason,
            )?;
            Ok(id)
        })
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
}

//! The `actions` table's rows: the one column list an action is read with
//! ([`ACTION_COLS`], [`action_row`]) and the one insert every writer uses
//! ([`insert_action`]): the policy's decisions, manual revocations,
//! resolutions and alerts about the response itself.

use rusqlite::params;

use crate::decide::ActionStatus;

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

/// The columns [`action_row`] reads, for a query over `actions a`.
pub(super) const ACTION_COLS: &str =
    "a.id, a.kind, a.rule, a.token_id, a.incident_id, a.finding_id, a.json, a.sealed";

/// Read an [`ActionRow`] from the row's columns starting at `at`.
pub(super) fn action_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ActionRow> {
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

/// One new `actions` row.
pub(crate) struct NewAction<'a> {
    pub id: &'a str,
    pub incident_id: &'a str,
    /// `revoke`, `alert` or `resolve`.
    pub kind: &'a str,
    pub rule: &'a str,
    pub state: ActionStatus,
    /// Why it is in its state, for people.
    pub why: &'a str,
    pub finding_id: &'a str,
    pub token_id: &'a str,
    /// Event time of the finding behind it (0 for people's acts).
    pub event_ts: i64,
    pub created_ms: i64,
    /// The request as JSON ([`super::ActionRecord`] reads it).
    pub json: &'a str,
    /// The raw token sealed by custody.
    pub sealed: Option<&'a [u8]>,
}

/// Insert an action unless one with its id exists (ids are deterministic,
/// so a decision derived again is the same row). Returns 1 when inserted.
pub(crate) fn insert_action(
    conn: &rusqlite::Connection,
    a: &NewAction<'_>,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT OR IGNORE INTO actions (id, incident_id, kind, rule, state, why, finding_id, token_id, event_ts, created_ms, json, sealed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            a.id,
            a.incident_id,
            a.kind,
            a.rule,
            a.state,
            a.why,
            a.finding_id,
            a.token_id,
            a.event_ts,
            a.created_ms,
            a.json,
            a.sealed
        ],
    )
}

//! The audit log: every automatic and manual action, appended in order.

use rusqlite::params;

use super::{Store, StoreError};

/// Append one entry (inside the caller's transaction when there is one).
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

    /// The audit log, oldest first: `(actor, what, target, detail)`.
    pub fn audit_log(&self) -> Result<Vec<(String, String, String, String)>, StoreError> {
        self.rows(
            "SELECT actor, what, target, detail FROM audit ORDER BY seq",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
    }
}

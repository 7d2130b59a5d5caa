//! Endpoint circuit breakers, as last recorded (for people and after a
//! restart), and the gateway deny-list the `deny_list` revoker fills.

use rusqlite::params;

use super::{Store, StoreError};

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS endpoints (
        name TEXT PRIMARY KEY, state TEXT NOT NULL, failures INTEGER NOT NULL,
        open_until_ms INTEGER NOT NULL, last_error TEXT, updated_ms INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS denylist (
        token_id TEXT PRIMARY KEY, until_ms INTEGER NOT NULL, action_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL);";

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

impl Store {
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
        self.rows(
            "SELECT name, state, failures, open_until_ms, last_error FROM endpoints ORDER BY name",
            [],
            |r| {
                Ok(EndpointState {
                    name: r.get(0)?,
                    state: r.get(1)?,
                    failures: r.get(2)?,
                    open_until_ms: r.get(3)?,
                    last_error: r.get(4)?,
                })
            },
        )
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
        self.rows("SELECT token_id, until_ms FROM denylist", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }
}

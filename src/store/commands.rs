//! Commands for the running service's policy, queued by people's acts in
//! the store (reset a fuse, resolve an incident, change a rule's mode) and
//! taken in order by the service, which applies them to its policy state.

use rusqlite::params;

use super::{Store, StoreError, query_rows};
use crate::decide::Command;

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS commands (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, actor TEXT NOT NULL,
        command TEXT NOT NULL, target TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0);";

/// The `commands` row of one command: its name, for people reading the
/// table, and the command itself as JSON in `target`.
pub(super) fn push_command(
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

impl Store {
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
        self.in_tx(rusqlite::TransactionBehavior::Deferred, |tx| {
            let rows: Vec<(i64, String)> = query_rows(
                tx,
                "SELECT seq, target FROM commands WHERE done = 0 ORDER BY seq",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if let Some((last, _)) = rows.last() {
                tx.execute(
                    "UPDATE commands SET done = 1 WHERE seq <= ?1",
                    params![last],
                )?;
            }
            Ok(rows
                .into_iter()
                .map(|(_, stored)| Command::from_json(&stored))
                .collect())
        })
    }
}

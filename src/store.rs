//! The embedded store (SQLite, one file): detector-state checkpoints with
//! the source offsets they reflect, and the log of findings, which also
//! de-duplicates findings derived again after a restart.
//!
//! Architecture Invariant: the store holds token ids, never raw tokens.
//! Architecture Invariant: a checkpoint row is written before the Kafka
//! offset commit that names it (commit metadata `tw1:<store id>:<seq>`), and
//! the previous row is kept, so a crash between the two still finds the row
//! the committed offset refers to.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
#[error("store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// One partition's detector state at a point in its input.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub topic: String,
    pub partition: i32,
    /// Increases by one per checkpoint of this partition.
    pub seq: i64,
    /// Where consumption resumes: the oldest event still in the reorder
    /// buffer, or `next_offset` when it is empty. Committed to Kafka.
    pub resume_offset: i64,
    /// The first offset not processed at all.
    pub next_offset: i64,
    /// Wall-clock time of the checkpoint (ms since the epoch), for its age.
    pub created_ms: i64,
    /// [`crate::detect::Engine::snapshot`].
    pub state: Vec<u8>,
}

/// A finding as the store keeps it.
pub struct StoredFinding<'a> {
    pub id: &'a str,
    pub token_id: &'a str,
    pub kind: &'a str,
    pub event_ts: i64,
    pub json: &'a [u8],
}

/// `(store id, checkpoint seq)` of commit metadata written by any store.
pub fn parse_metadata(metadata: &str) -> Option<(&str, i64)> {
    let rest = metadata.strip_prefix("tw1:")?;
    let (id, seq) = rest.split_once(':')?;
    Some((id, seq.parse().ok()?))
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    id: String,
}

impl Store {
    /// Open (or create) the database. Several processes may share it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        // WAL: readers never block the writer; NORMAL: a process crash
        // (kill -9) loses nothing committed, a power loss may lose the last
        // transactions (then findings may be produced twice, by id).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS checkpoints (
                 topic TEXT NOT NULL, partition INTEGER NOT NULL, seq INTEGER NOT NULL,
                 resume_offset INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL, state BLOB NOT NULL,
                 PRIMARY KEY (topic, partition, seq));
             CREATE TABLE IF NOT EXISTS findings (
                 id TEXT PRIMARY KEY, token_id TEXT NOT NULL, kind TEXT NOT NULL,
                 event_ts INTEGER NOT NULL, created_ms INTEGER NOT NULL,
                 produced INTEGER NOT NULL DEFAULT 0, json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS findings_unproduced ON findings (produced) WHERE produced = 0;",
        )
        .map_err(err)?;
        let fresh = format!("{:016x}", rand::random::<u64>());
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?1)",
            params![fresh],
        )
        .map_err(err)?;
        let id: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
                r.get(0)
            })
            .map_err(err)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            id,
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// A random id fixed when the database was created.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The metadata committed with an offset that a checkpoint reflects.
    pub fn commit_metadata(&self, seq: i64) -> String {
        format!("tw1:{}:{seq}", self.id)
    }

    /// The checkpoint sequence number in commit metadata written by this store.
    pub fn seq_from_metadata(&self, metadata: &str) -> Option<i64> {
        let (id, seq) = parse_metadata(metadata)?;
        (id == self.id).then_some(seq)
    }

    pub fn latest_seq(&self, topic: &str, partition: i32) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM checkpoints WHERE topic = ?1 AND partition = ?2",
                params![topic, partition],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Write checkpoints in one transaction; for each partition only this and
    /// the previous checkpoint are kept.
    pub fn save_checkpoints(&mut self, cps: &[Checkpoint]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(|e| StoreError {
            path: self.path.clone(),
            source: e,
        })?;
        for c in cps {
            tx.execute(
                "INSERT OR REPLACE INTO checkpoints
                 (topic, partition, seq, resume_offset, next_offset, created_ms, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    c.topic,
                    c.partition,
                    c.seq,
                    c.resume_offset,
                    c.next_offset,
                    c.created_ms,
                    c.state
                ],
            )
            .and_then(|_| {
                tx.execute(
                    "DELETE FROM checkpoints WHERE topic = ?1 AND partition = ?2 AND seq < ?3",
                    params![c.topic, c.partition, c.seq - 1],
                )
            })
            .map_err(|e| StoreError {
                path: self.path.clone(),
                source: e,
            })?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn checkpoint(
        &self,
        topic: &str,
        partition: i32,
        seq: i64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.conn
            .query_row(
                "SELECT resume_offset, next_offset, created_ms, state FROM checkpoints
                 WHERE topic = ?1 AND partition = ?2 AND seq = ?3",
                params![topic, partition, seq],
                |r| {
                    Ok(Checkpoint {
                        topic: topic.to_string(),
                        partition,
                        seq,
                        resume_offset: r.get(0)?,
                        next_offset: r.get(1)?,
                        created_ms: r.get(2)?,
                        state: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Record findings (not yet produced). Returns, per finding, whether it
    /// is new: a finding derived again after a restart is already here.
    pub fn insert_findings(
        &mut self,
        fs: &[StoredFinding<'_>],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut fresh = Vec::with_capacity(fs.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO findings (id, token_id, kind, event_ts, created_ms, json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for f in fs {
                let json = std::str::from_utf8(f.json).unwrap_or_default();
                let n = stmt
                    .execute(params![f.id, f.token_id, f.kind, f.event_ts, now_ms, json])
                    .map_err(err)?;
                fresh.push(n == 1);
            }
        }
        tx.commit().map_err(err)?;
        Ok(fresh)
    }

    /// The findings are in the output topic.
    pub fn mark_produced(&mut self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE findings SET produced = 1 WHERE id = ?1")
                .map_err(err)?;
            for id in ids {
                stmt.execute(params![id]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Findings recorded but not confirmed produced (a crash came between):
    /// `(id, token_id, json)`.
    pub fn unproduced(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, token_id, json FROM findings WHERE produced = 0 ORDER BY event_ts")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Number of findings recorded.
    pub fn findings_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM findings", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_keep_the_previous_generation_and_findings_deduplicate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut s = Store::open(&path).unwrap();
        let id = s.id().to_string();
        for seq in 1..=3 {
            s.save_checkpoints(&[Checkpoint {
                topic: "t".into(),
                partition: 0,
                seq,
                resume_offset: seq * 10,
                next_offset: seq * 10 + 5,
                created_ms: 0,
                state: vec![seq as u8; 4],
            }])
            .unwrap();
        }
        assert_eq!(s.latest_seq("t", 0).unwrap(), 3);
        assert!(s.checkpoint("t", 0, 1).unwrap().is_none(), "pruned");
        assert_eq!(s.checkpoint("t", 0, 2).unwrap().unwrap().resume_offset, 20);
        let meta = s.commit_metadata(3);
        assert_eq!(s.seq_from_metadata(&meta), Some(3));
        assert_eq!(s.seq_from_metadata("tw1:someone-else:3"), None);

        let f = |id: &'static str| StoredFinding {
            id,
            token_id: "tok",
            kind: "token_replay",
            event_ts: 1,
            json: b"{}",
        };
        assert_eq!(
            s.insert_findings(&[f("a"), f("b")], 0).unwrap(),
            vec![true, true]
        );
        assert_eq!(
            s.insert_findings(&[f("b"), f("c")], 0).unwrap(),
            vec![false, true]
        );
        s.mark_produced(&["a".into()]).unwrap();
        let left: Vec<String> = s.unproduced().unwrap().into_iter().map(|r| r.0).collect();
        assert_eq!(left, vec!["b".to_string(), "c".to_string()]);
        drop(s);
        // Reopening keeps the identity.
        assert_eq!(Store::open(&path).unwrap().id(), id);
    }
}

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

use rusqlite::types::{ToSql, ToSqlOutput};
use rusqlite::{Connection, OptionalExtension, params};

use crate::decide::ActionStatus;

mod actions;
mod audit;
mod commands;
mod deliveries;
mod endpoints;
mod manual;
mod records;
mod views;
pub use actions::ActionRow;
pub use deliveries::*;
pub use endpoints::*;
pub use records::*;
pub use views::*;

/// Action states are stored by name.
impl ToSql for ActionStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

/// Run a query and map every row: the one place rows are collected (in a
/// transaction or on the connection).
fn query_rows<T>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    stmt.query_map(args, f)?.collect()
}

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

/// Run `f` again while SQLite says the database is busy or locked (up to 30 s).
fn busy_retry<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// `(store id, checkpoint seq)` of commit metadata written by any store.
pub fn parse_metadata(metadata: &str) -> Option<(&str, i64)> {
    let rest = metadata.strip_prefix("tw1:")?;
    let (id, seq) = rest.split_once(':')?;
    Some((id, seq.parse().ok()?))
}

impl<'a> StoredFinding<'a> {
    /// A finding and its JSON (as produced to the findings topic).
    pub fn of(f: &'a crate::detect::Finding, json: &'a [u8]) -> StoredFinding<'a> {
        StoredFinding {
            id: &f.id,
            token_id: f.token_id.as_str(),
            kind: f.kind.as_str(),
            event_ts: f.event_ts,
            json,
        }
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    id: String,
    /// Seals raw tokens onto revocation actions as they are recorded.
    custody: Option<std::sync::Arc<crate::custody::Custody>>,
}

impl Store {
    /// Open (or create) the database. Several processes may share it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError {
            path: path.to_path_buf(),
            source,
        };
        // The store holds findings, audit and sealed tokens: created
        // readable by its owner only (SQLite gives its -wal and -shm files
        // the database file's mode).
        #[cfg(unix)]
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        // WAL: readers never block the writer; NORMAL: a process crash
        // (kill -9) loses nothing committed, a power loss may lose the last
        // transactions (then findings may be produced twice, by id).
        // Switching to WAL and creating the schema take locks that the busy
        // handler does not always wait for: instances starting together
        // (sharing the file) retry for a while instead of failing.
        busy_retry(|| conn.pragma_update(None, "journal_mode", "WAL")).map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        busy_retry(|| conn.execute_batch(
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
             CREATE INDEX IF NOT EXISTS findings_unproduced ON findings (produced) WHERE produced = 0;
             CREATE TABLE IF NOT EXISTS incidents (
                 id TEXT PRIMARY KEY, key TEXT NOT NULL, opened_ts INTEGER NOT NULL,
                 last_ts INTEGER NOT NULL, severity TEXT NOT NULL, findings INTEGER NOT NULL,
                 revoked INTEGER NOT NULL, open INTEGER NOT NULL, json TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS actions (
                 id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, kind TEXT NOT NULL,
                 rule TEXT NOT NULL, state TEXT NOT NULL, why TEXT NOT NULL,
                 finding_id TEXT NOT NULL, token_id TEXT NOT NULL, event_ts INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                 next_attempt_ms INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                 json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS actions_due ON actions (state, next_attempt_ms);
             CREATE TABLE IF NOT EXISTS fuses (rule TEXT PRIMARY KEY, tripped_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS audit (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL,
                 actor TEXT NOT NULL, what TEXT NOT NULL, target TEXT NOT NULL,
                 detail TEXT NOT NULL);",
        ))
        .map_err(err)?;
        for schema in [deliveries::SCHEMA, endpoints::SCHEMA, commands::SCHEMA] {
            busy_retry(|| conn.execute_batch(schema)).map_err(err)?;
        }
        busy_retry(|| conn.execute_batch(views::SCHEMA)).map_err(err)?;
        // Added after the first release of the schema.
        match conn.execute("ALTER TABLE actions ADD COLUMN sealed BLOB", []) {
            Ok(_) => {}
            Err(e) if e.to_string().contains("duplicate column") => {}
            Err(e) => return Err(err(e)),
        }
        let fresh = format!("{:016x}", rand::random::<u64>());
        busy_retry(|| {
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?1)",
                params![fresh],
            )
        })
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
            custody: None,
        })
    }

    /// Revocation actions recorded from now on carry their token sealed by
    /// `custody` (when it holds it), so they survive a restart.
    pub fn set_custody(&mut self, custody: std::sync::Arc<crate::custody::Custody>) {
        self.custody = Some(custody);
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// Run a query and map every row (see [`query_rows`]).
    fn rows<T>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        query_rows(&self.conn, sql, args, f).map_err(|e| self.err(e))
    }

    /// Run `f` in one transaction, committed when it returns `Ok` and
    /// rolled back otherwise; its errors name the store file.
    fn in_tx<T>(
        &mut self,
        behavior: rusqlite::TransactionBehavior,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let run = |conn: &mut Connection| {
            let tx = conn.transaction_with_behavior(behavior)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run(&mut self.conn).map_err(|source| StoreError {
            path: self.path.clone(),
            source,
        })
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
        self.insert_findings_and_decide(fs, now_ms, |_| None)
    }

    /// [`insert_findings`](Store::insert_findings), and in the same
    /// transaction what the policy decides for each new finding (`decide` is
    /// called with the finding's index only when it is new), so a crash can
    /// never keep a finding and lose the actions it caused.
    pub fn insert_findings_and_decide(
        &mut self,
        fs: &[StoredFinding<'_>],
        now_ms: i64,
        mut decide: impl FnMut(usize) -> Option<crate::decide::Decision>,
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
        let decisions: Vec<_> = fresh
            .iter()
            .enumerate()
            .filter(|(_, new)| **new)
            .filter_map(|(i, _)| decide(i))
            .collect();
        write_decisions(&tx, &decisions, now_ms, self.custody.as_deref()).map_err(err)?;
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

    /// Which of these findings are recorded but not confirmed produced.
    pub fn unproduced_ids(&self, ids: &[&str]) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM findings WHERE id = ?1 AND produced = 0")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for id in ids {
            if stmt.exists(params![id]).map_err(|e| self.err(e))? {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    /// Findings recorded but not confirmed produced (a crash came between):
    /// `(id, token_id, json)`.
    pub fn unproduced(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.rows(
            "SELECT id, token_id, json FROM findings WHERE produced = 0 ORDER BY event_ts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    /// Record what the policy decided, in one transaction: incidents
    /// (upserted), action requests (the outbox; a request already there is
    /// left alone: ids are deterministic), tripped fuses, and an audit entry
    /// per new request, naming the rule that asked for it.
    pub fn record_decisions(
        &mut self,
        decisions: &[crate::decide::Decision],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let custody = self.custody.clone();
        self.in_tx(rusqlite::TransactionBehavior::Deferred, |tx| {
            write_decisions(tx, decisions, now_ms, custody.as_deref())
        })
    }

    /// Open incidents (to rebuild the policy's state after a restart).
    pub fn open_incidents(&self) -> Result<Vec<crate::decide::Incident>, StoreError> {
        let rows = self.rows("SELECT json FROM incidents WHERE open = 1", [], |r| {
            r.get::<_, String>(0)
        })?;
        Ok(rows
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect())
    }

    /// Rules whose fuse tripped and was not reset.
    pub fn tripped_fuses(&self) -> Result<Vec<String>, StoreError> {
        self.rows("SELECT rule FROM fuses ORDER BY rule", [], |r| r.get(0))
    }

    /// Revocations decided for execution: `(rule, event time)`, for the budgets.
    pub fn executed_revocations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.rows(
            "SELECT rule, event_ts FROM actions WHERE kind = 'revoke' AND rule != 'manual'
             AND state IN ('pending', 'dispatched', 'done', 'failed', 'no_endpoint') ORDER BY event_ts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Action requests in a state (`pending`, `observed`, …): `(id, json)`.
    pub fn actions_in_state(
        &self,
        state: ActionStatus,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.rows(
            "SELECT id, json FROM actions WHERE state = ?1 ORDER BY event_ts, id",
            params![state],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Number of findings recorded.
    pub fn findings_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM findings", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

fn write_decisions(
    tx: &rusqlite::Transaction<'_>,
    decisions: &[crate::decide::Decision],
    now_ms: i64,
    custody: Option<&crate::custody::Custody>,
) -> Result<usize, rusqlite::Error> {
    use crate::decide::ActionState;
    let mut new = 0;
    for d in decisions {
        let i = &d.incident;
        views::link_finding(tx, &i.id, &d.finding_id)?;
        tx.execute(
            "INSERT OR REPLACE INTO incidents (id, key, opened_ts, last_ts, severity, findings, revoked, open, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                i.id,
                i.key,
                i.opened_ts,
                i.last_ts,
                i.severity.as_str(),
                i.findings,
                i.revoked,
                i.open,
                serde_json::to_string(i).unwrap_or_default()
            ],
        )?;
        for a in &d.actions {
            let (state, why) = a.state.describe();
            let kind = a.kind.as_str();
            // The raw token travels sealed with revocations that will (or
            // may, once approved) be executed.
            let sealed = match (&a.kind, &a.state, custody) {
                (
                    crate::config::ActionKind::Revoke,
                    ActionState::Execute | ActionState::AwaitingApproval(_),
                    Some(c),
                ) => c.sealed(&a.token_id).map(|s| s.0),
                _ => None,
            };
            let n = actions::insert_action(
                tx,
                &actions::NewAction {
                    id: &a.id,
                    incident_id: &a.incident_id,
                    kind,
                    rule: &a.rule,
                    state,
                    why,
                    finding_id: &a.finding_id,
                    token_id: &a.token_id,
                    event_ts: a.event_ts,
                    created_ms: now_ms,
                    json: &serde_json::to_string(a).unwrap_or_default(),
                    sealed: sealed.as_deref(),
                },
            )?;
            if n == 1 {
                new += 1;
                crate::telemetry::action(kind, state.as_str());
                audit::audit(
                    tx,
                    now_ms,
                    &format!("rule:{}", a.rule),
                    &format!("{kind} {}", state.as_str()),
                    &a.token_id,
                    &a.summary,
                )?;
            }
            if why.starts_with("fuse tripped now") {
                let fuse = if why.starts_with("fuse tripped now: policy budget") {
                    "policy"
                } else {
                    a.rule.as_str()
                };
                tx.execute(
                    "INSERT OR IGNORE INTO fuses (rule, tripped_ms) VALUES (?1, ?2)",
                    params![fuse, now_ms],
                )?;
            }
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, point 15: the store file is its owner's only.
    #[cfg(unix)]
    #[test]
    fn the_store_is_created_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let s = Store::open(&path).unwrap();
        drop(s);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }

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

#[cfg(test)]
pub(crate) mod outbox_tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Mode, PolicyConfig, Severity};
    use crate::decide::{Command, Decider};
    use crate::detect::{Finding, FindingKind};
    use crate::event::TokenId;

    /// A high-severity token_replay finding on token `t{i}` (shared by the
    /// store's and the response step's tests).
    pub(crate) fn finding(i: i64) -> Finding {
        Finding {
            id: format!("f-{i}"),
            kind: FindingKind::TokenReplay,
            severity: Severity::High,
            score: 90,
            mode: Mode::Enforce,
            token_id: TokenId(Arc::from(format!("t{i}").as_str())),
            subject: Some(Arc::from(format!("u{i}").as_str())),
            client_id: None,
            event_time: String::new(),
            event_ts: 1_767_225_600_000 + i * 1000,
            evidence_first: String::new(),
            evidence_last: String::new(),
            summary: "replayed".into(),
            client_ip: "20.0.0.1".into(),
            asn: 1,
            network: "residential",
            country: None,
            city: None,
            route: "/v1".into(),
            user_agent: String::new(),
            evidence: serde_json::Value::Null,
            context: None,
            source_ts: None,
            token_exp: None,
        }
    }

    fn as_json(fs: &[Finding]) -> Vec<Vec<u8>> {
        fs.iter().map(|f| serde_json::to_vec(f).unwrap()).collect()
    }

    fn stored<'a>(fs: &'a [Finding], jsons: &'a [Vec<u8>]) -> Vec<StoredFinding<'a>> {
        fs.iter()
            .zip(jsons)
            .map(|(f, j)| StoredFinding::of(f, j))
            .collect()
    }

    /// Decisions land in the outbox with their findings, once; a restarted
    /// policy keeps its budgets and tripped fuses from the store.
    #[test]
    fn the_outbox_is_idempotent_and_the_policy_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let mut policy = PolicyConfig::default();
        policy.rules[0].mode = Mode::Enforce;
        policy.rules[0].max_revocations_per_minute = 2;
        let mut decider = Decider::new(&policy);
        let fs: Vec<Finding> = (0..4).map(finding).collect();
        let jsons = as_json(&fs);
        let rows = stored(&fs, &jsons);
        let fresh = store
            .insert_findings_and_decide(&rows, 0, |i| Some(decider.decide(&fs[i])))
            .unwrap();
        assert_eq!(fresh, vec![true; 4]);
        let pending_revokes = |s: &Store| {
            s.actions_in_state(ActionStatus::Pending)
                .unwrap()
                .iter()
                .filter(|(_, j)| j.contains("\"kind\":\"revoke\""))
                .count()
        };
        assert_eq!(pending_revokes(&store), 2, "the budget held");
        assert_eq!(
            store.tripped_fuses().unwrap(),
            vec!["stolen-token".to_string()]
        );
        let audited = store.audit_log().unwrap().len();
        // The same findings again (a restart re-derives them): nothing new.
        let mut again = Decider::new(&policy);
        let fresh = store
            .insert_findings_and_decide(&rows, 1, |i| Some(again.decide(&fs[i])))
            .unwrap();
        assert_eq!(fresh, vec![false; 4]);
        assert_eq!(store.audit_log().unwrap().len(), audited);
        // A restarted policy remembers the tripped fuse and the incidents.
        let mut restarted = Decider::new(&policy);
        restarted.restore(
            store.open_incidents().unwrap(),
            &store.tripped_fuses().unwrap(),
            &store.executed_revocations().unwrap(),
        );
        assert_eq!(restarted.tripped(), vec!["stolen-token".to_string()]);
        assert_eq!(restarted.open_incidents(), 4);
    }

    /// What a person does in the dashboard or with `tokenwatch act`
    /// reaches the running policy as typed commands, and each one changes
    /// its state: a resolved incident is closed for the policy too (the
    /// next finding opens a new one), a reset fuse lets revocations run.
    #[test]
    fn people_s_acts_reach_the_policy_as_commands_it_applies() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let mut policy = PolicyConfig::default();
        policy.rules[0].mode = Mode::Enforce;
        policy.rules[0].max_revocations_per_minute = 1;
        let mut decider = Decider::new(&policy);
        let fs: Vec<Finding> = (0..2).map(finding).collect();
        let jsons = as_json(&fs);
        let rows = stored(&fs, &jsons);
        store
            .insert_findings_and_decide(&rows, 0, |i| Some(decider.decide(&fs[i])))
            .unwrap();
        assert_eq!(decider.open_incidents(), 2);
        assert_eq!(decider.tripped(), vec!["stolen-token".to_string()]);
        let incident = store.open_incidents().unwrap()[0].id.clone();
        assert!(store.resolve(&incident, "alice", 5).unwrap());
        assert!(store.reset_fuse("stolen-token", "alice", 6).unwrap());
        store
            .set_rule_mode("stolen-token", Mode::Observe, "alice", 7)
            .unwrap();
        let commands: Vec<Command> = store
            .take_commands()
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            commands,
            vec![
                Command::Resolve {
                    incident_id: incident.clone()
                },
                Command::ResetFuse {
                    rule: "stolen-token".into()
                },
                Command::SetMode {
                    rule: "stolen-token".into(),
                    mode: Mode::Observe
                },
            ]
        );
        for c in &commands {
            assert!(decider.apply(c), "{c:?} changed nothing");
        }
        assert_eq!(decider.open_incidents(), 1);
        assert!(decider.tripped().is_empty());
        assert!(store.take_commands().unwrap().is_empty(), "taken once");
        // A row some other version wrote is reported, not dropped silently.
        store
            .conn
            .execute(
                "INSERT INTO commands (at_ms, actor, command, target) VALUES (8, 'x', 'reboot', 'now')",
                [],
            )
            .unwrap();
        let odd = store.take_commands().unwrap();
        assert!(matches!(&odd[..], [Err(e)] if e.contains("now")), "{odd:?}");
    }
}

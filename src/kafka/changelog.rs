//! The changelog topic: checkpoints cut into chunks plus a typed
//! manifest per generation, written, pruned and read back.

use super::*;

/// Checkpoints in the changelog topic are cut into records of this size.
pub(super) const CHANGELOG_CHUNK: usize = 512 * 1024;

/// The record that closes a checkpoint generation in the changelog, keyed
/// `<topic>/<partition>/<seq>`: `<store id>:<seq>:<chunks>:<resume>:<next>:<created ms>`.
/// The numbers are read from the right, so a store id may contain `:`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Manifest {
    pub(super) store: String,
    pub(super) seq: i64,
    pub(super) chunks: usize,
    /// Offset to re-read from, and the next offset after the checkpoint.
    pub(super) resume: i64,
    pub(super) next: i64,
    pub(super) created_ms: i64,
}

impl Manifest {
    pub(super) fn encode(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}:{}",
            self.store, self.seq, self.chunks, self.resume, self.next, self.created_ms
        )
    }

    pub(super) fn parse(s: &str) -> Option<Manifest> {
        let mut f = s.rsplitn(6, ':');
        let created_ms = f.next()?.parse().ok()?;
        let next = f.next()?.parse().ok()?;
        let resume = f.next()?.parse().ok()?;
        let chunks = f.next()?.parse().ok()?;
        let seq = f.next()?.parse().ok()?;
        let store = f.next()?.to_string();
        Some(Manifest {
            store,
            seq,
            chunks,
            resume,
            next,
            created_ms,
        })
    }
}

/// Write checkpoints to the changelog topic, one generation per key prefix:
/// chunks keyed `<topic>/<partition>/<seq>/<i>`, then the [`Manifest`] keyed
/// `<topic>/<partition>/<seq>`.
/// A checkpoint cut short by a crash never overwrites the generation the
/// committed offset names; generations two behind are deleted (tombstones)
/// once a newer one is committed, so compaction keeps the topic small.
pub(super) fn changelog_write(
    producer: &TwProducer,
    changelog: &str,
    store_id: &str,
    cps: &[Checkpoint],
) -> Result<(), KafkaError> {
    for c in cps {
        let seq = c.seq.to_string();
        let chunks: Vec<&[u8]> = c.state.chunks(CHANGELOG_CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let key = format!("{}/{}/{}/{i}", c.topic, c.partition, c.seq);
            let headers = headers(&[("tokenwatch-store", store_id), ("tokenwatch-seq", &seq)]);
            send(
                producer,
                record(changelog)
                    .key(key.as_bytes())
                    .payload(chunk)
                    .headers(headers),
            )?;
        }
        let manifest = Manifest {
            store: store_id.to_string(),
            seq: c.seq,
            chunks: chunks.len(),
            resume: c.resume_offset,
            next: c.next_offset,
            created_ms: c.created_ms,
        }
        .encode();
        let key = format!("{}/{}/{}", c.topic, c.partition, c.seq);
        send(
            producer,
            record(changelog)
                .key(key.as_bytes())
                .payload(manifest.as_bytes()),
        )?;
    }
    Ok(())
}

/// Delete a generation from the changelog (tombstones; compaction removes it).
pub(super) fn changelog_delete(
    producer: &TwProducer,
    changelog: &str,
    topic: &str,
    partition: i32,
    seq: i64,
    chunks: usize,
) -> Result<(), KafkaError> {
    let mut keys: Vec<String> = (0..chunks)
        .map(|i| format!("{topic}/{partition}/{seq}/{i}"))
        .collect();
    keys.push(format!("{topic}/{partition}/{seq}"));
    for k in keys {
        send(producer, record(changelog).key(k.as_bytes()))?;
    }
    Ok(())
}

/// Read the changelog topic to its end and rebuild the checkpoints `wanted`
/// (`(topic, partition) → (store id, seq)`, as named by committed offsets).
pub(super) fn changelog_read(
    kc: &KafkaConfig,
    changelog: &str,
    wanted: &HashMap<(String, i32), (String, i64)>,
) -> Result<HashMap<(String, i32), Checkpoint>, ServiceError> {
    let consumer: BaseConsumer = client_config_for(kc, ClientKind::Consumer)?
        .set("group.id", format!("{}.changelog-reader", kc.group_id))
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(changelog), Duration::from_secs(30))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let prefixes: Vec<String> = wanted
        .iter()
        .map(|((t, p), (_, seq))| format!("{t}/{p}/{seq}"))
        .collect();
    // key → (store, seq, payload); the latest record of a key wins.
    let mut latest: HashMap<String, (String, i64, Vec<u8>)> = HashMap::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(changelog, p, Duration::from_secs(30))?;
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(changelog, p, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut at = low;
        while at < high && Instant::now() < deadline {
            let Some(m) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let m = m?;
            at = m.offset() + 1;
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            if !prefixes.iter().any(|pre| {
                key == pre
                    || key
                        .strip_prefix(pre.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }) {
                continue;
            }
            let header = |name: &str| {
                m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == name)
                        .and_then(|x| x.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_string)
                })
            };
            let Some(payload) = m.payload() else {
                // A tombstone: that generation is gone.
                latest.remove(key);
                continue;
            };
            let store = header("tokenwatch-store").unwrap_or_default();
            let seq = header("tokenwatch-seq")
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1);
            latest.insert(key.to_string(), (store, seq, payload.to_vec()));
        }
    }
    tracing::debug!(
        %changelog,
        kept = latest.len(),
        wanted = wanted.len(),
        "changelog read"
    );
    let mut out = HashMap::new();
    for ((topic, partition), (store, seq)) in wanted {
        let Some((_, _, manifest)) = latest.get(&format!("{topic}/{partition}/{seq}")) else {
            continue;
        };
        let Some(m) = std::str::from_utf8(manifest).ok().and_then(Manifest::parse) else {
            tracing::warn!(%changelog, %topic, partition, seq, "unreadable manifest");
            continue;
        };
        if m.store != *store || m.seq != *seq {
            continue;
        }
        let (chunks, resume, next, created) = (m.chunks, m.resume, m.next, m.created_ms);
        let mut state = Vec::new();
        let complete =
            (0..chunks).all(
                |i| match latest.get(&format!("{topic}/{partition}/{seq}/{i}")) {
                    Some((s, q, bytes)) if s == store && q == seq => {
                        state.extend_from_slice(bytes);
                        true
                    }
                    _ => false,
                },
            );
        if complete {
            out.insert(
                (topic.clone(), *partition),
                Checkpoint {
                    topic: topic.clone(),
                    partition: *partition,
                    seq: *seq,
                    resume_offset: resume,
                    next_offset: next,
                    created_ms: created,
                    state,
                },
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Manifest;

    #[test]
    fn a_manifest_reads_back_what_was_written_even_with_colons_in_the_store_id() {
        let m = Manifest {
            store: "host:9092/a".into(),
            seq: 7,
            chunks: 3,
            resume: 1_000,
            next: 1_042,
            created_ms: 1_767_600_000_000,
        };
        assert_eq!(Manifest::parse(&m.encode()), Some(m));
    }

    #[test]
    fn a_damaged_manifest_is_refused_not_misread() {
        for bad in [
            "",
            "s:1:2:3:4",
            "s:1:x:3:4:5",
            "s:1:-2:3:4:5",
            "s:1:2:3:4:5x",
        ] {
            assert_eq!(Manifest::parse(bad), None, "{bad}");
        }
    }
}

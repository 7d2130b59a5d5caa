//! `replay --to-kafka`: load a dataset into a topic.

use super::*;

/// Load records into a topic (`replay --to-kafka`). With `key_by_token`,
/// each record is decoded to key it by subject, else client_id, else token id.
pub fn load(
    kc: &KafkaConfig,
    topic: &str,
    lines: &mut dyn FnMut(&mut Vec<u8>) -> std::io::Result<bool>,
    mut decoder: Option<Decoder>,
    rate: Option<f64>,
) -> Result<u64, ServiceError> {
    let producer = producer(kc)?;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut n = 0u64;
    let started = Instant::now();
    let started_ms = now_ms();
    while lines(&mut buf).map_err(|e| ServiceError::Setup(format!("reading input: {e}")))? {
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let key: Option<String> = decoder.as_mut().and_then(|d| {
            out.clear();
            d.decode(&buf, &mut out);
            out.iter()
                .find_map(|r| r.as_ref().ok())
                .map(|e| partition_key(e).to_string())
        });
        let mut rec = record(topic).payload(buf.as_slice());
        if let Some(r) = rate {
            // The record's timestamp is when it was due, not when it was
            // sent: a stalled producer then shows up as latency downstream
            // instead of hiding it (no coordinated omission).
            rec = rec.timestamp(started_ms + (n as f64 * 1000.0 / r) as i64);
        }
        let rec = match &key {
            Some(k) => rec.key(k.as_bytes()),
            None => rec,
        };
        send(&producer, rec)?;
        n += 1;
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(n as f64 / r);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(n)
}

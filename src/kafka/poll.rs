//! The poll thread and the consumer's callbacks: batches of borrowed
//! messages for the decode threads, and rebalance events for the
//! processing thread.
//!
//! Batches hold messages borrowed from librdkafka (no copy: a decode thread
//! reads each payload where librdkafka fetched it, and the processing
//! thread frees it after detection), so they live within the consumer's
//! scope; each batch is split by partition onto the decode threads' lanes.
//! The rebalance callbacks, which librdkafka's context owns, send on their
//! own channel. The processing thread takes every waiting rebalance event
//! before each batch: an assignment is sent (from inside `poll`) before any
//! message of its partitions is returned, so it is always seen first; a
//! revocation is handled while the poll thread waits in the callback, and
//! messages of the revoked partitions still queued are skipped (the new
//! owner reads them again from the offset this instance commits).

use super::*;
use rdkafka::message::BorrowedMessage;

/// Rebalance events, in the order librdkafka raised them.
pub(super) enum Control {
    /// Partitions assigned to this instance: restore their checkpoints.
    Assigned(Vec<(String, i32)>),
    /// Partitions about to be taken away: checkpoint and commit them, then
    /// acknowledge (the rebalance waits for it).
    Revoked(Vec<(String, i32)>, SyncSender<()>),
}

/// What the poll thread fetched.
pub(super) enum Fetched<'c> {
    Batch(Vec<BorrowedMessage<'c>>),
    /// The poll thread stopped (shutdown).
    End,
}

/// librdkafka callbacks: rebalances, statistics (consumer lag), errors.
pub(super) struct Ctx {
    pub(super) tx: SyncSender<Control>,
    pub(super) closing: AtomicBool,
    pub(super) health: Arc<Health>,
    /// The last error logged and when: the same error is logged once per 30 s.
    pub(super) last_logged: Mutex<Option<(String, Instant)>>,
}

pub(super) fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        for (topic, t) in &s.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    crate::telemetry::consumer_lag(topic, *p, part.consumer_lag);
                    self.health.live.set_lag(topic, *p, part.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let hint = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                " (no broker reachable: retrying with backoff; check kafka.brokers and the network)"
            }
            Some(
                RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed,
            ) => " (check the SASL/SSL settings in [kafka.properties] and the ACLs)",
            _ => "",
        };
        if first_in_a_while(&self.last_logged, format!("{error}")) {
            tracing::error!(%error, reason, hint = hint.trim(), "broker error");
        } else {
            tracing::debug!(%error, reason, "broker error");
        }
        self.health.set_error(format!("{error}: {reason}"));
    }

    // librdkafka's own log lines: what matters reaches `error` above.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(fac, message = log_message, "librdkafka")
            }
            RDKafkaLogLevel::Warning if fac != "CONFWARN" => {
                tracing::warn!(fac, message = log_message, "librdkafka")
            }
            _ => tracing::debug!(fac, message = log_message, "librdkafka"),
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if self.closing.load(Ordering::SeqCst) {
                return;
            }
            let (ack, done) = std::sync::mpsc::sync_channel(1);
            if self
                .tx
                .send(Control::Revoked(partitions_of(tpl), ack))
                .is_ok()
            {
                // The processing thread checkpoints and commits first.
                let _ = done.recv_timeout(Duration::from_secs(120));
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let _ = self.tx.send(Control::Assigned(partitions_of(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

pub(super) type TwConsumer = BaseConsumer<Ctx>;

/// The poll thread: batches of up to 1,024 messages, each split by
/// partition among the decode threads' `lanes` (a partition always goes to
/// the same lane, so its messages stay in offset order). A lane that is full
/// does not hold the others back: its batches wait here, and only when two
/// per lane wait is the pipeline behind. Then short waits just wait (pausing
/// would drop the prefetched queue and stall on a refetch); past a second
/// the assignment is paused and polled, so the group protocol keeps running
/// however long the pipeline needs. Ends on `stop`, or when the processing
/// thread is `done` (it failed: nothing would take the batches).
pub(super) fn poll_loop<'c>(
    consumer: &'c TwConsumer,
    lanes: &[SyncSender<Fetched<'c>>],
    stop: &Shutdown,
    done: &AtomicBool,
) {
    let mut pending: Vec<VecDeque<Vec<BorrowedMessage<'c>>>> =
        lanes.iter().map(|_| VecDeque::new()).collect();
    let mut behind: Option<Instant> = None;
    let mut paused: Option<TopicPartitionList> = None;
    while !stop.is_triggered() && !done.load(Ordering::SeqCst) {
        let waiting: usize = pending.iter().map(VecDeque::len).sum();
        if waiting >= 2 * lanes.len() {
            let since = *behind.get_or_insert_with(Instant::now);
            if paused.is_none() && since.elapsed() > Duration::from_secs(1) {
                paused = consumer.assignment().ok();
                if let Some(a) = &paused {
                    let _ = consumer.pause(a);
                }
            }
            if paused.is_some() {
                // What was fetched before the pause: kept, nothing polled
                // is ever dropped.
                let batch = poll_batch(consumer, Duration::from_millis(20), 1024);
                split(batch, &mut pending);
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            behind = None;
            if let Some(a) = paused.take() {
                let _ = consumer.resume(&a);
            }
            // A batch that could not be handed off is retried soon.
            let timeout = Duration::from_millis(if waiting == 0 { 100 } else { 1 });
            let batch = poll_batch(consumer, timeout, 1024);
            split(batch, &mut pending);
        }
        for (lane, queue) in lanes.iter().zip(pending.iter_mut()) {
            while let Some(batch) = queue.pop_front() {
                match lane.try_send(Fetched::Batch(batch)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(Fetched::Batch(batch))) => {
                        queue.push_front(batch);
                        break;
                    }
                    Err(TrySendError::Full(Fetched::End)) => break,
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        }
    }
}

/// Up to `max` messages: the first waited for up to `timeout`, the rest
/// only if already fetched.
fn poll_batch<'c>(
    consumer: &'c TwConsumer,
    mut timeout: Duration,
    max: usize,
) -> Vec<BorrowedMessage<'c>> {
    let mut batch = Vec::new();
    while batch.len() < max {
        match consumer.poll(timeout) {
            Some(Ok(m)) => batch.push(m),
            Some(Err(e)) => {
                // Broker-level errors are logged (once) by `Ctx::error`.
                tracing::debug!(error = %e, "consumer error; retrying");
                consumer
                    .context()
                    .health
                    .set_error(format!("consumer: {e}"));
                break;
            }
            None => break,
        }
        timeout = Duration::ZERO;
    }
    batch
}

/// A batch's messages onto their lanes' queues (one new batch per lane).
fn split<'c>(batch: Vec<BorrowedMessage<'c>>, pending: &mut [VecDeque<Vec<BorrowedMessage<'c>>>]) {
    if batch.is_empty() {
        return;
    }
    if let [queue] = pending {
        queue.push_back(batch);
        return;
    }
    let lanes = pending.len();
    let mut parts: Vec<Vec<BorrowedMessage<'c>>> = (0..lanes).map(|_| Vec::new()).collect();
    for m in batch {
        if let Some(p) = parts.get_mut(lane_of(m.topic(), m.partition(), lanes)) {
            p.push(m);
        }
    }
    for (queue, part) in pending.iter_mut().zip(parts) {
        if !part.is_empty() {
            queue.push_back(part);
        }
    }
}

/// The lane (decode thread) of a partition: consecutive partitions of a
/// topic on consecutive lanes.
pub(super) fn lane_of(topic: &str, partition: i32, lanes: usize) -> usize {
    let t = topic.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    t.wrapping_add(partition.unsigned_abs() as usize)
        .checked_rem(lanes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::lane_of;

    #[test]
    fn consecutive_partitions_go_to_different_lanes_and_no_lane_count_fails() {
        for lanes in 1..=4 {
            let mut seen: Vec<usize> = (0..lanes as i32)
                .map(|p| lane_of("gateway-logs", p, lanes))
                .collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), lanes, "{lanes} partitions on {lanes} lanes");
            // The same partition always lands on the same lane.
            assert_eq!(
                lane_of("gateway-logs", 7, lanes),
                lane_of("gateway-logs", 7, lanes)
            );
        }
        assert_eq!(lane_of("t", -1, 0), 0);
        assert!(lane_of("t", i32::MIN, 3) < 3);
    }
}

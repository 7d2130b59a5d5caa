//! The streaming service (`tokenwatch run`): the processing thread's
//! loop over batches, rebalances, checkpoints, commits and findings.

use super::*;

/// The streaming service: `tokenwatch run`.
pub(super) struct Service<'a> {
    pub(super) cfg: &'a Config,
    pub(super) kc: &'a KafkaConfig,
    pub(super) roles: Vec<TopicRole>,
    pub(super) repartition_topic: Option<String>,
    pub(super) changelog: Option<String>,
    /// Per partition, the changelog generations written: (seq, chunks).
    pub(super) changelog_gens: HashMap<(String, i32), VecDeque<(i64, usize)>>,
    pub(super) consumer: Arc<TwConsumer>,
    pub(super) producer: TwProducer,
    pub(super) store: Store,
    /// The response policy (one per instance: budgets count this instance's
    /// revocations); its decisions go to the store's outbox with the findings.
    pub(super) decider: crate::decide::Decider,
    pub(super) health: Arc<Health>,
    pub(super) parts: HashMap<(usize, i32), Part>,
    pub(super) findings: Vec<Finding>,
    /// Findings produced and not yet confirmed by the broker, by ticket.
    pub(super) in_flight: HashMap<usize, String>,
    pub(super) next_ticket: usize,
    pub(super) stats: RunStats,
    /// Broker timestamp of the triggering record → finding produced, in µs.
    pub(super) latency: hdrhistogram::Histogram<u64>,
    pub(super) interval: Duration,
    pub(super) last_checkpoint: Instant,
}

/// The streaming service. Returns when `stop` triggers (SIGINT / SIGTERM),
/// after checkpointing, committing and leaving the group.
pub fn run(
    cfg: &Config,
    settings: DecodeSettings,
    custody: Option<Arc<crate::custody::Custody>>,
    enricher: Arc<Enricher>,
    stop: Shutdown,
    health: Arc<Health>,
) -> Result<RunStats, ServiceError> {
    let kc = cfg
        .kafka
        .as_ref()
        .ok_or_else(|| ServiceError::Setup("no [kafka] section in the configuration".into()))?;
    let mut store = Store::open(&cfg.store.path)?;
    let settings = match &custody {
        Some(c) => {
            store.set_custody(c.clone());
            settings.keep_raw_tokens()
        }
        None => settings,
    };
    // Commands queued while no instance ran are already in the restored state.
    let _ = store.take_commands();
    let mut decider = crate::decide::Decider::new(&cfg.policy);
    decider.restore(
        store.open_incidents()?,
        &store.tripped_fuses()?,
        &store.executed_revocations()?,
    );
    for (rule, mode) in store.rule_modes()? {
        match crate::config::Mode::parse(&mode) {
            Some(mode) => {
                decider.set_mode(&rule, mode);
            }
            None => {
                tracing::warn!(%rule, %mode, "policy: stored rule mode is not observe or enforce; kept the configured one")
            }
        }
    }
    let mut roles: Vec<TopicRole> = kc
        .topics
        .iter()
        .map(|t| TopicRole {
            name: t.name.clone(),
            format: t.format.clone(),
            role: if t.keyed { Role::Keyed } else { Role::Forward },
        })
        .collect();
    let repartition_topic = roles
        .iter()
        .any(|r| r.role == Role::Forward)
        .then(|| kc.repartition_topic());
    if let Some(t) = &repartition_topic {
        ensure_repartition_topic(kc, t)?;
        roles.push(TopicRole {
            name: t.clone(),
            format: "auto".into(),
            role: Role::Internal,
        });
    }

    if let Some(t) = &kc.changelog_topic {
        ensure_topic(kc, t, 1, &[("cleanup.policy", "compact")], "changelog")?;
    }

    let mut cc = client_config(kc)?;
    cc.set("group.id", &kc.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    // Throughput defaults for small log records (1 KB): big fetches, a deep
    // local queue refilled at once. A fetch returns at 1 MiB or after
    // 10 ms, whichever is first: behind, every fetch is full at once
    // (throughput); caught up, a record waits at most 10 ms in the broker
    // (latency). Measured in BENCHMARKS.md; any of them can be overridden.
    for (k, v) in [
        ("auto.offset.reset", "earliest"),
        ("max.partition.fetch.bytes", "8388608"),
        ("fetch.min.bytes", "1048576"),
        ("fetch.wait.max.ms", "10"),
        // librdkafka stops fetching a partition whose local queue holds
        // queued.min.messages (100,000) and waits this long before the next
        // fetch; at the default (1 s) a consumer slower than the broker
        // drains the queue and then waits: half the drain rate
        // (BENCHMARKS.md).
        ("fetch.queue.backoff.ms", "10"),
        ("queued.max.messages.kbytes", "262144"),
        ("statistics.interval.ms", "5000"),
        // Incremental rebalances: a partition that stays put keeps its state
        // in memory; only moved partitions go through a checkpoint.
        ("partition.assignment.strategy", "cooperative-sticky"),
    ] {
        if !kc.properties.contains_key(k) {
            cc.set(k, v);
        }
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Control>(32);
    let ctx = Ctx {
        tx,
        closing: AtomicBool::new(false),
        health: health.clone(),
        last_logged: Mutex::new(None),
    };
    let consumer: Arc<TwConsumer> = Arc::new(cc.create_with_context(ctx)?);
    // However `run` ends (an error, a panic), the group is left without
    // asking the processing thread to acknowledge the revocation: it is gone.
    let closing = Closing(consumer.clone());
    let topics: Vec<&str> = roles.iter().map(|t| t.name.as_str()).collect();
    consumer.subscribe(&topics)?;

    // One decode thread per core (at most four) unless configured.
    let lanes = match kc.decode_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        n => n,
    };
    let xff_warned = Arc::new(AtomicBool::new(false));
    let preparers: Vec<Preparer> = (0..lanes)
        .map(|_| {
            Preparer::new(
                &roles,
                settings.clone(),
                crate::process::Processor::new(enricher.clone()).with_custody(custody.clone()),
                xff_warned.clone(),
            )
        })
        .collect();
    let mut svc = Service {
        cfg,
        kc,
        roles,
        repartition_topic,
        changelog: kc.changelog_topic.clone(),
        changelog_gens: HashMap::new(),
        consumer: consumer.clone(),
        producer: producer(kc)?,
        store,
        decider,
        health,
        parts: HashMap::new(),
        findings: Vec::new(),
        in_flight: HashMap::new(),
        next_ticket: 1,
        stats: RunStats::default(),
        latency: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| ServiceError::Setup(e.to_string()))?,
        interval: Duration::from_millis(kc.commit_interval_ms.max(100)),
        last_checkpoint: Instant::now(),
    };
    svc.redeliver_unproduced()?;

    // The consumer is polled on its own thread, which lends batches of
    // messages, split by partition, to the decode threads (`prepare.rs`),
    // which hand them on with their events to this one, each over a bounded
    // channel (rebalance events come on another, taken before each batch:
    // see `poll.rs`), so librdkafka's fetch path, decoding and detection
    // overlap. When the pipeline stays behind the poller pauses its
    // partitions instead of blocking past max.poll.interval.ms. The threads
    // live in a scope the consumer outlives: the messages are borrowed from
    // it.
    let consumer_ref: &TwConsumer = &consumer;
    std::thread::scope(|scope| svc.process(scope, consumer_ref, &rx, preparers, stop))?;
    // Graceful shutdown: what the events caused is produced and durable, the
    // state is checkpointed (reorder buffers included: a restart continues
    // exactly here), offsets are committed, then the group is left.
    svc.checkpoint(None);
    svc.fill_latency();
    log_progress(&svc.stats);
    let stats = svc.stats.clone();
    drop(svc);
    drop(closing);
    drop(consumer);
    Ok(stats)
}

/// Marks the consumer closing when dropped: its last drop leaves the group,
/// and the revocation that raises must not wait for an acknowledgement
/// (`Ctx::pre_rebalance`) from a processing thread that has stopped.
struct Closing(Arc<TwConsumer>);

impl std::ops::Drop for Closing {
    fn drop(&mut self) {
        self.0.context().closing.store(true, Ordering::SeqCst);
    }
}

impl Service<'_> {
    /// The processing loop: batches from the poll thread, rebalance events
    /// before each batch, idle flushes, checkpoints, commands, progress.
    /// Returns when the poll thread stops (`stop` triggered).
    fn process<'s, 'c: 's>(
        &mut self,
        scope: &'s std::thread::Scope<'s, '_>,
        consumer: &'c TwConsumer,
        events: &std::sync::mpsc::Receiver<Control>,
        preparers: Vec<Preparer>,
        stop: Shutdown,
    ) -> Result<(), ServiceError> {
        let setup = |e: std::io::Error| ServiceError::Setup(format!("cannot start a thread: {e}"));
        // Two batches per decode thread: enough for decoding to run ahead
        // of detection.
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Ready<'c>>(2 * preparers.len());
        let mut lanes = Vec::new();
        let mut threads = Vec::new();
        for (i, mut preparer) in preparers.into_iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Fetched<'c>>(8);
            let ready_tx = ready_tx.clone();
            lanes.push(tx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("decode-{i}"))
                    .spawn_scoped(scope, move || preparer.run(&rx, &ready_tx))
                    .map_err(setup)?,
            );
        }
        drop(ready_tx);
        let done = Arc::new(AtomicBool::new(false));
        let done_ref = done.clone();
        let poller = std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn_scoped(scope, move || {
                poll_loop(consumer, &lanes, &stop, &done_ref);
                for lane in &lanes {
                    let _ = lane.send(Fetched::End);
                }
            })
            .map_err(setup)?;
        // (A poll thread that dies drops its lanes: the decode threads end.)
        let result = self.process_loop(&ready_rx, events, &threads);
        // After a failure the other threads have no reader: stop the poll
        // thread (and unblock all of them if they wait on a full channel),
        // then wait for them.
        done.store(true, Ordering::SeqCst);
        drop(ready_rx);
        for t in threads {
            if t.join().is_err() {
                return Err(ServiceError::Setup("a decode thread panicked".into()));
            }
        }
        if poller.join().is_err() {
            return Err(ServiceError::Setup("the poll thread panicked".into()));
        }
        result
    }

    fn rebalances(&mut self, events: &std::sync::mpsc::Receiver<Control>) {
        while let Ok(ev) = events.try_recv() {
            match ev {
                Control::Assigned(list) => self.assign(&list),
                Control::Revoked(list, ack) => {
                    self.revoke(&list);
                    let _ = ack.send(());
                }
            }
        }
    }

    fn process_loop(
        &mut self,
        rx: &std::sync::mpsc::Receiver<Ready<'_>>,
        events: &std::sync::mpsc::Receiver<Control>,
        decoders: &[std::thread::ScopedJoinHandle<'_, ()>],
    ) -> Result<(), ServiceError> {
        let svc = self;
        let kc = svc.kc;
        let idle = Duration::from_millis(kc.idle_flush_ms);
        let mut last_progress = Instant::now();
        let mut last_idle_check = Instant::now();
        let mut reported = (u64::MAX, u64::MAX);
        let mut last_commands = Instant::now();
        let mut ended = 0;
        loop {
            svc.rebalances(events);
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Ready::Batch(batch)) => {
                    // An assignment raised while this batch was polled comes first.
                    svc.rebalances(events);
                    svc.batch(batch)?;
                }
                // Every decode thread has ended: the poll thread stopped.
                Ok(Ready::End) => {
                    ended += 1;
                    if ended == decoders.len() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                // A decode thread died without saying so (a panic): stop too.
                Err(RecvTimeoutError::Timeout)
                    if decoders.iter().filter(|t| t.is_finished()).count() > ended =>
                {
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if !idle.is_zero() && last_idle_check.elapsed() >= Duration::from_millis(100) {
                svc.flush_idle(idle)?;
                last_idle_check = Instant::now();
            }
            if svc.last_checkpoint.elapsed() >= svc.interval {
                svc.checkpoint(None);
            }
            if last_commands.elapsed() >= Duration::from_secs(1) {
                svc.apply_commands();
                last_commands = Instant::now();
            }
            if last_progress.elapsed() >= Duration::from_millis(500)
                && (svc.stats.consumed, svc.stats.findings) != reported
            {
                svc.report_gauges();
                log_progress(&svc.stats);
                reported = (svc.stats.consumed, svc.stats.findings);
                last_progress = Instant::now();
            }
        }
        Ok(())
    }

    pub(super) fn ticket(&mut self, id: String) -> usize {
        let t = self.next_ticket;
        self.next_ticket += 1;
        self.in_flight.insert(t, id);
        t
    }

    /// Record in the store which findings the broker confirmed.
    pub(super) fn mark_delivered(&mut self) -> Result<(), StoreError> {
        let tickets = match self.producer.context().delivered.lock() {
            Ok(mut d) if !d.is_empty() => std::mem::take(&mut *d),
            _ => return Ok(()),
        };
        let ids: Vec<String> = tickets
            .iter()
            .filter_map(|t| self.in_flight.remove(t))
            .collect();
        self.store.mark_produced(&ids)
    }

    pub(super) fn role_of(&self, topic: &str) -> Option<usize> {
        self.roles.iter().position(|r| r.name == topic)
    }

    /// Findings recorded by an earlier run but not confirmed produced.
    /// Manual acts done through the store (reset a fuse, resolve an
    /// incident) reach this instance's policy state.
    pub(super) fn apply_commands(&mut self) {
        match self.store.take_commands() {
            Ok(cmds) => {
                for cmd in cmds {
                    match cmd {
                        Ok(cmd) => {
                            let applied = self.decider.apply(&cmd);
                            tracing::info!(
                                command = cmd.name(),
                                target = cmd.target(),
                                applied,
                                "policy: command"
                            );
                        }
                        Err(e) => tracing::warn!(error = %e, "policy: command skipped"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read commands"),
        }
    }

    pub(super) fn redeliver_unproduced(&mut self) -> Result<(), ServiceError> {
        let Some(topic) = &self.kc.findings_topic else {
            return Ok(());
        };
        let rows = self.store.unproduced()?;
        if !rows.is_empty() {
            tracing::info!(
                findings = rows.len(),
                "producing findings recorded before a crash"
            );
        }
        for (id, token_id, json) in rows {
            let rec = BaseRecord::with_opaque_to(topic, self.ticket(id))
                .key(token_id.as_bytes())
                .payload(json.as_bytes());
            send(&self.producer, rec)?;
        }
        Ok(())
    }

    pub(super) fn batch(&mut self, prepared: Prepared<'_>) -> Result<(), ServiceError> {
        let Prepared {
            batch,
            outcomes,
            results,
        } = prepared;
        crate::telemetry::records("kafka", batch.len() as u64);
        let events_before = self.stats.events;
        let now = Instant::now();
        let mut results = results.into_iter();
        for (m, outcome) in batch.iter().zip(outcomes) {
            let (n, forwarded) = match outcome {
                Outcome::Events(n) => (n, None),
                Outcome::Forward(f) => (0, Some(f)),
            };
            let mut own = results.by_ref().take(n as usize);
            self.message(m, now, &mut own, forwarded)?;
            // What the filters skipped.
            own.for_each(std::mem::drop);
        }
        crate::telemetry::events(self.stats.events - events_before);
        self.health
            .live
            .add_events(self.stats.events - events_before);
        self.emit()?;
        self.mark_delivered()?;
        if !batch.is_empty() {
            self.health.set_ok();
        }
        Ok(())
    }

    /// One message: its filters (ours, not processed yet, not a copy), then
    /// its events (`prepared`, decoded on a decode thread) to the engine; a
    /// forwarded topic's message (`forwarded`: keyed and sealed there) is
    /// sent to the repartition topic.
    pub(super) fn message(
        &mut self,
        m: &BorrowedMessage<'_>,
        now: Instant,
        prepared: &mut dyn Iterator<Item = (u32, Result<Enriched, Drop>)>,
        forwarded: Option<Forwarded>,
    ) -> Result<(), ServiceError> {
        let Some(ti) = self.role_of(m.topic()) else {
            return Ok(());
        };
        let key = (ti, m.partition());
        // Not (or no longer) ours: a message fetched before a rebalance.
        let Some(part) = self.parts.get_mut(&key) else {
            return Ok(());
        };
        self.stats.consumed += 1;
        let off = m.offset();
        let role = self.roles[ti].role;
        match part {
            Part::Forward(f) => {
                if f.next.is_some_and(|n| off < n) {
                    return Ok(());
                }
                f.next = Some(off + 1);
                let Some(Forwarded { keyed, drops }) = forwarded else {
                    return Ok(());
                };
                let mut first_drop: Option<(Drop, usize)> = None;
                for d in drops {
                    count_drop(&mut first_drop, d);
                }
                if let Some((d, n)) = first_drop {
                    self.stats.dropped += n as u64;
                    dead_letter(self.kc, &self.producer, m, &d, n)?;
                }
                if let (Some((k, sealed)), Some(topic)) = (keyed, &self.repartition_topic) {
                    let format = self.roles[ti].format.as_str();
                    let (sp, so) = (m.partition().to_string(), off.to_string());
                    let headers = headers(&[
                        ("tokenwatch-format", format),
                        ("tokenwatch-source-topic", m.topic()),
                        ("tokenwatch-source-partition", &sp),
                        ("tokenwatch-source-offset", &so),
                        ("tokenwatch-seal", "1"),
                    ]);
                    let mut rec = record(topic)
                        .key(k.as_bytes())
                        .payload(&sealed)
                        .headers(headers);
                    if let Some(ts) = m.timestamp().to_millis() {
                        rec = rec.timestamp(ts);
                    }
                    send(&self.producer, rec)?;
                }
            }
            Part::Shard(s) => {
                let replaying = off < s.ckpt_next;
                if replaying && s.readmit.is_empty() {
                    return Ok(());
                }
                if !replaying && s.next.is_some_and(|n| off < n) {
                    return Ok(());
                }
                if !replaying
                    && role == Role::Internal
                    && let Some((st, sp, so)) = source_of(m)
                {
                    // Looked up by &str: no allocation per record.
                    let marks = match s.sources.get_mut(st) {
                        Some(m) => m,
                        None => s.sources.entry(st.to_string()).or_default(),
                    };
                    match marks.get_mut(&sp) {
                        Some(mark) if so <= *mark => {
                            // A copy forwarded again after a forwarder crash.
                            s.next = Some(off + 1);
                            self.stats.duplicates_dropped += 1;
                            crate::telemetry::repartition_duplicate();
                            return Ok(());
                        }
                        Some(mark) => *mark = so,
                        None => {
                            marks.insert(sp, so);
                        }
                    }
                }
                s.last_record = now;
                s.dirty = true;
                let Shard {
                    readmit, engine, ..
                } = &mut **s;
                let mut first_drop: Option<(Drop, usize)> = None;
                for (i, r) in prepared {
                    match r {
                        // After a restore, only the events still waiting are fed again.
                        Ok(_) if replaying && !readmit.remove(&(off, i)) => {}
                        Ok(en) => {
                            if en.event.rejected {
                                crate::telemetry::rejected(1);
                                self.health.live.add_rejected(1);
                            }
                            self.stats.events += 1;
                            let before = engine.stats.stragglers;
                            if !engine.push(en, &mut self.findings) {
                                self.stats.dropped += 1;
                                crate::telemetry::dropped(DropReason::Late, 1);
                            } else if engine.stats.stragglers > before {
                                crate::telemetry::stragglers(engine.stats.stragglers - before);
                            }
                        }
                        Err(d) if !replaying => count_drop(&mut first_drop, d),
                        Err(_) => {}
                    }
                }
                if !replaying {
                    s.next = Some(off + 1);
                }
                // One dead letter per record, however many of its objects were
                // bad; records of the repartition topic were dead-lettered
                // when they were forwarded.
                if let Some((d, n)) = first_drop {
                    self.stats.dropped += n as u64;
                    if role == Role::Keyed {
                        dead_letter(self.kc, &self.producer, m, &d, n)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// New findings: recorded in the store (a finding derived again after a
    /// restart is recognised there and not produced twice), then produced.
    pub(super) fn emit(&mut self) -> Result<(), ServiceError> {
        if self.findings.is_empty() {
            return Ok(());
        }
        let decider = &mut self.decider;
        let crate::respond::Responded { fresh, json: jsons } = crate::respond::respond(
            &mut self.store,
            &self.health.live,
            &self.findings,
            now_ms(),
            |f| decider.decide(f),
        )?;
        // A finding derived again that its first deriver recorded but never
        // got confirmed as produced (it died in between: a partition taken
        // over from a killed instance sharing this store) is produced now.
        let again: Vec<&str> = self
            .findings
            .iter()
            .zip(&fresh)
            .filter(|(_, new)| !**new)
            .map(|(f, _)| f.id.as_str())
            .filter(|id| !self.in_flight.values().any(|x| x == id))
            .collect();
        let unproduced = if again.is_empty() {
            Vec::new()
        } else {
            self.store.unproduced_ids(&again)?
        };
        let now_ms = now_ms();
        let now_us = now_us();
        let findings = std::mem::take(&mut self.findings);
        for ((f, json), fresh) in findings.into_iter().zip(&jsons).zip(fresh) {
            if !fresh {
                self.stats.findings_deduplicated += 1;
                crate::telemetry::finding_deduplicated();
                if let Some(topic) = &self.kc.findings_topic
                    && unproduced.contains(&f.id)
                {
                    let ticket = self.ticket(f.id.clone());
                    let rec = BaseRecord::with_opaque_to(topic, ticket)
                        .key(f.token_id.as_str().as_bytes())
                        .payload(json.as_slice());
                    send(&self.producer, rec)?;
                }
                continue;
            }
            self.stats.findings += 1;
            crate::telemetry::finding(f.kind);
            crate::telemetry::finding_latency((now_ms - f.event_ts) as f64 / 1000.0);
            if let Some(ts) = f.source_ts {
                let us = (now_us - ts * 1000).max(1) as u64;
                let _ = self.latency.record(us.min(self.latency.high()));
                crate::telemetry::processing_latency(us as f64 / 1e6);
            }
            if let Some(topic) = &self.kc.findings_topic {
                let ticket = self.ticket(f.id);
                let rec = BaseRecord::with_opaque_to(topic, ticket)
                    .key(f.token_id.as_str().as_bytes())
                    .payload(json.as_slice());
                send(&self.producer, rec)?;
            }
        }
        Ok(())
    }

    /// Partitions assigned: a partition whose committed offset names a
    /// checkpoint in this store gets its state back; the consumer starts at
    /// that committed offset (the checkpoint's resume position).
    pub(super) fn assign(&mut self, list: &[(String, i32)]) {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in list {
            tpl.add_partition(t, *p);
        }
        let committed = match self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(30))
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read committed offsets; state starts empty");
                None
            }
        };
        // Partitions last checkpointed by another store (another machine):
        // their checkpoints come from the changelog topic.
        let mut foreign: HashMap<(String, i32), Checkpoint> = HashMap::new();
        if let (Some(changelog), Some(c)) = (&self.changelog, &committed) {
            let wanted: HashMap<(String, i32), (String, i64)> = c
                .elements()
                .iter()
                .filter_map(|e| {
                    let (store, seq) = crate::store::parse_metadata(e.metadata())?;
                    (store != self.store.id()).then(|| {
                        (
                            (e.topic().to_string(), e.partition()),
                            (store.to_string(), seq),
                        )
                    })
                })
                .collect();
            if !wanted.is_empty() {
                match changelog_read(self.kc, changelog, &wanted) {
                    Ok(found) => {
                        tracing::info!(
                            %changelog,
                            found = found.len(),
                            wanted = wanted.len(),
                            "changelog checkpoints found"
                        );
                        foreign = found
                    }
                    Err(e) => {
                        tracing::warn!(%changelog, error = %e, "cannot read the changelog")
                    }
                }
            }
        }
        for (topic, p) in list {
            let Some(ti) = self.role_of(topic) else {
                continue;
            };
            let part = match self.roles[ti].role {
                Role::Forward => Part::Forward(Box::new(Forward { next: None })),
                Role::Keyed | Role::Internal => {
                    let mut s = Box::new(Shard::new(
                        Engine::new(self.cfg),
                        self.store.latest_seq(topic, *p).unwrap_or(0),
                    ));
                    let from_changelog = foreign.remove(&(topic.clone(), *p));
                    self.restore(&mut s, topic, *p, committed.as_ref(), from_changelog);
                    Part::Shard(s)
                }
            };
            self.parts.insert((ti, *p), part);
        }
        self.stats.assigned = self.parts.len();
        crate::telemetry::assigned_partitions(self.parts.len());
        tracing::info!(
            added = list.len(),
            assigned = self.parts.len(),
            partitions = %list
                .iter()
                .map(|(t, p)| format!("{t}/{p}"))
                .collect::<Vec<_>>()
                .join(","),
            "partitions assigned"
        );
    }

    pub(super) fn restore(
        &mut self,
        s: &mut Shard,
        topic: &str,
        partition: i32,
        committed: Option<&TopicPartitionList>,
        from_changelog: Option<Checkpoint>,
    ) {
        let Some(elem) = committed.and_then(|c| c.find_partition(topic, partition)) else {
            return;
        };
        let (cp, source) = match from_changelog {
            Some(cp) if elem.offset() == Offset::Offset(cp.resume_offset) => (cp, "changelog"),
            _ => match self.local_checkpoint(topic, partition, &elem) {
                Some(cp) => (cp, "store"),
                None => return,
            },
        };
        let seq = cp.seq;
        match decode_shard_state(s, &cp.state) {
            Ok(pending) => {
                s.readmit = pending.into_iter().collect();
                s.ckpt_next = cp.next_offset;
                s.next = Some(cp.next_offset);
                let tokens = s.engine.tracked_tokens();
                self.stats.restored_tokens += tokens as u64;
                crate::telemetry::restored(tokens, source);
                tracing::info!(
                    %topic,
                    partition,
                    checkpoint = seq,
                    tokens,
                    waiting = s.readmit.len(),
                    resume_offset = cp.resume_offset,
                    age_s = (now_ms() - cp.created_ms) / 1000,
                    from = source,
                    "state restored"
                );
            }
            Err(e) => {
                tracing::warn!(%topic, partition, error = %e, "checkpoint unreadable; detector state starts empty");
            }
        }
    }

    /// The checkpoint of this store that a committed offset names.
    pub(super) fn local_checkpoint(
        &self,
        topic: &str,
        partition: i32,
        elem: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>,
    ) -> Option<Checkpoint> {
        let Some(seq) = self.store.seq_from_metadata(elem.metadata()) else {
            if elem.offset() != Offset::Invalid {
                tracing::warn!(
                    %topic,
                    partition,
                    store = %self.cfg.store.path.display(),
                    "the committed offset names no checkpoint in this store (another machine's \
                     store? set kafka.changelog_topic to hand state over between machines); \
                     detector state starts empty"
                );
            }
            return None;
        };
        match self.store.checkpoint(topic, partition, seq) {
            Ok(Some(cp)) if elem.offset() == Offset::Offset(cp.resume_offset) => Some(cp),
            Ok(_) => {
                tracing::warn!(
                    %topic,
                    partition,
                    checkpoint = seq,
                    "checkpoint missing or not matching the committed offset; detector state \
                     starts empty"
                );
                None
            }
            Err(e) => {
                tracing::error!(%topic, partition, error = %e, "detector state starts empty");
                None
            }
        }
    }

    pub(super) fn revoke(&mut self, list: &[(String, i32)]) {
        let keys: Vec<(usize, i32)> = list
            .iter()
            .filter_map(|(t, p)| self.role_of(t).map(|i| (i, *p)))
            .collect();
        self.checkpoint(Some(&keys));
        for k in &keys {
            self.parts.remove(k);
        }
        self.stats.assigned = self.parts.len();
        crate::telemetry::assigned_partitions(self.parts.len());
        tracing::info!(
            revoked = keys.len(),
            assigned = self.parts.len(),
            "partitions revoked, state checkpointed"
        );
    }

    /// Quiet partitions release their reorder buffers, unless the broker
    /// still has records for them (then they are only behind, not quiet).
    pub(super) fn flush_idle(&mut self, idle: Duration) -> Result<(), ServiceError> {
        let mut due = Vec::new();
        for (k, part) in &self.parts {
            if let Part::Shard(s) = part
                && s.engine.pending_len() > 0
                && s.readmit.is_empty()
                && s.last_record.elapsed() >= idle
            {
                due.push(*k);
            }
        }
        for k in due {
            let topic = self.roles[k.0].name.clone();
            let high = self
                .consumer
                .fetch_watermarks(&topic, k.1, Duration::from_secs(5))
                .map(|(_, h)| h)
                .ok();
            let Some(Part::Shard(s)) = self.parts.get_mut(&k) else {
                continue;
            };
            s.last_record = Instant::now();
            if high.is_some_and(|h| s.next.is_none_or(|n| n >= h)) {
                s.engine.flush(&mut self.findings);
                s.dirty = true;
            }
        }
        self.emit()
    }

    /// Make everything produced so far durable, checkpoint the detector
    /// state of `only` (or all) partitions in the store, then commit their
    /// offsets naming the checkpoints. Returns whether it committed.
    pub(super) fn checkpoint(&mut self, only: Option<&[(usize, i32)]>) -> bool {
        self.last_checkpoint = Instant::now();
        if self.parts.is_empty() {
            return true;
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(30)) {
            tracing::warn!(error = %e, "producer flush failed; offsets not committed, will retry");
            self.health.set_error(format!("producer flush: {e}"));
            return false;
        }
        if let Err(e) = self.mark_delivered() {
            tracing::error!(error = %e, "deliveries not recorded; offsets not committed, will retry");
            return false;
        }
        let started = Instant::now();
        let created_ms = now_ms();
        let mut cps = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for (k, part) in &self.parts {
            if only.is_some_and(|o| !o.contains(k)) {
                continue;
            }
            let topic = self.roles[k.0].name.as_str();
            match part {
                Part::Forward(f) => {
                    if let Some(n) = f.next {
                        let _ = tpl.add_partition_offset(topic, k.1, Offset::Offset(n));
                    }
                }
                Part::Shard(s) => {
                    // Still reading back what a restore needs: the previous
                    // checkpoint (and its committed offset) stands.
                    let (Some(next), true, true) = (s.next, s.readmit.is_empty(), s.dirty) else {
                        continue;
                    };
                    let resume = s
                        .engine
                        .oldest_pending_offset()
                        .map_or(next, |o| o.min(next));
                    match encode_shard_state(s) {
                        Ok(state) => cps.push(Checkpoint {
                            topic: topic.to_string(),
                            partition: k.1,
                            seq: s.seq + 1,
                            resume_offset: resume,
                            next_offset: next,
                            created_ms,
                            state,
                        }),
                        Err(e) => {
                            tracing::error!(%topic, partition = k.1, error = %e, "checkpoint not encoded")
                        }
                    }
                }
            }
        }
        if let Err(e) = self.store.save_checkpoints(&cps) {
            tracing::error!(error = %e, "checkpoints not saved; offsets not committed, will retry");
            return false;
        }
        if let Some(changelog) = &self.changelog
            && !cps.is_empty()
        {
            let written = changelog_write(&self.producer, changelog, self.store.id(), &cps)
                .and_then(|()| self.producer.flush(Duration::from_secs(60)));
            if let Err(e) = written {
                tracing::warn!(
                    %changelog,
                    error = %e,
                    "changelog not written; offsets not committed, will retry"
                );
                return false;
            }
        }
        let bytes: usize = cps.iter().map(|c| c.state.len()).sum();
        for c in &cps {
            let _ =
                tpl.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.resume_offset));
            if let Some(mut e) = tpl.find_partition(&c.topic, c.partition) {
                e.set_metadata(self.store.commit_metadata(c.seq));
            }
            if let Some(ti) = self.role_of(&c.topic)
                && let Some(Part::Shard(s)) = self.parts.get_mut(&(ti, c.partition))
            {
                s.seq = c.seq;
                s.dirty = false;
                s.last_checkpoint = Instant::now();
            }
        }
        let took = started.elapsed();
        crate::telemetry::checkpoint(took.as_secs_f64(), bytes);
        self.stats.checkpoints += cps.len() as u64;
        // Checkpointing may use at most a tenth of the time.
        self.interval = Duration::from_millis(self.kc.commit_interval_ms.max(100)).max(took * 10);
        if tpl.count() == 0 {
            return true;
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.stats.commits += 1;
                crate::telemetry::commit(true);
                self.changelog_prune(&cps);
                true
            }
            Err(e) => {
                crate::telemetry::commit(false);
                tracing::warn!(error = %e, "offset commit failed; will retry");
                self.health.set_error(format!("offset commit: {e}"));
                false
            }
        }
    }

    /// After a commit: generations older than the previous one leave the changelog.
    pub(super) fn changelog_prune(&mut self, cps: &[Checkpoint]) {
        let Some(changelog) = &self.changelog else {
            return;
        };
        for c in cps {
            let gens = self
                .changelog_gens
                .entry((c.topic.clone(), c.partition))
                .or_default();
            gens.push_back((c.seq, c.state.len().div_ceil(CHANGELOG_CHUNK)));
            while gens.len() > 2 {
                if let Some((seq, chunks)) = gens.pop_front()
                    && let Err(e) = changelog_delete(
                        &self.producer,
                        changelog,
                        &c.topic,
                        c.partition,
                        seq,
                        chunks,
                    )
                {
                    tracing::warn!(%changelog, error = %e, "changelog");
                }
            }
        }
    }

    pub(super) fn report_gauges(&self) {
        for ((ti, p), part) in &self.parts {
            if let Part::Shard(s) = part {
                let topic = &self.roles[*ti].name;
                crate::telemetry::tracked_tokens(topic, *p, s.engine.tracked_tokens());
                crate::telemetry::checkpoint_age(
                    topic,
                    *p,
                    s.last_checkpoint.elapsed().as_secs_f64(),
                );
            }
        }
    }

    pub(super) fn fill_latency(&mut self) {
        let h = &self.latency;
        if !h.is_empty() {
            self.stats.latency_us = Some(LatencySummary {
                count: h.len(),
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
            });
        }
    }
}

pub(super) fn count_drop(first: &mut Option<(Drop, usize)>, d: Drop) {
    crate::telemetry::dropped(d.reason, 1);
    match first {
        Some((_, n)) => *n += 1,
        None => *first = Some((d, 1)),
    }
}

/// The partitioning key of an event: subject, else client_id, else token id,
/// so a subject's successive tokens (and their carried baselines) meet.
pub(super) fn partition_key(e: &crate::event::AccessEvent) -> &str {
    e.subject
        .as_deref()
        .or(e.client_id.as_deref())
        .unwrap_or(e.token.as_str())
}

/// Once per service: records carry X-Forwarded-For but `trusted_proxies`
/// is empty, so every client is the gateway's peer address.
/// `warned` is shared by the decode threads: said once per service.
pub(super) fn warn_xff(warned: &AtomicBool, decoder: &crate::decode::Decoder) {
    if !warned.load(Ordering::Relaxed)
        && decoder.xff_without_trusted_proxy() > 0
        && !warned.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            "records carry X-Forwarded-For but input.trusted_proxies is empty: each client is \
             the gateway's peer address; if a load balancer sits in front of the gateway, list \
             its networks in input.trusted_proxies"
        );
    }
}

pub(super) fn dead_letter(
    kc: &KafkaConfig,
    producer: &TwProducer,
    m: &impl Message,
    d: &Drop,
    bad_objects: usize,
) -> Result<(), ServiceError> {
    tracing::debug!(
        topic = m.topic(),
        partition = m.partition(),
        offset = m.offset(),
        reason = d.reason.as_str(),
        "dead letter"
    );
    crate::telemetry::dead_letter();
    let Some(topic) = &kc.dlq_topic else {
        return Ok(());
    };
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let bad = bad_objects.to_string();
    let headers = headers(&[
        ("tokenwatch-bad-objects", &bad),
        ("tokenwatch-reason", d.reason.as_str()),
        ("tokenwatch-detail", &d.detail),
        ("tokenwatch-source-topic", m.topic()),
        ("tokenwatch-source-partition", &partition),
        ("tokenwatch-source-offset", &offset),
    ]);
    // Dead letters stay readable for whoever debugs the gateway, so their
    // credentials go (decode::scrub).
    let scrubbed = crate::decode::scrub::scrub(m.payload().unwrap_or_default());
    let rec = record(topic).payload(&scrubbed).headers(headers);
    let rec = match m.key() {
        Some(k) => rec.key(k),
        None => rec,
    };
    Ok(send(producer, rec)?)
}

/// The service's running totals, as one structured log line (every 500 ms
/// while records flow, and at the end).
fn log_progress(s: &RunStats) {
    tracing::info!(
        consumed = s.consumed,
        events = s.events,
        dropped = s.dropped,
        findings = s.findings,
        deduplicated = s.findings_deduplicated,
        partitions = s.assigned,
        checkpoints = s.checkpoints,
        commits = s.commits,
        "progress"
    );
}

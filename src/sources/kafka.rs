//! The Kafka source: a consumer-group member with at-least-once offset
//! tracking.
//!
//! # At-least-once
//!
//! librdkafka commits automatically (`enable.auto.commit=true`) but only
//! offsets the application *stored* (`enable.auto.offset.store=false`), and
//! reflex stores an offset only when every output caused by that input —
//! and by everything before it on the partition — has been acknowledged by
//! the broker. Event-time windows make this subtle: an input's outputs may
//! appear long after it was read, when its window closes. So each input is
//! registered with a *release time*, the watermark at which all its effects
//! have certainly been emitted (detect: `max(event time, watermark) +` the
//! longest window; decide: window end + `decide_hold`). [`OffsetTracker`]
//! keeps, per partition, spans of consecutive offsets with the latest
//! release time among them:
//!
//! 1. [`OffsetTracker::mark`] — after the runtime applied watermark `wm` and
//!    produced what it emitted, every span with release time `<= wm` is
//!    stamped with the producer's next sequence number `S`: all its effects
//!    are among the records numbered below `S`.
//! 2. [`OffsetTracker::committable`] — spans are popped from the front of a
//!    partition while their stamp is `<=` the lowest unacknowledged sequence
//!    number; the first offset of the oldest span left (or the offset after
//!    the last one read) is what may be stored.
//!
//! The stored offset is thus bounded by the oldest input still open in some
//! window, and a crash at any point replays at least everything whose
//! effects were not all on the broker. Spans are coalesced per second of
//! release time, so memory is O(partitions × open window seconds), not
//! O(messages).
//!
//! # Rebalances
//!
//! The group uses the eager protocol. On revoke, [`RebalanceContext`] waits
//! for the producer's outstanding deliveries, stores and synchronously
//! commits what is done, and flags the runtime to drop its in-memory stage
//! state; on assign the new partitions start from their committed offsets.
//! (State restore is a later issue: open windows are rebuilt by replay.)

use crate::config::kafka::KafkaConfig;
use crate::sinks::kafka::Deliveries;
use crate::stage::stats::{kafka_error, KafkaErrorKind};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{info, warn};

/// Granularity at which consecutive offsets share one span.
const SPAN_BUCKET_MS: i64 = 1_000;

#[derive(Debug, Clone)]
struct Span {
    first: i64,
    release_at: i64,
    /// Set once the watermark passed `release_at`: acknowledged below this
    /// sequence number means done.
    done_below: Option<u64>,
}

#[derive(Debug, Default)]
struct PartTrack {
    spans: VecDeque<Span>,
    /// Offset after the last one registered.
    next: Option<i64>,
    /// Last offset handed out by `committable`.
    stored: Option<i64>,
}

/// Per-partition lowest offset whose effects are not all acknowledged.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    parts: BTreeMap<i32, PartTrack>,
}

impl OffsetTracker {
    /// Registers input `offset` of `partition`, whose effects are all
    /// emitted once the watermark reaches `release_at` (epoch ms;
    /// `i64::MIN` = emitted at once).
    pub fn add(&mut self, partition: i32, offset: i64, release_at: i64) {
        let p = self.parts.entry(partition).or_default();
        p.next = Some(offset + 1);
        if let Some(back) = p.spans.back_mut() {
            if back.done_below.is_none()
                && (release_at <= back.release_at
                    || release_at.div_euclid(SPAN_BUCKET_MS)
                        == back.release_at.div_euclid(SPAN_BUCKET_MS))
            {
                back.release_at = back.release_at.max(release_at);
                return;
            }
        }
        p.spans.push_back(Span {
            first: offset,
            release_at,
            done_below: None,
        });
    }

    /// The watermark reached `wm` and every output emitted so far has a
    /// sequence number below `next_seq`.
    pub fn mark(&mut self, wm: i64, next_seq: u64) {
        for p in self.parts.values_mut() {
            for s in p.spans.iter_mut() {
                if s.done_below.is_none() && s.release_at <= wm {
                    s.done_below = Some(next_seq);
                }
            }
        }
    }

    /// Offsets (next to consume) that became committable given that every
    /// record below `acked_below` is acknowledged; only changed ones.
    pub fn committable(&mut self, acked_below: u64) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&part, p) in self.parts.iter_mut() {
            while p
                .spans
                .front()
                .is_some_and(|s| s.done_below.is_some_and(|d| d <= acked_below))
            {
                p.spans.pop_front();
            }
            let at = match p.spans.front() {
                Some(s) => Some(s.first),
                None => p.next,
            };
            if let Some(at) = at {
                if p.stored != Some(at) {
                    p.stored = Some(at);
                    out.push((part, at));
                }
            }
        }
        out
    }

    /// Forgets partitions (revoked).
    pub fn remove(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.parts.remove(p);
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.parts.clear();
    }

    /// Spans not yet committable (a gauge of how much would be replayed).
    pub fn pending_spans(&self) -> usize {
        self.parts.values().map(|p| p.spans.len()).sum()
    }
}

/// State shared between the runtime and the rebalance callback.
pub struct SourceShared {
    pub tracker: Mutex<OffsetTracker>,
    pub deliveries: Arc<Deliveries>,
    /// Set by a rebalance; the runtime resets its stages and clears it.
    pub rebalanced: AtomicBool,
    /// Waits for the producer's outstanding deliveries (bounded).
    pub flush: Box<dyn Fn() -> bool + Send + Sync>,
    pub topic: String,
}

impl SourceShared {
    /// The tracker (a poisoned lock is still consistent: plain data).
    pub fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores every offset that became committable (auto-commit picks them up).
    pub fn store(&self, consumer: &BaseConsumer<RebalanceContext>) -> Result<usize, KafkaError> {
        let acked = self.deliveries.acked_below();
        let offsets = self.tracker().committable(acked);
        if offsets.is_empty() {
            return Ok(0);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
        }
        consumer.store_offsets(&tpl)?;
        Ok(offsets.len())
    }
}

/// Consumer context: commits what is done before partitions go away.
pub struct RebalanceContext {
    pub shared: Arc<SourceShared>,
}

impl ClientContext for RebalanceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            return; // end of log: normal, reported per partition by poll
        }
        kafka_error(KafkaErrorKind::Consumer);
        warn!(%error, reason, "Kafka consumer error (retrying).");
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(
                    ?parts,
                    "Partitions revoked: flushing and committing what is done."
                );
                if !(self.shared.flush)() {
                    warn!("Deliveries still pending at revoke; their inputs will be replayed.");
                }
                if !consumer.assignment_lost() {
                    if let Err(error) = self.shared.store(consumer) {
                        warn!(%error, "Failed to store offsets at revoke.");
                    }
                    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                        // Nothing stored since the last commit is reported as an error too.
                        info!(%error, "Commit at revoke.");
                    }
                }
                self.shared.tracker().remove(&parts);
                self.shared.rebalanced.store(true, Ordering::SeqCst);
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(
                    ?parts,
                    "Partitions assigned: starting from committed offsets."
                );
                self.shared.rebalanced.store(true, Ordering::SeqCst);
            }
            Rebalance::Error(e) => warn!(error = %e, "Rebalance error."),
        }
    }
}

/// Creates the at-least-once consumer and subscribes to `topic`.
pub fn create_consumer(
    brokers: &str,
    group_id: &str,
    topic: &str,
    kafka: &KafkaConfig,
    shared: Arc<SourceShared>,
) -> Result<BaseConsumer<RebalanceContext>, KafkaError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            kafka.commit_interval.0.to_string(),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("queued.max.messages.kbytes", "65536")
        // When the prefetch queue is full, librdkafka postpones the next
        // fetch by this much (default 1 s): a runtime that drains the queue
        // in well under a second would then sit idle for most of it.
        .set("fetch.queue.backoff.ms", "10")
        .set("session.timeout.ms", "45000");
    for (k, v) in &kafka.consumer {
        cc.set(k, v);
    }
    cc.set("group.id", group_id)
        .set("enable.auto.offset.store", "false");
    let consumer: BaseConsumer<RebalanceContext> =
        cc.create_with_context(RebalanceContext { shared })?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Synchronous final commit of the stored offsets (shutdown; not on a tokio worker).
pub fn commit_now(consumer: &BaseConsumer<RebalanceContext>) -> Result<(), KafkaError> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => Ok(()),
        // "No offset" = nothing new stored since the last commit.
        Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Polls wait at most this long so shutdown and backpressure react quickly.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_up_to_the_oldest_open_input() {
        let mut t = OffsetTracker::default();
        t.add(0, 10, 5_000); // in a window closing at 5s
        t.add(0, 11, i64::MIN); // a dead letter: immediate
        t.add(0, 12, 9_000);
        // Nothing marked: nothing committable beyond the first offset.
        assert_eq!(t.committable(100), vec![(0, 10)]);
        // The watermark passed 5s; outputs numbered below 7 carry the effects.
        t.mark(5_000, 7);
        // Not yet acknowledged.
        assert_eq!(t.committable(6), vec![]);
        // Acknowledged: offsets 10 and 11 are done, 12 still open.
        assert_eq!(t.committable(7), vec![(0, 12)]);
        t.mark(9_000, 9);
        assert_eq!(t.committable(9), vec![(0, 13)]);
        assert_eq!(t.pending_spans(), 0);
    }

    #[test]
    fn a_late_marked_span_blocks_the_ones_after_it() {
        let mut t = OffsetTracker::default();
        t.add(1, 0, 60_000);
        t.add(1, 1, 1_000);
        t.add(1, 2, 1_500);
        t.mark(2_000, 3);
        // Offsets 1..2 are done, but 0 is not: nothing beyond 0.
        assert_eq!(t.committable(10), vec![(1, 0)]);
        t.mark(60_000, 4);
        assert_eq!(t.committable(10), vec![(1, 3)]);
    }

    #[test]
    fn spans_coalesce_per_second() {
        let mut t = OffsetTracker::default();
        for o in 0..10_000 {
            t.add(0, o, 1_000 + o / 10);
        }
        assert!(t.pending_spans() <= 2, "{}", t.pending_spans());
    }
}

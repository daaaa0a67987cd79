//! What flows back into the decide side of the Kafka runtime besides
//! detections: executors' [`ActionResult`]s from `reflex.action-results`
//! (verification and learning) and human approvals from the HTTP API.
//!
//! Results are read without a consumer group commit: every decide process
//! reads every partition (an incident's actions may have been executed by
//! any executor, and results are few), starting `results_lookback` back in
//! broker time, so a decider rebuilt after a restart or a rebalance sees the
//! results of actions it re-derives from the replayed input. A result the
//! decider does not know is ignored by it; a repeated one changes nothing.
//! An undecodable result is a dead letter (raw bytes, reason, coordinates),
//! never a stop.

use super::approvals::{ApprovalOutcome, ApprovalQueue};
use super::topology::Decider;
use crate::codec::avro::{self, RecordType};
use crate::codec::{wire, DecodeError, DecodeErrorKind};
use crate::config::kafka::KafkaConfig;
use crate::model::ActionResult;
use crate::sinks::SinkError;
use crate::stage::stats::{kafka_error, KafkaErrorKind};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Results handed to the decider per call of [`ResultsFollower::poll`].
const MAX_PER_POLL: usize = 500;
/// How often an unassigned follower looks for the topic again.
const RETRY_ASSIGN: Duration = Duration::from_secs(10);
/// Metadata and offset lookups wait at most this long.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Follows `reflex.action-results` into a [`Decider`].
pub struct ResultsFollower {
    consumer: BaseConsumer,
    topic: String,
    lookback_ms: i64,
    assigned: bool,
    last_try: Option<Instant>,
    /// Results handed to the decider so far.
    pub delivered: u64,
}

impl ResultsFollower {
    /// A follower of `k`'s results topic (assigned lazily, see [`Self::poll`]).
    pub fn new(brokers: &str, k: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers)
            .set("enable.partition.eof", "false");
        for (key, v) in &k.consumer {
            cc.set(key, v);
        }
        // Never committed: the position is derived from time on every start.
        cc.set("group.id", format!("{}-results", k.group_id))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest");
        Ok(ResultsFollower {
            consumer: cc.create()?,
            topic: k.topic(crate::config::kafka::TopicName::ActionResults),
            lookback_ms: k.results_lookback.0,
            assigned: false,
            last_try: None,
            delivered: 0,
        })
    }

    /// Starts again from `results_lookback` before now (a rebuilt decider).
    pub fn rewind(&mut self) {
        self.assigned = false;
        self.last_try = None;
    }

    fn assign(&mut self) -> Result<(), KafkaError> {
        let md = self
            .consumer
            .fetch_metadata(Some(&self.topic), LOOKUP_TIMEOUT)?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if parts.is_empty() {
            return Ok(()); // not created yet: try again later
        }
        let since = now_ms() - self.lookback_ms;
        let mut times = TopicPartitionList::new();
        for p in &parts {
            times.add_partition_offset(&self.topic, *p, Offset::Offset(since))?;
        }
        let starts = self.consumer.offsets_for_times(times, LOOKUP_TIMEOUT)?;
        let mut assign = TopicPartitionList::new();
        for e in starts.elements() {
            // No result newer than `since`: start at the end.
            let at = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::End,
            };
            assign.add_partition_offset(&self.topic, e.partition(), at)?;
        }
        self.consumer.assign(&assign)?;
        self.assigned = true;
        info!(
            topic = self.topic,
            partitions = parts.len(),
            "Following action results."
        );
        Ok(())
    }

    /// Hands waiting results (at most [`MAX_PER_POLL`]) to `decider`; never
    /// blocks for long. Broker trouble is logged and retried later.
    pub fn poll(&mut self, decider: &mut Decider<'_>) -> Result<(), SinkError> {
        if !self.assigned {
            if self.last_try.is_some_and(|t| t.elapsed() < RETRY_ASSIGN) {
                return Ok(());
            }
            self.last_try = Some(Instant::now());
            if let Err(error) = self.assign() {
                kafka_error(KafkaErrorKind::Consumer);
                warn!(%error, topic = self.topic, "Cannot follow action results yet; retrying.");
            }
            if !self.assigned {
                return Ok(());
            }
        }
        for _ in 0..MAX_PER_POLL {
            let Some(res) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            let msg = match res {
                Ok(m) => m,
                Err(error) => {
                    kafka_error(KafkaErrorKind::Consumer);
                    warn!(%error, topic = self.topic, "Action results consumer error.");
                    break;
                }
            };
            let payload = msg.payload().unwrap_or(&[]);
            match decode_result(payload) {
                Ok(r) => {
                    self.delivered += 1;
                    decider.action_result(&r);
                }
                Err(e) => {
                    warn!(error = %e, topic = self.topic, partition = msg.partition(), offset = msg.offset(), "Failed to decode an action result.");
                    let dl = e.into_dead_letter(
                        payload,
                        &self.topic,
                        Some(msg.partition()),
                        Some(msg.offset()),
                    );
                    decider.dead_letter(dl)?;
                }
            }
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An ActionResult as JSON or as Avro in the Confluent wire format.
pub fn decode_result(bytes: &[u8]) -> Result<ActionResult, DecodeError> {
    match wire::unframe(bytes) {
        Some((_, body)) => avro::decode::<ActionResult>(RecordType::ActionResult, body),
        None => serde_json::from_slice::<ActionResult>(bytes)
            .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidJson, e.to_string())),
    }
}

/// Answers every approval waiting in `queue` through `decider`.
pub fn answer_approvals(queue: &ApprovalQueue, decider: &mut Decider<'_>) -> Result<(), SinkError> {
    use crate::recovery::approval::ApprovalError;
    for cmd in queue.drain() {
        let outcome = match decider.approval(&cmd.action_id, cmd.approve, &cmd.by) {
            Ok(Ok(())) => ApprovalOutcome::Done,
            Ok(Err(ApprovalError::NotFound)) => ApprovalOutcome::NotFound,
            Ok(Err(ApprovalError::AlreadyDecided)) => ApprovalOutcome::AlreadyDecided,
            Ok(Err(ApprovalError::Expired)) => ApprovalOutcome::Expired,
            Err(e) => {
                let _ = cmd.reply.send(ApprovalOutcome::Failed(e.to_string()));
                return Err(e);
            }
        };
        // The requester may have given up waiting; nothing to do then.
        let _ = cmd.reply.send(outcome);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionStatus, EventTime};

    #[test]
    fn results_decode_from_json_and_wire_avro_and_garbage_is_an_error() {
        let r = ActionResult {
            action_id: "act-1".into(),
            idempotency_key: "idem-1".into(),
            status: ActionStatus::Succeeded,
            detail: "ok".into(),
            finished_at: EventTime(1_700_000_000_000),
            executor: "kube".into(),
        };
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(decode_result(&json).unwrap(), r);
        let body = avro::encode(RecordType::ActionResult, &r).unwrap();
        let framed = wire::frame(7, &body);
        assert_eq!(decode_result(&framed).unwrap(), r);
        assert!(decode_result(b"{not json").is_err());
    }
}

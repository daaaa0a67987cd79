//! Decoding input lines into batches with watermarks — the one place that
//! decides where a batch ends and which watermark follows it.
//!
//! A batch ends at the end of each input chunk and, inside a chunk, whenever
//! the watermark has moved by `cadence_ms` of event time since the last one
//! sent, so detection latency in event time does not depend on how many
//! lines a chunk holds. The embedded runtime and the demo both feed their
//! lines through this, which is why a demo's exported stream replays through
//! `reflex run` to byte-identical outputs.

use super::watermark::WatermarkTracker;
use crate::codec::InputCodec;
use crate::model::{DeadLetter, ErrorEvent, EventTime};

/// One batch: decoded events and dead letters in input order, then the
/// watermark that holds after them.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Result<ErrorEvent, DeadLetter>>,
    pub watermark: Option<EventTime>,
}

/// Decodes lines and cuts batches.
pub struct Batcher {
    codec: InputCodec,
    wm: WatermarkTracker,
    sent: Option<EventTime>,
    cadence_ms: i64,
}

impl Batcher {
    /// A batcher with the pipeline's decoding and watermark settings.
    pub fn new(codec: InputCodec, wm: WatermarkTracker, cadence_ms: i64) -> Self {
        Batcher {
            codec,
            wm,
            sent: None,
            cadence_ms,
        }
    }

    /// Decodes one chunk of `(offset, line)`; calls `emit` for every batch
    /// cut, last of all for the rest of the chunk. Stops early (returning
    /// false) when `emit` returns false.
    pub fn feed<'a>(
        &mut self,
        lines: impl Iterator<Item = (i64, &'a [u8])>,
        source: &str,
        emit: &mut dyn FnMut(Batch) -> bool,
    ) -> bool {
        let mut items = Vec::new();
        for (offset, line) in lines {
            items.push(match self.codec.decode(line) {
                Ok(ev) => {
                    self.wm.observe(0, ev.time);
                    Ok(ev)
                }
                Err(e) => Err(self.codec.dead_letter(e, line, source, None, Some(offset))),
            });
            let now = self.wm.watermark();
            let moved = now.is_some_and(|w| {
                self.sent
                    .is_none_or(|s| w.millis() - s.millis() >= self.cadence_ms)
            });
            if moved {
                self.sent = now;
                let batch = Batch {
                    items: std::mem::take(&mut items),
                    watermark: now,
                };
                if !emit(batch) {
                    return false;
                }
            }
        }
        self.sent = self.wm.watermark().or(self.sent);
        emit(Batch {
            items,
            watermark: self.sent,
        })
    }
}

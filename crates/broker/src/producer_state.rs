//! Idempotent-producer state beside each partition: the last batches each
//! producer id appended, so a retried batch is recognised as a duplicate and a
//! gap in sequence numbers is refused (KIP-98).

use std::collections::{HashMap, VecDeque};

use kafka_protocol::error::ResponseError;

use crate::error::{BrokerError, Result};

/// Batches remembered per producer, as in Kafka (max.in.flight = 5).
const REMEMBERED_BATCHES: usize = 5;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AppendedBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<AppendedBatch>,
}

/// What the producer state says about an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Append it.
    Append,
    /// Already appended at this base offset: answer success, append nothing.
    Duplicate { base_offset: i64 },
}

/// Producer states of one partition.
#[derive(Debug, Default)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn last_sequence(first: i32, record_count: i32) -> i32 {
    // Sequences wrap from i32::MAX to 0.
    ((i64::from(first) + i64::from(record_count) - 1) % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl ProducerStates {
    /// Checks a batch of an idempotent producer before it is appended.
    pub(crate) fn check(&self, producer_id: i64, epoch: i16, first_sequence: i32, record_count: i32) -> Result<SequenceCheck> {
        let Some(entry) = self.producers.get(&producer_id) else {
            // Unknown producer (new, or its state predates a restart): accept.
            return Ok(SequenceCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(BrokerError::kafka(
                ResponseError::InvalidProducerEpoch,
                format!("Producer {producer_id}'s epoch {epoch} is older than the current epoch {}", entry.epoch),
            ));
        }
        if epoch > entry.epoch {
            if first_sequence != 0 {
                return Err(BrokerError::kafka(
                    ResponseError::OutOfOrderSequenceNumber,
                    format!("Producer {producer_id} with new epoch {epoch} must start at sequence 0, not {first_sequence}"),
                ));
            }
            return Ok(SequenceCheck::Append);
        }
        let last = last_sequence(first_sequence, record_count);
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate { base_offset: dup.base_offset });
        }
        match entry.batches.back() {
            Some(prev) if first_sequence != next_sequence(prev.last_sequence) => Err(BrokerError::kafka(
                ResponseError::OutOfOrderSequenceNumber,
                format!(
                    "Out of order sequence number for producer {producer_id}: expected {}, got {first_sequence}",
                    next_sequence(prev.last_sequence)
                ),
            )),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records an appended batch.
    pub(crate) fn record(&mut self, producer_id: i64, epoch: i16, first_sequence: i32, record_count: i32, base_offset: i64) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == REMEMBERED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(AppendedBatch {
            first_sequence,
            last_sequence: last_sequence(first_sequence, record_count),
            base_offset,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_batch_is_a_duplicate_with_its_original_offset() {
        let mut states = ProducerStates::default();
        assert_eq!(states.check(7, 0, 0, 10).expect("first"), SequenceCheck::Append);
        states.record(7, 0, 0, 10, 100);
        assert_eq!(states.check(7, 0, 10, 5).expect("next"), SequenceCheck::Append);
        states.record(7, 0, 10, 5, 110);
        assert_eq!(states.check(7, 0, 0, 10).expect("retry"), SequenceCheck::Duplicate { base_offset: 100 });
    }

    #[test]
    fn sequence_gap_and_old_epoch_are_refused() {
        let mut states = ProducerStates::default();
        states.record(7, 1, 0, 10, 0);
        let gap = states.check(7, 1, 20, 1).expect_err("gap");
        assert_eq!(gap.response_error(), ResponseError::OutOfOrderSequenceNumber);
        let fenced = states.check(7, 0, 10, 1).expect_err("old epoch");
        assert_eq!(fenced.response_error(), ResponseError::InvalidProducerEpoch);
        assert_eq!(states.check(7, 2, 0, 1).expect("new epoch"), SequenceCheck::Append);
    }
}

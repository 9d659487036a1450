//! Consumer-group administration on [`Admin`]: list, describe, committed offsets,
//! alter and delete offsets, delete groups.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DeleteGroupsRequest,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, OffsetDeleteRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use crate::admin::Admin;
use crate::cluster::Broker;
use crate::connection::Connection;
use crate::error::{check, Error, KafkaError, Result};
use crate::group::{decode_assignment, fetch_offsets, offset_commit_request, TopicPartition};

pub use crate::group::CommittedOffset;

/// A group as ListGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type: `consumer` for consumer groups, empty for groups that only
    /// hold committed offsets.
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, …), from ListGroups v4 on.
    pub state: Option<String>,
    /// Group type (`classic`, `consumer`, …), from ListGroups v5 on.
    pub group_type: Option<String>,
}

impl GroupListing {
    /// Whether Kafka's tools count it as a consumer group.
    pub fn is_consumer_group(&self) -> bool {
        self.protocol_type == crate::group::PROTOCOL_TYPE || self.protocol_type.is_empty()
    }
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host as the coordinator saw it (e.g. `/127.0.0.1`).
    pub host: String,
    /// Partitions assigned to the member, sorted.
    pub assignment: Vec<TopicPartition>,
    /// The partitions the member is moving to (KIP-848 groups only).
    pub target_assignment: Option<Vec<TopicPartition>>,
    /// The member's epoch (KIP-848 groups only).
    pub member_epoch: Option<i32>,
}

/// A described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State: `Stable`, `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Dead`
    /// (also for a group that does not exist), or for KIP-848 groups `Assigning`,
    /// `Reconciling`.
    pub state: String,
    /// Protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// The assignor (classic: the chosen protocol, e.g. `range`); empty when none.
    pub assignor: String,
    /// `classic` or `consumer` (KIP-848).
    pub group_type: String,
    /// The coordinator.
    pub coordinator: Broker,
    /// Members.
    pub members: Vec<GroupMember>,
    /// Group epoch (KIP-848 groups only).
    pub group_epoch: Option<i32>,
    /// Target assignment epoch (KIP-848 groups only).
    pub assignment_epoch: Option<i32>,
}

impl GroupDescription {
    /// Whether the group exists (Kafka reports a missing group as `Dead`).
    pub fn exists(&self) -> bool {
        self.state != "Dead"
    }
}

fn group_id(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.to_owned()))
}

fn topic_partitions<'a>(
    parts: impl Iterator<Item = (&'a TopicName, &'a Vec<i32>)>,
) -> Vec<TopicPartition> {
    let mut out: Vec<TopicPartition> = parts
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.0.to_string(), *p)))
        .collect();
    out.sort();
    out
}

impl Admin {
    /// Runs `request` against the coordinator of `group`, finding it again and
    /// retrying while the error is retriable (coordinator moved or loading, lost
    /// connection), up to the request timeout.
    async fn on_coordinator<T, F, Fut>(&self, group: &str, mut request: F) -> Result<T>
    where
        F: FnMut(Broker, Arc<Connection>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let config = &self.client().config().connection;
        let deadline = Instant::now() + config.request_timeout;
        loop {
            let result = match self.client().group_coordinator(group).await {
                Ok((broker, conn)) => request(broker, conn).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tracing::debug!(%group, error = %e, "retrying at the group coordinator");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Every group of every broker (ListGroups), sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.list_groups_in(&[], &[]).await
    }

    /// The groups of every broker in one of `states` (`Stable`, `Empty`, …; any
    /// case) and of one of `types` (`classic`, `consumer`), sorted by id; an empty
    /// list keeps all. The broker filters (ListGroups v4 states, v5 types); a broker
    /// too old for a filter asked for is an UNSUPPORTED_VERSION error, as Kafka's
    /// admin client reports it.
    pub async fn list_groups_in(
        &self,
        states: &[String],
        types: &[String],
    ) -> Result<Vec<GroupListing>> {
        let md = self.client().refresh_metadata(Some(&[])).await?;
        let mut groups = BTreeMap::new();
        let mut req = ListGroupsRequest::default();
        req.states_filter = states
            .iter()
            .map(|s| StrBytes::from_string(s.clone()))
            .collect();
        req.types_filter = types
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect();
        for &node in md.brokers.keys() {
            let conn = self.client().broker(node).await?;
            let version = conn.version::<ListGroupsRequest>()?;
            if (version < 4 && !states.is_empty()) || (version < 5 && !types.is_empty()) {
                check(ResponseError::UnsupportedVersion.code(), None)?;
            }
            let resp = conn.send(&req).await?;
            check(resp.error_code, None)?;
            for g in resp.groups {
                let listing = GroupListing {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: (version >= 4).then(|| g.group_state.to_string()),
                    group_type: (version >= 5).then(|| g.group_type.to_string()),
                };
                groups.insert(listing.group_id.clone(), listing);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes groups, in the order given. KIP-848 (`consumer` type) groups are
    /// described with ConsumerGroupDescribe when the coordinator has it, classic ones
    /// with DescribeGroups, whose member assignments are decoded from the consumer
    /// protocol. A group that does not exist is described as `Dead`, as Kafka's admin
    /// client does.
    pub async fn describe_groups(&self, ids: &[String]) -> Result<Vec<GroupDescription>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.describe_group(id).await?);
        }
        Ok(out)
    }

    async fn describe_group(&self, id: &str) -> Result<GroupDescription> {
        self.on_coordinator(id, |coordinator, conn| async move {
            let has_848 = conn
                .versions(ApiKey::ConsumerGroupDescribe)
                .is_some_and(|v| !v.is_empty());
            if has_848 {
                let mut req = ConsumerGroupDescribeRequest::default();
                req.group_ids = vec![group_id(id)];
                let resp = conn.send(&req).await?;
                if let Some(d) = from_consumer_group_describe(resp, id, &coordinator)? {
                    return Ok(d);
                }
            }
            let mut req = DescribeGroupsRequest::default();
            req.groups = vec![group_id(id)];
            let resp = conn.send(&req).await?;
            from_describe_groups(resp, id, coordinator)
        })
        .await
    }

    /// The group's committed offsets of every partition (OffsetFetch with all topics).
    pub async fn list_group_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, CommittedOffset>> {
        self.on_coordinator(group, |_, conn| async move {
            fetch_offsets(&conn, group, None).await
        })
        .await
    }

    /// Sets the group's committed offsets (OffsetCommit without a member: generation
    /// -1, empty member id). Kafka accepts this only for a group without members; for
    /// an active group the coordinator answers e.g. UNKNOWN_MEMBER_ID. Fails with the
    /// first partition's error.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<()> {
        let req = offset_commit_request(group, -1, "", None, offsets);
        let resp = self
            .on_coordinator(group, |_, conn| {
                let req = &req;
                async move { conn.send(req).await }
            })
            .await?;
        for t in &resp.topics {
            for p in &t.partitions {
                if let Some(mut e) = KafkaError::from_code(p.error_code, None) {
                    e.message = Some(format!(
                        "Cannot commit the offset of {}-{} for group '{group}': {}",
                        t.name.0,
                        p.partition_index,
                        e.message.clone().unwrap_or_else(|| e.to_string())
                    ));
                    return Err(Error::Kafka(e));
                }
            }
        }
        Ok(())
    }

    /// Deletes groups (DeleteGroups); returns each group's own outcome, e.g.
    /// NON_EMPTY_GROUP or GROUP_ID_NOT_FOUND.
    pub async fn delete_groups(&self, ids: &[String]) -> Result<Vec<(String, Result<()>)>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let result = self
                .on_coordinator(id, |_, conn| async move {
                    let mut req = DeleteGroupsRequest::default();
                    req.groups_names = vec![group_id(id)];
                    let resp = conn.send(&req).await?;
                    let r = resp
                        .results
                        .iter()
                        .find(|r| r.group_id.0.as_str() == id)
                        .ok_or_else(|| {
                            Error::protocol(format!("DeleteGroups response has no result for {id}"))
                        })?;
                    check(r.error_code, None)
                })
                .await;
            out.push((id.clone(), result));
        }
        Ok(out)
    }

    /// Deletes the group's committed offsets of `partitions` (OffsetDelete). A
    /// group-level error (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, …) fails the call;
    /// otherwise each partition has its own outcome (e.g. GROUP_SUBSCRIBED_TO_TOPIC).
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let mut req = OffsetDeleteRequest::default();
        req.group_id = group_id(group);
        for (topic, partition) in partitions {
            let mut p = OffsetDeleteRequestPartition::default();
            p.partition_index = *partition;
            match req.topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = OffsetDeleteRequestTopic::default();
                    t.name = TopicName(StrBytes::from_string(topic.clone()));
                    t.partitions.push(p);
                    req.topics.push(t);
                }
            }
        }
        let resp = self
            .on_coordinator(group, |_, conn| {
                let req = &req;
                async move {
                    let resp = conn.send(req).await?;
                    check(resp.error_code, None)?;
                    Ok(resp)
                }
            })
            .await?;
        let mut out = Vec::new();
        for t in &resp.topics {
            for p in &t.partitions {
                out.push((
                    (t.name.0.to_string(), p.partition_index),
                    check(p.error_code, None),
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// A group from ConsumerGroupDescribe, or `None` when the coordinator says it is not
/// a KIP-848 group (GROUP_ID_NOT_FOUND), so DescribeGroups should be asked.
fn from_consumer_group_describe(
    resp: ConsumerGroupDescribeResponse,
    id: &str,
    coordinator: &Broker,
) -> Result<Option<GroupDescription>> {
    let Some(g) = resp
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == id)
    else {
        return Err(Error::protocol(format!(
            "ConsumerGroupDescribe response has no result for {id}"
        )));
    };
    if g.error_code == ResponseError::GroupIdNotFound.code() {
        return Ok(None);
    }
    check(g.error_code, g.error_message.as_deref())?;
    let assignment =
        |a: &kafka_protocol::messages::consumer_group_describe_response::Assignment| {
            topic_partitions(
                a.topic_partitions
                    .iter()
                    .map(|t| (&t.topic_name, &t.partitions)),
            )
        };
    let members = g
        .members
        .iter()
        .map(|m| GroupMember {
            member_id: m.member_id.to_string(),
            group_instance_id: m.instance_id.as_ref().map(|i| i.to_string()),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment: assignment(&m.assignment),
            target_assignment: Some(assignment(&m.target_assignment)),
            member_epoch: Some(m.member_epoch),
        })
        .collect();
    Ok(Some(GroupDescription {
        group_id: id.to_owned(),
        state: g.group_state.to_string(),
        protocol_type: crate::group::PROTOCOL_TYPE.to_owned(),
        assignor: g.assignor_name.to_string(),
        group_type: "consumer".to_owned(),
        coordinator: coordinator.clone(),
        members,
        group_epoch: Some(g.group_epoch),
        assignment_epoch: Some(g.assignment_epoch),
    }))
}

fn from_describe_groups(
    resp: DescribeGroupsResponse,
    id: &str,
    coordinator: Broker,
) -> Result<GroupDescription> {
    let Some(g) = resp
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == id)
    else {
        return Err(Error::protocol(format!(
            "DescribeGroups response has no result for {id}"
        )));
    };
    let missing = g.error_code == ResponseError::GroupIdNotFound.code();
    if !missing {
        check(g.error_code, g.error_message.as_deref())?;
    }
    let is_consumer = g.protocol_type.as_str() == crate::group::PROTOCOL_TYPE;
    let members = g
        .members
        .iter()
        .map(|m| {
            let assignment = if is_consumer {
                decode_assignment(m.member_assignment.clone()).unwrap_or_else(|e| {
                    tracing::debug!(member = %m.member_id, error = %e, "undecodable member assignment");
                    Vec::new()
                })
            } else {
                Vec::new()
            };
            GroupMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment,
                target_assignment: None,
                member_epoch: None,
            }
        })
        .collect();
    Ok(GroupDescription {
        group_id: id.to_owned(),
        state: if missing {
            "Dead".to_owned()
        } else {
            g.group_state.to_string()
        },
        protocol_type: g.protocol_type.to_string(),
        assignor: g.protocol_data.to_string(),
        group_type: "classic".to_owned(),
        coordinator,
        members,
        group_epoch: None,
        assignment_epoch: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_groups_response::{
        DescribedGroup, DescribedGroupMember,
    };

    fn broker() -> Broker {
        Broker {
            node_id: 1,
            host: "h".into(),
            port: 9092,
            rack: None,
        }
    }

    #[test]
    fn classic_members_show_the_partitions_of_their_consumer_protocol_assignment() {
        let mut m = DescribedGroupMember::default();
        m.member_id = StrBytes::from_static_str("m1");
        m.client_id = StrBytes::from_static_str("c1");
        m.client_host = StrBytes::from_static_str("/127.0.0.1");
        m.member_assignment =
            crate::group::encode_assignment(&[("t".to_owned(), 1), ("t".to_owned(), 0)])
                .expect("encodes");
        let mut g = DescribedGroup::default();
        g.group_id = group_id("g");
        g.group_state = StrBytes::from_static_str("Stable");
        g.protocol_type = StrBytes::from_static_str("consumer");
        g.protocol_data = StrBytes::from_static_str("range");
        g.members = vec![m];
        let mut resp = DescribeGroupsResponse::default();
        resp.groups = vec![g];
        let d = from_describe_groups(resp, "g", broker()).expect("described");
        assert_eq!(d.state, "Stable");
        assert_eq!(d.assignor, "range");
        assert_eq!(
            d.members[0].assignment,
            vec![("t".to_owned(), 0), ("t".to_owned(), 1)]
        );
        assert!(d.exists());
    }

    #[test]
    fn a_missing_group_is_described_as_dead() {
        let mut g = DescribedGroup::default();
        g.group_id = group_id("nope");
        g.error_code = ResponseError::GroupIdNotFound.code();
        let mut resp = DescribeGroupsResponse::default();
        resp.groups = vec![g];
        let d = from_describe_groups(resp, "nope", broker()).expect("described");
        assert_eq!(d.state, "Dead");
        assert!(!d.exists());
    }
}

//! Classic group membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and
//! group administration (ListGroups, DescribeGroups, DeleteGroups).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::{authorized_operations, str_bytes};
use crate::group::classic::{join_error as join_failed, Answer, ClassicGroup, JoinRequest};
use crate::config::GroupConfig;
use crate::group::{ClientInfo, GroupCoordinator, Membership};
use crate::{now_ms, Broker};

/// Waits for a deferred answer; a dropped sender means the group went away.
async fn wait<T>(answer: Answer<T>, gone: impl FnOnce() -> T) -> T {
    match answer {
        Answer::Now(v) => v,
        Answer::Later(rx) => rx.await.unwrap_or_else(|_| gone()),
    }
}

pub(crate) async fn join(broker: &Arc<Broker>, client: &ClientInfo, req: JoinGroupRequest, version: i16) -> JoinGroupResponse {
    if let Err(e) = broker.ensure_offsets_topic() {
        return join_failed(e.response_error(), &req.member_id);
    }
    let group_id = req.group_id.to_string();
    if group_id.is_empty() {
        return join_failed(ResponseError::InvalidGroupId, &req.member_id);
    }
    let create = req.member_id.is_empty();
    let answer = with_classic(
        broker,
        &group_id,
        create,
        |group, config, now| {
            let join = JoinRequest {
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: client.client_id.clone(),
                client_host: client.client_host.clone(),
                // v0 has no rebalance timeout: the session timeout serves.
                rebalance_timeout_ms: if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
                session_timeout_ms: req.session_timeout_ms,
                protocol_type: req.protocol_type.to_string(),
                protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
                require_known_member_id: version >= 4,
            };
            group.join(join, config, now)
        },
        |e| Answer::Now(join_failed(e, &req.member_id)),
    )
    .await;
    let mut resp = wait(answer, || join_failed(ResponseError::UnknownMemberId, &req.member_id)).await;
    if version < 7 && resp.protocol_name.is_none() {
        resp.protocol_name = Some(str_bytes(""));
    }
    resp
}

/// Runs `f` on a classic group (created empty if `create`) under its shard's
/// lock, stores what changed and waits until that is committed; `missing`
/// answers when the group is not served here, does not exist, or the change
/// could not be stored.
async fn with_classic<T>(
    broker: &Broker,
    group_id: &str,
    create: bool,
    f: impl FnOnce(&mut ClassicGroup, &GroupConfig, i64) -> T,
    missing: impl Fn(ResponseError) -> T,
) -> T {
    let now = now_ms();
    let coordinator = &broker.groups;
    let shard = match coordinator.shard(group_id) {
        Ok(shard) => shard,
        Err(e) => return missing(e),
    };
    let (out, pending) = {
        let mut groups = match shard.lock() {
            Ok(groups) => groups,
            Err(e) => return missing(e),
        };
        let out = match GroupCoordinator::classic_group(&mut groups, group_id, create, now) {
            Err(e) => return missing(e),
            Ok(group) => f(group, &coordinator.config, now),
        };
        match shard.finish_classic(&mut groups, group_id, now) {
            Ok(pending) => (out, pending),
            Err(e) => return missing(e),
        }
    };
    match pending {
        Some(pending) => match shard.settle_classic(group_id, pending, &coordinator.config, now).await {
            Ok(()) => out,
            Err(e) => missing(e),
        },
        None => out,
    }
}

pub(crate) async fn sync(broker: &Arc<Broker>, req: SyncGroupRequest) -> SyncGroupResponse {
    let failed = |e: ResponseError| SyncGroupResponse::default().with_error_code(e.code());
    if let Err(e) = broker.ensure_offsets_topic() {
        return failed(e.response_error());
    }
    let answer = with_classic(
        broker,
        &req.group_id,
        false,
        |group, _, now| {
            let assignments = req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
            group.sync(
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
                (req.protocol_type.as_deref(), req.protocol_name.as_deref()),
                assignments,
                now,
            )
        },
        |e| Answer::Now(failed(e)),
    )
    .await;
    wait(answer, || failed(ResponseError::UnknownMemberId)).await
}

pub(crate) async fn heartbeat(broker: &Arc<Broker>, req: HeartbeatRequest) -> HeartbeatResponse {
    let result = with_classic(
        broker,
        &req.group_id,
        false,
        |group, _, now| group.heartbeat(&req.member_id, req.group_instance_id.as_deref(), req.generation_id, now),
        Err,
    )
    .await;
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}

pub(crate) async fn leave(broker: &Arc<Broker>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        req.members.iter().map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string()))).collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results = with_classic(
        broker,
        &req.group_id,
        false,
        |group, config, now| {
            leaving
                .iter()
                .map(|(member, instance)| {
                    let (id, result) = group.leave(member, instance.as_deref(), config, now);
                    (id, instance.clone(), result)
                })
                .collect::<Vec<_>>()
        },
        |e| leaving.iter().map(|(m, i)| (m.clone(), i.clone(), Err(e))).collect(),
    )
    .await;
    if version < 3 {
        let code = results.first().and_then(|(_, _, r)| r.err()).map_or(0, |e| e.code());
        return LeaveGroupResponse::default().with_error_code(code);
    }
    LeaveGroupResponse::default().with_members(
        results
            .into_iter()
            .map(|(member, instance, result)| {
                MemberResponse::default()
                    .with_member_id(str_bytes(member))
                    .with_group_instance_id(instance.map(str_bytes))
                    .with_error_code(result.err().map_or(0, |e| e.code()))
            })
            .collect(),
    )
}

pub(crate) fn list(broker: &Arc<Broker>, req: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut listed: Vec<ListedGroup> = Vec::new();
    let served = broker.groups.each_group(|id, g| {
        let state_ok = states.is_empty() || states.contains(&g.state_name().to_lowercase());
        let type_ok = types.is_empty() || types.contains(&g.type_name().to_string());
        if state_ok && type_ok {
            listed.push(
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(id.to_string())))
                    .with_protocol_type(str_bytes(g.protocol_type()))
                    .with_group_state(str_bytes(g.state_name()))
                    .with_group_type(str_bytes(g.type_name())),
            );
        }
    });
    listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    ListGroupsResponse::default().with_error_code(served.err().map_or(0, |e| e.code())).with_groups(listed)
}

pub(crate) fn describe(broker: &Arc<Broker>, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let group_operations =
        authorized_operations::if_asked(req.include_authorized_operations, authorized_operations::GROUP);
    let described = req
        .groups
        .iter()
        .map(|id| {
            let base = DescribedGroup::default().with_group_id(id.clone());
            let shard = match broker.groups.shard(id) {
                Ok(shard) => Some(shard),
                // No __consumer_offsets yet: no group exists.
                Err(ResponseError::CoordinatorNotAvailable) => None,
                Err(e) => return base.with_error_code(e.code()),
            };
            let groups = match shard.as_ref().map(|s| s.lock()).transpose() {
                Ok(groups) => groups,
                Err(e) => return base.with_error_code(e.code()),
            };
            match groups.as_ref().and_then(|g| g.get(id.as_str())).map(|g| (g, &g.membership)) {
                None => {
                    // Kafka answers an unknown group as Dead; v6 adds the error.
                    let described = base.with_group_state(str_bytes("Dead"));
                    if version >= 6 {
                        described
                            .with_error_code(ResponseError::GroupIdNotFound.code())
                            .with_error_message(Some(str_bytes(format!("Group {} not found.", id.as_str()))))
                    } else {
                        described
                    }
                }
                Some((_, Membership::Consumer(_))) => {
                    let described = base.with_group_state(str_bytes("Dead"));
                    if version >= 6 {
                        described
                            .with_error_code(ResponseError::GroupIdNotFound.code())
                            .with_error_message(Some(str_bytes(format!("Group {} is not a classic group.", id.as_str()))))
                    } else {
                        described.with_error_code(ResponseError::GroupIdNotFound.code())
                    }
                }
                Some((g, Membership::Classic(classic))) => {
                    let stable = classic.state == crate::group::classic::ClassicState::Stable;
                    let protocol = classic.protocol.clone().unwrap_or_default();
                    let members = classic
                        .members
                        .values()
                        .map(|m| {
                            let member = DescribedGroupMember::default()
                                .with_member_id(str_bytes(m.id.clone()))
                                .with_group_instance_id(m.instance_id.clone().map(str_bytes))
                                .with_client_id(str_bytes(m.client_id.clone()))
                                .with_client_host(str_bytes(m.client_host.clone()));
                            if stable {
                                member.with_member_metadata(m.metadata(&protocol)).with_member_assignment(m.assignment.clone())
                            } else {
                                member
                            }
                        })
                        .collect();
                    base.with_group_state(str_bytes(g.state_name()))
                        .with_protocol_type(str_bytes(g.protocol_type()))
                        .with_protocol_data(str_bytes(if stable { protocol } else { String::new() }))
                        .with_members(members)
                }
            }
        })
        // KIP-430 (v3+): operations of the groups described without error.
        .map(|g: DescribedGroup| {
            let operations = if g.error_code == 0 { group_operations } else { authorized_operations::NOT_ASKED };
            g.with_authorized_operations(operations)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(described)
}

pub(crate) async fn delete(broker: &Arc<Broker>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.to_string()).collect();
    let results = broker.groups.delete_groups(&ids, now_ms()).await;
    DeleteGroupsResponse::default().with_results(
        results
            .into_iter()
            .map(|(id, result)| {
                DeletableGroupResult::default()
                    .with_group_id(GroupId(str_bytes(id)))
                    .with_error_code(result.err().map_or(0, |e| e.code()))
            })
            .collect(),
    )
}

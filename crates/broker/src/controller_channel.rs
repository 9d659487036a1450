//! The broker's channel to the active controller, as Kafka's
//! `NodeToControllerChannelManager`: Kafka requests sent to the CONTROLLER
//! listener of the voter that is the active controller.
//!
//! The active controller is the local quorum's leader when this node knows it
//! (a combined node: [`LeaderHint`]); otherwise the voters of
//! `controller.quorum.voters` are tried in turn. A controller that is not (or
//! no longer) active answers NOT_CONTROLLER: the channel drops the connection
//! and sends the request to the next voter, after `retry.backoff.ms`, until the
//! caller's deadline. One connection is kept and reused while it works; its API
//! versions are negotiated with ApiVersions when it opens
//! ([`client::Connection`]), and each request goes at the highest version both
//! sides speak. Several channels (heartbeats, ISR changes, forwarding) keep one
//! request each in flight, as Kafka's channel managers do.

use std::sync::Arc;
use std::time::Duration;

use client::{Connection, ConnectionConfig};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AllocateProducerIdsResponse, ApiKey, AlterConfigsResponse, AlterPartitionResponse, BrokerHeartbeatResponse,
    BrokerRegistrationResponse, CreatePartitionsResponse, CreateTopicsResponse, DeleteTopicsResponse,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::Request;
use thiserror::Error;
use tokio::time::Instant;

use crate::config::ServerConfig;

/// The active controller's id as the local quorum knows it, if it does (a
/// broker-only node has no local quorum: always None).
pub type LeaderHint = Arc<dyn Fn() -> Option<i32> + Send + Sync>;

/// Where and how the channel connects.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The voters: id and `host:port` of their CONTROLLER listener.
    pub voters: Vec<(i32, String)>,
    /// The `client.id` of the requests (Kafka: `<purpose>-channel` per node).
    pub client_id: String,
    /// `socket.connection.setup.timeout.ms`.
    pub connect_timeout: Duration,
    /// `request.timeout.ms`: how long one attempt waits for its response.
    pub request_timeout: Duration,
    /// `retry.backoff.ms`: the pause before the next attempt.
    pub retry_backoff: Duration,
}

impl ChannelConfig {
    /// The channel of `purpose` (e.g. "heartbeat") from the server config:
    /// the voters of `controller.quorum.voters`, Kafka's client timeouts.
    pub fn from_server(config: &ServerConfig, purpose: &str) -> ChannelConfig {
        let setting = |key: &str, default: u64| {
            config.given.get(key).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(default)
        };
        ChannelConfig {
            voters: config
                .kraft
                .voters
                .iter()
                .map(|v| {
                    // An IPv6 host goes back in brackets.
                    let host = if v.host.contains(':') { format!("[{}]", v.host) } else { v.host.clone() };
                    (v.id, format!("{host}:{}", v.port))
                })
                .collect(),
            client_id: format!("{purpose}-channel-manager-{}", config.node_id),
            connect_timeout: Duration::from_millis(setting("socket.connection.setup.timeout.ms", 10_000)),
            request_timeout: Duration::from_millis(setting("request.timeout.ms", 30_000)),
            retry_backoff: Duration::from_millis(setting("retry.backoff.ms", 100)),
        }
    }
}

/// Why a request did not get an answer from the active controller.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// No voters are configured.
    #[error("no controller.quorum.voters to send {0} to")]
    NoVoters(String),
    /// The controller speaks no version of the request's API that this broker does.
    #[error("{0}")]
    Unsupported(String),
    /// No active controller answered before the deadline.
    #[error("no active controller answered {api} within {waited:?} (last: {last})")]
    Timeout {
        /// The request's API.
        api: String,
        /// How long the channel tried.
        waited: Duration,
        /// The last failure seen.
        last: String,
    },
}

impl ChannelError {
    /// The Kafka error a client waiting on this request sees.
    pub fn response_error(&self) -> ResponseError {
        match self {
            ChannelError::NoVoters(_) => ResponseError::NotController,
            ChannelError::Unsupported(_) => ResponseError::UnsupportedVersion,
            ChannelError::Timeout { .. } => ResponseError::RequestTimedOut,
        }
    }
}

/// A controller response that can say "I am not the active controller".
pub trait ControllerReply {
    /// True if the controller answered NOT_CONTROLLER (anywhere in the response).
    fn not_controller(&self) -> bool;
}

fn is_not_controller(code: i16) -> bool {
    code == ResponseError::NotController.code()
}

macro_rules! top_level_error {
    ($($t:ty),*) => {$(
        impl ControllerReply for $t {
            fn not_controller(&self) -> bool {
                is_not_controller(self.error_code)
            }
        }
    )*};
}
top_level_error!(BrokerRegistrationResponse, BrokerHeartbeatResponse, AllocateProducerIdsResponse, AlterPartitionResponse);

macro_rules! error_in_any_of {
    ($($t:ty => $results:ident),*) => {$(
        impl ControllerReply for $t {
            fn not_controller(&self) -> bool {
                self.$results.iter().any(|r| is_not_controller(r.error_code))
            }
        }
    )*};
}
error_in_any_of!(
    CreateTopicsResponse => topics,
    DeleteTopicsResponse => responses,
    CreatePartitionsResponse => results,
    IncrementalAlterConfigsResponse => responses,
    AlterConfigsResponse => responses
);

/// The open connection and the voter it goes to.
struct Open {
    node: i32,
    connection: Connection,
}

/// How often a request in flight checks whether the quorum's leader moved.
const LEADER_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Which voter to try next.
#[derive(Default)]
struct Target {
    /// The index in `voters` of the next voter to try when no leader is known.
    next: usize,
    /// The last voter that answered NOT_CONTROLLER: the leader hint is not
    /// followed to it (a hint that lags would send every request there
    /// first) until another voter refuses.
    refused: Option<i32>,
}

/// Sends Kafka requests to the active controller (see the module doc).
pub struct ControllerChannel {
    config: ChannelConfig,
    leader_hint: LeaderHint,
    /// The connection, held by the request in flight (one at a time).
    open: tokio::sync::Mutex<Option<Open>>,
    target: parking_lot::Mutex<Target>,
}

impl ControllerChannel {
    /// A channel to the voters of `config`, following `leader_hint` when it knows the leader.
    pub fn new(config: ChannelConfig, leader_hint: LeaderHint) -> ControllerChannel {
        ControllerChannel {
            config,
            leader_hint,
            open: tokio::sync::Mutex::new(None),
            target: parking_lot::Mutex::new(Target::default()),
        }
    }

    /// `request.timeout.ms`: how long one attempt waits for its response.
    pub fn request_timeout(&self) -> Duration {
        self.config.request_timeout
    }

    /// The voter to send to now: the local quorum's leader unless it just
    /// refused, else the next voter in turn.
    fn choose(&self) -> Option<(i32, String)> {
        let voters = &self.config.voters;
        if voters.is_empty() {
            return None;
        }
        let mut target = self.target.lock();
        if let Some(leader) = (self.leader_hint)().filter(|l| Some(*l) != target.refused) {
            if let Some(v) = voters.iter().find(|(id, _)| *id == leader) {
                return Some(v.clone());
            }
        }
        // In turn, passing over the voter that just refused when there are others.
        for _ in 0..voters.len() {
            let chosen = &voters[target.next % voters.len()];
            target.next = (target.next + 1) % voters.len();
            if voters.len() == 1 || Some(chosen.0) != target.refused {
                return Some(chosen.clone());
            }
        }
        Some(voters[0].clone())
    }

    /// Sends `request` to the active controller and returns its answer,
    /// trying again (another voter after NOT_CONTROLLER, the same after a
    /// connection failure) every `retry.backoff.ms` until `deadline` passed.
    /// An answer with any other error is the caller's to judge.
    pub async fn send<R>(&self, request: &R, deadline: Duration) -> Result<R::Response, ChannelError>
    where
        R: Request,
        R::Response: ControllerReply,
    {
        self.send_version(request, None, deadline).await
    }

    /// As [`ControllerChannel::send`], encoded at `version` when given (a
    /// forwarded client request goes at the client's version): at the
    /// controller's highest if that is lower, Unsupported if the controller's
    /// lowest is higher.
    pub async fn send_version<R>(&self, request: &R, version: Option<i16>, deadline: Duration) -> Result<R::Response, ChannelError>
    where
        R: Request,
        R::Response: ControllerReply,
    {
        let api = api_name::<R>();
        let start = Instant::now();
        let mut last;
        loop {
            match self.attempt(request, version).await {
                Ok(None) => return Err(ChannelError::NoVoters(api)),
                Ok(Some((_, response))) if !response.not_controller() => return Ok(response),
                Ok(Some((node, _))) => {
                    last = format!("controller {node} is not the active controller");
                    self.target.lock().refused = Some(node);
                    *self.open.lock().await = None;
                }
                Err(Failure::Unsupported(reason)) => return Err(ChannelError::Unsupported(reason)),
                Err(Failure::Retriable(reason)) => last = reason,
            }
            if start.elapsed() + self.config.retry_backoff > deadline {
                return Err(ChannelError::Timeout { api, waited: start.elapsed(), last });
            }
            tokio::time::sleep(self.config.retry_backoff).await;
        }
    }

    /// One attempt: the response and the voter that gave it; Ok(None) if there
    /// are no voters, Err on a connection or protocol failure (the connection
    /// is dropped, so the next attempt reconnects).
    async fn attempt<R: Request>(&self, request: &R, version: Option<i16>) -> Result<Option<(i32, R::Response)>, Failure> {
        let mut open = self.open.lock().await;
        // A hint that moved to another voter moves the channel with it.
        let hinted = (self.leader_hint)().filter(|l| Some(*l) != self.target.lock().refused);
        let stale = match open.as_ref() {
            Some(o) => o.connection.is_closed() || hinted.is_some_and(|l| l != o.node),
            None => true,
        };
        if stale {
            *open = None;
            let Some((node, address)) = self.choose() else { return Ok(None) };
            let config = ConnectionConfig {
                client_id: self.config.client_id.clone(),
                connect_timeout: self.config.connect_timeout,
                request_timeout: self.config.request_timeout,
                ..ConnectionConfig::default()
            };
            let connection = Connection::connect(&address, config)
                .await
                .map_err(|e| Failure::Retriable(format!("controller {node} at {address}: {e}")))?;
            tracing::debug!(controller = node, %address, "connected to a controller");
            *open = Some(Open { node, connection });
        }
        let Some(o) = open.as_ref() else { return Ok(None) };
        let node = o.node;
        let exchange = async {
            match version {
                None => Ok(o.connection.send(request).await),
                Some(wanted) => match o.connection.versions(ApiKey::try_from(R::KEY).map_err(|()| Failure::Unsupported(api_name::<R>()))?) {
                    Some(range) if !range.is_empty() && wanted >= range.min => Ok(o.connection.send_version(request, wanted.min(range.max)).await),
                    _ => Err(Failure::Unsupported(format!(
                        "controller {node} at {} does not speak {} v{wanted}",
                        o.connection.addr(),
                        api_name::<R>()
                    ))),
                },
            }
        };
        // As Kafka's channel manager: when the quorum names another leader
        // while a request waits (this one paused, cut off or dead), the
        // request goes to the new one at once instead of waiting out
        // `request.timeout.ms` (a heartbeat stuck that long gets its broker fenced).
        let moved = async {
            loop {
                tokio::time::sleep(LEADER_CHECK_INTERVAL).await;
                if let Some(leader) = (self.leader_hint)().filter(|l| *l != node) {
                    return leader;
                }
            }
        };
        let sent = tokio::select! {
            sent = exchange => sent?,
            leader = moved => {
                let reason = format!("controller {node} at {}: the quorum's leader is now {leader}", o.connection.addr());
                *open = None;
                return Err(Failure::Retriable(reason));
            }
        };
        match sent {
            Ok(response) => Ok(Some((node, response))),
            Err(e) => {
                let reason = format!("controller {node} at {}: {e}", o.connection.addr());
                if matches!(e, client::Error::UnsupportedApi { .. }) {
                    return Err(Failure::Unsupported(reason));
                }
                *open = None;
                Err(Failure::Retriable(reason))
            }
        }
    }
}

/// Why one attempt failed.
enum Failure {
    /// Another attempt may succeed (connection lost, timeout).
    Retriable(String),
    /// No attempt will (no common version).
    Unsupported(String),
}

/// A name for log lines and errors.
fn api_name<R: Request>() -> String {
    match kafka_protocol::messages::ApiKey::try_from(R::KEY) {
        Ok(api) => format!("{api:?}"),
        Err(()) => format!("api key {}", R::KEY),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use kafka_protocol::messages::{BrokerHeartbeatRequest, BrokerId, BrokerRegistrationRequest};

    use super::*;
    use crate::controller_api::testing::TestController;

    fn channel(voters: Vec<(i32, String)>, hint: Option<i32>) -> ControllerChannel {
        let config = ChannelConfig {
            voters,
            client_id: "test".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(10),
        };
        ControllerChannel::new(config, Arc::new(move || hint))
    }

    fn registration(broker: i32) -> BrokerRegistrationRequest {
        BrokerRegistrationRequest::default().with_broker_id(BrokerId(broker))
    }

    #[tokio::test]
    async fn a_request_follows_not_controller_to_the_active_voter_and_keeps_its_connection() {
        let (one, two) = (TestController::start(false).await, TestController::start(true).await);
        // The local quorum still names voter 1, which is no longer active.
        let ch = channel(vec![(1, one.address.to_string()), (2, two.address.to_string())], Some(1));
        let answer = ch.send(&registration(7), Duration::from_secs(30)).await.expect("answered");
        assert_eq!((answer.error_code, answer.broker_epoch), (0, 1));
        assert_eq!(one.refused.load(Ordering::SeqCst), 1);
        assert_eq!(two.decisions.lock().registrations.len(), 1);
        for _ in 0..3 {
            let beat = BrokerHeartbeatRequest::default().with_broker_id(BrokerId(7)).with_broker_epoch(1);
            let answer = ch.send(&beat, Duration::from_secs(30)).await.expect("answered");
            assert_eq!(answer.error_code, 0);
        }
        assert_eq!(two.decisions.lock().heartbeats.len(), 3);
        assert_eq!(two.connections.load(Ordering::SeqCst), 1, "one connection, reused");
        assert_eq!(one.refused.load(Ordering::SeqCst), 1, "the refusing voter is not asked again");

        // Leadership moves back to voter 1.
        two.active.store(false, Ordering::SeqCst);
        one.active.store(true, Ordering::SeqCst);
        let answer = ch.send(&registration(8), Duration::from_secs(30)).await.expect("answered");
        assert_eq!((answer.error_code, answer.broker_epoch), (0, 1));
        assert_eq!(one.decisions.lock().registrations.len(), 1);
        assert_eq!(two.refused.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn without_a_leader_hint_the_voters_are_tried_in_turn_past_one_that_is_down() {
        let down = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let down_address = down.local_addr().expect("address").to_string();
        drop(down);
        let active = TestController::start(true).await;
        let ch = channel(vec![(1, down_address), (2, active.address.to_string())], None);
        let answer = ch.send(&registration(3), Duration::from_secs(30)).await.expect("answered");
        assert_eq!((answer.error_code, answer.broker_epoch), (0, 1));
        assert_eq!(active.decisions.lock().registrations[0].broker_id, BrokerId(3));
    }

    #[tokio::test]
    async fn no_active_controller_before_the_deadline_is_request_timed_out() {
        let (one, two) = (TestController::start(false).await, TestController::start(false).await);
        let ch = channel(vec![(1, one.address.to_string()), (2, two.address.to_string())], None);
        let error = ch.send(&registration(3), Duration::from_millis(200)).await.expect_err("no controller");
        assert_eq!(error.response_error(), ResponseError::RequestTimedOut);
        assert!(error.to_string().contains("is not the active controller"), "{error}");
        assert!(one.refused.load(Ordering::SeqCst) >= 1 && two.refused.load(Ordering::SeqCst) >= 1);
        let none = channel(Vec::new(), None);
        let error = none.send(&registration(3), Duration::from_secs(1)).await.expect_err("no voters");
        assert_eq!(error.response_error(), ResponseError::NotController);
    }
}

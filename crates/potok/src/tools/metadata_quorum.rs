//! `potok kafka-metadata-quorum` (Kafka's `kafka-metadata-quorum.sh`):
//! `describe --status` and `describe --replication` from DescribeQuorum, sent
//! to a broker (`--bootstrap-server`) or a controller (`--bootstrap-controller`),
//! printed as Kafka prints them. Only the active controller knows the
//! voters' positions; the tool asks each given address (and, through a broker,
//! each broker of the cluster) until the leader answers.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use client::{Client, ClientConfig, Connection, ConnectionConfig};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

/// Kafka's flags.
#[derive(clap::Args, Debug)]
pub(crate) struct MetadataQuorumArgs {
    /// A broker to connect to, HOST:PORT[,HOST:PORT...].
    #[arg(long = "bootstrap-server")]
    bootstrap_server: Option<String>,
    /// A controller to connect to, HOST:PORT[,HOST:PORT...].
    #[arg(long = "bootstrap-controller")]
    bootstrap_controller: Option<String>,
    /// A client properties file (accepted; nothing in it applies to plaintext listeners).
    #[arg(long = "command-config")]
    command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: QuorumCommand,
}

#[derive(clap::Subcommand, Debug)]
enum QuorumCommand {
    /// Describe the metadata quorum.
    Describe {
        /// The leader, epoch, high watermark, lag and voters.
        #[arg(long)]
        status: bool,
        /// Each voter's log end offset, lag and fetch times.
        #[arg(long)]
        replication: bool,
        /// With --replication: print human-readable times (accepted, shown as ms ago).
        #[arg(long = "human-readable")]
        human_readable: bool,
    },
}

/// What the leader answered, with the cluster id.
struct Described {
    cluster_id: String,
    leader: i32,
    epoch: i32,
    high_watermark: i64,
    voters: Vec<ReplicaState>,
    observers: Vec<ReplicaState>,
}

fn request() -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])])
}

/// The leader's answer from `addr`, or None if that node does not lead.
async fn ask(addr: &str) -> anyhow::Result<Option<(DescribeQuorumResponse, Connection)>> {
    let conn = Connection::connect(addr, ConnectionConfig::default()).await?;
    let response = conn.send(&request()).await?;
    if let Some(e) = client::KafkaError::from_code(response.error_code, response.error_message.as_deref()) {
        bail!("DescribeQuorum failed: {e}");
    }
    let partition = response.topics.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow!("empty DescribeQuorum answer"))?;
    Ok((partition.error_code == 0).then_some((response, conn)))
}

/// DescribeCluster's endpoint types: brokers (1) or controllers (2).
const BROKER_ENDPOINT: i8 = 1;
const CONTROLLER_ENDPOINT: i8 = 2;

async fn describe(addresses: Vec<String>, endpoint_type: i8) -> anyhow::Result<Described> {
    let mut last = anyhow!("no address to ask");
    for addr in &addresses {
        match ask(addr).await {
            Ok(Some((response, conn))) => {
                let cluster = conn.send(&DescribeClusterRequest::default().with_endpoint_type(endpoint_type)).await.context("DescribeCluster")?;
                let partition = response.topics.into_iter().next().and_then(|t| t.partitions.into_iter().next()).ok_or_else(|| anyhow!("empty answer"))?;
                return Ok(Described {
                    cluster_id: cluster.cluster_id.to_string(),
                    leader: partition.leader_id.0,
                    epoch: partition.leader_epoch,
                    high_watermark: partition.high_watermark,
                    voters: partition.current_voters,
                    observers: partition.observers,
                });
            }
            Ok(None) => last = anyhow!("{addr} is not the active controller"),
            Err(e) => last = e.context(format!("asking {addr}")),
        }
    }
    Err(last)
}

/// The brokers to ask through `bootstrap`: the given ones and every broker of the cluster.
async fn broker_addresses(bootstrap: &str) -> anyhow::Result<Vec<String>> {
    let client = Client::connect(ClientConfig::new(bootstrap)?).await?;
    let metadata = client.refresh_metadata(None).await?;
    let mut addresses = client::cluster::parse_bootstrap(bootstrap)?;
    let mut brokers: Vec<_> = metadata.brokers.values().collect();
    brokers.sort_by_key(|b| b.node_id);
    addresses.extend(brokers.iter().map(|b| b.addr()).filter(|a| !bootstrap.contains(a.as_str())));
    Ok(addresses)
}

pub(crate) async fn run(args: MetadataQuorumArgs) -> anyhow::Result<ExitCode> {
    let _ = &args.command_config;
    let (addresses, endpoint_type) = match (&args.bootstrap_server, &args.bootstrap_controller) {
        (Some(server), None) => (broker_addresses(server).await?, BROKER_ENDPOINT),
        (None, Some(controller)) => (client::cluster::parse_bootstrap(controller)?, CONTROLLER_ENDPOINT),
        _ => bail!("Only one of --bootstrap-server or --bootstrap-controller must be specified"),
    };
    let QuorumCommand::Describe { status, replication, human_readable } = args.command;
    if status == replication {
        bail!("One of --status or --replication must be specified with describe sub-command");
    }
    let described = describe(addresses, endpoint_type).await?;
    if status {
        print!("{}", status_text(&described));
    } else {
        print!("{}", replication_text(&described, human_readable, broker::now_ms()));
    }
    Ok(ExitCode::SUCCESS)
}

fn leader_state(d: &Described) -> Option<&ReplicaState> {
    d.voters.iter().find(|v| v.replica_id.0 == d.leader)
}

/// `describe --status`, as Kafka prints it.
fn status_text(d: &Described) -> String {
    let leader = leader_state(d);
    let leader_end = leader.map_or(-1, |l| l.log_end_offset);
    let followers: Vec<&ReplicaState> = d.voters.iter().chain(&d.observers).filter(|r| r.replica_id.0 != d.leader).collect();
    let laggiest = followers.iter().max_by_key(|r| leader_end - r.log_end_offset);
    let max_lag = laggiest.map_or(0, |r| (leader_end - r.log_end_offset).max(0));
    let max_lag_ms = match (leader, laggiest) {
        (Some(l), Some(r)) if r.last_caught_up_timestamp >= 0 && l.last_caught_up_timestamp >= 0 => {
            (l.last_caught_up_timestamp - r.last_caught_up_timestamp).max(0)
        }
        (_, Some(_)) => -1,
        _ => 0,
    };
    let ids = |rs: &[ReplicaState]| rs.iter().map(|r| r.replica_id.0.to_string()).collect::<Vec<_>>().join(",");
    format!(
        "ClusterId:              {}\nLeaderId:               {}\nLeaderEpoch:            {}\nHighWatermark:          {}\nMaxFollowerLag:         {max_lag}\nMaxFollowerLagTimeMs:   {max_lag_ms}\nCurrentVoters:          [{}]\nCurrentObservers:       [{}]\n",
        d.cluster_id,
        d.leader,
        d.epoch,
        d.high_watermark,
        ids(&d.voters),
        ids(&d.observers)
    )
}

/// `describe --replication`, as Kafka prints it: the leader first, then the
/// other voters, then observers.
fn replication_text(d: &Described, human_readable: bool, now_ms: i64) -> String {
    let leader_end = leader_state(d).map_or(-1, |l| l.log_end_offset);
    let time = |ms: i64| {
        if human_readable && ms >= 0 {
            format!("{} ms ago", (now_ms - ms).max(0))
        } else {
            ms.to_string()
        }
    };
    let mut rows = vec![["NodeId", "LogEndOffset", "Lag", "LastFetchTimestamp", "LastCaughtUpTimestamp", "Status"].map(String::from).to_vec()];
    let mut voters: Vec<&ReplicaState> = d.voters.iter().collect();
    voters.sort_by_key(|r| (r.replica_id.0 != d.leader, r.replica_id.0));
    for (replica, role) in voters.into_iter().map(|r| (r, if r.replica_id.0 == d.leader { "Leader" } else { "Follower" })).chain(d.observers.iter().map(|r| (r, "Observer"))) {
        rows.push(vec![
            replica.replica_id.0.to_string(),
            replica.log_end_offset.to_string(),
            (leader_end - replica.log_end_offset).max(0).to_string(),
            time(replica.last_fetch_timestamp),
            time(replica.last_caught_up_timestamp),
            role.to_string(),
        ]);
    }
    // Kafka's table: each column padded to its widest cell, tab-separated.
    let widths: Vec<usize> = (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("\t").trim_end());
        out.push('\n');
    }
    out
}

//! `potok cluster status`: the brokers (fenced or not), the controller, the
//! metadata quorum (when the broker serves DescribeQuorum) and the partitions
//! that need attention, in kafka-topics.sh's terms: under-replicated, under
//! min.insync.replicas, offline (no leader).

use std::fmt::Write as _;
use std::process::ExitCode;

use client::admin::TopicDescription;
use client::{Admin, ClusterDescription, Error, QuorumDescription};

use super::topics::{join, partition_shown, topic_configs, ReportFlags};
use super::DEFAULT_BOOTSTRAP;

/// `potok cluster` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    action: ClusterCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ClusterCommand {
    /// Brokers, controller, quorum and the partitions that need attention.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
}

pub(crate) async fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let ClusterCommand::Status(status) = args.action;
    let admin = Admin::connect(&status.bootstrap_server).await?;
    let cluster = admin.describe_cluster(true).await?;
    // Left out when the broker does not serve DescribeQuorum.
    let quorum = match admin.describe_quorum().await {
        Ok(quorum) => Some(quorum),
        Err(Error::UnsupportedApi { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let topics = admin.describe_all_topics(true).await?;
    let mut min_isr = Vec::with_capacity(topics.len());
    for t in &topics {
        min_isr.push(topic_configs(&admin, &t.name).await?.min_insync_replicas);
    }
    print!("{}", status_text(&cluster, quorum.as_ref(), &topics, &min_isr));
    Ok(ExitCode::SUCCESS)
}

/// The partitions of `topics` that `report` selects, as `topic-partition` lines.
fn selected(topics: &[TopicDescription], min_isr: &[i64], report: ReportFlags, live: &[i32]) -> Vec<String> {
    topics
        .iter()
        .zip(min_isr)
        .flat_map(|(t, &min)| {
            t.partitions.iter().filter(move |p| partition_shown(p, p.replicas.len(), min, &report, live)).map(move |p| {
                let leader = p.leader.map_or_else(|| "none".to_owned(), |l| l.to_string());
                format!("{}-{}\tLeader: {leader}\tReplicas: {}\tIsr: {}", t.name, p.partition, join(&p.replicas), join(&p.isr))
            })
        })
        .collect()
}

fn status_text(cluster: &ClusterDescription, quorum: Option<&QuorumDescription>, topics: &[TopicDescription], min_isr: &[i64]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ClusterId:\t{}", cluster.cluster_id);
    // The quorum's leader is the active controller; DescribeCluster names a broker for clients.
    let controller = quorum.map_or(cluster.controller_id, |q| q.leader_id);
    let _ = writeln!(out, "Controller:\t{}", if controller < 0 { "none".to_owned() } else { controller.to_string() });
    if let Some(q) = quorum {
        let leader_end = q.voters.iter().find(|v| v.id == q.leader_id).map_or(q.high_watermark, |v| v.log_end_offset);
        let lag = q.voters.iter().map(|v| (leader_end - v.log_end_offset).max(0)).max().unwrap_or(0);
        let voters = q.voters.iter().map(|v| v.id).collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "Quorum:\tleader {} epoch {} high watermark {} voters [{}] max follower lag {lag}",
            q.leader_id,
            q.leader_epoch,
            q.high_watermark,
            join(&voters)
        );
    }
    let fenced = cluster.brokers.iter().filter(|b| b.fenced).count();
    let _ = writeln!(out, "Brokers:\t{} ({} unfenced, {fenced} fenced)", cluster.brokers.len(), cluster.brokers.len() - fenced);
    for b in &cluster.brokers {
        let state = if b.fenced { "fenced" } else { "unfenced" };
        let rack = b.rack.as_deref().unwrap_or("none");
        let _ = writeln!(out, "\tBroker {}\t{}:{}\tRack: {rack}\t{state}", b.id, b.host, b.port);
    }
    let live: Vec<i32> = cluster.brokers.iter().filter(|b| !b.fenced).map(|b| b.id).collect();
    let sections = [
        ("Under-replicated partitions", ReportFlags { under_replicated_partitions: true, ..ReportFlags::default() }),
        ("Under-min-ISR partitions", ReportFlags { under_min_isr_partitions: true, ..ReportFlags::default() }),
        ("Offline partitions", ReportFlags { unavailable_partitions: true, ..ReportFlags::default() }),
    ];
    for (title, report) in sections {
        let lines = selected(topics, min_isr, report, &live);
        let _ = writeln!(out, "{title}:\t{}", lines.len());
        for line in lines {
            let _ = writeln!(out, "\t{line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use client::admin::PartitionDescription;
    use client::{BrokerDescription, QuorumReplica};
    use uuid::Uuid;

    use super::*;

    fn broker(id: i32, fenced: bool) -> BrokerDescription {
        BrokerDescription { id, host: "localhost".into(), port: 9090 + id, rack: (id == 1).then(|| "r1".into()), fenced }
    }

    fn partition(partition: i32, leader: Option<i32>, replicas: &[i32], isr: &[i32]) -> PartitionDescription {
        PartitionDescription { partition, leader, replicas: replicas.to_vec(), isr: isr.to_vec(), offline_replicas: vec![], elr: None, last_known_elr: None }
    }

    #[test]
    fn status_lists_brokers_quorum_and_the_partitions_needing_attention() {
        let cluster = ClusterDescription { cluster_id: "c".into(), controller_id: 2, brokers: vec![broker(1, false), broker(2, false), broker(3, true)] };
        let replica = |id, log_end_offset| QuorumReplica { id, log_end_offset, last_fetch_timestamp: -1, last_caught_up_timestamp: -1 };
        let quorum = QuorumDescription {
            leader_id: 1,
            leader_epoch: 7,
            high_watermark: 40,
            voters: vec![replica(1, 42), replica(2, 42), replica(3, 30)],
            observers: vec![],
        };
        let topics = [TopicDescription {
            name: "t".into(),
            id: Uuid::nil(),
            is_internal: false,
            partitions: vec![partition(0, Some(1), &[1, 2, 3], &[1, 2]), partition(1, None, &[3], &[]), partition(2, Some(2), &[2, 1], &[2, 1])],
        }];
        let text = status_text(&cluster, Some(&quorum), &topics, &[2]);
        assert_eq!(
            text,
            "ClusterId:\tc\n\
             Controller:\t1\n\
             Quorum:\tleader 1 epoch 7 high watermark 40 voters [1,2,3] max follower lag 12\n\
             Brokers:\t3 (2 unfenced, 1 fenced)\n\
             \tBroker 1\tlocalhost:9091\tRack: r1\tunfenced\n\
             \tBroker 2\tlocalhost:9092\tRack: none\tunfenced\n\
             \tBroker 3\tlocalhost:9093\tRack: none\tfenced\n\
             Under-replicated partitions:\t2\n\
             \tt-0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2\n\
             \tt-1\tLeader: none\tReplicas: 3\tIsr: \n\
             Under-min-ISR partitions:\t1\n\
             \tt-1\tLeader: none\tReplicas: 3\tIsr: \n\
             Offline partitions:\t1\n\
             \tt-1\tLeader: none\tReplicas: 3\tIsr: \n"
        );
        // Without DescribeQuorum: DescribeCluster's controller, no quorum line.
        let text = status_text(&cluster, None, &topics, &[2]);
        assert!(text.starts_with("ClusterId:\tc\nController:\t2\nBrokers:\t3"), "{text}");
    }
}

//! `potok topics create|list|describe|alter|delete`.

use std::fmt::Write as _;
use std::process::ExitCode;

use client::admin::{PartitionDescription, TopicDescription};
use client::{Admin, Error};
use kafka_protocol::error::ResponseError;

use super::encoding::kafka_uuid;
use super::{parse_key_value, DEFAULT_BOOTSTRAP};

/// `potok topics` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct TopicsArgs {
    #[command(subcommand)]
    action: TopicsCommand,
}

impl TopicsArgs {
    pub(crate) fn into_action(self) -> TopicsAction {
        match self.action {
            TopicsCommand::Create(a) => TopicsAction::Create {
                bootstrap: a.bootstrap_server,
                topic: a.topic,
                partitions: a.partitions,
                replication_factor: a.replication_factor,
                configs: a.config,
                if_not_exists: a.if_not_exists,
            },
            TopicsCommand::List(a) => TopicsAction::List {
                bootstrap: a.bootstrap_server,
                exclude_internal: a.exclude_internal,
            },
            TopicsCommand::Describe(a) => TopicsAction::Describe {
                bootstrap: a.bootstrap_server,
                topics: a.topic,
                exclude_internal: a.exclude_internal,
                report: a.report,
            },
            TopicsCommand::Alter(a) => TopicsAction::Alter {
                bootstrap: a.bootstrap_server,
                topic: a.topic,
                partitions: a.partitions,
                if_exists: a.if_exists,
            },
            TopicsCommand::Delete(a) => TopicsAction::Delete {
                bootstrap: a.bootstrap_server,
                topic: a.topic,
                if_exists: a.if_exists,
            },
        }
    }
}

#[derive(clap::Subcommand, Debug)]
enum TopicsCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names, one per line.
    List(ListArgs),
    /// Describe topics as kafka-topics.sh does.
    Describe(DescribeArgs),
    /// Raise a topic's partition count.
    Alter(AlterArgs),
    /// Delete a topic.
    Delete(DeleteArgs),
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
    /// Topic name.
    #[arg(long)]
    topic: String,
    /// Partition count (default: the broker's num.partitions).
    #[arg(long)]
    partitions: Option<i32>,
    /// Replication factor (default: the broker's default.replication.factor).
    #[arg(long)]
    replication_factor: Option<i16>,
    /// A topic config, key=value (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Succeed quietly if the topic already exists.
    #[arg(long)]
    if_not_exists: bool,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
    /// Leave out internal topics such as __consumer_offsets.
    #[arg(long)]
    exclude_internal: bool,
}

#[derive(clap::Args, Debug)]
struct DescribeArgs {
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
    /// Topic to describe (repeatable; default: all topics).
    #[arg(long)]
    topic: Vec<String>,
    /// Leave out internal topics when describing all.
    #[arg(long)]
    exclude_internal: bool,
    #[command(flatten)]
    report: ReportFlags,
}

/// kafka-topics.sh's describe filters.
#[derive(clap::Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReportFlags {
    /// Only partitions with fewer in-sync replicas than replicas.
    #[arg(long)]
    pub(crate) under_replicated_partitions: bool,
    /// Only partitions whose in-sync replica count is below min.insync.replicas (or without leader).
    #[arg(long)]
    pub(crate) under_min_isr_partitions: bool,
    /// Only partitions whose in-sync replica count equals min.insync.replicas.
    #[arg(long)]
    pub(crate) at_min_isr_partitions: bool,
    /// Only partitions whose leader is not available.
    #[arg(long)]
    pub(crate) unavailable_partitions: bool,
    /// Only topics with configs set on them, without their partitions.
    #[arg(long)]
    pub(crate) topics_with_overrides: bool,
}

impl ReportFlags {
    /// True if any partition filter is set (the topic lines are then left out).
    fn filters_partitions(&self) -> bool {
        self.under_replicated_partitions || self.under_min_isr_partitions || self.at_min_isr_partitions || self.unavailable_partitions
    }

    /// Kafka's refusal of `--topics-with-overrides` with a partition filter.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let filters = [
            (self.under_replicated_partitions, "under-replicated-partitions"),
            (self.under_min_isr_partitions, "under-min-isr-partitions"),
            (self.at_min_isr_partitions, "at-min-isr-partitions"),
            (self.unavailable_partitions, "unavailable-partitions"),
        ];
        if let Some((_, name)) = filters.iter().find(|(set, _)| *set).filter(|_| self.topics_with_overrides) {
            anyhow::bail!("Option \"[{name}]\" can't be used with option \"[topics-with-overrides]\"");
        }
        Ok(())
    }
}

#[derive(clap::Args, Debug)]
struct AlterArgs {
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
    /// Topic name.
    #[arg(long)]
    topic: String,
    /// The new (higher) partition count.
    #[arg(long)]
    partitions: i32,
    /// Succeed quietly if the topic does not exist.
    #[arg(long)]
    if_exists: bool,
}

#[derive(clap::Args, Debug)]
struct DeleteArgs {
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
    /// Topic name.
    #[arg(long)]
    topic: String,
    /// Succeed quietly if the topic does not exist.
    #[arg(long)]
    if_exists: bool,
}

/// What a topics command does, whichever spelling (`potok topics`, `kafka-topics`) asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopicsAction {
    Create {
        bootstrap: String,
        topic: String,
        partitions: Option<i32>,
        replication_factor: Option<i16>,
        /// Raw `key=value` strings, checked when run.
        configs: Vec<String>,
        if_not_exists: bool,
    },
    List {
        bootstrap: String,
        exclude_internal: bool,
    },
    Describe {
        bootstrap: String,
        /// Empty: every topic.
        topics: Vec<String>,
        exclude_internal: bool,
        report: ReportFlags,
    },
    Alter {
        bootstrap: String,
        topic: String,
        partitions: i32,
        if_exists: bool,
    },
    Delete {
        bootstrap: String,
        topic: String,
        if_exists: bool,
    },
    /// `kafka-topics.sh --alter --config k=v` (old Kafka's way; kafka-configs.sh's job).
    AlterConfigs {
        bootstrap: String,
        topic: String,
        /// Raw `key=value` strings.
        configs: Vec<String>,
    },
}

impl TopicsAction {
    fn bootstrap(&self) -> &str {
        match self {
            TopicsAction::Create { bootstrap, .. }
            | TopicsAction::List { bootstrap, .. }
            | TopicsAction::Describe { bootstrap, .. }
            | TopicsAction::Alter { bootstrap, .. }
            | TopicsAction::Delete { bootstrap, .. }
            | TopicsAction::AlterConfigs { bootstrap, .. } => bootstrap,
        }
    }
}

fn is_code(e: &Error, code: ResponseError) -> bool {
    e.kafka_code() == Some(code)
}

pub(crate) async fn run(action: TopicsAction) -> anyhow::Result<ExitCode> {
    let bootstrap = action.bootstrap().to_owned();
    let admin = Admin::connect(&bootstrap).await?;
    match action {
        TopicsAction::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
            ..
        } => {
            let configs = configs
                .iter()
                .map(|c| parse_key_value(c, "--config"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let result = admin
                .create_topic(
                    &topic,
                    partitions.unwrap_or(-1),
                    replication_factor.unwrap_or(-1),
                    configs,
                    false,
                )
                .await;
            match result {
                Ok(()) => println!("Created topic {topic}."),
                Err(e) if if_not_exists && is_code(&e, ResponseError::TopicAlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        TopicsAction::List {
            exclude_internal, ..
        } => {
            for name in admin.list_topics(!exclude_internal).await? {
                println!("{name}");
            }
        }
        TopicsAction::Describe {
            topics,
            exclude_internal,
            report,
            ..
        } => {
            report.check()?;
            let described = if topics.is_empty() {
                admin.describe_all_topics(!exclude_internal).await?
            } else {
                admin.describe_topics(&topics).await?
            };
            // As kafka-topics.sh: a leader is available if it is a live (unfenced) broker.
            let live: Vec<i32> = admin.describe_cluster(false).await?.brokers.iter().map(|b| b.id).collect();
            for t in &described {
                let configs = topic_configs(&admin, &t.name).await?;
                print!("{}", describe_text(t, &configs, &report, &live));
            }
        }
        TopicsAction::Alter {
            topic,
            partitions,
            if_exists,
            ..
        } => match admin.create_partitions(&topic, partitions, false).await {
            Ok(()) => {}
            Err(e) if if_exists && is_code(&e, ResponseError::UnknownTopicOrPartition) => {}
            Err(e) => return Err(e.into()),
        },
        TopicsAction::AlterConfigs { topic, configs, .. } => {
            super::configs::set_topic_configs(&admin, &topic, &configs).await?;
            println!("Updated config for topic {topic}.");
        }
        TopicsAction::Delete {
            topic, if_exists, ..
        } => match admin.delete_topic(&topic).await {
            Ok(()) => {}
            Err(e) if if_exists && is_code(&e, ResponseError::UnknownTopicOrPartition) => {}
            Err(e) => return Err(e.into()),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// A topic's configs as kafka-topics.sh uses them: those not at their
/// built-in default (shown), and `min.insync.replicas` (for the ISR filters).
pub(crate) struct TopicConfigs {
    shown: Vec<(String, String)>,
    pub(crate) min_insync_replicas: i64,
}

pub(crate) async fn topic_configs(admin: &Admin, topic: &str) -> anyhow::Result<TopicConfigs> {
    let entries = match admin.describe_configs(topic).await {
        Ok(entries) => entries,
        // A broker without DescribeConfigs still gets its topics described.
        Err(Error::UnsupportedApi { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let min_insync_replicas = entries
        .iter()
        .find(|c| c.name == "min.insync.replicas")
        .and_then(|c| c.value.as_deref()?.parse().ok())
        .unwrap_or(1);
    let shown = entries
        .into_iter()
        .filter(|c| !c.is_default())
        .filter_map(|c| {
            let value = if c.sensitive { Some("<sensitive>".to_owned()) } else { c.value };
            value.map(|v| (c.name, v))
        })
        .collect();
    Ok(TopicConfigs { shown, min_insync_replicas })
}

pub(crate) fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// `Elr` / `LastKnownElr` as kafka-topics.sh prints them: `N/A` when the
/// broker did not say (described through Metadata).
fn join_known(ids: Option<&[i32]>) -> String {
    ids.map_or_else(|| "N/A".to_owned(), join)
}

/// Whether kafka-topics.sh prints partition `p` under `report` (Kafka's
/// `DescribeOptions.shouldPrintTopicPartition`).
pub(crate) fn partition_shown(p: &PartitionDescription, replication_factor: usize, min_isr: i64, report: &ReportFlags, live: &[i32]) -> bool {
    let isr = p.isr.len() as i64;
    let has_leader = p.leader.is_some();
    !report.filters_partitions()
        || (report.under_replicated_partitions && replication_factor > p.isr.len())
        || (report.unavailable_partitions && !p.leader.is_some_and(|l| live.contains(&l)))
        || (report.under_min_isr_partitions && (!has_leader || isr < min_isr))
        || (report.at_min_isr_partitions && isr == min_isr)
}

/// Kafka's `kafka-topics.sh --describe` text for one topic: the topic line
/// (unless a partition filter is set; with --topics-with-overrides only if it
/// has configs set, and then no partitions), then each partition shown.
fn describe_text(t: &TopicDescription, configs: &TopicConfigs, report: &ReportFlags, live: &[i32]) -> String {
    let mut out = String::new();
    if !report.filters_partitions() && (!report.topics_with_overrides || !configs.shown.is_empty()) {
        let shown = configs.shown.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let _ = write!(out, "Topic: {}", t.name);
        if !t.id.is_nil() {
            let _ = write!(out, "\tTopicId: {}", kafka_uuid(&t.id));
        }
        let _ = writeln!(
            out,
            "\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {shown}",
            t.partitions.len(),
            t.replication_factor()
        );
    }
    if report.topics_with_overrides {
        return out;
    }
    for p in t.partitions.iter().filter(|p| partition_shown(p, p.replicas.len(), configs.min_insync_replicas, report, live)) {
        let leader = p.leader.map_or_else(|| "none".to_owned(), |l| l.to_string());
        let _ = writeln!(
            out,
            "\tTopic: {}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}\tElr: {}\tLastKnownElr: {}",
            t.name,
            p.partition,
            join(&p.replicas),
            join(&p.isr),
            join_known(p.elr.as_deref()),
            join_known(p.last_known_elr.as_deref()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn partition(partition: i32, leader: Option<i32>, replicas: &[i32], isr: &[i32], elr: Option<&[i32]>) -> PartitionDescription {
        PartitionDescription {
            partition,
            leader,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline_replicas: vec![],
            elr: elr.map(<[i32]>::to_vec),
            last_known_elr: elr.map(|_| vec![]),
        }
    }

    fn topic() -> TopicDescription {
        TopicDescription {
            name: "x".into(),
            id: Uuid::nil(),
            is_internal: false,
            partitions: vec![
                partition(0, Some(1), &[1, 2, 3], &[1, 2, 3], Some(&[])),
                partition(1, None, &[2, 1, 3], &[], Some(&[2])),
                partition(2, Some(3), &[3, 1, 2], &[3, 1], Some(&[])),
                partition(3, Some(2), &[2, 3, 1], &[2], None),
            ],
        }
    }

    fn configs(shown: &[(&str, &str)], min_insync_replicas: i64) -> TopicConfigs {
        TopicConfigs { shown: shown.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), min_insync_replicas }
    }

    fn shown_partitions(report: ReportFlags, live: &[i32]) -> Vec<String> {
        let text = describe_text(&topic(), &configs(&[], 2), &report, live);
        text.lines().map(|l| l.split('\t').nth(2).unwrap_or(l).to_owned()).collect()
    }

    #[test]
    fn describe_prints_kafka_topics_layout() {
        let mut t = topic();
        t.id = Uuid::from_u128(1);
        let text = describe_text(&t, &configs(&[("cleanup.policy", "compact"), ("retention.ms", "1")], 2), &ReportFlags::default(), &[1, 2, 3]);
        assert_eq!(
            text,
            "Topic: x\tTopicId: AAAAAAAAAAAAAAAAAAAAAQ\tPartitionCount: 4\tReplicationFactor: 3\tConfigs: cleanup.policy=compact,retention.ms=1\n\
             \tTopic: x\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\tElr: \tLastKnownElr: \n\
             \tTopic: x\tPartition: 1\tLeader: none\tReplicas: 2,1,3\tIsr: \tElr: 2\tLastKnownElr: \n\
             \tTopic: x\tPartition: 2\tLeader: 3\tReplicas: 3,1,2\tIsr: 3,1\tElr: \tLastKnownElr: \n\
             \tTopic: x\tPartition: 3\tLeader: 2\tReplicas: 2,3,1\tIsr: 2\tElr: N/A\tLastKnownElr: N/A\n"
        );
        // No topic id: the column is left out, as Kafka does for Uuid.ZERO_UUID.
        let text = describe_text(&topic(), &configs(&[], 1), &ReportFlags::default(), &[1, 2, 3]);
        assert!(text.starts_with("Topic: x\tPartitionCount: 4\tReplicationFactor: 3\tConfigs: \n"), "{text}");
    }

    #[test]
    fn the_report_flags_show_only_their_partitions_and_no_topic_line() {
        let flags = |f: fn(&mut ReportFlags)| {
            let mut report = ReportFlags::default();
            f(&mut report);
            report
        };
        let live = [1, 2, 3];
        assert_eq!(shown_partitions(flags(|r| r.under_replicated_partitions = true), &live), ["Partition: 1", "Partition: 2", "Partition: 3"]);
        // min.insync.replicas 2: ISR of 0 (no leader) and 1 are under, 2 is at.
        assert_eq!(shown_partitions(flags(|r| r.under_min_isr_partitions = true), &live), ["Partition: 1", "Partition: 3"]);
        assert_eq!(shown_partitions(flags(|r| r.at_min_isr_partitions = true), &live), ["Partition: 2"]);
        assert_eq!(shown_partitions(flags(|r| r.unavailable_partitions = true), &live), ["Partition: 1"]);
        // A leader that is not a live broker is unavailable too.
        assert_eq!(shown_partitions(flags(|r| r.unavailable_partitions = true), &[1, 2]), ["Partition: 1", "Partition: 2"]);
        // Filters combine as "any of".
        let both = flags(|r| {
            r.at_min_isr_partitions = true;
            r.unavailable_partitions = true;
        });
        assert_eq!(shown_partitions(both, &live), ["Partition: 1", "Partition: 2"]);
    }

    #[test]
    fn topics_with_overrides_shows_only_topics_with_configs_set_without_partitions() {
        let report = ReportFlags { topics_with_overrides: true, ..ReportFlags::default() };
        assert_eq!(describe_text(&topic(), &configs(&[], 1), &report, &[1]), "");
        let text = describe_text(&topic(), &configs(&[("retention.ms", "1")], 1), &report, &[1]);
        assert_eq!(text, "Topic: x\tPartitionCount: 4\tReplicationFactor: 3\tConfigs: retention.ms=1\n");
        let both = ReportFlags { unavailable_partitions: true, ..report };
        let refused = both.check().expect_err("refused").to_string();
        assert_eq!(refused, "Option \"[unavailable-partitions]\" can't be used with option \"[topics-with-overrides]\"");
    }
}

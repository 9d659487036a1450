//! `potok topics create|list|describe|alter|delete`.

use std::fmt::Write as _;
use std::process::ExitCode;

use client::admin::TopicDescription;
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
            ..
        } => {
            let described = if topics.is_empty() {
                admin.describe_all_topics(!exclude_internal).await?
            } else {
                admin.describe_topics(&topics).await?
            };
            for t in &described {
                let configs = shown_configs(&admin, &t.name).await?;
                print!("{}", describe_text(t, &configs));
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

/// The configs kafka-topics.sh shows: those not at their built-in default.
async fn shown_configs(admin: &Admin, topic: &str) -> anyhow::Result<Vec<(String, String)>> {
    match admin.describe_configs(topic).await {
        Ok(entries) => Ok(entries
            .into_iter()
            .filter(|c| !c.is_default())
            .filter_map(|c| {
                let value = if c.sensitive {
                    Some("<sensitive>".to_owned())
                } else {
                    c.value
                };
                value.map(|v| (c.name, v))
            })
            .collect()),
        // A broker without DescribeConfigs still gets its topics described.
        Err(Error::UnsupportedApi { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Kafka's `kafka-topics.sh --describe` text for one topic.
fn describe_text(t: &TopicDescription, configs: &[(String, String)]) -> String {
    let configs = configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut out = format!(
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
        t.name,
        kafka_uuid(&t.id),
        t.partitions.len(),
        t.replication_factor(),
        configs
    );
    for p in &t.partitions {
        let leader = p
            .leader
            .map_or_else(|| "none".to_owned(), |l| l.to_string());
        let _ = write!(
            out,
            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
            t.name,
            p.partition,
            leader,
            join(&p.replicas),
            join(&p.isr)
        );
        if !p.offline_replicas.is_empty() {
            let _ = write!(out, "\tOffline: {}", join(&p.offline_replicas));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::admin::PartitionDescription;
    use uuid::Uuid;

    #[test]
    fn describe_prints_kafka_topics_layout() {
        let t = TopicDescription {
            name: "x".into(),
            id: Uuid::nil(),
            is_internal: false,
            partitions: vec![
                PartitionDescription {
                    partition: 0,
                    leader: Some(1),
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    offline_replicas: vec![],
                },
                PartitionDescription {
                    partition: 1,
                    leader: None,
                    replicas: vec![2, 1],
                    isr: vec![],
                    offline_replicas: vec![2],
                },
            ],
        };
        let text = describe_text(
            &t,
            &[
                ("cleanup.policy".into(), "compact".into()),
                ("retention.ms".into(), "1".into()),
            ],
        );
        assert_eq!(
            text,
            "Topic: x\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: 2\tReplicationFactor: 2\tConfigs: cleanup.policy=compact,retention.ms=1\n\
             \tTopic: x\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2\n\
             \tTopic: x\tPartition: 1\tLeader: none\tReplicas: 2,1\tIsr: \tOffline: 2\n"
        );
    }
}

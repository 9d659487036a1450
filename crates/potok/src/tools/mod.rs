//! The command-line tools: `potok topics|cluster|produce|consume|groups|configs|log-dirs|perf`
//! and Kafka's script names.
//!
//! Each tool parses its flags into an options struct (`topics::TopicsAction`,
//! `produce::ProduceOptions`, `consume::ConsumeOptions`, `groups::GroupsAction`); the
//! Kafka-named tools in
//! `kafka` only translate Kafka's flags into the same structs, so both spellings run
//! the same code.

mod cluster;
mod configs;
mod consume;
mod dump_log;
mod encoding;
mod groups;
mod kafka;
mod log_tools;
mod perf;
mod produce;
mod metadata_quorum;
mod storage;
mod topics;

use std::process::ExitCode;

/// The broker address every tool uses unless told otherwise.
pub(crate) const DEFAULT_BOOTSTRAP: &str = "localhost:9092";

/// Tool subcommands, flattened into the `potok` command.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum ToolCommand {
    /// Create, list, describe, alter or delete topics.
    Topics(Box<topics::TopicsArgs>),
    /// The cluster's brokers, controller, quorum and partitions needing attention.
    Cluster(Box<cluster::ClusterArgs>),
    /// Produce one record per line of standard input.
    Produce(Box<produce::ProduceArgs>),
    /// Print records of a topic.
    Consume(Box<consume::ConsumeArgs>),
    /// List, describe, reset offsets of, or delete consumer groups.
    Groups(Box<groups::GroupsArgs>),
    /// Show the brokers' log dirs: partition sizes and free space.
    LogDirs(Box<log_tools::LogDirsArgs>),
    /// Measure produce or consume throughput and latency.
    Perf(Box<perf::PerfArgs>),
    /// Kafka's kafka-delete-records.sh, with its flags.
    #[command(name = "kafka-delete-records", hide = true)]
    KafkaDeleteRecords(Box<log_tools::KafkaDeleteRecordsArgs>),
    /// Kafka's kafka-log-dirs.sh, with its flags.
    #[command(name = "kafka-log-dirs", hide = true)]
    KafkaLogDirs(Box<log_tools::KafkaLogDirsArgs>),
    /// Kafka's kafka-get-offsets.sh, with its flags.
    #[command(name = "kafka-get-offsets", hide = true)]
    KafkaGetOffsets(Box<log_tools::KafkaGetOffsetsArgs>),
    /// Kafka's kafka-dump-log.sh, with its flags.
    #[command(name = "kafka-dump-log", hide = true)]
    KafkaDumpLog(Box<dump_log::KafkaDumpLogArgs>),
    /// Kafka's kafka-producer-perf-test.sh, with its flags.
    #[command(name = "kafka-producer-perf-test", hide = true)]
    KafkaProducerPerfTest(Box<perf::ProducerPerfArgs>),
    /// Kafka's kafka-consumer-perf-test.sh, with its flags.
    #[command(name = "kafka-consumer-perf-test", hide = true)]
    KafkaConsumerPerfTest(Box<perf::ConsumerPerfArgs>),
    /// Describe or change topic and broker configs, live.
    Configs(Box<configs::ConfigsArgs>),
    /// Kafka's kafka-configs.sh, with its flags.
    #[command(name = "kafka-configs", hide = true)]
    KafkaConfigs(Box<configs::KafkaConfigsArgs>),
    /// Kafka's kafka-topics.sh, with its flags.
    #[command(name = "kafka-topics", hide = true)]
    KafkaTopics(Box<kafka::KafkaTopicsArgs>),
    /// Kafka's kafka-console-producer.sh, with its flags.
    #[command(name = "kafka-console-producer", hide = true)]
    KafkaConsoleProducer(Box<kafka::KafkaConsoleProducerArgs>),
    /// Kafka's kafka-console-consumer.sh, with its flags.
    #[command(name = "kafka-console-consumer", hide = true)]
    KafkaConsoleConsumer(Box<kafka::KafkaConsoleConsumerArgs>),
    /// Kafka's kafka-consumer-groups.sh, with its flags.
    #[command(name = "kafka-consumer-groups", hide = true)]
    KafkaConsumerGroups(Box<kafka::KafkaConsumerGroupsArgs>),
    /// Kafka's kafka-storage.sh: random-uuid, format, info.
    #[command(name = "kafka-storage", subcommand, hide = true)]
    KafkaStorage(storage::StorageCommand),
    /// Kafka's kafka-metadata-quorum.sh: describe --status | --replication.
    #[command(name = "kafka-metadata-quorum", hide = true)]
    KafkaMetadataQuorum(Box<metadata_quorum::MetadataQuorumArgs>),
}

pub(crate) fn run(cmd: ToolCommand) -> anyhow::Result<ExitCode> {
    // Local files only: no runtime, no client.
    if let ToolCommand::KafkaStorage(cmd) = cmd {
        return Ok(storage::run(cmd));
    }
    // Tools print their own messages; client logs only when asked (POTOK_LOG=debug).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("POTOK_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    // Reads files only: no runtime needed.
    if let ToolCommand::KafkaDumpLog(args) = cmd {
        return dump_log::run(*args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match cmd {
            ToolCommand::Topics(args) => topics::run(args.into_action()).await,
            ToolCommand::Cluster(args) => cluster::run(*args).await,
            ToolCommand::Produce(args) => produce::run(args.into_options()?).await,
            ToolCommand::Consume(args) => consume::run(args.into_options()?).await,
            ToolCommand::Groups(args) => {
                groups::run(args.into_action()?, groups::ReportedErrors::Fail).await
            }
            ToolCommand::LogDirs(args) => log_tools::log_dirs(*args).await,
            ToolCommand::Perf(args) => args.run().await,
            ToolCommand::KafkaDeleteRecords(args) => log_tools::delete_records(*args).await,
            ToolCommand::KafkaLogDirs(args) => log_tools::kafka_log_dirs(*args).await,
            ToolCommand::KafkaGetOffsets(args) => log_tools::get_offsets(*args).await,
            ToolCommand::KafkaDumpLog(args) => dump_log::run(*args),
            ToolCommand::KafkaProducerPerfTest(args) => perf::producer_perf(*args).await,
            ToolCommand::KafkaConsumerPerfTest(args) => perf::consumer_perf(*args).await,
            ToolCommand::Configs(args) => configs::run(args.into_action()?).await,
            ToolCommand::KafkaConfigs(args) => {
                let (action, notes) = args.translate()?;
                for note in &notes {
                    eprintln!("{note}");
                }
                configs::run(action).await
            }
            ToolCommand::KafkaTopics(args) => {
                let translated = args.translate()?;
                for note in &translated.notes {
                    eprintln!("{note}");
                }
                topics::run(translated.action).await
            }
            ToolCommand::KafkaConsoleProducer(args) => {
                let translated = args.translate()?;
                for note in &translated.notes {
                    eprintln!("{note}");
                }
                produce::run(translated.options).await
            }
            ToolCommand::KafkaConsoleConsumer(args) => {
                let translated = args.translate()?;
                for note in &translated.notes {
                    eprintln!("{note}");
                }
                consume::run(translated.options).await
            }
            ToolCommand::KafkaConsumerGroups(args) => {
                let translated = args.translate()?;
                for note in &translated.notes {
                    eprintln!("{note}");
                }
                groups::run(translated.options, groups::ReportedErrors::Succeed).await
            }
            ToolCommand::KafkaStorage(cmd) => Ok(storage::run(cmd)),
            ToolCommand::KafkaMetadataQuorum(args) => metadata_quorum::run(*args).await,
        }
    });
    // Do not wait for a thread still blocked reading standard input.
    runtime.shutdown_background();
    result
}

/// Splits `key=value`; a missing `=` is an error naming the flag.
pub(crate) fn parse_key_value(s: &str, flag: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => anyhow::bail!("{flag} expects key=value, got {s:?}"),
    }
}

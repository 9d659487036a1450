//! The command-line tools: `potok topics|produce|consume|groups|configs` and Kafka's script
//! names.
//!
//! Each tool parses its flags into an options struct (`topics::TopicsAction`,
//! `produce::ProduceOptions`, `consume::ConsumeOptions`, `groups::GroupsAction`); the
//! Kafka-named tools in
//! `kafka` only translate Kafka's flags into the same structs, so both spellings run
//! the same code.

mod configs;
mod consume;
mod encoding;
mod groups;
mod kafka;
mod produce;
mod topics;

use std::process::ExitCode;

/// The broker address every tool uses unless told otherwise.
pub(crate) const DEFAULT_BOOTSTRAP: &str = "localhost:9092";

/// Tool subcommands, flattened into the `potok` command.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum ToolCommand {
    /// Create, list, describe, alter or delete topics.
    Topics(Box<topics::TopicsArgs>),
    /// Produce one record per line of standard input.
    Produce(Box<produce::ProduceArgs>),
    /// Print records of a topic.
    Consume(Box<consume::ConsumeArgs>),
    /// List, describe, reset offsets of, or delete consumer groups.
    Groups(Box<groups::GroupsArgs>),
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
}

pub(crate) fn run(cmd: ToolCommand) -> anyhow::Result<ExitCode> {
    // Tools print their own messages; client logs only when asked (POTOK_LOG=debug).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("POTOK_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cmd {
            ToolCommand::Topics(args) => topics::run(args.into_action()).await,
            ToolCommand::Produce(args) => produce::run(args.into_options()?).await,
            ToolCommand::Consume(args) => consume::run(args.into_options()?).await,
            ToolCommand::Groups(args) => {
                groups::run(args.into_action()?, groups::ReportedErrors::Fail).await
            }
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
        }
    })
}

/// Splits `key=value`; a missing `=` is an error naming the flag.
pub(crate) fn parse_key_value(s: &str, flag: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => anyhow::bail!("{flag} expects key=value, got {s:?}"),
    }
}

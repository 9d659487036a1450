//! Kafka's tool names with Kafka's flags: `kafka-topics`, `kafka-console-producer`,
//! `kafka-console-consumer`, `kafka-consumer-groups`. Each translates its flags into the options of the
//! native tool (plus notes to print on stderr) and runs that.

use std::path::PathBuf;

use bytes::Bytes;

use super::consume::{ConsumeOptions, Format, Start, TextFormat};
use super::groups::{
    parse_states, parse_types, reset_scope, DescribeView, GroupsAction, ResetFlags,
};
use super::produce::{HeaderFormat, LineFormat, ProduceOptions, ProducerSettings};
use super::topics::{ReportFlags, TopicsAction};
use super::{parse_key_value, DEFAULT_BOOTSTRAP};

/// Flags of Kafka's `kafka-topics.sh`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["create", "list", "describe", "delete", "alter"])))]
pub(crate) struct KafkaTopicsArgs {
    /// The broker to connect to, host:port[,host:port].
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// Accepted for old tutorials; Potok has no ZooKeeper.
    #[arg(long, value_name = "HOST:PORT")]
    zookeeper: Option<String>,
    /// Create a topic.
    #[arg(long)]
    create: bool,
    /// List topics.
    #[arg(long)]
    list: bool,
    /// Describe topics.
    #[arg(long)]
    describe: bool,
    /// Delete a topic.
    #[arg(long)]
    delete: bool,
    /// Change a topic's partition count (or, deprecated, its configs with --config).
    #[arg(long)]
    alter: bool,
    /// The topic.
    #[arg(long)]
    topic: Option<String>,
    /// Partition count.
    #[arg(long)]
    partitions: Option<i32>,
    /// Replication factor.
    #[arg(long)]
    replication_factor: Option<i16>,
    /// A topic config, key=value (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// With --create: succeed if the topic exists.
    #[arg(long)]
    if_not_exists: bool,
    /// With --delete/--alter: succeed if the topic does not exist.
    #[arg(long)]
    if_exists: bool,
    /// With --list/--describe: leave out internal topics.
    #[arg(long)]
    exclude_internal: bool,
    #[command(flatten)]
    report: ReportFlags,
    /// Client properties file (accepted; security settings are not supported yet).
    #[arg(long)]
    command_config: Option<PathBuf>,
}

/// The one line the tools print for `--zookeeper` (old tutorials pass it).
fn zookeeper_note(bootstrap: &str) -> String {
    format!("Potok needs no ZooKeeper; using bootstrap server {bootstrap}")
}

/// A Kafka tool's flags, translated.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Translated<T> {
    /// The native tool's options.
    pub(crate) options: T,
    /// Lines for stderr (ignored flags, ZooKeeper).
    pub(crate) notes: Vec<String>,
}

/// `kafka-topics` translated.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TranslatedTopics {
    pub(crate) action: TopicsAction,
    pub(crate) notes: Vec<String>,
}

impl KafkaTopicsArgs {
    pub(crate) fn translate(self) -> anyhow::Result<TranslatedTopics> {
        let mut notes = Vec::new();
        let bootstrap = self
            .bootstrap_server
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_owned());
        if self.zookeeper.is_some() {
            notes.push(zookeeper_note(&bootstrap));
        }
        if self.command_config.is_some() {
            notes.push(
                "Note: --command-config is ignored (no client security settings yet)".to_owned(),
            );
        }
        let need_topic = |what: &str| -> anyhow::Result<String> {
            match &self.topic {
                Some(t) => Ok(t.clone()),
                None => anyhow::bail!("Missing required argument \"[topic]\" for {what}"),
            }
        };
        // As Kafka's TopicCommand: the describe filters go with --describe only.
        if !self.describe && self.report != ReportFlags::default() {
            let flag = [
                (self.report.under_replicated_partitions, "under-replicated-partitions"),
                (self.report.under_min_isr_partitions, "under-min-isr-partitions"),
                (self.report.at_min_isr_partitions, "at-min-isr-partitions"),
                (self.report.unavailable_partitions, "unavailable-partitions"),
                (self.report.topics_with_overrides, "topics-with-overrides"),
            ]
            .into_iter()
            .find_map(|(set, name)| set.then_some(name))
            .unwrap_or_default();
            let action = [(self.create, "create"), (self.list, "list"), (self.delete, "delete"), (self.alter, "alter")]
                .into_iter()
                .find_map(|(set, name)| set.then_some(name))
                .unwrap_or_default();
            anyhow::bail!("Option \"[{flag}]\" can't be used with option \"[{action}]\"");
        }
        let action = if self.create {
            TopicsAction::Create {
                topic: need_topic("--create")?,
                bootstrap,
                partitions: self.partitions,
                replication_factor: self.replication_factor,
                configs: self.config.clone(),
                if_not_exists: self.if_not_exists,
            }
        } else if self.list {
            TopicsAction::List {
                bootstrap,
                exclude_internal: self.exclude_internal,
            }
        } else if self.describe {
            TopicsAction::Describe {
                bootstrap,
                topics: self.topic.clone().into_iter().collect(),
                exclude_internal: self.exclude_internal,
                report: self.report,
            }
        } else if self.delete {
            TopicsAction::Delete {
                topic: need_topic("--delete")?,
                bootstrap,
                if_exists: self.if_exists,
            }
        } else if self.partitions.is_none() && !self.config.is_empty() {
            notes.push(super::configs::KAFKA_TOPICS_CONFIG_DEPRECATION.to_owned());
            TopicsAction::AlterConfigs {
                topic: need_topic("--alter")?,
                bootstrap,
                configs: self.config.clone(),
            }
        } else {
            let Some(partitions) = self.partitions else {
                anyhow::bail!("--alter needs --partitions or --config");
            };
            TopicsAction::Alter {
                topic: need_topic("--alter")?,
                bootstrap,
                partitions,
                if_exists: self.if_exists,
            }
        };
        Ok(TranslatedTopics { action, notes })
    }
}

/// Flags of Kafka's `kafka-console-producer.sh`.
#[derive(clap::Args, Debug)]
pub(crate) struct KafkaConsoleProducerArgs {
    /// The broker to connect to (old name of --bootstrap-server).
    #[arg(long)]
    broker_list: Option<String>,
    /// The broker to connect to, host:port[,host:port].
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// The topic to produce to.
    #[arg(long)]
    topic: String,
    /// Line reader property: parse.key, key.separator, parse.headers, headers.delimiter,
    /// headers.separator, headers.key.separator, null.marker, ignore.error (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    property: Vec<String>,
    /// A producer config, e.g. acks=all (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    producer_property: Vec<String>,
    /// A producer config file (Java properties).
    #[arg(long = "producer.config")]
    producer_config: Option<PathBuf>,
    /// Compression codec: none, gzip, snappy, lz4, zstd (given alone: gzip).
    #[arg(long, num_args = 0..=1, default_missing_value = "gzip")]
    compression_codec: Option<String>,
    /// acks: 0, 1, -1 or all (Kafka's default: -1).
    #[arg(long, allow_hyphen_values = true)]
    request_required_acks: Option<String>,
    /// linger.ms (Kafka's default: 1000).
    #[arg(long)]
    timeout: Option<u64>,
    /// batch.size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Send each record at once (linger.ms=0).
    #[arg(long)]
    sync: bool,
    /// request.timeout.ms.
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// max.block.ms.
    #[arg(long)]
    max_block_ms: Option<u64>,
    /// retry.backoff.ms.
    #[arg(long)]
    retry_backoff_ms: Option<u64>,
    /// Accepted; the producer retries until delivery.timeout.ms.
    #[arg(long)]
    message_send_max_retries: Option<u64>,
    /// Accepted and ignored (memory is bounded by record count).
    #[arg(long)]
    max_memory_bytes: Option<u64>,
    /// Accepted and ignored.
    #[arg(long)]
    max_partition_memory_bytes: Option<u64>,
    /// Accepted and ignored.
    #[arg(long)]
    metadata_expiry_ms: Option<u64>,
    /// Accepted and ignored.
    #[arg(long)]
    socket_buffer_size: Option<u64>,
    /// Only Kafka's default LineMessageReader exists.
    #[arg(long)]
    line_reader: Option<String>,
}

/// Reads a Java properties file: `key=value` or `key: value`, `#`/`!` comments.
pub(crate) fn read_properties(path: &PathBuf) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(parse_properties(&text))
}

/// The `key=value` (or `key: value`) pairs of a Java properties text.
pub(crate) fn parse_properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let i = l.find(['=', ':'])?;
            Some((l[..i].trim().to_owned(), l[i + 1..].trim().to_owned()))
        })
        .collect()
}

fn is_true(v: &str) -> bool {
    v.trim().eq_ignore_ascii_case("true")
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> anyhow::Result<T> {
    v.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid value {v:?} for {key}"))
}

/// Applies one producer config (Kafka name); returns a note if it is not supported.
pub(crate) fn apply_producer_config(
    s: &mut ProducerSettings,
    bootstrap: &mut Option<String>,
    key: &str,
    v: &str,
) -> anyhow::Result<Option<String>> {
    match key {
        "acks" => s.acks = v.parse()?,
        "compression.type" => s.compression = v.parse()?,
        "linger.ms" => s.linger_ms = parse_num(key, v)?,
        "batch.size" => s.batch_size = parse_num(key, v)?,
        "request.timeout.ms" => s.request_timeout_ms = Some(parse_num(key, v)?),
        "delivery.timeout.ms" => s.delivery_timeout_ms = Some(parse_num(key, v)?),
        "max.block.ms" => s.max_block_ms = Some(parse_num(key, v)?),
        "retry.backoff.ms" => s.retry_backoff_ms = Some(parse_num(key, v)?),
        "max.request.size" => s.max_request_size = Some(parse_num(key, v)?),
        "max.in.flight.requests.per.connection" => s.max_in_flight = Some(parse_num(key, v)?),
        "client.id" => s.client_id = Some(v.to_owned()),
        "bootstrap.servers" => *bootstrap = Some(v.to_owned()),
        // Serializers of the console producer are always byte arrays.
        "key.serializer" | "value.serializer" | "retries" | "enable.idempotence"
        | "buffer.memory" => {}
        other => {
            return Ok(Some(format!(
                "Note: producer property {other} is not supported and is ignored"
            )))
        }
    }
    Ok(None)
}

impl KafkaConsoleProducerArgs {
    pub(crate) fn translate(self) -> anyhow::Result<Translated<ProduceOptions>> {
        let mut notes = Vec::new();
        let mut settings = ProducerSettings {
            // kafka-console-producer's own defaults.
            acks: client::Acks::All,
            linger_ms: 1000,
            ..ProducerSettings::default()
        };
        let mut bootstrap_from_config = None;
        let mut configs = Vec::new();
        if let Some(path) = &self.producer_config {
            configs.extend(read_properties(path)?);
        }
        for p in &self.producer_property {
            configs.push(parse_key_value(p, "--producer-property")?);
        }
        for (k, v) in &configs {
            if let Some(note) =
                apply_producer_config(&mut settings, &mut bootstrap_from_config, k, v)?
            {
                notes.push(note);
            }
        }
        // Dedicated flags win over --producer-property, as in Kafka.
        if let Some(c) = &self.compression_codec {
            settings.compression = c.parse()?;
        }
        if let Some(a) = &self.request_required_acks {
            settings.acks = a.parse()?;
        }
        if let Some(t) = self.timeout {
            settings.linger_ms = t;
        }
        if self.sync {
            settings.linger_ms = 0;
        }
        if let Some(b) = self.batch_size {
            settings.batch_size = b;
        }
        if let Some(ms) = self.request_timeout_ms {
            settings.request_timeout_ms = Some(ms);
        }
        if let Some(ms) = self.max_block_ms {
            settings.max_block_ms = Some(ms);
        }
        if let Some(ms) = self.retry_backoff_ms {
            settings.retry_backoff_ms = Some(ms);
        }
        if let Some(r) = &self.line_reader {
            if !r.ends_with("LineMessageReader") {
                anyhow::bail!(
                    "--line-reader {r} is not supported; only the default line reader is"
                );
            }
        }

        let mut line = LineFormat::default();
        let mut parse_key = false;
        let mut key_separator = "\t".to_owned();
        let mut parse_headers = false;
        let mut headers = HeaderFormat::default();
        for p in &self.property {
            let (k, v) = parse_key_value(p, "--property")?;
            match k.as_str() {
                "parse.key" => parse_key = is_true(&v),
                "key.separator" => key_separator = v,
                "parse.headers" => parse_headers = is_true(&v),
                "headers.delimiter" => headers.delimiter = v,
                "headers.separator" => headers.separator = v,
                "headers.key.separator" => headers.key_separator = v,
                "null.marker" => line.null_marker = Some(v),
                "ignore.error" => line.ignore_error = is_true(&v),
                other => notes.push(format!(
                    "Note: property {other} is not supported and is ignored"
                )),
            }
        }
        line.key_separator = parse_key.then_some(key_separator);
        line.headers = parse_headers.then_some(headers);

        let bootstrap = self
            .bootstrap_server
            .or(self.broker_list)
            .or(bootstrap_from_config)
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_owned());
        Ok(Translated {
            options: ProduceOptions {
                bootstrap,
                topic: self.topic,
                partition: None,
                line,
                static_headers: Vec::<(String, Option<Bytes>)>::new(),
                settings,
            },
            notes,
        })
    }
}

/// Flags of Kafka's `kafka-console-consumer.sh`.
#[derive(clap::Args, Debug)]
pub(crate) struct KafkaConsoleConsumerArgs {
    /// The broker to connect to, host:port[,host:port].
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// Accepted for old tutorials; Potok has no ZooKeeper.
    #[arg(long, value_name = "HOST:PORT")]
    zookeeper: Option<String>,
    /// The topic to consume.
    #[arg(long)]
    topic: String,
    /// Start with the earliest message instead of the latest.
    #[arg(long)]
    from_beginning: bool,
    /// Exit after this many messages.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Consume only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Start offset: a number, earliest or latest.
    #[arg(long)]
    offset: Option<String>,
    /// Exit after no message for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Formatter property: print.key, print.value, print.timestamp, print.headers,
    /// print.partition, print.offset, key.separator, line.separator,
    /// headers.separator, null.literal (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    property: Vec<String>,
    /// A consumer config, e.g. auto.offset.reset=earliest (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    consumer_property: Vec<String>,
    /// A consumer config file (Java properties).
    #[arg(long = "consumer.config")]
    consumer_config: Option<PathBuf>,
    /// Consumer group: consume as its member and commit offsets.
    #[arg(long)]
    group: Option<String>,
    /// read_uncommitted (default) or read_committed.
    #[arg(long)]
    isolation_level: Option<String>,
    /// Only Kafka's DefaultMessageFormatter exists.
    #[arg(long)]
    formatter: Option<String>,
    /// Accepted and ignored.
    #[arg(long)]
    skip_message_on_error: bool,
}

impl KafkaConsoleConsumerArgs {
    pub(crate) fn translate(self) -> anyhow::Result<Translated<ConsumeOptions>> {
        let mut notes = Vec::new();
        if let Some(f) = &self.formatter {
            if !f.ends_with("DefaultMessageFormatter") {
                anyhow::bail!("--formatter {f} is not supported; only the default formatter is");
            }
        }
        let mut configs = Vec::new();
        if let Some(path) = &self.consumer_config {
            configs.extend(read_properties(path)?);
        }
        for p in &self.consumer_property {
            configs.push(parse_key_value(p, "--consumer-property")?);
        }
        let mut bootstrap_from_config = None;
        let mut reset_earliest = false;
        let mut client_id = None;
        let mut read_committed = false;
        let mut group_from_config: Option<String> = None;
        for (k, v) in &configs {
            match k.as_str() {
                "bootstrap.servers" => bootstrap_from_config = Some(v.clone()),
                "auto.offset.reset" => reset_earliest = v.trim() == "earliest",
                "client.id" => client_id = Some(v.clone()),
                "isolation.level" => read_committed = v.trim() == "read_committed",
                "group.id" => group_from_config = Some(v.clone()),
                "key.deserializer" | "value.deserializer" | "enable.auto.commit" => {}
                other => notes.push(format!(
                    "Note: consumer property {other} is not supported and is ignored"
                )),
            }
        }
        if let Some(level) = &self.isolation_level {
            read_committed = level.trim() == "read_committed";
        }
        if let (Some(a), Some(b)) = (&self.group, &group_from_config) {
            if a != b {
                anyhow::bail!("The group ids provided in different places (directly using '--group', via '--consumer-property', or via '--consumer.config') do not match. Detected group ids: '{a}', '{b}'");
            }
        }
        let group = self.group.clone().or(group_from_config);
        if group.is_some() && self.offset.is_some() && self.partition.is_none() {
            anyhow::bail!("The partition is required when offset is specified.");
        }
        if self.from_beginning && self.offset.is_some() {
            anyhow::bail!("Options from-beginning and offset cannot be specified together.");
        }
        let start = match (&self.offset, self.from_beginning || reset_earliest) {
            (Some(o), _) => Start::parse(o)?,
            (None, true) => Start::Earliest,
            (None, false) => Start::Latest,
        };

        let mut text = TextFormat::default();
        for p in &self.property {
            let (k, v) = parse_key_value(p, "--property")?;
            match k.as_str() {
                "print.key" => text.print_key = is_true(&v),
                "print.value" => text.print_value = is_true(&v),
                "print.timestamp" => text.print_timestamp = is_true(&v),
                "print.headers" => text.print_headers = is_true(&v),
                "print.partition" => text.print_partition = is_true(&v),
                "print.offset" => text.print_offset = is_true(&v),
                "key.separator" => text.key_separator = v.into_bytes(),
                "line.separator" => text.line_separator = v.into_bytes(),
                "headers.separator" => text.headers_separator = v.into_bytes(),
                "null.literal" => text.null_literal = v.into_bytes(),
                // Deserializers other than bytes/strings are not supported; bytes print raw.
                "key.deserializer" | "value.deserializer" | "headers.deserializer" => {
                    notes.push(format!(
                        "Note: property {k} is ignored; bytes are printed as they are"
                    ));
                }
                other => notes.push(format!(
                    "Note: property {other} is not supported and is ignored"
                )),
            }
        }

        let bootstrap = self
            .bootstrap_server
            .or(bootstrap_from_config)
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_owned());
        if self.zookeeper.is_some() {
            notes.insert(0, zookeeper_note(&bootstrap));
        }
        Ok(Translated {
            options: ConsumeOptions {
                bootstrap,
                topic: self.topic,
                partitions: self.partition.into_iter().collect(),
                start,
                max_messages: self.max_messages,
                idle_timeout: self.timeout_ms.map(std::time::Duration::from_millis),
                format: Format::Text(text),
                client_id,
                read_committed,
                group,
            },
            notes,
        })
    }
}

/// Flags of Kafka's `kafka-consumer-groups.sh`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["list", "describe", "delete", "reset_offsets", "delete_offsets"])))]
pub(crate) struct KafkaConsumerGroupsArgs {
    /// The broker to connect to, host:port[,host:port].
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// List all consumer groups.
    #[arg(long)]
    list: bool,
    /// Describe consumer groups and their offsets lag.
    #[arg(long)]
    describe: bool,
    /// Delete consumer groups.
    #[arg(long)]
    delete: bool,
    /// Reset a group's offsets (dry run unless --execute).
    #[arg(long)]
    reset_offsets: bool,
    /// Delete a group's offsets of topics.
    #[arg(long)]
    delete_offsets: bool,
    /// The consumer group (repeatable).
    #[arg(long)]
    group: Vec<String>,
    /// Every consumer group.
    #[arg(long)]
    all_groups: bool,
    /// A topic, or topic:partition,partition (repeatable).
    #[arg(long)]
    topic: Vec<String>,
    /// Every topic the group has offsets for.
    #[arg(long)]
    all_topics: bool,
    /// With --describe: the members.
    #[arg(long)]
    members: bool,
    /// With --describe: the offsets (default).
    #[arg(long)]
    offsets: bool,
    /// With --describe: the state; with --list: add the state column (an optional
    /// comma-separated list of states keeps only those).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    state: Option<String>,
    /// With --list: add the type column (an optional comma-separated list of types,
    /// classic and consumer, keeps only those).
    #[arg(long = "type", num_args = 0..=1, default_missing_value = "")]
    group_type: Option<String>,
    /// More columns.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    reset: ResetFlags,
    /// With --reset-offsets: print the new offsets as CSV instead of the table.
    #[arg(long)]
    export: bool,
    /// Only show the new offsets (the default).
    #[arg(long)]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
    /// Accepted; requests use the client's own timeout.
    #[arg(long)]
    timeout: Option<u64>,
    /// Client properties file (accepted; security settings are not supported yet).
    #[arg(long)]
    command_config: Option<PathBuf>,
}

impl KafkaConsumerGroupsArgs {
    pub(crate) fn translate(self) -> anyhow::Result<Translated<GroupsAction>> {
        let mut notes = Vec::new();
        if self.command_config.is_some() {
            notes.push(
                "Note: --command-config is ignored (no client security settings yet)".to_owned(),
            );
        }
        let bootstrap = self
            .bootstrap_server
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_owned());
        let need_groups = |what: &str| -> anyhow::Result<Vec<String>> {
            match (self.group.is_empty(), self.all_groups) {
                (true, false) => anyhow::bail!(
                    "Option [{what}] takes one of these options: [all-groups], [group]"
                ),
                (false, true) => {
                    anyhow::bail!("Option \"[group]\" can't be used with option \"[all-groups]\"")
                }
                _ => Ok(self.group.clone()),
            }
        };
        if self.group_type.is_some() && !self.list {
            anyhow::bail!("Option \"[type]\" can't be used unless option \"[list]\" is given");
        }
        let options = if self.list {
            GroupsAction::List {
                bootstrap,
                states: self.state.as_deref().map(parse_states).transpose()?,
                types: self.group_type.as_deref().map(parse_types).transpose()?,
            }
        } else if self.describe {
            let groups = need_groups("describe")?;
            if [self.members, self.offsets, self.state.is_some()]
                .into_iter()
                .filter(|x| *x)
                .count()
                > 1
            {
                anyhow::bail!(
                    "Option [describe] takes at most one of these options: [members], [offsets], [state]"
                );
            }
            if self.state.as_deref().is_some_and(|s| !s.is_empty()) {
                anyhow::bail!("Option [describe] does not take a value for [state]");
            }
            let view = if self.members {
                DescribeView::Members
            } else if self.state.is_some() {
                DescribeView::State
            } else {
                DescribeView::Offsets
            };
            GroupsAction::Describe {
                bootstrap,
                groups,
                all_groups: self.all_groups,
                view,
                verbose: self.verbose,
            }
        } else if self.delete {
            let groups = need_groups("delete")?;
            if !self.topic.is_empty() {
                anyhow::bail!(
                    "The consumer does not support topic-specific offset deletion from a consumer group."
                );
            }
            GroupsAction::Delete {
                bootstrap,
                groups,
                all_groups: self.all_groups,
            }
        } else if self.reset_offsets {
            if self.dry_run && self.execute {
                anyhow::bail!("Option [reset-offsets] only accepts one of [execute] and [dry-run]");
            }
            if !self.dry_run && !self.execute {
                notes.push(
                    "WARN: No action will be performed as the --execute option is missing.\
                     In a future major release, the default behavior of this command will be to \
                     prompt the user before executing the reset rather than doing a dry run. You \
                     should add the --dry-run option explicitly if you are scripting this command \
                     and want to keep the current default behavior without prompting."
                        .to_owned(),
                );
            }
            let groups = need_groups("reset-offsets")?;
            let target = self.reset.target()?;
            GroupsAction::ResetOffsets {
                bootstrap,
                groups,
                all_groups: self.all_groups,
                scope: reset_scope(self.all_topics, self.topic.clone(), &target)?,
                target,
                execute: self.execute,
                export: self.export,
            }
        } else {
            let [group] = self.group.as_slice() else {
                anyhow::bail!("Option [delete-offsets] takes exactly one [group]");
            };
            if self.topic.is_empty() {
                anyhow::bail!(
                    "Option [delete-offsets] takes the following options: [topic], [group]"
                );
            }
            GroupsAction::DeleteOffsets {
                bootstrap,
                group: group.clone(),
                topics: self.topic.clone(),
            }
        };
        Ok(Translated { options, notes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    /// Parses a tool's command line as `potok <tool> ...` would.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        tool: crate::tools::ToolCommand,
    }

    fn parse(args: &[&str]) -> crate::tools::ToolCommand {
        let argv = std::iter::once("potok").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.tool,
            Err(e) => panic!("{args:?} did not parse: {e}"),
        }
    }

    fn topics(args: &[&str]) -> anyhow::Result<TranslatedTopics> {
        match parse(args) {
            crate::tools::ToolCommand::KafkaTopics(a) => a.translate(),
            _ => anyhow::bail!("not kafka-topics"),
        }
    }

    fn producer(args: &[&str]) -> anyhow::Result<Translated<ProduceOptions>> {
        match parse(args) {
            crate::tools::ToolCommand::KafkaConsoleProducer(a) => a.translate(),
            _ => anyhow::bail!("not kafka-console-producer"),
        }
    }

    fn consumer(args: &[&str]) -> anyhow::Result<Translated<ConsumeOptions>> {
        match parse(args) {
            crate::tools::ToolCommand::KafkaConsoleConsumer(a) => a.translate(),
            _ => anyhow::bail!("not kafka-console-consumer"),
        }
    }

    #[test]
    fn kafka_topics_create_translates_to_a_create_with_kafkas_flags() {
        let t = topics(&[
            "kafka-topics",
            "--create",
            "--bootstrap-server",
            "h:1",
            "--replication-factor",
            "1",
            "--partitions=3",
            "--topic",
            "mytopic",
            "--config",
            "cleanup.policy=compact",
            "--if-not-exists",
        ])
        .ok();
        let expected = TopicsAction::Create {
            bootstrap: "h:1".into(),
            topic: "mytopic".into(),
            partitions: Some(3),
            replication_factor: Some(1),
            configs: vec!["cleanup.policy=compact".into()],
            if_not_exists: true,
        };
        assert_eq!(
            t,
            Some(TranslatedTopics {
                action: expected,
                notes: vec![]
            })
        );
    }

    #[test]
    fn kafka_topics_zookeeper_prints_one_note_and_uses_the_bootstrap_server() {
        let t = topics(&["kafka-topics", "--list", "--zookeeper", "localhost:2181"]).ok();
        assert_eq!(
            t,
            Some(TranslatedTopics {
                action: TopicsAction::List {
                    bootstrap: "localhost:9092".into(),
                    exclude_internal: false
                },
                notes: vec![
                    "Potok needs no ZooKeeper; using bootstrap server localhost:9092".into()
                ],
            })
        );
        let t = topics(&[
            "kafka-topics",
            "--describe",
            "--zookeeper",
            "zk:2181",
            "--bootstrap-server",
            "b:9",
            "--topic",
            "x",
        ])
        .ok();
        assert_eq!(
            t.map(|t| (t.action, t.notes)),
            Some((
                TopicsAction::Describe {
                    bootstrap: "b:9".into(),
                    topics: vec!["x".into()],
                    exclude_internal: false,
                    report: ReportFlags::default(),
                },
                vec!["Potok needs no ZooKeeper; using bootstrap server b:9".to_owned()]
            ))
        );
    }

    #[test]
    fn kafka_topics_needs_exactly_one_action_and_a_topic_to_create() {
        let argv = ["potok", "kafka-topics", "--topic", "x"];
        assert!(Cli::try_parse_from(argv).is_err());
        let argv = ["potok", "kafka-topics", "--create", "--list"];
        assert!(Cli::try_parse_from(argv).is_err());
        assert!(topics(&["kafka-topics", "--create", "--partitions", "1"]).is_err());
        assert!(topics(&["kafka-topics", "--delete", "--topic", "x", "--if-exists"]).is_ok());
    }

    #[test]
    fn console_producer_properties_become_line_format_and_producer_settings() {
        let t = producer(&[
            "kafka-console-producer",
            "--broker-list",
            "h:1",
            "--topic",
            "keyed",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
            "--producer-property",
            "acks=1",
            "--producer-property",
            "linger.ms=7",
            "--compression-codec",
        ])
        .ok();
        let t = t.map(|t| t.options);
        assert_eq!(
            t,
            Some(ProduceOptions {
                bootstrap: "h:1".into(),
                topic: "keyed".into(),
                partition: None,
                line: LineFormat {
                    key_separator: Some(":".into()),
                    ..Default::default()
                },
                static_headers: vec![],
                settings: ProducerSettings {
                    acks: client::Acks::Leader,
                    compression: client::Compression::Gzip,
                    linger_ms: 7,
                    ..ProducerSettings::default()
                },
            })
        );
        // parse.key alone splits at a tab, like Kafka.
        let t = producer(&[
            "kafka-console-producer",
            "--bootstrap-server",
            "h:1",
            "--topic",
            "t",
            "--property",
            "parse.key=true",
        ]);
        assert_eq!(
            t.ok().and_then(|t| t.options.line.key_separator),
            Some("\t".to_owned())
        );
        // Kafka's console producer lingers 1 s unless told otherwise.
        let t = producer(&[
            "kafka-console-producer",
            "--topic",
            "t",
            "--compression-codec",
            "zstd",
        ])
        .ok();
        let s = t.map(|t| {
            (
                t.options.bootstrap,
                t.options.settings.linger_ms,
                t.options.settings.compression,
            )
        });
        assert_eq!(
            s,
            Some(("localhost:9092".to_owned(), 1000, client::Compression::Zstd))
        );
    }

    #[test]
    fn console_producer_takes_minus_one_and_all_for_acks() {
        for value in ["-1", "all"] {
            let t = producer(&[
                "kafka-console-producer",
                "--topic",
                "t",
                "--request-required-acks",
                value,
            ]);
            assert_eq!(
                t.ok().map(|t| t.options.settings.acks),
                Some(client::Acks::All),
                "{value}"
            );
        }
    }

    #[test]
    fn console_consumer_zookeeper_prints_the_kafka_topics_line() {
        let t = consumer(&[
            "kafka-console-consumer",
            "--zookeeper",
            "localhost:2181",
            "--topic",
            "t",
        ])
        .ok();
        assert_eq!(
            t.map(|t| (t.options.bootstrap, t.notes)),
            Some((
                "localhost:9092".to_owned(),
                vec!["Potok needs no ZooKeeper; using bootstrap server localhost:9092".to_owned()]
            ))
        );
    }

    #[test]
    fn console_consumer_flags_become_consume_options() {
        let t = consumer(&[
            "kafka-console-consumer",
            "--bootstrap-server",
            "h:1",
            "--topic",
            "t",
            "--from-beginning",
            "--max-messages",
            "5",
            "--timeout-ms",
            "300",
            "--partition",
            "2",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=:",
            "--property",
            "print.timestamp=true",
            "--property",
            "print.headers=true",
        ])
        .ok();
        let expected = ConsumeOptions {
            bootstrap: "h:1".into(),
            topic: "t".into(),
            partitions: vec![2],
            start: Start::Earliest,
            max_messages: Some(5),
            idle_timeout: Some(Duration::from_millis(300)),
            format: Format::Text(TextFormat {
                print_key: true,
                print_timestamp: true,
                print_headers: true,
                key_separator: b":".to_vec(),
                ..TextFormat::default()
            }),
            client_id: None,
            read_committed: false,
            group: None,
        };
        assert_eq!(
            t,
            Some(Translated {
                options: expected,
                notes: vec![]
            })
        );
    }

    #[test]
    fn console_consumer_group_flag_and_group_id_property_select_the_group() {
        let t = consumer(&[
            "kafka-console-consumer",
            "--topic",
            "t",
            "--group",
            "g1",
            "--from-beginning",
        ])
        .ok();
        let t = t.map(|t| (t.options.group, t.options.start, t.notes));
        assert_eq!(t, Some((Some("g1".to_owned()), Start::Earliest, vec![])));
        let t = consumer(&[
            "kafka-console-consumer",
            "--topic",
            "t",
            "--consumer-property",
            "group.id=g2",
        ])
        .ok();
        assert_eq!(t.and_then(|t| t.options.group), Some("g2".to_owned()));
        // Different ids in two places, or an offset without a partition, are refused.
        assert!(consumer(&[
            "kafka-console-consumer",
            "--topic",
            "t",
            "--group",
            "a",
            "--consumer-property",
            "group.id=b"
        ])
        .is_err());
        assert!(consumer(&[
            "kafka-console-consumer",
            "--topic",
            "t",
            "--group",
            "a",
            "--offset",
            "3"
        ])
        .is_err());
        let t = consumer(&[
            "kafka-console-consumer",
            "--topic",
            "t",
            "--group",
            "g1",
            "--offset",
            "4",
            "--partition",
            "0",
        ])
        .ok();
        assert_eq!(t.map(|t| t.options.start), Some(Start::At(4)));
        assert!(consumer(&[
            "kafka-console-consumer",
            "--topic",
            "t",
            "--from-beginning",
            "--offset",
            "1"
        ])
        .is_err());
    }

    use crate::tools::groups::{ResetScope, ResetTarget};

    fn groups(args: &[&str]) -> anyhow::Result<Translated<GroupsAction>> {
        match parse(args) {
            crate::tools::ToolCommand::KafkaConsumerGroups(a) => a.translate(),
            _ => anyhow::bail!("not kafka-consumer-groups"),
        }
    }

    #[test]
    fn kafka_consumer_groups_flags_become_groups_actions() {
        let bs = "--bootstrap-server";
        let t = groups(&["kafka-consumer-groups", bs, "h:1", "--list", "--state"]).ok();
        assert_eq!(
            t.map(|t| t.options),
            Some(GroupsAction::List {
                bootstrap: "h:1".into(),
                states: Some(vec![]),
                types: None,
            })
        );
        let t = groups(&[
            "kafka-consumer-groups",
            bs,
            "h:1",
            "--describe",
            "--group",
            "g",
            "--members",
            "--verbose",
        ])
        .ok();
        assert_eq!(
            t.map(|t| t.options),
            Some(GroupsAction::Describe {
                bootstrap: "h:1".into(),
                groups: vec!["g".into()],
                all_groups: false,
                view: DescribeView::Members,
                verbose: true
            })
        );
        let t = groups(&[
            "kafka-consumer-groups",
            bs,
            "h:1",
            "--describe",
            "--group",
            "g",
            "--state",
        ])
        .ok();
        assert!(matches!(
            t.map(|t| t.options),
            Some(GroupsAction::Describe {
                view: DescribeView::State,
                ..
            })
        ));
        let t = groups(&[
            "kafka-consumer-groups",
            bs,
            "h:1",
            "--reset-offsets",
            "--group",
            "g",
            "--topic",
            "t:0,1",
            "--shift-by",
            "-2",
            "--execute",
        ])
        .ok();
        assert_eq!(
            t.map(|t| t.options),
            Some(GroupsAction::ResetOffsets {
                bootstrap: "h:1".into(),
                groups: vec!["g".into()],
                all_groups: false,
                scope: ResetScope::Topics(vec!["t:0,1".into()]),
                target: ResetTarget::ShiftBy(-2),
                execute: true,
                export: false,
            })
        );
        // Kafka's rules: a reset needs a scope and exactly one scenario; an action is required.
        assert!(groups(&[
            "kafka-consumer-groups",
            "--reset-offsets",
            "--group",
            "g",
            "--to-earliest"
        ])
        .is_err());
        assert!(groups(&[
            "kafka-consumer-groups",
            "--reset-offsets",
            "--group",
            "g",
            "--all-topics"
        ])
        .is_err());
        assert!(groups(&["kafka-consumer-groups", "--describe"]).is_err());
        let argv = ["potok", "kafka-consumer-groups", "--group", "g"];
        assert!(Cli::try_parse_from(argv).is_err());
        let t = groups(&[
            "kafka-consumer-groups",
            "--delete",
            "--group",
            "a",
            "--group",
            "b",
        ])
        .ok();
        assert_eq!(
            t.map(|t| t.options),
            Some(GroupsAction::Delete {
                bootstrap: "localhost:9092".into(),
                groups: vec!["a".into(), "b".into()],
                all_groups: false,
            })
        );
    }

    /// `kafka-consumer-groups` with the flags of a command line, split at spaces.
    fn groups_line(line: &str) -> anyhow::Result<Translated<GroupsAction>> {
        let argv: Vec<&str> = std::iter::once("kafka-consumer-groups")
            .chain(line.split_whitespace())
            .collect();
        groups(&argv)
    }

    #[test]
    fn kafka_consumer_groups_takes_the_rest_of_kafkas_flags() {
        let t = groups_line("--list --state stable,Empty --type CONSUMER").ok();
        assert_eq!(
            t.map(|t| t.options),
            Some(GroupsAction::List {
                bootstrap: "localhost:9092".into(),
                states: Some(vec!["Empty".into(), "Stable".into()]),
                types: Some(vec!["consumer".into()]),
            })
        );
        let t = groups_line("--reset-offsets --all-groups --from-file plan.csv --export").ok();
        let notes = t.as_ref().map(|t| t.notes.clone()).unwrap_or_default();
        assert_eq!(
            t.map(|t| t.options),
            Some(GroupsAction::ResetOffsets {
                bootstrap: "localhost:9092".into(),
                groups: vec![],
                all_groups: true,
                scope: ResetScope::Plan,
                target: ResetTarget::FromFile("plan.csv".into()),
                execute: false,
                export: true,
            })
        );
        // Kafka warns that a reset without --execute or --dry-run changes nothing.
        assert!(notes.iter().any(|n| n.starts_with(
            "WARN: No action will be performed as the --execute option is missing.In a future"
        )));
        let t = groups_line("--reset-offsets --group g --all-topics --by-duration PT1H --dry-run");
        assert!(matches!(
            t.ok().map(|t| (t.options, t.notes)),
            Some((GroupsAction::ResetOffsets {
                target: ResetTarget::Duration(3_600_000),
                ..
            }, notes)) if notes.is_empty()
        ));
        assert_eq!(
            groups_line("--delete --all-groups").ok().map(|t| t.options),
            Some(GroupsAction::Delete {
                bootstrap: "localhost:9092".into(),
                groups: vec![],
                all_groups: true,
            })
        );
        // Kafka's usage errors.
        for line in [
            "--list --state asleep",
            "--describe --all-groups --type",
            "--delete --group g --all-groups",
            "--delete --group g --topic t",
            "--describe --group g --state stable",
            "--describe --group g --state --members",
            "--reset-offsets --group g --to-current",
            "--reset-offsets --group g --all-topics --to-current --by-duration PT1S",
            "--reset-offsets --group g --all-topics --by-duration 1h",
        ] {
            assert!(groups_line(line).is_err(), "{line:?} accepted");
        }
    }

    #[test]
    fn java_properties_files_parse() {
        let props = parse_properties("# comment\nacks = all\n! other\nlinger.ms: 5\n\nbad\n");
        assert_eq!(
            props,
            vec![
                ("acks".to_owned(), "all".to_owned()),
                ("linger.ms".to_owned(), "5".to_owned())
            ]
        );
    }
}

//! `potok configs describe|alter` and Kafka's `kafka-configs.sh`: describe and
//! change topic and broker configs, with Kafka's flags and output.

use std::process::ExitCode;

use client::{Admin, AlterConfigOp, ConfigEntry, ConfigResource};

use super::DEFAULT_BOOTSTRAP;

/// What `kafka-topics.sh --alter --config` prints first, as old Kafka warned.
pub(crate) const KAFKA_TOPICS_CONFIG_DEPRECATION: &str = "WARNING: changing topic configs with kafka-topics.sh is deprecated, as in Kafka; \
use kafka-configs.sh --alter --entity-type topics --entity-name TOPIC --add-config KEY=VALUE instead.";

/// Sets topic configs given as raw `key=value` strings (kafka-topics.sh --alter --config).
pub(crate) async fn set_topic_configs(admin: &Admin, topic: &str, configs: &[String]) -> anyhow::Result<()> {
    let ops = configs
        .iter()
        .map(|c| super::parse_key_value(c, "--config").map(|(k, v)| (k, AlterConfigOp::Set(v))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    admin.incremental_alter_configs(&ConfigResource::Topic(topic.to_owned()), &ops, false).await?;
    Ok(())
}

/// What a config command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entity {
    /// A topic.
    Topic(String),
    /// Every topic (a describe without `--entity-name`).
    AllTopics,
    /// A broker by id; None: every broker in the cluster.
    Broker(Option<String>),
    /// The cluster-wide broker default (`--entity-default`).
    BrokerDefault,
    /// A broker's loggers.
    BrokerLogger(String),
}

impl Entity {
    /// Kafka's singular name of the entity type, for the tool's messages.
    fn singular(&self) -> &'static str {
        match self {
            Entity::Topic(_) | Entity::AllTopics => "topic",
            Entity::Broker(_) | Entity::BrokerDefault => "broker",
            Entity::BrokerLogger(_) => "broker-logger",
        }
    }
}

/// A config command, from either spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigsAction {
    /// Print the entity's configs (only the ones set at its level unless `all`).
    Describe { bootstrap: String, entity: Entity, all: bool },
    /// Set and delete configs of the entity.
    Alter { bootstrap: String, entity: Entity, add: Vec<(String, String)>, delete: Vec<String> },
}

/// Parses Kafka's `--add-config` value: `k1=v1,k2=[v1,v2],k3=v3` (square
/// brackets hold a list value with commas).
pub(crate) fn parse_add_config(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                let v = v.trim();
                let v = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(v);
                Ok((k.trim().to_owned(), v.to_owned()))
            }
            _ => anyhow::bail!("requirement failed: Invalid entity config: all configs to be added must be in the format \"key=val\"."),
        })
        .collect()
}

fn resource(entity: &Entity) -> ConfigResource {
    match entity {
        Entity::Topic(t) => ConfigResource::Topic(t.clone()),
        Entity::AllTopics => ConfigResource::Topic(String::new()),
        Entity::Broker(b) => ConfigResource::Broker(b.clone().unwrap_or_default()),
        Entity::BrokerDefault => ConfigResource::Broker(String::new()),
        Entity::BrokerLogger(b) => ConfigResource::BrokerLogger(b.clone()),
    }
}

/// Kafka's heading of a describe.
fn header(entity: &Entity, name: &str, all: bool) -> String {
    match entity {
        Entity::BrokerDefault => "Default configs for brokers in the cluster are:".to_owned(),
        _ => format!("{} configs for {} {name} are:", if all { "All" } else { "Dynamic" }, entity.singular()),
    }
}

/// Kafka's line for one config: `  key=value sensitive=false synonyms={SOURCE:key=value, ...}`.
fn entry_line(e: &ConfigEntry) -> String {
    let synonyms = e
        .synonyms
        .iter()
        .map(|s| format!("{}:{}={}", s.source.kafka_name(), s.name, s.value.as_deref().unwrap_or("null")))
        .collect::<Vec<_>>()
        .join(", ");
    format!("  {}={} sensitive={} synonyms={{{synonyms}}}", e.name, e.value.as_deref().unwrap_or("null"), e.sensitive)
}

/// The entries a describe prints: those set at the entity's own level unless `all`.
fn shown(entity: &Entity, mut entries: Vec<ConfigEntry>, all: bool) -> Vec<ConfigEntry> {
    use client::admin::ConfigSource;
    let own = match entity {
        Entity::Topic(_) | Entity::AllTopics => Some(ConfigSource::DynamicTopic),
        Entity::Broker(_) => Some(ConfigSource::DynamicBroker),
        Entity::BrokerDefault => Some(ConfigSource::DynamicDefaultBroker),
        Entity::BrokerLogger(_) => None,
    };
    if !all {
        if let Some(own) = own {
            entries.retain(|e| e.source == own);
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

pub(crate) async fn run(action: ConfigsAction) -> anyhow::Result<ExitCode> {
    let bootstrap = match &action {
        ConfigsAction::Describe { bootstrap, .. } | ConfigsAction::Alter { bootstrap, .. } => bootstrap.clone(),
    };
    let admin = Admin::connect(&bootstrap).await?;
    match action {
        ConfigsAction::Describe { entity, all, .. } => {
            let names: Vec<String> = match &entity {
                Entity::Topic(t) => vec![t.clone()],
                Entity::Broker(Some(b)) | Entity::BrokerLogger(b) => vec![b.clone()],
                Entity::BrokerDefault => vec![String::new()],
                Entity::Broker(None) => {
                    let md = admin.client().refresh_metadata(None).await?;
                    md.brokers.keys().map(i32::to_string).collect()
                }
                Entity::AllTopics => admin.list_topics(true).await?,
            };
            for name in names {
                let entity = match &entity {
                    Entity::Broker(None) => Entity::Broker(Some(name.clone())),
                    Entity::AllTopics => Entity::Topic(name.clone()),
                    other => other.clone(),
                };
                let entries = admin.describe_resource_configs(&resource(&entity)).await?;
                println!("{}", header(&entity, &name, all));
                for e in shown(&entity, entries, all) {
                    println!("{}", entry_line(&e));
                }
            }
        }
        ConfigsAction::Alter { entity, add, delete, .. } => {
            match entity {
                Entity::Broker(None) => anyhow::bail!("an entity name must be specified with --alter of brokers (or use --entity-default)"),
                Entity::AllTopics => anyhow::bail!("an entity name must be specified with --alter of topics"),
                _ => {}
            }
            let ops: Vec<(String, AlterConfigOp)> = add
                .into_iter()
                .map(|(k, v)| (k, AlterConfigOp::Set(v)))
                .chain(delete.into_iter().map(|k| (k, AlterConfigOp::Delete)))
                .collect();
            admin.incremental_alter_configs(&resource(&entity), &ops, false).await?;
            match &entity {
                Entity::BrokerDefault => println!("Completed updating default config for brokers in the cluster."),
                Entity::Topic(n) | Entity::Broker(Some(n)) | Entity::BrokerLogger(n) => {
                    println!("Completed updating config for {} {n}.", entity.singular())
                }
                Entity::Broker(None) | Entity::AllTopics => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `potok configs` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ConfigsArgs {
    #[command(subcommand)]
    action: ConfigsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ConfigsCommand {
    /// Print the configs of a topic or broker (those set at its level; --all: every one).
    Describe(DescribeArgs),
    /// Set (--add-config) and remove (--delete-config) configs of a topic or broker.
    Alter(AlterArgs),
}

/// The entity flags both spellings share.
#[derive(clap::Args, Debug)]
struct EntityFlags {
    /// A topic.
    #[arg(long)]
    topic: Option<String>,
    /// A broker by node id.
    #[arg(long)]
    broker: Option<String>,
    /// The cluster-wide broker default.
    #[arg(long)]
    broker_defaults: bool,
    /// A broker's loggers, by node id.
    #[arg(long)]
    broker_logger: Option<String>,
}

impl EntityFlags {
    fn entity(self) -> Option<Entity> {
        if let Some(t) = self.topic {
            Some(Entity::Topic(t))
        } else if let Some(b) = self.broker {
            Some(Entity::Broker(Some(b)))
        } else if let Some(b) = self.broker_logger {
            Some(Entity::BrokerLogger(b))
        } else {
            self.broker_defaults.then_some(Entity::BrokerDefault)
        }
    }
}

/// Which entity, for `potok configs`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("entity").required(true).args(["topic", "broker", "broker_defaults", "broker_logger"])))]
struct EntityArgs {
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
    #[command(flatten)]
    flags: EntityFlags,
}

impl EntityArgs {
    fn into_parts(self) -> (String, Entity) {
        // The required group guarantees one entity flag.
        (self.bootstrap_server, self.flags.entity().unwrap_or(Entity::BrokerDefault))
    }
}

#[derive(clap::Args, Debug)]
struct DescribeArgs {
    #[command(flatten)]
    entity: EntityArgs,
    /// Every config, not only those set at the entity's level.
    #[arg(long)]
    all: bool,
}

#[derive(clap::Args, Debug)]
struct AlterArgs {
    #[command(flatten)]
    entity: EntityArgs,
    /// Configs to set: k1=v1,k2=[v1,v2] (repeatable).
    #[arg(long)]
    add_config: Vec<String>,
    /// Configs to remove: k1,k2 (repeatable).
    #[arg(long)]
    delete_config: Vec<String>,
}

/// Configs to set and configs to delete.
type ConfigChanges = (Vec<(String, String)>, Vec<String>);

fn alter_lists(add_config: &[String], delete_config: &[String]) -> anyhow::Result<ConfigChanges> {
    let mut add = Vec::new();
    for a in add_config {
        add.extend(parse_add_config(a)?);
    }
    let delete = delete_config
        .iter()
        .flat_map(|d| d.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect::<Vec<_>>();
    if add.is_empty() && delete.is_empty() {
        anyhow::bail!("at least one of --add-config or --delete-config must be specified with --alter");
    }
    Ok((add, delete))
}

impl ConfigsArgs {
    pub(crate) fn into_action(self) -> anyhow::Result<ConfigsAction> {
        Ok(match self.action {
            ConfigsCommand::Describe(a) => {
                let (bootstrap, entity) = a.entity.into_parts();
                ConfigsAction::Describe { entity, bootstrap, all: a.all }
            }
            ConfigsCommand::Alter(a) => {
                let (add, delete) = alter_lists(&a.add_config, &a.delete_config)?;
                let (bootstrap, entity) = a.entity.into_parts();
                ConfigsAction::Alter { entity, bootstrap, add, delete }
            }
        })
    }
}

/// Flags of Kafka's `kafka-configs.sh`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["describe", "alter"])))]
pub(crate) struct KafkaConfigsArgs {
    /// The broker to connect to, host:port[,host:port].
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// Accepted for old tutorials; Potok has no ZooKeeper.
    #[arg(long)]
    zookeeper: Option<String>,
    /// Client properties file (accepted; security settings are not supported yet).
    #[arg(long)]
    command_config: Option<String>,
    /// topics, brokers or broker-loggers.
    #[arg(long)]
    entity_type: Option<String>,
    /// The topic name or broker id.
    #[arg(long)]
    entity_name: Option<String>,
    /// The cluster-wide broker default.
    #[arg(long)]
    entity_default: bool,
    /// Shorthands: --topic, --broker, --broker-defaults, --broker-logger.
    #[command(flatten)]
    shorthand: EntityFlags,
    /// Describe configs.
    #[arg(long)]
    describe: bool,
    /// Alter configs.
    #[arg(long)]
    alter: bool,
    /// With --describe: every config, not only the dynamic ones.
    #[arg(long)]
    all: bool,
    /// Configs to set: k1=v1,k2=[v1,v2,v2],k3=v3.
    #[arg(long)]
    add_config: Vec<String>,
    /// Configs to remove: k1,k2.
    #[arg(long)]
    delete_config: Vec<String>,
}

impl KafkaConfigsArgs {
    /// The action and the notes for stderr.
    pub(crate) fn translate(self) -> anyhow::Result<(ConfigsAction, Vec<String>)> {
        let mut notes = Vec::new();
        let bootstrap = self.bootstrap_server.clone().unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_owned());
        if self.zookeeper.is_some() {
            notes.push(format!("Potok needs no ZooKeeper; using bootstrap server {bootstrap}"));
        }
        if self.command_config.is_some() {
            notes.push("Note: --command-config is ignored (no client security settings yet)".to_owned());
        }
        let entity = if let Some(entity) = self.shorthand.entity() {
            entity
        } else {
            match (self.entity_type.as_deref(), self.entity_name, self.entity_default) {
                (Some("topics"), Some(n), _) => Entity::Topic(n),
                (Some("topics"), None, _) => Entity::AllTopics,
                (Some("brokers"), _, true) => Entity::BrokerDefault,
                (Some("brokers"), n, false) => Entity::Broker(n),
                (Some("broker-loggers"), Some(n), _) => Entity::BrokerLogger(n),
                (Some("broker-loggers"), None, _) => anyhow::bail!("an entity name must be specified with --entity-type broker-loggers"),
                (Some(other), _, _) => anyhow::bail!("Invalid entity type {other}, the entity type must be one of topics, brokers, broker-loggers"),
                (None, _, _) => anyhow::bail!("an entity type must be specified (--entity-type topics|brokers|broker-loggers)"),
            }
        };
        let action = if self.describe {
            ConfigsAction::Describe { bootstrap, entity, all: self.all }
        } else {
            let (add, delete) = alter_lists(&self.add_config, &self.delete_config)?;
            ConfigsAction::Alter { bootstrap, entity, add, delete }
        };
        Ok((action, notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::admin::{ConfigSource, ConfigSynonym};

    #[test]
    fn add_config_takes_bracketed_lists() {
        let parsed = parse_add_config("retention.ms=1000,cleanup.policy=[compact,delete],x=").expect("parse");
        assert_eq!(
            parsed,
            vec![
                ("retention.ms".into(), "1000".into()),
                ("cleanup.policy".into(), "compact,delete".into()),
                ("x".into(), String::new())
            ]
        );
        assert!(parse_add_config("novalue").is_err());
    }

    #[test]
    fn lines_and_headers_are_kafkas() {
        let e = ConfigEntry {
            name: "retention.ms".into(),
            value: Some("1000".into()),
            source: ConfigSource::DynamicTopic,
            read_only: false,
            sensitive: false,
            synonyms: vec![
                ConfigSynonym { name: "retention.ms".into(), value: Some("1000".into()), source: ConfigSource::DynamicTopic },
                ConfigSynonym { name: "log.retention.hours".into(), value: Some("168".into()), source: ConfigSource::Default },
            ],
        };
        assert_eq!(
            entry_line(&e),
            "  retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000, DEFAULT_CONFIG:log.retention.hours=168}"
        );
        assert_eq!(header(&Entity::Topic("t".into()), "t", false), "Dynamic configs for topic t are:");
        assert_eq!(header(&Entity::Broker(Some("1".into())), "1", true), "All configs for broker 1 are:");
        assert_eq!(header(&Entity::BrokerDefault, "", false), "Default configs for brokers in the cluster are:");
    }
}

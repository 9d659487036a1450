//! Broker configuration with Kafka's property names (`server.properties`).
//!
//! Every key a Kafka broker accepts is accepted here; the ones Potok acts on are
//! parsed into [`ServerConfig`], the others are kept and reported by
//! DescribeConfigs. A key Kafka does not know, or a value that does not parse,
//! stops start-up with a [`ConfigError`] naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A configuration problem, with the key and where it came from.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The key is not a Kafka broker setting.
    #[error("unknown setting '{key}' ({origin})")]
    UnknownKey {
        /// The key.
        key: String,
        /// Where it was given.
        origin: String,
    },
    /// The value does not parse or is out of range.
    #[error("invalid value '{value}' for '{key}' ({origin}): {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Where it was given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line is not `key=value`.
    #[error("malformed line '{line}' ({origin}): expected key=value")]
    Malformed {
        /// The line.
        line: String,
        /// Where it was given.
        origin: String,
    },
    /// The value asks for something Potok does not do yet (a secured listener,
    /// a multi-node quorum): refused rather than silently ignored.
    #[error("'{key}={value}' ({origin}): {what} is not supported yet")]
    NotSupported {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Where it was given.
        origin: String,
        /// What the value asks for.
        what: String,
    },
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A listener: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Host to bind or advertise; empty means all interfaces.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Listener {
    fn parse_list(key: &str, value: &str, origin: &str) -> Result<Vec<Listener>, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidValue {
            key: key.into(),
            value: value.into(),
            origin: origin.into(),
            reason: reason.into(),
        };
        let mut listeners = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, rest) = item.split_once("://").ok_or_else(|| invalid("expected NAME://host:port"))?;
            let (host, port) = host_port(rest).map_err(|e| invalid(&e.replace("HOST:PORT", "NAME://host:port")))?;
            listeners.push(Listener { name: name.to_string(), host, port });
        }
        if listeners.is_empty() {
            return Err(invalid("no listener given"));
        }
        Ok(listeners)
    }
}

/// Splits `host:port` (an IPv6 host in brackets); an empty host is all interfaces.
fn host_port(item: &str) -> Result<(String, u16), String> {
    let (host, port) = item.rsplit_once(':').ok_or_else(|| "expected HOST:PORT".to_string())?;
    let port = port.parse::<u16>().map_err(|_| "port is not a number from 0 to 65535".to_string())?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

/// `process.roles`: what this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    /// It serves clients (`broker`).
    pub broker: bool,
    /// It is a voter of the metadata quorum (`controller`).
    pub controller: bool,
}

/// One entry of `controller.quorum.voters`: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    /// The voter's `node.id`.
    pub id: i32,
    /// Its controller listener's host.
    pub host: String,
    /// Its controller listener's port.
    pub port: u16,
}

/// The KRaft settings, parsed and checked as Kafka does. More than one voter
/// is cluster mode ([`KraftConfig::is_cluster`]): the metadata quorum runs on
/// the CONTROLLER listener; otherwise the node is a cluster of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KraftConfig {
    /// `process.roles`; unset means both (one process is the whole cluster).
    pub roles: ProcessRoles,
    /// `controller.quorum.voters`, in the given order.
    pub voters: Vec<QuorumVoter>,
    /// `controller.quorum.bootstrap.servers` (Kafka 4's dynamic quorum), host and port.
    pub bootstrap_servers: Vec<(String, u16)>,
    /// `listener.security.protocol.map`: listener name to security protocol
    /// (Kafka's default maps each protocol's own name to itself).
    pub security_protocol_map: BTreeMap<String, String>,
    /// `inter.broker.listener.name` (else the listener named after
    /// `security.inter.broker.protocol`, PLAINTEXT by default).
    pub inter_broker_listener_name: String,
}

/// The broker's configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// `listeners` (client listeners only; controller listeners are left out).
    pub listeners: Vec<Listener>,
    /// `advertised.listeners` (defaults to `listeners`).
    pub advertised_listeners: Vec<Listener>,
    /// `log.dirs` (or `log.dir`).
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `log.segment.bytes`.
    pub log_segment_bytes: u64,
    /// `log.roll.ms` (or `log.roll.hours`).
    pub log_roll_ms: u64,
    /// `log.index.interval.bytes`.
    pub log_index_interval_bytes: u64,
    /// `log.index.size.max.bytes`.
    pub log_index_size_max_bytes: u64,
    /// `log.flush.interval.messages`.
    pub log_flush_interval_messages: u64,
    /// `log.flush.interval.ms`; None: the OS decides (as in Kafka).
    pub log_flush_interval_ms: Option<u64>,
    /// `log.flush.offset.checkpoint.interval.ms`: how often the recovery
    /// points are written to `recovery-point-offset-checkpoint`.
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often the high
    /// watermarks are written to `replication-offset-checkpoint`.
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// `log.retention.ms` (or `.minutes` / `.hours`); -1 is unlimited.
    pub log_retention_ms: i64,
    /// `log.retention.bytes`; -1 is unlimited.
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `message.max.bytes`.
    pub message_max_bytes: usize,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `log.message.timestamp.type`: true for LogAppendTime.
    pub log_append_time: bool,
    /// `controller.listener.names`.
    pub controller_listener_names: Vec<String>,
    /// The entries of `listeners` named in `controller.listener.names` (in
    /// cluster mode the first carries the quorum and the controller APIs).
    pub controller_listeners: Vec<Listener>,
    /// The KRaft settings: roles, voters, listener names and protocols.
    pub kraft: KraftConfig,
    /// `log.cleaner.enable`: compact topics with `cleanup.policy=compact`.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`: pause between compaction passes.
    pub log_cleaner_backoff_ms: u64,
    /// `potok.metadata.recover`: a Potok setting (not Kafka's), the escape hatch
    /// for a lost or truncated metadata log: start anyway and rebuild the
    /// topics the metadata no longer knows from the partition directories.
    pub metadata_recover: bool,
    /// `metadata.log.segment.bytes`: the metadata log's segment size.
    pub metadata_log_segment_bytes: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`: a metadata snapshot
    /// is written once the metadata log grew by more than this since the last.
    pub metadata_snapshot_bytes: u64,
    /// The group coordinator's settings.
    pub groups: GroupConfig,
    /// Bounds on what one client can make the broker spend.
    pub limits: LimitsConfig,
    /// How a cluster-mode broker talks to the controller (registration,
    /// heartbeats, ISR changes, controlled shutdown).
    pub rpc: BrokerRpcConfig,
    /// `broker.session.timeout.ms`: a broker not heard from for this long is
    /// fenced by the active controller.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the controller.
    pub broker_heartbeat_interval_ms: u64,
    /// How followers fetch from their leaders.
    pub replica_fetch: ReplicaFetchConfig,
    /// Every key given, as given (for DescribeConfigs).
    pub given: BTreeMap<String, String>,
}

/// The group coordinator's settings (Kafka's names and defaults).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`.
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `offsets.topic.replication.factor` (Kafka's default 3).
    pub offsets_topic_replication_factor: i16,
    /// True when `offsets.topic.replication.factor` was set, not defaulted:
    /// only the default is capped by the brokers there are.
    pub offsets_topic_replication_factor_given: bool,
    /// `offsets.commit.timeout.ms`: how long a commit or group write may wait
    /// for the in-sync replicas.
    pub offsets_commit_timeout_ms: u64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.max.size`.
    pub max_size: usize,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups).
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups).
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub consumer_max_size: usize,
    /// `group.consumer.assignors`, as short names (`uniform`, `range`); the first
    /// is the default.
    pub consumer_assignors: Vec<String>,
}

/// How a broker in cluster mode talks to the controller (Kafka's names and
/// defaults; `broker.heartbeat.interval.ms` and `broker.session.timeout.ms`
/// are [`ServerConfig`]'s, the controller uses them too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRpcConfig {
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `controlled.shutdown.enable`: on SIGTERM, wait until the controller has
    /// moved leadership away before stopping.
    pub controlled_shutdown_enable: bool,
    /// `controlled.shutdown.max.retries`.
    pub controlled_shutdown_max_retries: u64,
    /// `controlled.shutdown.retry.backoff.ms`.
    pub controlled_shutdown_retry_backoff_ms: u64,
}

impl BrokerRpcConfig {
    /// Kafka's setting names parsed here.
    const KEYS: &'static [&'static str] = &[
        "broker.rack",
        "replica.lag.time.max.ms",
        "controlled.shutdown.enable",
        "controlled.shutdown.max.retries",
        "controlled.shutdown.retry.backoff.ms",
    ];

    fn parse(p: &Parser<'_>) -> Result<BrokerRpcConfig, ConfigError> {
        let rack = p.get("broker.rack").map(str::trim).filter(|r| !r.is_empty()).map(str::to_string);
        Ok(BrokerRpcConfig {
            rack,
            replica_lag_time_max_ms: p.min("replica.lag.time.max.ms", 30_000i64, 1)?,
            controlled_shutdown_enable: p.boolean("controlled.shutdown.enable", true)?,
            controlled_shutdown_max_retries: p.num("controlled.shutdown.max.retries", 3u64)?,
            controlled_shutdown_retry_backoff_ms: p.num("controlled.shutdown.retry.backoff.ms", 5_000u64)?,
        })
    }

    /// How long a controlled shutdown waits for the controller's approval:
    /// `controlled.shutdown.max.retries` × `controlled.shutdown.retry.backoff.ms`.
    pub fn controlled_shutdown_timeout_ms(&self) -> u64 {
        self.controlled_shutdown_max_retries.saturating_mul(self.controlled_shutdown_retry_backoff_ms)
    }

    /// The effective values, for DescribeConfigs.
    fn describe(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("broker.rack", self.rack.clone()),
            ("replica.lag.time.max.ms", Some(self.replica_lag_time_max_ms.to_string())),
            ("controlled.shutdown.enable", Some(self.controlled_shutdown_enable.to_string())),
            ("controlled.shutdown.max.retries", Some(self.controlled_shutdown_max_retries.to_string())),
            ("controlled.shutdown.retry.backoff.ms", Some(self.controlled_shutdown_retry_backoff_ms.to_string())),
        ]
    }
}

/// Bounds on what clients can make the broker spend (Kafka's names where Kafka
/// has the setting, `potok.*` where it has none).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// `fetch.max.bytes`: caps every Fetch response's `max_bytes`.
    pub fetch_max_bytes: usize,
    /// `potok.fetch.memory.bytes`: the bytes all Fetch responses in flight may
    /// hold together; a fetch that does not fit waits for memory.
    pub fetch_memory_bytes: usize,
    /// `connections.max.idle.ms`: a connection with no request for this long is
    /// closed; negative: never.
    pub connections_max_idle_ms: i64,
    /// `potok.request.receive.timeout.ms`: a request whose first byte arrived
    /// must arrive whole within this time, or the connection is closed.
    pub request_receive_timeout_ms: u64,
    /// `max.connections`: open client connections; more wait to be accepted.
    pub max_connections: usize,
    /// `max.connections.per.ip`: open connections per client address; more are closed.
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: `host:count,...`, resolved at start.
    pub max_connections_per_ip_overrides: Vec<(std::net::IpAddr, usize)>,
    /// `potok.max.partitions`: partitions this broker hosts at most; topic and
    /// partition creation beyond it is refused (POLICY_VIOLATION).
    pub max_partitions: usize,
}

impl LimitsConfig {
    /// Kafka's setting names parsed here.
    const KEYS: &'static [&'static str] = &[
        "fetch.max.bytes",
        "potok.fetch.memory.bytes",
        "connections.max.idle.ms",
        "potok.request.receive.timeout.ms",
        "max.connections",
        "max.connections.per.ip",
        "max.connections.per.ip.overrides",
        "potok.max.partitions",
    ];

    fn parse(p: &Parser<'_>) -> Result<LimitsConfig, ConfigError> {
        let max_connections_per_ip: usize = p.min("max.connections.per.ip", i32::MAX as usize, 0)?;
        let mut overrides = Vec::new();
        let key = "max.connections.per.ip.overrides";
        for item in p.get(key).unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (host, count) = item.rsplit_once(':').ok_or_else(|| p.invalid(key, "expected host:count,..."))?;
            let count: usize = count.trim().parse().map_err(|_| p.invalid(key, &format!("'{count}' is not a count")))?;
            let host = host.trim().trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<std::net::IpAddr> = match host.parse() {
                Ok(ip) => vec![ip],
                Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, 0))
                    .map_err(|e| p.invalid(key, &format!("cannot resolve '{host}': {e}")))?
                    .map(|a| a.ip())
                    .collect(),
            };
            overrides.extend(addrs.into_iter().map(|ip| (ip, count)));
        }
        Ok(LimitsConfig {
            fetch_max_bytes: p.min("fetch.max.bytes", 57_671_680usize, 1024)?,
            fetch_memory_bytes: p.min("potok.fetch.memory.bytes", 268_435_456usize, 1)?,
            connections_max_idle_ms: p.num("connections.max.idle.ms", 600_000i64)?,
            request_receive_timeout_ms: p.min("potok.request.receive.timeout.ms", 60_000u64, 1)?,
            max_connections: p.min("max.connections", i32::MAX as usize, 0)?,
            max_connections_per_ip,
            max_connections_per_ip_overrides: overrides,
            max_partitions: p.min("potok.max.partitions", 100_000usize, 1)?,
        })
    }

    /// The effective values, for DescribeConfigs.
    fn describe(&self) -> Vec<(&'static str, Option<String>)> {
        let overrides: Vec<String> =
            self.max_connections_per_ip_overrides.iter().map(|(ip, n)| format!("{ip}:{n}")).collect();
        vec![
            ("fetch.max.bytes", Some(self.fetch_max_bytes.to_string())),
            ("potok.fetch.memory.bytes", Some(self.fetch_memory_bytes.to_string())),
            ("connections.max.idle.ms", Some(self.connections_max_idle_ms.to_string())),
            ("potok.request.receive.timeout.ms", Some(self.request_receive_timeout_ms.to_string())),
            ("max.connections", Some(self.max_connections.to_string())),
            ("max.connections.per.ip", Some(self.max_connections_per_ip.to_string())),
            ("max.connections.per.ip.overrides", Some(overrides.join(","))),
            ("potok.max.partitions", Some(self.max_partitions.to_string())),
        ]
    }
}

/// How followers fetch from their leaders (Kafka's names and defaults).
#[derive(Debug, Clone)]
pub struct ReplicaFetchConfig {
    /// `num.replica.fetchers`: fetcher tasks per leader broker.
    pub num_replica_fetchers: usize,
    /// `replica.fetch.max.bytes`: bytes per partition in one fetch (the
    /// first batch may be larger).
    pub max_bytes: usize,
    /// `replica.fetch.response.max.bytes`: bytes of one fetch response.
    pub response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`: how long the leader holds a fetch without data.
    pub wait_max_ms: i32,
    /// `replica.fetch.min.bytes`: bytes that answer a fetch at once.
    pub min_bytes: i32,
    /// `replica.fetch.backoff.ms`: the pause after a failed fetch.
    pub backoff_ms: u64,
    /// `replica.socket.timeout.ms`: connecting to and waiting for the leader.
    pub socket_timeout_ms: u64,
}

impl ReplicaFetchConfig {
    /// Kafka's setting names parsed here.
    const KEYS: &'static [&'static str] = &[
        "num.replica.fetchers",
        "replica.fetch.max.bytes",
        "replica.fetch.response.max.bytes",
        "replica.fetch.wait.max.ms",
        "replica.fetch.min.bytes",
        "replica.fetch.backoff.ms",
        "replica.socket.timeout.ms",
    ];

    fn parse(p: &Parser<'_>) -> Result<ReplicaFetchConfig, ConfigError> {
        let config = ReplicaFetchConfig {
            num_replica_fetchers: p.min("num.replica.fetchers", 1usize, 1)?,
            max_bytes: p.min("replica.fetch.max.bytes", 1_048_576usize, 0)?,
            response_max_bytes: p.min("replica.fetch.response.max.bytes", 10_485_760i32, 0)?,
            wait_max_ms: p.min("replica.fetch.wait.max.ms", 500i32, 0)?,
            min_bytes: p.min("replica.fetch.min.bytes", 1i32, 0)?,
            backoff_ms: p.num("replica.fetch.backoff.ms", 1_000u64)?,
            socket_timeout_ms: p.min("replica.socket.timeout.ms", 30_000u64, 1)?,
        };
        // Kafka's check: a fetch must be answered before the socket gives up.
        if i64::from(config.wait_max_ms) > config.socket_timeout_ms as i64 {
            return Err(p.invalid("replica.fetch.wait.max.ms", "must be at most replica.socket.timeout.ms"));
        }
        Ok(config)
    }

    /// The effective values, for DescribeConfigs.
    fn describe(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("num.replica.fetchers", Some(self.num_replica_fetchers.to_string())),
            ("replica.fetch.max.bytes", Some(self.max_bytes.to_string())),
            ("replica.fetch.response.max.bytes", Some(self.response_max_bytes.to_string())),
            ("replica.fetch.wait.max.ms", Some(self.wait_max_ms.to_string())),
            ("replica.fetch.min.bytes", Some(self.min_bytes.to_string())),
            ("replica.fetch.backoff.ms", Some(self.backoff_ms.to_string())),
            ("replica.socket.timeout.ms", Some(self.socket_timeout_ms.to_string())),
        ]
    }
}

#[cfg(test)]
mod limits_tests {
    use super::*;

    fn config(items: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_entries(items.iter().map(|(k, v)| (k.to_string(), v.to_string(), "test".into())).collect())
    }

    #[test]
    fn connection_and_fetch_limits_take_kafkas_names_and_defaults() {
        let limits = config(&[]).expect("defaults").limits;
        assert_eq!(limits.fetch_max_bytes, 57_671_680);
        assert_eq!(limits.connections_max_idle_ms, 600_000);
        assert_eq!(limits.max_connections_per_ip, i32::MAX as usize);
        let limits = config(&[
            ("connections.max.idle.ms", "-1"),
            ("max.connections.per.ip", "3"),
            ("max.connections.per.ip.overrides", "127.0.0.2:5, [::1]:7"),
            ("fetch.max.bytes", "1024"),
        ])
        .expect("valid")
        .limits;
        assert_eq!(limits.connections_max_idle_ms, -1);
        let ips: Vec<(std::net::IpAddr, usize)> =
            vec![("127.0.0.2".parse().expect("ip"), 5), ("::1".parse().expect("ip"), 7)];
        assert_eq!(limits.max_connections_per_ip_overrides, ips);
        for bad in [("fetch.max.bytes", "1023"), ("max.connections.per.ip.overrides", "127.0.0.1"), ("max.connections", "-1")] {
            let e = config(&[bad]).expect_err("invalid").to_string();
            assert!(e.contains(bad.0), "{e}");
        }
    }
}

/// Where data lives when `log.dirs` is not set.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("potok");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/potok"),
        None => PathBuf::from("potok-data"),
    }
}

impl ServerConfig {
    /// Reads an optional properties file, then applies `key=value` overrides.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<ServerConfig, ConfigError> {
        let mut entries: Vec<(String, String, String)> = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
            for (n, line) in logical_lines(&text) {
                let origin = format!("{}:{}", path.display(), n);
                let (k, v) = split_property(&line)
                    .ok_or_else(|| ConfigError::Malformed { line: line.clone(), origin: origin.clone() })?;
                entries.push((unescape(&k), unescape(&v), origin));
            }
        }
        for item in overrides {
            let origin = "--override".to_string();
            let (k, v) = split_property(item)
                .ok_or_else(|| ConfigError::Malformed { line: item.clone(), origin: origin.clone() })?;
            entries.push((k, v, origin));
        }
        Self::from_entries(entries)
    }

    /// Builds a config from `(key, value, origin)` entries; later entries win.
    pub fn from_entries(entries: Vec<(String, String, String)>) -> Result<ServerConfig, ConfigError> {
        let mut given = BTreeMap::new();
        let mut origins = BTreeMap::new();
        for (key, value, origin) in entries {
            if !is_known_key(&key) {
                return Err(ConfigError::UnknownKey { key, origin });
            }
            origins.insert(key.clone(), origin);
            given.insert(key, value);
        }
        let p = Parser { given: &given, origins: &origins };

        let controller_listener_names: Vec<String> = p
            .get("controller.listener.names")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let listeners = match p.get("listeners") {
            Some(v) => Listener::parse_list("listeners", v, p.origin("listeners"))?,
            None => vec![Listener { name: "PLAINTEXT".into(), host: "localhost".into(), port: 9092 }],
        };
        let (controller_listeners, listeners): (Vec<Listener>, Vec<Listener>) =
            listeners.into_iter().partition(|l| controller_listener_names.contains(&l.name));
        // A controller-only node serves its controller listener alone (checked in kraft_config).
        let controller_only = p.get("process.roles").is_some_and(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).eq(["controller"]));
        if listeners.is_empty() && !controller_only {
            return Err(p.invalid("listeners", "no client listener besides controller.listener.names"));
        }
        let advertised_listeners = match p.get("advertised.listeners") {
            Some(v) => Listener::parse_list("advertised.listeners", v, p.origin("advertised.listeners"))?,
            None => listeners.clone(),
        };
        let node_id = match p.opt_num("node.id")? {
            Some(id) => id,
            None => p.num("broker.id", 1)?,
        };
        let security_protocol_map = security_protocol_map(&p)?;
        check_security_protocols(&p, &security_protocol_map, &listeners, &advertised_listeners, &controller_listener_names)?;
        let kraft = kraft_config(&p, node_id, security_protocol_map, &advertised_listeners, &controller_listener_names)?;
        check_role_listeners(&p, &kraft, &listeners, &advertised_listeners, &controller_listeners, &controller_listener_names)?;
        let log_dirs: Vec<PathBuf> = match p.get("log.dirs").or_else(|| p.get("log.dir")) {
            Some(v) => v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect(),
            None => vec![default_data_dir()],
        };
        if log_dirs.is_empty() {
            return Err(p.invalid("log.dirs", "no directory given"));
        }
        let hours = |h: i64| h.saturating_mul(3_600_000);
        let log_roll_ms = match p.opt_num::<u64>("log.roll.ms")? {
            Some(ms) => ms,
            None => p.num::<u64>("log.roll.hours", 168)?.saturating_mul(3_600_000),
        };
        let log_retention_ms = match p.opt_num::<i64>("log.retention.ms")? {
            Some(ms) => ms,
            None => match p.opt_num::<i64>("log.retention.minutes")? {
                Some(m) => m.saturating_mul(60_000),
                None => hours(p.num::<i64>("log.retention.hours", 168)?),
            },
        };
        let log_append_time = match p.get("log.message.timestamp.type").unwrap_or("CreateTime") {
            "CreateTime" => false,
            "LogAppendTime" => true,
            _ => return Err(p.invalid("log.message.timestamp.type", "expected CreateTime or LogAppendTime")),
        };
        let config = ServerConfig {
            node_id,
            listeners,
            advertised_listeners,
            log_dirs,
            num_partitions: p.positive("num.partitions", 1)?,
            default_replication_factor: p.positive("default.replication.factor", 1)?,
            auto_create_topics: p.boolean("auto.create.topics.enable", true)?,
            log_segment_bytes: p.min("log.segment.bytes", 1_073_741_824u64, 14)?,
            log_roll_ms: log_roll_ms.max(1),
            log_index_interval_bytes: p.num("log.index.interval.bytes", 4096)?,
            log_index_size_max_bytes: p.min("log.index.size.max.bytes", 10_485_760u64, 8)?,
            log_flush_interval_messages: p.min("log.flush.interval.messages", u64::MAX, 1)?,
            log_flush_interval_ms: p.opt_num("log.flush.interval.ms")?,
            log_flush_offset_checkpoint_interval_ms: p.min("log.flush.offset.checkpoint.interval.ms", 60_000u64, 1)?,
            replica_high_watermark_checkpoint_interval_ms: p.min("replica.high.watermark.checkpoint.interval.ms", 5_000u64, 1)?,
            log_retention_ms,
            log_retention_bytes: p.num("log.retention.bytes", -1)?,
            log_retention_check_interval_ms: p.min("log.retention.check.interval.ms", 300_000u64, 1)?,
            message_max_bytes: p.min("message.max.bytes", 1_048_588usize, 0)?,
            socket_request_max_bytes: p.min("socket.request.max.bytes", 104_857_600usize, 1)?,
            log_append_time,
            controller_listener_names,
            controller_listeners,
            kraft,
            log_cleaner_enable: p.boolean("log.cleaner.enable", true)?,
            log_cleaner_backoff_ms: p.min("log.cleaner.backoff.ms", 15_000u64, 1)?,
            metadata_recover: p.boolean("potok.metadata.recover", false)?,
            metadata_log_segment_bytes: p.min("metadata.log.segment.bytes", 1_073_741_824u64, 14)?,
            metadata_snapshot_bytes: p.min("metadata.log.max.record.bytes.between.snapshots", 20_971_520u64, 1)?,
            groups: group_config(&p)?,
            limits: LimitsConfig::parse(&p)?,
            rpc: BrokerRpcConfig::parse(&p)?,
            broker_session_timeout_ms: p.min("broker.session.timeout.ms", 9_000u64, 1)?,
            broker_heartbeat_interval_ms: p.min("broker.heartbeat.interval.ms", 2_000u64, 1)?,
            replica_fetch: ReplicaFetchConfig::parse(&p)?,
            given: given.clone(),
        };
        Ok(config)
    }
}

/// Security protocols Kafka listeners may use; Potok serves only the first.
const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

const SECURITY_MAP_KEY: &str = "listener.security.protocol.map";

/// `listener.security.protocol.map` as given, else Kafka's default (each
/// protocol's name maps to itself).
fn security_protocol_map(p: &Parser<'_>) -> Result<BTreeMap<String, String>, ConfigError> {
    let Some(v) = p.get(SECURITY_MAP_KEY) else {
        return Ok(SECURITY_PROTOCOLS.iter().map(|s| (s.to_string(), s.to_string())).collect());
    };
    let mut map = BTreeMap::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, protocol)) = item.split_once(':') else {
            return Err(p.invalid(SECURITY_MAP_KEY, "expected NAME:PROTOCOL[,NAME:PROTOCOL]"));
        };
        let protocol = protocol.trim().to_ascii_uppercase();
        if !SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
            return Err(p.invalid(SECURITY_MAP_KEY, &format!("unknown security protocol '{protocol}' (expected one of {})", SECURITY_PROTOCOLS.join(", "))));
        }
        map.insert(name.trim().to_string(), protocol);
    }
    Ok(map)
}

/// Refuses a client listener whose security protocol (from
/// `listener.security.protocol.map`, else its name, as Kafka) is not PLAINTEXT:
/// serving it unsecured would be worse than not starting.
/// Controller listeners are not served (Kafka maps an unmapped one to PLAINTEXT).
fn check_security_protocols(
    p: &Parser<'_>,
    map: &BTreeMap<String, String>,
    listeners: &[Listener],
    advertised: &[Listener],
    controller_names: &[String],
) -> Result<(), ConfigError> {
    for (key, list) in [("listeners", listeners), ("advertised.listeners", advertised)] {
        for l in list.iter().filter(|l| !controller_names.contains(&l.name)) {
            let Some(protocol) = map.get(&l.name) else {
                return Err(p.invalid(key, &format!("no security protocol defined for listener {} in {SECURITY_MAP_KEY}", l.name)));
            };
            if protocol != "PLAINTEXT" {
                let origin = if p.get(SECURITY_MAP_KEY).is_some() { p.origin(SECURITY_MAP_KEY) } else { p.origin(key) };
                return Err(ConfigError::NotSupported {
                    key: key.into(),
                    value: p.get(key).unwrap_or_default().into(),
                    origin: origin.into(),
                    what: format!("listener {} with security protocol {protocol} (only PLAINTEXT is served)", l.name),
                });
            }
        }
    }
    Ok(())
}

/// Kafka's listener rules per role (`KafkaConfig.validateValues`): a
/// controller of a quorum has its controller listener in `listeners`; a
/// controller-only node has nothing else there and advertises nothing else;
/// a broker-only node of a quorum names a controller listener it does not
/// listen on (it connects to the controllers' listener of that name).
fn check_role_listeners(
    p: &Parser<'_>,
    kraft: &KraftConfig,
    listeners: &[Listener],
    advertised: &[Listener],
    controller_listeners: &[Listener],
    controller_names: &[String],
) -> Result<(), ConfigError> {
    let roles = kraft.roles;
    if kraft.is_cluster() && roles.controller && controller_listeners.is_empty() {
        return Err(p.invalid(
            "controller.listener.names",
            "must contain at least one value appearing in the 'listeners' configuration when running the KRaft controller role",
        ));
    }
    if roles.controller && !roles.broker {
        if let Some(l) = listeners.first() {
            return Err(p.invalid(
                "listeners",
                &format!("must only contain KRaft controller listeners from controller.listener.names when process.roles=controller ({} is not one)", l.name),
            ));
        }
        if let Some(l) = advertised.iter().find(|l| !controller_names.contains(&l.name)) {
            return Err(p.invalid(
                "advertised.listeners",
                &format!("must only contain KRaft controller listeners from controller.listener.names when process.roles=controller ({} is not one)", l.name),
            ));
        }
    }
    if roles.broker && !roles.controller && kraft.is_cluster() {
        if controller_names.is_empty() {
            return Err(p.invalid("controller.listener.names", "must contain at least one value when running KRaft with just the broker role"));
        }
        if !controller_listeners.is_empty() {
            return Err(p.invalid(
                "controller.listener.names",
                "must not contain a value appearing in the 'listeners' configuration when running KRaft with just the broker role",
            ));
        }
    }
    Ok(())
}

/// Parses the KRaft settings and checks them as Kafka does; then refuses what
/// Potok does not run yet: a separate node whose quorum is given only by
/// `controller.quorum.bootstrap.servers`, Kafka 4's dynamic quorum of
/// several bootstrap controllers.
fn kraft_config(
    p: &Parser<'_>,
    node_id: i32,
    mut security_protocol_map: BTreeMap<String, String>,
    advertised: &[Listener],
    controller_names: &[String],
) -> Result<KraftConfig, ConfigError> {
    let not_supported = |key: &str, what: String| ConfigError::NotSupported {
        key: key.into(),
        value: p.get(key).unwrap_or_default().into(),
        origin: p.origin(key).into(),
        what,
    };
    let entries = |key: &str| -> Vec<&str> {
        p.get(key).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
    };

    let mut roles = ProcessRoles { broker: true, controller: true };
    let given_roles = entries("process.roles");
    if !given_roles.is_empty() {
        roles = ProcessRoles { broker: false, controller: false };
        for role in &given_roles {
            let seen = match *role {
                "broker" => std::mem::replace(&mut roles.broker, true),
                "controller" => std::mem::replace(&mut roles.controller, true),
                bad => return Err(p.invalid("process.roles", &format!("unknown role '{bad}' (expected broker and/or controller)"))),
            };
            if seen {
                return Err(p.invalid("process.roles", &format!("role '{role}' is given twice")));
            }
        }
    }

    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in entries("controller.quorum.voters") {
        let invalid = |reason: &str| p.invalid("controller.quorum.voters", &format!("'{entry}': {reason}"));
        let (id, address) = entry.split_once('@').ok_or_else(|| invalid("expected ID@HOST:PORT"))?;
        let id = id.trim().parse::<i32>().ok().filter(|id| *id >= 0).ok_or_else(|| invalid("the id is not a node id (0 or more)"))?;
        let (host, port) = host_port(address).map_err(|e| invalid(&e.replace("HOST:PORT", "ID@HOST:PORT")))?;
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        if voters.iter().any(|v| v.id == id) {
            return Err(invalid(&format!("voter {id} is listed twice")));
        }
        voters.push(QuorumVoter { id, host, port });
    }
    let mut bootstrap_servers = Vec::new();
    for entry in entries("controller.quorum.bootstrap.servers") {
        let address = host_port(entry).map_err(|e| p.invalid("controller.quorum.bootstrap.servers", &format!("'{entry}': {e}")))?;
        bootstrap_servers.push(address);
    }
    // Kafka: a controller is one of the voters, a broker-only node is not.
    if !voters.is_empty() {
        let listed = voters.iter().any(|v| v.id == node_id);
        if roles.controller && !listed {
            return Err(p.invalid("controller.quorum.voters", &format!("this controller's node.id {node_id} is not a voter")));
        }
        if !roles.controller && listed {
            return Err(p.invalid("controller.quorum.voters", &format!("node.id {node_id} is a voter but process.roles has no controller")));
        }
    }

    // Kafka takes an unmapped controller listener to be PLAINTEXT.
    for name in controller_names {
        security_protocol_map.entry(name.clone()).or_insert_with(|| "PLAINTEXT".into());
    }
    let explicit_listener = p.get("inter.broker.listener.name").map(str::trim);
    let explicit_protocol = p.get("security.inter.broker.protocol").map(str::trim);
    if explicit_listener.is_some() && explicit_protocol.is_some() {
        return Err(p.invalid("inter.broker.listener.name", "only one of inter.broker.listener.name and security.inter.broker.protocol may be set"));
    }
    if let Some(protocol) = explicit_protocol.filter(|v| !SECURITY_PROTOCOLS.contains(v)) {
        return Err(p.invalid("security.inter.broker.protocol", &format!("unknown security protocol '{protocol}'")));
    }
    let inter_broker_listener_name = explicit_listener.or(explicit_protocol).unwrap_or("PLAINTEXT").to_string();
    // Checked when set explicitly; the default is what a one-node cluster never uses.
    if let Some(key) = [("inter.broker.listener.name", explicit_listener), ("security.inter.broker.protocol", explicit_protocol)]
        .into_iter()
        .find_map(|(key, v)| v.map(|_| key))
    {
        if controller_names.contains(&inter_broker_listener_name) {
            return Err(p.invalid(key, &format!("listener {inter_broker_listener_name} is a controller listener")));
        }
        if roles.broker && !advertised.iter().any(|l| l.name == inter_broker_listener_name) {
            return Err(p.invalid(key, &format!("listener {inter_broker_listener_name} is not in advertised.listeners")));
        }
    }

    // A separate controller or broker needs the voters: a broker-only node
    // follows them, a controller-only one is one of them.
    if !roles.broker && voters.is_empty() {
        if bootstrap_servers.is_empty() {
            return Err(p.invalid(
                "process.roles",
                "a controller (process.roles=controller) needs controller.quorum.voters or controller.quorum.bootstrap.servers",
            ));
        }
        return Err(not_supported(
            "controller.quorum.bootstrap.servers",
            "a controller-only node without controller.quorum.voters (a dynamic quorum; list the voters)".into(),
        ));
    }
    // A broker-only node asks its bootstrap servers for the voters at start.
    if roles.controller && bootstrap_servers.len() > 1 {
        return Err(not_supported(
            "controller.quorum.bootstrap.servers",
            format!("a metadata quorum of {} controllers (Potok runs one node)", bootstrap_servers.len()),
        ));
    }
    Ok(KraftConfig { roles, voters, bootstrap_servers, security_protocol_map, inter_broker_listener_name })
}

impl KraftConfig {
    /// True for a node of a multi-node cluster: more than one voter, or a
    /// broker-only or controller-only node of a quorum (one voter serving
    /// separate brokers is a cluster too). One combined voter (or none) is a
    /// cluster of one with a local metadata log.
    pub fn is_cluster(&self) -> bool {
        let combined = self.roles.broker && self.roles.controller;
        self.voters.len() > 1 || !(combined || self.voters.is_empty()) || self.is_observer()
    }

    /// True if this node follows the metadata quorum without being a voter
    /// (`process.roles=broker` with voters elsewhere, or their bootstrap
    /// servers): a KIP-595 observer.
    pub fn is_observer(&self) -> bool {
        let has_quorum = !self.voters.is_empty() || !self.bootstrap_servers.is_empty();
        !self.roles.controller && has_quorum
    }
}

fn group_config(p: &Parser<'_>) -> Result<GroupConfig, ConfigError> {
    let consumer_session_timeout_ms = p.min("group.consumer.session.timeout.ms", 45_000, 1)?;
    let min_consumer_session: i32 = p.min("group.consumer.min.session.timeout.ms", 45_000, 1)?;
    let max_consumer_session: i32 = p.min("group.consumer.max.session.timeout.ms", 60_000, 1)?;
    if !(min_consumer_session..=max_consumer_session).contains(&consumer_session_timeout_ms) {
        return Err(p.invalid(
            "group.consumer.session.timeout.ms",
            &format!("must be within group.consumer.min.session.timeout.ms ({min_consumer_session}) and group.consumer.max.session.timeout.ms ({max_consumer_session})"),
        ));
    }
    let consumer_heartbeat_interval_ms = p.min("group.consumer.heartbeat.interval.ms", 5_000, 1)?;
    let min_heartbeat: i32 = p.min("group.consumer.min.heartbeat.interval.ms", 5_000, 1)?;
    let max_heartbeat: i32 = p.min("group.consumer.max.heartbeat.interval.ms", 15_000, 1)?;
    if !(min_heartbeat..=max_heartbeat).contains(&consumer_heartbeat_interval_ms) {
        return Err(p.invalid(
            "group.consumer.heartbeat.interval.ms",
            &format!("must be within group.consumer.min.heartbeat.interval.ms ({min_heartbeat}) and group.consumer.max.heartbeat.interval.ms ({max_heartbeat})"),
        ));
    }
    let mut consumer_assignors = Vec::new();
    for name in p.get("group.consumer.assignors").unwrap_or("uniform,range").split(',').map(str::trim) {
        let short = match name {
            "uniform" | "org.apache.kafka.coordinator.group.assignor.UniformAssignor" => "uniform",
            "range" | "org.apache.kafka.coordinator.group.assignor.RangeAssignor" => "range",
            "" => continue,
            _ => return Err(p.invalid("group.consumer.assignors", &format!("unknown assignor '{name}' (uniform and range are built in)"))),
        };
        consumer_assignors.push(short.to_string());
    }
    if consumer_assignors.is_empty() {
        return Err(p.invalid("group.consumer.assignors", "no assignor given"));
    }
    let min_session_timeout_ms = p.min("group.min.session.timeout.ms", 6_000, 0)?;
    let max_session_timeout_ms = p.min("group.max.session.timeout.ms", 1_800_000, min_session_timeout_ms)?;
    Ok(GroupConfig {
        offsets_topic_num_partitions: p.positive("offsets.topic.num.partitions", 50)?,
        offsets_topic_segment_bytes: p.min("offsets.topic.segment.bytes", 104_857_600u64, 14)?,
        offsets_retention_ms: p.min("offsets.retention.minutes", 10_080i64, 1)?.saturating_mul(60_000),
        offsets_retention_check_interval_ms: p.min("offsets.retention.check.interval.ms", 600_000u64, 1)?,
        offsets_topic_replication_factor: p.min("offsets.topic.replication.factor", 3i16, 1)?,
        offsets_topic_replication_factor_given: p.get("offsets.topic.replication.factor").is_some(),
        offsets_commit_timeout_ms: p.min("offsets.commit.timeout.ms", 5_000u64, 1)?,
        offset_metadata_max_bytes: p.num("offset.metadata.max.bytes", 4096usize)?,
        initial_rebalance_delay_ms: p.min("group.initial.rebalance.delay.ms", 3_000i64, 0)?,
        min_session_timeout_ms,
        max_session_timeout_ms,
        max_size: p.positive("group.max.size", i32::MAX as usize)?,
        consumer_session_timeout_ms,
        consumer_heartbeat_interval_ms,
        consumer_max_size: p.positive("group.consumer.max.size", i32::MAX as usize)?,
        consumer_assignors,
    })
}

/// The logical lines of a Java properties file with their first line numbers:
/// comments and blank lines dropped, and a line ending in an odd number of
/// backslashes joined with the next (whose leading white space is dropped).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let (start, mut joined) = match pending.take() {
            Some((start, so_far)) => (start, so_far),
            None => {
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    continue;
                }
                (n + 1, String::new())
            }
        };
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            joined.push_str(&line[..line.len() - 1]);
            pending = Some((start, joined));
        } else {
            joined.push_str(line);
            out.push((start, joined.trim_end().to_string()));
        }
    }
    if let Some((start, joined)) = pending {
        out.push((start, joined.trim_end().to_string()));
    }
    out
}

/// Resolves Java properties escapes (`\\`, `\=`, `\:`, `\ `, `\t`, `\n`, …).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

impl ServerConfig {
    /// Every setting with its effective value, for DescribeConfigs of the broker:
    /// `(name, value, set explicitly)`. Unset values Kafka reports as null are None.
    pub fn describe(&self) -> Vec<(String, Option<String>, bool)> {
        let listeners = |ls: &[Listener]| {
            ls.iter().map(|l| format!("{}://{}:{}", l.name, l.host, l.port)).collect::<Vec<_>>().join(",")
        };
        let g = &self.groups;
        let mut effective: Vec<(&str, Option<String>)> = vec![
            ("node.id", Some(self.node_id.to_string())),
            ("listeners", Some(listeners(&self.listeners))),
            ("advertised.listeners", Some(listeners(&self.advertised_listeners))),
            ("log.dirs", Some(self.log_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(","))),
            ("num.partitions", Some(self.num_partitions.to_string())),
            ("default.replication.factor", Some(self.default_replication_factor.to_string())),
            ("auto.create.topics.enable", Some(self.auto_create_topics.to_string())),
            ("log.segment.bytes", Some(self.log_segment_bytes.to_string())),
            ("log.roll.ms", Some(self.log_roll_ms.to_string())),
            ("log.index.interval.bytes", Some(self.log_index_interval_bytes.to_string())),
            ("log.index.size.max.bytes", Some(self.log_index_size_max_bytes.to_string())),
            ("log.flush.interval.messages", Some(self.log_flush_interval_messages.min(i64::MAX as u64).to_string())),
            ("log.flush.interval.ms", self.log_flush_interval_ms.map(|v| v.to_string())),
            ("log.flush.offset.checkpoint.interval.ms", Some(self.log_flush_offset_checkpoint_interval_ms.to_string())),
            ("replica.high.watermark.checkpoint.interval.ms", Some(self.replica_high_watermark_checkpoint_interval_ms.to_string())),
            ("log.retention.ms", Some(self.log_retention_ms.to_string())),
            ("log.retention.bytes", Some(self.log_retention_bytes.to_string())),
            ("log.retention.check.interval.ms", Some(self.log_retention_check_interval_ms.to_string())),
            ("message.max.bytes", Some(self.message_max_bytes.to_string())),
            ("socket.request.max.bytes", Some(self.socket_request_max_bytes.to_string())),
            (
                "log.message.timestamp.type",
                Some(if self.log_append_time { "LogAppendTime" } else { "CreateTime" }.to_string()),
            ),
            ("log.cleaner.enable", Some(self.log_cleaner_enable.to_string())),
            ("log.cleaner.backoff.ms", Some(self.log_cleaner_backoff_ms.to_string())),
            ("metadata.log.segment.bytes", Some(self.metadata_log_segment_bytes.to_string())),
            ("metadata.log.max.record.bytes.between.snapshots", Some(self.metadata_snapshot_bytes.to_string())),
            ("offsets.topic.num.partitions", Some(g.offsets_topic_num_partitions.to_string())),
            ("offsets.topic.segment.bytes", Some(g.offsets_topic_segment_bytes.to_string())),
            ("offsets.retention.minutes", Some((g.offsets_retention_ms / 60_000).to_string())),
            ("offsets.retention.check.interval.ms", Some(g.offsets_retention_check_interval_ms.to_string())),
            ("offsets.topic.replication.factor", Some(g.offsets_topic_replication_factor.to_string())),
            ("offsets.commit.timeout.ms", Some(g.offsets_commit_timeout_ms.to_string())),
            ("offset.metadata.max.bytes", Some(g.offset_metadata_max_bytes.to_string())),
            ("group.initial.rebalance.delay.ms", Some(g.initial_rebalance_delay_ms.to_string())),
            ("group.min.session.timeout.ms", Some(g.min_session_timeout_ms.to_string())),
            ("group.max.session.timeout.ms", Some(g.max_session_timeout_ms.to_string())),
            ("group.max.size", Some(g.max_size.to_string())),
            ("group.consumer.session.timeout.ms", Some(g.consumer_session_timeout_ms.to_string())),
            ("group.consumer.heartbeat.interval.ms", Some(g.consumer_heartbeat_interval_ms.to_string())),
            ("group.consumer.max.size", Some(g.consumer_max_size.to_string())),
            ("group.consumer.assignors", Some(g.consumer_assignors.join(","))),
            ("broker.session.timeout.ms", Some(self.broker_session_timeout_ms.to_string())),
            ("broker.heartbeat.interval.ms", Some(self.broker_heartbeat_interval_ms.to_string())),
        ];
        effective.extend(self.limits.describe());
        effective.extend(self.rpc.describe());
        effective.extend(self.replica_fetch.describe());
        let mut out: Vec<(String, Option<String>, bool)> = effective
            .into_iter()
            .map(|(name, value)| (name.to_string(), value, self.given.contains_key(name)))
            .collect();
        for (name, value) in &self.given {
            if !out.iter().any(|(n, _, _)| n == name) {
                out.push((name.clone(), Some(value.clone()), true));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Splits `key=value` (or Java's `key: value` / `key value`), trimming both.
fn split_property(line: &str) -> Option<(String, String)> {
    let idx = line.find(['=', ':']).or_else(|| line.find(char::is_whitespace))?;
    let key = line[..idx].trim();
    if key.is_empty() {
        return None;
    }
    Some((key.to_string(), line[idx + 1..].trim().to_string()))
}

struct Parser<'a> {
    given: &'a BTreeMap<String, String>,
    origins: &'a BTreeMap<String, String>,
}

impl Parser<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.given.get(key).map(String::as_str)
    }

    fn origin(&self, key: &str) -> &str {
        self.origins.get(key).map(String::as_str).unwrap_or("default")
    }

    fn invalid(&self, key: &str, reason: &str) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.into(),
            value: self.get(key).unwrap_or_default().into(),
            origin: self.origin(key).into(),
            reason: reason.into(),
        }
    }

    fn opt_num<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| self.invalid(key, "not a valid number")),
        }
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        Ok(self.opt_num(key)?.unwrap_or(default))
    }

    fn min<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        key: &str,
        default: T,
        min: T,
    ) -> Result<T, ConfigError> {
        let v = self.num(key, default)?;
        if v < min {
            return Err(self.invalid(key, &format!("must be at least {min}")));
        }
        Ok(v)
    }

    fn positive<T: std::str::FromStr + PartialOrd + Default + Copy>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        let v = self.num(key, default)?;
        if v <= T::default() {
            return Err(self.invalid(key, "must be at least 1"));
        }
        Ok(v)
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(self.invalid(key, "expected true or false")),
        }
    }
}

/// Kafka broker settings Potok acts on.
const ACTED_ON: &[&str] = &[
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "message.max.bytes",
    "socket.request.max.bytes",
    "log.message.timestamp.type",
    "controller.listener.names",
    "log.cleaner.enable",
    "log.cleaner.backoff.ms",
    "potok.metadata.recover",
    "metadata.log.segment.bytes",
    "metadata.log.max.record.bytes.between.snapshots",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "offsets.topic.replication.factor",
    "offsets.commit.timeout.ms",
    "offset.metadata.max.bytes",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "group.consumer.session.timeout.ms",
    "group.consumer.min.session.timeout.ms",
    "group.consumer.max.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "group.consumer.min.heartbeat.interval.ms",
    "group.consumer.max.heartbeat.interval.ms",
    "group.consumer.max.size",
    "group.consumer.assignors",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
];

/// Kafka broker settings accepted so that a Kafka `server.properties` starts a
/// Potok broker, but not (yet) acted on.
const ACCEPTED: &[&str] = &[
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "security.inter.broker.protocol",
    "num.network.threads",
    "num.io.threads",
    "num.recovery.threads.per.data.dir",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "offsets.topic.compression.codec",
    "offsets.load.buffer.size",
    "group.coordinator.rebalance.protocols",
    "group.coordinator.new.enable",
    "group.coordinator.threads",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "log.cleanup.policy",
    "log.flush.scheduler.interval.ms",
    "log.flush.offset.checkpoint.interval.ms",
    "zookeeper.connect",
    "zookeeper.connection.timeout.ms",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "compression.type",
    "delete.topic.enable",
    "log.preallocate",
    "log.segment.delete.delay.ms",
    "metadata.log.dir",
    "cluster.id",
    "auto.leader.rebalance.enable",
    "confluent.support.metrics.enable",
];

/// Prefixes of Kafka's security settings (`ssl.keystore.location`,
/// `sasl.enabled.mechanisms`, `security.providers`, per-listener
/// `listener.name.<name>.<setting>` overrides): accepted as Kafka settings, but
/// without effect while no listener is secured (and none may be yet).
const SECURITY_PREFIXES: &[&str] = &["ssl.", "sasl.", "security.", "listener.name."];

fn is_security_setting(key: &str) -> bool {
    SECURITY_PREFIXES.iter().any(|prefix| key.starts_with(prefix) && key.len() > prefix.len())
}

/// True for a Kafka broker setting Potok knows (acted on or accepted).
pub(crate) fn is_known_key(key: &str) -> bool {
    // Settings Kafka changes live are Kafka settings too, wherever they are given.
    ACTED_ON.contains(&key)
        || ACCEPTED.contains(&key)
        || is_security_setting(key)
        || LimitsConfig::KEYS.contains(&key)
        || BrokerRpcConfig::KEYS.contains(&key)
        || ReplicaFetchConfig::KEYS.contains(&key)
        || crate::dynamic_config::is_dynamic_broker_config(key)
}

impl ServerConfig {
    /// The security settings given (`ssl.*`, `sasl.*`, …) that have no effect,
    /// as no listener uses security: for one line in the start-up log.
    pub fn inert_security_settings(&self) -> Vec<&str> {
        self.given
            .keys()
            .map(String::as_str)
            .filter(|k| is_security_setting(k))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(items: &[(&str, &str)]) -> Vec<(String, String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string(), "test".to_string())).collect()
    }

    #[test]
    fn defaults_serve_a_developer_on_localhost_9092() {
        let c = ServerConfig::from_entries(vec![]).expect("defaults");
        assert_eq!(c.listeners, vec![Listener { name: "PLAINTEXT".into(), host: "localhost".into(), port: 9092 }]);
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.log_roll_ms, 168 * 3_600_000);
    }

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err = ServerConfig::from_entries(entries(&[("log.dirz", "/x")])).expect_err("must fail");
        assert!(err.to_string().contains("log.dirz"), "{err}");
    }

    #[test]
    fn malformed_number_is_named_in_the_error() {
        let err = ServerConfig::from_entries(entries(&[("num.partitions", "three")])).expect_err("must fail");
        assert!(err.to_string().contains("num.partitions"), "{err}");
    }

    #[test]
    fn kraft_server_properties_start_with_controller_listener_left_out() {
        let c = ServerConfig::from_entries(entries(&[
            ("process.roles", "broker,controller"),
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("controller.listener.names", "CONTROLLER"),
            ("log.roll.hours", "1"),
        ]))
        .expect("kraft config");
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].host, "");
        assert_eq!(c.log_roll_ms, 3_600_000);
    }

    fn refusal(items: &[(&str, &str)]) -> String {
        match ServerConfig::from_entries(entries(items)) {
            Ok(_) => panic!("{items:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn secured_listeners_are_refused_naming_listener_and_protocol() {
        let err = refusal(&[("listeners", "SASL_PLAINTEXT://localhost:9093")]);
        assert!(err.contains("listener SASL_PLAINTEXT") && err.contains("security protocol SASL_PLAINTEXT"), "{err}");
        assert!(err.contains("not supported yet"), "{err}");
        let err = refusal(&[
            ("listeners", "PLAINTEXT://:9092,EXTERNAL://:9094"),
            ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,EXTERNAL:SASL_SSL"),
        ]);
        assert!(err.contains("listener EXTERNAL") && err.contains("SASL_SSL"), "{err}");
        let err = refusal(&[("listeners", "PLAINTEXT://:9092"), ("advertised.listeners", "SSL://h:9092")]);
        assert!(err.contains("advertised.listeners") && err.contains("listener SSL"), "{err}");
        // A name Kafka cannot map is refused as Kafka refuses it.
        let err = refusal(&[("listeners", "INTERNAL://:9092")]);
        assert!(err.contains("no security protocol defined for listener INTERNAL"), "{err}");
        // The stock KRaft map (every protocol listed) with plaintext listeners starts.
        let c = ServerConfig::from_entries(entries(&[
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("controller.listener.names", "CONTROLLER"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
        ]));
        assert!(c.is_ok(), "{:?}", c.err());
        // Kafka 4's file advertises its controller listener too; it is not served.
        let c = ServerConfig::from_entries(entries(&[
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("advertised.listeners", "PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093"),
            ("controller.listener.names", "CONTROLLER"),
        ]));
        assert!(c.is_ok(), "{:?}", c.err());
    }

    #[test]
    fn security_settings_are_known_and_reported_as_without_effect() {
        let c = ServerConfig::from_entries(entries(&[
            ("ssl.keystore.location", "/etc/k.jks"),
            ("sasl.enabled.mechanisms", "PLAIN"),
            ("listener.name.external.ssl.key.password", "x"),
            ("num.partitions", "2"),
        ]))
        .expect("security settings are Kafka settings");
        assert_eq!(
            c.inert_security_settings(),
            vec!["listener.name.external.ssl.key.password", "sasl.enabled.mechanisms", "ssl.keystore.location"]
        );
        assert!(refusal(&[("ssl.", "x")]).contains("unknown setting"));
    }

    #[test]
    fn separate_roles_follow_kafkas_listener_rules() {
        const VOTERS: (&str, &str) = ("controller.quorum.voters", "1@127.0.0.1:19191");
        const NAMES: (&str, &str) = ("controller.listener.names", "CONTROLLER");
        // A controller-only node listens on its controller listener alone and is a voter.
        let c = ServerConfig::from_entries(entries(&[("process.roles", "controller"), VOTERS, NAMES, ("listeners", "CONTROLLER://127.0.0.1:19191")]))
            .expect("a controller-only node");
        assert!(c.kraft.is_cluster() && !c.kraft.is_observer() && c.listeners.is_empty() && c.advertised_listeners.is_empty());
        assert_eq!(c.controller_listeners.len(), 1);
        let err = refusal(&[("process.roles", "controller"), VOTERS, NAMES, ("listeners", "PLAINTEXT://:9092,CONTROLLER://127.0.0.1:19191")]);
        assert!(err.contains("listeners") && err.contains("must only contain KRaft controller listeners") && err.contains("PLAINTEXT is not one"), "{err}");
        let err = refusal(&[("process.roles", "controller"), VOTERS, NAMES, ("listeners", "CONTROLLER://127.0.0.1:19191"), ("advertised.listeners", "PLAINTEXT://a:9092")]);
        assert!(err.contains("advertised.listeners") && err.contains("must only contain KRaft controller listeners"), "{err}");
        let err = refusal(&[("process.roles", "controller"), VOTERS, NAMES, ("listeners", "PLAINTEXT://:9092")]);
        assert!(err.contains("appearing in the 'listeners'"), "{err}");
        let err = refusal(&[("process.roles", "controller"), ("controller.quorum.voters", "2@b:9093"), NAMES, ("listeners", "CONTROLLER://:9093")]);
        assert!(err.contains("node.id 1 is not a voter"), "{err}");
        let err = refusal(&[("process.roles", "controller"), NAMES, ("listeners", "CONTROLLER://:9093")]);
        assert!(err.contains("needs controller.quorum.voters"), "{err}");

        // A broker-only node of a quorum is an observer: not a voter, and it
        // names the controller listener without listening on it.
        let c = ServerConfig::from_entries(entries(&[("process.roles", "broker"), ("node.id", "4"), VOTERS, NAMES, ("listeners", "PLAINTEXT://127.0.0.1:19294")]))
            .expect("a broker-only node");
        assert!(c.kraft.is_cluster() && c.kraft.is_observer() && c.controller_listeners.is_empty());
        let err = refusal(&[("process.roles", "broker"), ("node.id", "4"), VOTERS, ("listeners", "PLAINTEXT://:9092")]);
        assert!(err.contains("controller.listener.names") && err.contains("at least one value when running KRaft with just the broker role"), "{err}");
        let err = refusal(&[("process.roles", "broker"), ("node.id", "4"), VOTERS, NAMES, ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093")]);
        assert!(err.contains("must not contain a value appearing in the 'listeners'") && err.contains("just the broker role"), "{err}");
        let err = refusal(&[("process.roles", "broker"), VOTERS, NAMES]);
        assert!(err.contains("node.id 1 is a voter but process.roles has no controller"), "{err}");
        // Or one that asks the bootstrap controllers for the voters at start.
        let c = ServerConfig::from_entries(entries(&[("process.roles", "broker"), ("node.id", "4"), ("controller.quorum.bootstrap.servers", "a:9093,b:9093"), NAMES]))
            .expect("a broker-only node with bootstrap controllers");
        assert!(c.kraft.is_cluster() && c.kraft.is_observer() && c.kraft.voters.is_empty());
        let err = refusal(&[("process.roles", "broker"), ("node.id", "4"), ("controller.quorum.bootstrap.servers", "a:9093")]);
        assert!(err.contains("at least one value when running KRaft with just the broker role"), "{err}");

        // Combined nodes as before: several voters need the controller
        // listener among `listeners`, and a controller must be a voter.
        let err = refusal(&[("controller.quorum.voters", "1@a:9093,2@b:9093,3@c:9093")]);
        assert!(err.contains("controller.listener.names") && err.contains("appearing in the 'listeners'"), "{err}");
        let err = refusal(&[("controller.quorum.voters", "2@b:9093")]);
        assert!(err.contains("node.id 1 is not a voter"), "{err}");
        let err = refusal(&[("controller.quorum.bootstrap.servers", "a:9093,b:9093")]);
        assert!(err.contains("controller.quorum.bootstrap.servers") && err.contains("2 controllers"), "{err}");
        assert!(refusal(&[("process.roles", "broker,leader")]).contains("unknown role 'leader'"));
        // Kafka's single-node KRaft files start; a broker-only node without
        // a quorum is a cluster of one, as before.
        for items in [
            &[("process.roles", "broker,controller"), ("node.id", "1"), ("controller.quorum.voters", "1@localhost:9093")][..],
            &[("process.roles", "broker,controller"), ("controller.quorum.bootstrap.servers", "localhost:9093")][..],
            &[("process.roles", "broker")][..],
        ] {
            let c = ServerConfig::from_entries(entries(items));
            assert!(c.as_ref().is_ok_and(|c| !c.kraft.is_cluster()), "{items:?}: {:?}", c.err());
        }
    }

    #[test]
    fn the_issue_example_of_a_three_node_cluster_is_cluster_mode() {
        let c = ServerConfig::from_entries(entries(&[
            ("node.id", "2"),
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", "1@127.0.0.1:19191,2@127.0.0.1:19192,3@127.0.0.1:19193"),
            ("listeners", "PLAINTEXT://127.0.0.1:19292,CONTROLLER://127.0.0.1:19192"),
            ("advertised.listeners", "PLAINTEXT://127.0.0.1:19292"),
            ("controller.listener.names", "CONTROLLER"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
            ("inter.broker.listener.name", "PLAINTEXT"),
        ]))
        .expect("the issue's example");
        assert!(c.kraft.is_cluster());
        assert_eq!(c.kraft.voters.len(), 3);
        assert_eq!(c.listeners, vec![Listener { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 19292 }]);
        assert_eq!(c.controller_listeners, vec![Listener { name: "CONTROLLER".into(), host: "127.0.0.1".into(), port: 19192 }]);
        // One voter is a cluster of one, as before.
        let one = ServerConfig::from_entries(entries(&[("node.id", "1"), ("controller.quorum.voters", "1@localhost:9093")])).expect("one voter");
        assert!(!one.kraft.is_cluster());
    }

    #[test]
    fn kraft_settings_parse_into_typed_values() {
        // Kafka's config/server.properties for one combined node.
        let c = ServerConfig::from_entries(entries(&[
            ("process.roles", "broker,controller"),
            ("node.id", "1"),
            ("controller.quorum.bootstrap.servers", "localhost:9093"),
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("inter.broker.listener.name", "PLAINTEXT"),
            ("advertised.listeners", "PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093"),
            ("controller.listener.names", "CONTROLLER"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL"),
        ]))
        .expect("kafka's file");
        let k = &c.kraft;
        assert_eq!(k.roles, ProcessRoles { broker: true, controller: true });
        assert_eq!(k.bootstrap_servers, vec![("localhost".to_string(), 9093)]);
        assert!(k.voters.is_empty());
        assert_eq!(k.inter_broker_listener_name, "PLAINTEXT");
        assert_eq!(k.security_protocol_map.get("CONTROLLER").map(String::as_str), Some("PLAINTEXT"));
        assert_eq!(k.security_protocol_map.get("SSL").map(String::as_str), Some("SSL"));

        let c = ServerConfig::from_entries(entries(&[("node.id", "3"), ("controller.quorum.voters", " 3@[::1]:9093 ")])).expect("ipv6 voter");
        assert_eq!(c.kraft.voters, vec![QuorumVoter { id: 3, host: "::1".into(), port: 9093 }]);
        // Unset: one process is broker and controller; Kafka's default protocol map.
        let c = ServerConfig::from_entries(vec![]).expect("defaults");
        assert_eq!(c.kraft.roles, ProcessRoles { broker: true, controller: true });
        assert_eq!(c.kraft.security_protocol_map.len(), SECURITY_PROTOCOLS.len());
        assert_eq!(c.kraft.inter_broker_listener_name, "PLAINTEXT");
        let c = ServerConfig::from_entries(entries(&[("process.roles", "broker")])).expect("broker only");
        assert_eq!(c.kraft.roles, ProcessRoles { broker: true, controller: false });
        let c = ServerConfig::from_entries(entries(&[("security.inter.broker.protocol", "PLAINTEXT")])).expect("by protocol");
        assert_eq!(c.kraft.inter_broker_listener_name, "PLAINTEXT");
    }

    #[test]
    fn kraft_settings_kafka_rejects_are_named_with_the_entry() {
        let invalid = |items: &[(&str, &str)], key: &str, text: &str| {
            let err = ServerConfig::from_entries(entries(items)).expect_err("must fail");
            assert!(matches!(&err, ConfigError::InvalidValue { key: k, .. } if k == key), "{items:?}: {err}");
            assert!(err.to_string().contains(text), "{items:?}: {err}");
        };
        invalid(&[("process.roles", "broker,broker")], "process.roles", "role 'broker' is given twice");
        invalid(&[("controller.quorum.voters", "x@a:9093")], "controller.quorum.voters", "'x@a:9093': the id is not a node id");
        invalid(&[("controller.quorum.voters", "-1@a:9093")], "controller.quorum.voters", "the id is not a node id");
        invalid(&[("controller.quorum.voters", "1@a")], "controller.quorum.voters", "'1@a': expected ID@HOST:PORT");
        invalid(&[("controller.quorum.voters", "1a:9093")], "controller.quorum.voters", "expected ID@HOST:PORT");
        invalid(&[("controller.quorum.voters", "1@a:70000")], "controller.quorum.voters", "port is not a number");
        invalid(&[("controller.quorum.voters", "1@:9093")], "controller.quorum.voters", "no host");
        // Checked before the one-node refusal: a duplicate is an error in any cluster.
        invalid(&[("controller.quorum.voters", "1@a:9093,1@b:9093")], "controller.quorum.voters", "voter 1 is listed twice");
        invalid(&[("controller.quorum.bootstrap.servers", "a")], "controller.quorum.bootstrap.servers", "'a': expected HOST:PORT");
        invalid(
            &[("process.roles", "broker"), ("controller.quorum.voters", "1@a:9093")],
            "controller.quorum.voters",
            "node.id 1 is a voter but process.roles has no controller",
        );
        invalid(
            &[("inter.broker.listener.name", "PLAINTEXT"), ("security.inter.broker.protocol", "PLAINTEXT")],
            "inter.broker.listener.name",
            "only one of",
        );
        invalid(&[("inter.broker.listener.name", "REPLICATION")], "inter.broker.listener.name", "REPLICATION is not in advertised.listeners");
        invalid(
            &[
                ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
                ("controller.listener.names", "CONTROLLER"),
                ("inter.broker.listener.name", "CONTROLLER"),
            ],
            "inter.broker.listener.name",
            "CONTROLLER is a controller listener",
        );
        invalid(&[("security.inter.broker.protocol", "TLS")], "security.inter.broker.protocol", "unknown security protocol 'TLS'");
    }

    #[test]
    fn backslash_continues_a_properties_line() {
        let lines = logical_lines("# c\nlisteners=PLAINTEXT://a:1,\\\n    PLAINTEXT://b:2\n\nx=y\\\\\n");
        assert_eq!(lines, vec![(2, "listeners=PLAINTEXT://a:1,PLAINTEXT://b:2".to_string()), (5, "x=y\\\\".to_string())]);
        assert_eq!(unescape("a\\:b\\\\c"), "a:b\\c");
    }

    #[test]
    fn properties_lines_split_on_equals_or_colon() {
        assert_eq!(split_property("a.b = c=d"), Some(("a.b".into(), "c=d".into())));
        assert_eq!(split_property("a.b: c"), Some(("a.b".into(), "c".into())));
    }
}

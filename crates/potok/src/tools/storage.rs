//! `potok kafka-storage` (Kafka's `kafka-storage.sh`): `random-uuid`, `format` and
//! `info` for the log directories of a server.properties.
//!
//! Formatting is optional for Potok (a fresh directory initialises itself on the
//! first start); `format` exists so that Kafka's KRaft quick-start runs as written,
//! and writes the same `meta.properties` the broker would.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use broker::ServerConfig;

use super::kafka::parse_properties;

/// `kafka-storage` subcommands, with Kafka's flags.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum StorageCommand {
    /// Print a random UUID (a new cluster id).
    RandomUuid,
    /// Format the log directories of this node.
    Format(FormatArgs),
    /// Describe the log directories of this node.
    Info {
        /// The server.properties whose log.dirs to describe.
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}

/// `kafka-storage format` flags.
#[derive(clap::Args, Debug)]
pub(crate) struct FormatArgs {
    /// The server.properties whose log.dirs to format.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// The cluster id (from `random-uuid`).
    #[arg(long = "cluster-id", short = 't', allow_hyphen_values = true)]
    cluster_id: String,
    /// Skip directories already formatted and format the others.
    #[arg(long, short = 'g')]
    ignore_formatted: bool,
    /// Kafka 3.9+: this node is the only controller (Potok's single node always is).
    #[arg(long, short = 's')]
    standalone: bool,
    /// Kafka 3.9+: the initial controllers, ID@HOST:PORT:DIRECTORY_ID,...
    #[arg(long, short = 'I')]
    initial_controllers: Option<String>,
    /// Kafka 3.9+: no initial controllers (this node joins a quorum).
    #[arg(long, short = 'N')]
    no_initial_controllers: bool,
    /// The metadata.version to start with (Potok has a single version: ignored).
    #[arg(long, short = 'r')]
    release_version: Option<String>,
    /// A feature level, NAME=LEVEL (ignored, as --release-version).
    #[arg(long, short = 'f')]
    feature: Vec<String>,
}

pub(crate) fn run(cmd: StorageCommand) -> ExitCode {
    let result = match cmd {
        StorageCommand::RandomUuid => {
            println!("{}", broker::new_cluster_id());
            Ok(())
        }
        StorageCommand::Format(args) => format(&args),
        StorageCommand::Info { config } => info(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Kafka's tool prints only the message.
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<ServerConfig, String> {
    ServerConfig::load(Some(path), &[]).map_err(|e| e.to_string())
}

/// Kafka's `Uuid.fromString` rule: URL-safe base64 of 16 bytes (22 characters,
/// or 24 with `==` padding).
fn check_cluster_id(id: &str) -> Result<String, String> {
    let bare = id.strip_suffix("==").unwrap_or(id);
    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if bare.len() == 22 && bare.chars().all(base64) {
        Ok(bare.to_string())
    } else {
        Err(format!(
            "Cluster ID string {id} does not appear to be a valid UUID: expected 22 characters of URL-safe base64 (16 bytes), as `kafka-storage.sh random-uuid` prints"
        ))
    }
}

/// The `key=value` pairs of a formatted directory's meta.properties, or None.
fn meta_properties(dir: &Path) -> Result<Option<Vec<(String, String)>>, String> {
    let path = dir.join(broker::META_PROPERTIES_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(parse_properties(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("I/O error trying to read {}: {e}", path.display())),
    }
}

fn get<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn format(args: &FormatArgs) -> Result<(), String> {
    let config = load(&args.config)?;
    let cluster_id = check_cluster_id(&args.cluster_id)?;
    if config.node_id < 0 {
        return Err(format!(
            "The node.id must be set to a non-negative integer. We saw {}",
            config.node_id
        ));
    }
    let modes = [
        args.standalone,
        args.initial_controllers.is_some(),
        args.no_initial_controllers,
    ];
    if modes.iter().filter(|m| **m).count() > 1 {
        return Err("Only one of --standalone, --initial-controllers and --no-initial-controllers may be given.".into());
    }
    if let Some(list) = &args.initial_controllers {
        let voters: Vec<&str> = list.split(',').filter(|v| !v.trim().is_empty()).collect();
        let this_node = |v: &str| v.split_once('@').map(|(id, _)| id.trim()) == Some(&config.node_id.to_string());
        if voters.len() != 1 || !voters.iter().all(|v| this_node(v)) {
            return Err(format!(
                "--initial-controllers {list}: a quorum other than this node alone is not supported yet"
            ));
        }
    }
    if args.release_version.is_some() || !args.feature.is_empty() {
        eprintln!("Note: --release-version and --feature have no effect on Potok (one metadata version)");
    }
    // Like Kafka: check every formatted directory belongs to this cluster and
    // node, then refuse to format over any unless told to skip them.
    let mut empty = Vec::new();
    let mut formatted = Vec::new();
    for dir in &config.log_dirs {
        match meta_properties(dir)? {
            None => empty.push(dir.clone()),
            Some(props) => {
                let meta = dir.join(broker::META_PROPERTIES_FILE);
                if let Some(found) = get(&props, "cluster.id").filter(|f| *f != cluster_id) {
                    return Err(format!(
                        "Invalid cluster.id in: {}. Expected {cluster_id}, but read {found}",
                        meta.display()
                    ));
                }
                let node = config.node_id.to_string();
                if let Some(found) = get(&props, "node.id").filter(|f| **f != node) {
                    return Err(format!(
                        "Stored node id {found} doesn't match previous node id {node} in {}. If you moved your data, make sure your configured node id matches. If you intend to create a new node, you should remove all data in your data directories.",
                        meta.display()
                    ));
                }
                formatted.push(dir.clone());
            }
        }
    }
    if let (false, Some(first)) = (args.ignore_formatted, formatted.first()) {
        return Err(format!(
            "Log directory {} is already formatted. Use --ignore-formatted to ignore this directory and format the others.",
            first.display()
        ));
    }
    if empty.is_empty() {
        println!("All of the log directories are already formatted.");
        return Ok(());
    }
    for dir in &empty {
        // The metadata log lives in the first log dir (Kafka's metadata directory).
        let kind = if Some(dir) == config.log_dirs.first() {
            "metadata directory"
        } else {
            "data directory"
        };
        println!("Formatting {kind} {}.", dir.display());
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("Unable to create storage directory {}: {e}", dir.display()))?;
        broker::write_meta_properties(dir, &cluster_id, config.node_id).map_err(|e| {
            format!(
                "Error while writing meta.properties file {}: {e}",
                dir.display()
            )
        })?;
    }
    Ok(())
}

fn info(config: &Path) -> Result<(), String> {
    let config = load(config)?;
    let mut problems = Vec::new();
    let mut found = Vec::new();
    let mut first: Option<(PathBuf, Vec<(String, String)>)> = None;
    for dir in &config.log_dirs {
        if !dir.is_dir() {
            problems.push(if dir.exists() {
                format!("{} is not a directory", dir.display())
            } else {
                format!("{} does not exist", dir.display())
            });
            continue;
        }
        found.push(dir.display().to_string());
        match meta_properties(dir)? {
            None => problems.push(format!("{} is not formatted.", dir.display())),
            Some(mut props) => {
                props.sort();
                // Each directory has its own directory.id; the rest must agree.
                let shared = |p: &[(String, String)]| -> Vec<(String, String)> {
                    p.iter().filter(|(k, _)| k != "directory.id").cloned().collect()
                };
                match &first {
                    None => first = Some((dir.clone(), props)),
                    Some((_, seen)) if shared(seen) != shared(&props) => problems.push(format!(
                        "Metadata for {} was {}, but other directories featured {}",
                        dir.join(broker::META_PROPERTIES_FILE).display(),
                        shown(&props),
                        shown(seen)
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    print_section("Found log directory:", "Found log directories:", &found);
    if let Some((_, props)) = &first {
        println!("Found metadata: {}", shown(props));
        println!();
    }
    if problems.is_empty() {
        return Ok(());
    }
    print_section("Found problem:", "Found problems:", &problems);
    // The problems are printed: fail without another message.
    Err(String::new())
}

/// A heading (singular or plural), the items indented, a blank line; nothing when empty.
fn print_section(one: &str, many: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    println!("{}", if items.len() == 1 { one } else { many });
    for item in items {
        println!("  {item}");
    }
    println!();
}

/// `{key=value, ...}`, as Java prints a Properties map.
fn shown(props: &[(String, String)]) -> String {
    let inner: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_checked_as_kafka_checks_them() {
        let id = broker::new_cluster_id();
        assert_eq!(check_cluster_id(&id).ok(), Some(id.clone()));
        assert_eq!(
            check_cluster_id(&format!("{id}==")).ok(),
            Some(id.clone())
        );
        assert!(check_cluster_id("not-a-uuid").is_err());
        assert!(check_cluster_id(&format!("{id}x")).is_err());
        assert!(!id.starts_with('-'));
    }
}

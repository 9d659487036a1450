//! Kafka's log tools that talk to a broker: `kafka-delete-records`,
//! `kafka-log-dirs` (and `potok log-dirs`) and `kafka-get-offsets`, with Kafka's
//! flags and output.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use client::{Admin, LogDirDescription};

use super::groups::java_error;
use super::DEFAULT_BOOTSTRAP;

/// Flags of Kafka's `kafka-delete-records.sh`.
#[derive(clap::Args, Debug)]
pub(crate) struct KafkaDeleteRecordsArgs {
    /// The broker to connect to, host:port[,host:port].
    #[arg(long, required = true)]
    bootstrap_server: String,
    /// JSON with the offset per partition:
    /// {"partitions":[{"topic":"foo","partition":1,"offset":1}],"version":1}
    #[arg(long, required = true)]
    offset_json_file: PathBuf,
    /// Client properties file (accepted; security settings are not supported yet).
    #[arg(long)]
    command_config: Option<PathBuf>,
}

/// Parses Kafka's offset JSON (version 1) into (topic, partition, offset), in
/// file order, refusing a partition named twice as Kafka does.
pub(crate) fn parse_offset_json(text: &str) -> anyhow::Result<Vec<((String, i32), i64)>> {
    let js: serde_json::Value =
        serde_json::from_str(text).context("the offset JSON file does not parse")?;
    let version = js.get("version").map_or(Some(1), serde_json::Value::as_i64);
    if version != Some(1) {
        bail!(
            "Not supported version field value {}",
            js.get("version")
                .map_or_else(String::new, |v| v.to_string())
        );
    }
    let Some(partitions) = js.get("partitions").and_then(serde_json::Value::as_array) else {
        bail!("Missing partitions field");
    };
    let mut out: Vec<((String, i32), i64)> = Vec::new();
    let mut duplicates = Vec::new();
    for p in partitions {
        let topic = p.get("topic").and_then(serde_json::Value::as_str);
        let partition = p
            .get("partition")
            .and_then(serde_json::Value::as_i64)
            .and_then(|v| i32::try_from(v).ok());
        let offset = p.get("offset").and_then(serde_json::Value::as_i64);
        let (Some(topic), Some(partition), Some(offset)) = (topic, partition, offset) else {
            bail!("each partition needs \"topic\" (string), \"partition\" and \"offset\" (numbers): {p}");
        };
        let tp = (topic.to_owned(), partition);
        if out.iter().any(|(seen, _)| *seen == tp) {
            duplicates.push(format!("{topic}-{partition}"));
        }
        out.push((tp, offset));
    }
    if !duplicates.is_empty() {
        bail!(
            "Offset json file contains duplicate topic partitions: {}",
            duplicates.join(",")
        );
    }
    Ok(out)
}

/// `kafka-delete-records --offset-json-file F`.
pub(crate) async fn delete_records(args: KafkaDeleteRecordsArgs) -> anyhow::Result<ExitCode> {
    let path = &args.offset_json_file;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let offsets = parse_offset_json(&text)?;
    let admin = Admin::connect(&args.bootstrap_server).await?;
    println!("Executing records delete operation");
    let results = admin.delete_records(&offsets).await?;
    println!("Records delete operation completed:");
    for ((topic, partition), result) in results {
        match result {
            Ok(low_watermark) => {
                println!("partition: {topic}-{partition}\tlow_watermark: {low_watermark}")
            }
            Err(e) => println!("partition: {topic}-{partition}\terror: {}", java_error(&e)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags of Kafka's `kafka-log-dirs.sh`.
#[derive(clap::Args, Debug)]
pub(crate) struct KafkaLogDirsArgs {
    /// The broker to connect to, host:port[,host:port].
    #[arg(long, required = true)]
    bootstrap_server: String,
    /// Describe the log dirs (the only action).
    #[arg(long, required = true)]
    describe: bool,
    /// Brokers to query, "0,1,2" (default: all).
    #[arg(long, default_value = "")]
    broker_list: String,
    /// Topics to show, "t1,t2" (default: all).
    #[arg(long, default_value = "")]
    topic_list: String,
    /// Client properties file (accepted; security settings are not supported yet).
    #[arg(long)]
    command_config: Option<PathBuf>,
}

/// `potok log-dirs`: the log dirs of every broker, as a table.
#[derive(clap::Args, Debug)]
pub(crate) struct LogDirsArgs {
    /// The broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
    /// Only these topics (repeatable).
    #[arg(long)]
    topic: Vec<String>,
}

fn split_list(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every broker's log dirs; `brokers` empty means all.
async fn describe_brokers(
    admin: &Admin,
    brokers: &[i32],
) -> anyhow::Result<(Vec<i32>, Vec<(i32, Vec<LogDirDescription>)>)> {
    let metadata = admin.client().refresh_metadata(Some(&[])).await?;
    let cluster: Vec<i32> = metadata.brokers.keys().copied().collect();
    let missing: Vec<String> = brokers
        .iter()
        .filter(|b| !cluster.contains(b))
        .map(i32::to_string)
        .collect();
    if !missing.is_empty() {
        let existing: Vec<String> = cluster.iter().map(i32::to_string).collect();
        bail!(
            "ERROR: The given brokers do not exist from --broker-list: {}. Current existent brokers: {}",
            missing.join(","),
            existing.join(",")
        );
    }
    let chosen: Vec<i32> = if brokers.is_empty() {
        cluster
    } else {
        brokers.to_vec()
    };
    let mut out = Vec::new();
    for &broker in &chosen {
        out.push((broker, admin.describe_log_dirs(broker, None).await?));
    }
    Ok((chosen, out))
}

/// `kafka-log-dirs --describe`: Kafka's two lines and its JSON (keys in the
/// order Kafka's tool prints them).
pub(crate) async fn kafka_log_dirs(args: KafkaLogDirsArgs) -> anyhow::Result<ExitCode> {
    let brokers = split_list(&args.broker_list)
        .into_iter()
        .map(|b| {
            b.parse::<i32>()
                .with_context(|| format!("--broker-list: {b:?} is not a broker id"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let topics = split_list(&args.topic_list);
    let admin = Admin::connect(&args.bootstrap_server).await?;
    let (chosen, described) = match describe_brokers(&admin, &brokers).await {
        Ok(found) => found,
        Err(e) if e.to_string().starts_with("ERROR: ") => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e),
    };
    println!("Querying brokers for log directories information");
    let ids: Vec<String> = chosen.iter().map(i32::to_string).collect();
    println!(
        "Received log directory information from brokers {}",
        ids.join(",")
    );
    println!("{}", log_dirs_json(&described, &topics));
    Ok(ExitCode::SUCCESS)
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Kafka's JSON: `{"brokers":[{"broker":1,"logDirs":[{"logDir":..,"error":..,
/// "partitions":[{"partition":"t-0","size":..,"offsetLag":..,"isFuture":..}]}]}],
/// "version":1}`.
fn log_dirs_json(described: &[(i32, Vec<LogDirDescription>)], topics: &[&str]) -> String {
    let brokers: Vec<String> = described
        .iter()
        .map(|(broker, dirs)| {
            let dirs: Vec<String> = dirs
                .iter()
                .map(|d| {
                    let error = d.error.as_ref().map_or_else(
                        || "null".to_owned(),
                        |e| {
                            json_str(
                                java_error(&client::Error::Kafka(e.clone()))
                                    .split(':')
                                    .next()
                                    .unwrap_or_default(),
                            )
                        },
                    );
                    let partitions: Vec<String> = d
                        .replicas
                        .iter()
                        .filter(|r| topics.is_empty() || topics.contains(&r.partition.0.as_str()))
                        .map(|r| {
                            format!(
                                "{{\"partition\":{},\"size\":{},\"offsetLag\":{},\"isFuture\":{}}}",
                                json_str(&format!("{}-{}", r.partition.0, r.partition.1)),
                                r.size,
                                r.offset_lag,
                                r.is_future
                            )
                        })
                        .collect();
                    format!(
                        "{{\"logDir\":{},\"error\":{error},\"partitions\":[{}]}}",
                        json_str(&d.path),
                        partitions.join(",")
                    )
                })
                .collect();
            format!("{{\"broker\":{broker},\"logDirs\":[{}]}}", dirs.join(","))
        })
        .collect();
    format!("{{\"brokers\":[{}],\"version\":1}}", brokers.join(","))
}

/// `potok log-dirs`: one line per partition and one per log dir with its space.
pub(crate) async fn log_dirs(args: LogDirsArgs) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(&args.bootstrap_server).await?;
    let (_, described) = describe_brokers(&admin, &[]).await?;
    let mut rows = vec![[
        "BROKER",
        "LOG-DIR",
        "TOPIC",
        "PARTITION",
        "SIZE",
        "OFFSET-LAG",
    ]
    .map(String::from)
    .to_vec()];
    let mut dirs = Vec::new();
    for (broker, descriptions) in &described {
        for d in descriptions {
            dirs.push(format!(
                "broker {broker} log dir {}: {} of {} bytes usable{}",
                d.path,
                d.usable_bytes,
                d.total_bytes,
                d.error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(" (offline: {e})"))
            ));
            for r in d
                .replicas
                .iter()
                .filter(|r| args.topic.is_empty() || args.topic.contains(&r.partition.0))
            {
                rows.push(vec![
                    broker.to_string(),
                    d.path.clone(),
                    r.partition.0.clone(),
                    r.partition.1.to_string(),
                    r.size.to_string(),
                    r.offset_lag.to_string(),
                ]);
            }
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", cells.join(" ").trim_end());
    }
    for line in dirs {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags of Kafka's `kafka-get-offsets.sh` (GetOffsetShell).
#[derive(clap::Args, Debug)]
pub(crate) struct KafkaGetOffsetsArgs {
    /// The broker to connect to, host:port[,host:port].
    #[arg(long, required = true)]
    bootstrap_server: String,
    /// The topic, a regular expression matching whole names (default: all topics).
    #[arg(long)]
    topic: Option<String>,
    /// Comma-separated partition ids (default: all).
    #[arg(long)]
    partitions: Option<String>,
    /// -1 or latest, -2 or earliest, -3 or max-timestamp, or a timestamp in ms.
    #[arg(long, default_value = "latest", allow_hyphen_values = true)]
    time: String,
    /// Leave out internal topics.
    #[arg(long)]
    exclude_internal_topics: bool,
    /// Client properties file (accepted; security settings are not supported yet).
    #[arg(long)]
    command_config: Option<PathBuf>,
}

/// Kafka's `--time` values as a ListOffsets timestamp.
fn parse_time(time: &str) -> anyhow::Result<i64> {
    Ok(match time {
        "latest" => -1,
        "earliest" => -2,
        "max-timestamp" => -3,
        "earliest-local" => -4,
        other => match other.parse::<i64>() {
            Ok(ts) if ts >= -4 => ts,
            _ => bail!(
                "Malformed time argument {other}. Please use -1 or latest / -2 or earliest / -3 or max-timestamp / -4 or earliest-local, or a specified long format timestamp"
            ),
        },
    })
}

/// `kafka-get-offsets`: `topic:partition:offset` per partition, sorted as Kafka
/// sorts them (by `topic-partition` text); partitions without an offset (a
/// timestamp after every record) are left out.
pub(crate) async fn get_offsets(args: KafkaGetOffsetsArgs) -> anyhow::Result<ExitCode> {
    match run_get_offsets(args).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("Error occurred: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn run_get_offsets(args: KafkaGetOffsetsArgs) -> anyhow::Result<()> {
    let spec = parse_time(&args.time)?;
    let pattern = args.topic.as_deref().unwrap_or(".*");
    let regex = regex::Regex::new(&format!("^(?:{pattern})$"))
        .with_context(|| format!("bad --topic pattern {pattern:?}"))?;
    let wanted: Option<Vec<i32>> = match &args.partitions {
        Some(list) if !list.is_empty() => Some(
            list.split(',')
                .map(|p| p.trim().parse::<i32>())
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow::anyhow!("--partitions expects a comma separated list of numeric partition ids, but received: {list}"))?,
        ),
        _ => None,
    };
    let admin = Admin::connect(&args.bootstrap_server).await?;
    let topics = admin
        .describe_all_topics(!args.exclude_internal_topics)
        .await?;
    let partitions: Vec<(String, i32)> = topics
        .iter()
        .filter(|t| regex.is_match(&t.name))
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
        .filter(|(_, p)| wanted.as_ref().is_none_or(|w| w.contains(p)))
        .collect();
    if partitions.is_empty() {
        bail!("Could not match any topic-partitions with the specified filters");
    }
    let mut found = Vec::new();
    for ((topic, partition), result) in admin.list_offsets(&partitions, spec).await? {
        match result {
            Ok(listed) if listed.offset >= 0 => found.push((
                format!("{topic}-{partition}"),
                topic,
                partition,
                listed.offset,
            )),
            Ok(_) => {}
            Err(e) => eprintln!(
                "Skip getting offsets for topic-partition {topic}-{partition} due to error: {}",
                java_error(&e)
            ),
        }
    }
    found.sort();
    for (_, topic, partition, offset) in found {
        println!("{topic}:{partition}:{offset}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_json_is_kafkas() {
        let parsed = parse_offset_json(r#"{"partitions":[{"topic":"t","partition":0,"offset":3},{"topic":"t","partition":1,"offset":-1}],"version":1}"#)
            .expect("parses");
        assert_eq!(
            parsed,
            vec![(("t".to_owned(), 0), 3), (("t".to_owned(), 1), -1)]
        );
        let dup = parse_offset_json(
            r#"{"partitions":[{"topic":"t","partition":0,"offset":3},{"topic":"t","partition":0,"offset":4}],"version":1}"#,
        );
        assert_eq!(
            dup.expect_err("duplicate").to_string(),
            "Offset json file contains duplicate topic partitions: t-0"
        );
        assert!(parse_offset_json(r#"{"version":1}"#).is_err());
        assert!(parse_offset_json(r#"{"partitions":[],"version":2}"#).is_err());
    }

    #[test]
    fn time_values_are_kafkas() {
        assert_eq!(parse_time("latest").ok(), Some(-1));
        assert_eq!(parse_time("-2").ok(), Some(-2));
        assert_eq!(parse_time("max-timestamp").ok(), Some(-3));
        assert_eq!(parse_time("1700000000000").ok(), Some(1_700_000_000_000));
        assert!(parse_time("-7").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn log_dirs_json_has_kafkas_key_order() {
        let described = vec![(
            1,
            vec![LogDirDescription {
                path: "/data".into(),
                error: None,
                replicas: vec![client::ReplicaInfo {
                    partition: ("t".into(), 0),
                    size: 70,
                    offset_lag: 0,
                    is_future: false,
                }],
                total_bytes: 10,
                usable_bytes: 5,
            }],
        )];
        assert_eq!(
            log_dirs_json(&described, &[]),
            r#"{"brokers":[{"broker":1,"logDirs":[{"logDir":"/data","error":null,"partitions":[{"partition":"t-0","size":70,"offsetLag":0,"isFuture":false}]}]}],"version":1}"#
        );
        assert!(log_dirs_json(&described, &["other"]).contains(r#""partitions":[]"#));
    }
}

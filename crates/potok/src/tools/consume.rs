//! `potok consume TOPIC`: print records, as text (Kafka's console format) or JSON lines;
//! with `--group`, as a member of a consumer group that commits what it printed.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use client::consumer::AutoOffsetReset;
use client::{Consumer, ConsumerConfig, ConsumerRecord, Offset};
use tokio::time::Instant;

use super::encoding::base64;
use super::DEFAULT_BOOTSTRAP;

/// `potok consume` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
    /// Start at the earliest offset (default: only new records).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start offset: a number, `earliest` or `latest` (every read partition).
    #[arg(long, value_name = "N|earliest|latest")]
    offset: Option<String>,
    /// Read only this partition (repeatable; default: all partitions).
    #[arg(long)]
    partition: Vec<i32>,
    /// Consume as a member of this consumer group: start at its committed offsets
    /// (else per --from-beginning), commit automatically and on exit. With
    /// --partition, the partitions are assigned by hand and only commits use the group.
    #[arg(long)]
    group: Option<String>,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit after no record arrived for this long (default: never).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print the key before the value.
    #[arg(long)]
    print_key: bool,
    /// Print the headers (k:v,k2:v2) before the key and value.
    #[arg(long)]
    print_headers: bool,
    /// Print the timestamp (CreateTime:ms) first.
    #[arg(long)]
    print_timestamp: bool,
    /// Print the partition.
    #[arg(long)]
    print_partition: bool,
    /// Print the offset.
    #[arg(long)]
    print_offset: bool,
    /// Separator between printed fields in text output.
    #[arg(long, default_value = "\t", value_name = "SEP")]
    key_separator: String,
    /// Output format: `text` (value bytes and a newline) or `json` (one object per
    /// line: topic, partition, offset, timestamp, timestamp_type, key, value, headers;
    /// key, value and header values are strings when valid UTF-8, otherwise base64
    /// with a sibling `key_encoding`/`value_encoding`/`encoding` field set to "base64").
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

/// `--output`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    /// Kafka's console-consumer text.
    Text,
    /// One JSON object per record.
    Json,
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    Earliest,
    Latest,
    At(i64),
}

impl Start {
    /// `N`, `earliest` or `latest`, as Kafka's `--offset`.
    pub(crate) fn parse(s: &str) -> anyhow::Result<Start> {
        match s.trim() {
            "earliest" => Ok(Start::Earliest),
            "latest" => Ok(Start::Latest),
            n => match n.parse::<i64>() {
                Ok(o) if o >= 0 => Ok(Start::At(o)),
                _ => anyhow::bail!(
                    "--offset must be a non-negative number, earliest or latest, not {s:?}"
                ),
            },
        }
    }
}

/// Kafka's `DefaultMessageFormatter` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextFormat {
    pub(crate) print_timestamp: bool,
    pub(crate) print_partition: bool,
    pub(crate) print_offset: bool,
    pub(crate) print_headers: bool,
    pub(crate) print_key: bool,
    pub(crate) print_value: bool,
    pub(crate) key_separator: Vec<u8>,
    pub(crate) line_separator: Vec<u8>,
    pub(crate) headers_separator: Vec<u8>,
    pub(crate) null_literal: Vec<u8>,
}

impl Default for TextFormat {
    fn default() -> Self {
        TextFormat {
            print_timestamp: false,
            print_partition: false,
            print_offset: false,
            print_headers: false,
            print_key: false,
            print_value: true,
            key_separator: b"\t".to_vec(),
            line_separator: b"\n".to_vec(),
            headers_separator: b",".to_vec(),
            null_literal: b"null".to_vec(),
        }
    }
}

/// How records are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Format {
    Text(TextFormat),
    Json,
}

/// Everything `consume` needs, whichever spelling asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumeOptions {
    pub(crate) bootstrap: String,
    pub(crate) topic: String,
    /// Empty: every partition.
    pub(crate) partitions: Vec<i32>,
    pub(crate) start: Start,
    pub(crate) max_messages: Option<u64>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) format: Format,
    pub(crate) client_id: Option<String>,
    pub(crate) read_committed: bool,
    /// Consumer group: subscribe (or, with `partitions`, commit) as this group.
    pub(crate) group: Option<String>,
}

impl ConsumeArgs {
    pub(crate) fn into_options(self) -> anyhow::Result<ConsumeOptions> {
        if self.group.is_some() && self.offset.is_some() && self.partition.is_empty() {
            anyhow::bail!("--offset needs --partition when --group is given (a group starts at its committed offsets)");
        }
        let start = match (&self.offset, self.from_beginning) {
            (Some(o), _) => Start::parse(o)?,
            (None, true) => Start::Earliest,
            (None, false) => Start::Latest,
        };
        let format = match self.output {
            OutputFormat::Json => Format::Json,
            OutputFormat::Text => Format::Text(TextFormat {
                print_timestamp: self.print_timestamp,
                print_partition: self.print_partition,
                print_offset: self.print_offset,
                print_headers: self.print_headers,
                print_key: self.print_key,
                key_separator: self.key_separator.into_bytes(),
                ..TextFormat::default()
            }),
        };
        Ok(ConsumeOptions {
            bootstrap: self.bootstrap_server,
            topic: self.topic,
            partitions: self.partition,
            start,
            max_messages: self.max_messages,
            idle_timeout: self.timeout_ms.map(Duration::from_millis),
            format,
            client_id: None,
            read_committed: false,
            group: self.group,
        })
    }
}

impl TextFormat {
    /// Writes one record as Kafka's `DefaultMessageFormatter.writeTo` does.
    pub(crate) fn write(&self, out: &mut impl Write, r: &ConsumerRecord) -> std::io::Result<()> {
        let sep = |out: &mut dyn Write, more: bool| -> std::io::Result<()> {
            if more {
                out.write_all(&self.key_separator)?;
            }
            Ok(())
        };
        let value_or_null = |v: &Option<bytes::Bytes>| -> Vec<u8> {
            v.as_deref()
                .map_or_else(|| self.null_literal.clone(), <[u8]>::to_vec)
        };
        if self.print_timestamp {
            write!(out, "{}:{}", r.timestamp_type, r.timestamp)?;
            sep(
                out,
                self.print_partition
                    || self.print_offset
                    || self.print_headers
                    || self.print_key
                    || self.print_value,
            )?;
        }
        if self.print_partition {
            write!(out, "Partition:{}", r.partition)?;
            sep(
                out,
                self.print_offset || self.print_headers || self.print_key || self.print_value,
            )?;
        }
        if self.print_offset {
            write!(out, "Offset:{}", r.offset)?;
            sep(
                out,
                self.print_headers || self.print_key || self.print_value,
            )?;
        }
        if self.print_headers {
            if r.headers.is_empty() {
                out.write_all(b"NO_HEADERS")?;
            } else {
                for (i, (k, v)) in r.headers.iter().enumerate() {
                    if i > 0 {
                        out.write_all(&self.headers_separator)?;
                    }
                    write!(out, "{k}:")?;
                    out.write_all(&value_or_null(v))?;
                }
            }
            sep(out, self.print_key || self.print_value)?;
        }
        if self.print_key {
            out.write_all(&value_or_null(&r.key))?;
            sep(out, self.print_value)?;
        }
        if self.print_value {
            out.write_all(&value_or_null(&r.value))?;
            out.write_all(&self.line_separator)?;
        }
        Ok(())
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `"name":"text"` when UTF-8, else `"name":"<base64>","<name>_encoding":"base64"`; null stays null.
fn json_bytes(out: &mut String, name: &str, encoding_field: &str, v: &Option<bytes::Bytes>) {
    match v {
        None => out.push_str(&format!("{}:null", json_str(name))),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => out.push_str(&format!("{}:{}", json_str(name), json_str(s))),
            Err(_) => out.push_str(&format!(
                "{}:{},{}:\"base64\"",
                json_str(name),
                json_str(&base64(b)),
                json_str(encoding_field)
            )),
        },
    }
}

/// One record as a JSON object on one line (fields in a fixed order).
pub(crate) fn json_line(r: &ConsumerRecord) -> String {
    let mut out = format!(
        "{{\"topic\":{},\"partition\":{},\"offset\":{},\"timestamp\":{},\"timestamp_type\":{},",
        json_str(&r.topic),
        r.partition,
        r.offset,
        r.timestamp,
        json_str(&r.timestamp_type.to_string())
    );
    json_bytes(&mut out, "key", "key_encoding", &r.key);
    out.push(',');
    json_bytes(&mut out, "value", "value_encoding", &r.value);
    out.push_str(",\"headers\":[");
    for (i, (k, v)) in r.headers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"key\":{},", json_str(k)));
        json_bytes(&mut out, "value", "encoding", v);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// How long one poll waits before checking for Ctrl-C and the idle timeout again.
const POLL_SLICE: Duration = Duration::from_millis(1000);

pub(crate) async fn run(opts: ConsumeOptions) -> anyhow::Result<ExitCode> {
    let mut config = ConsumerConfig::new(&opts.bootstrap)?;
    // As Kafka's consumer, let the broker auto-create the topic it reads.
    config.client.allow_auto_topic_creation = true;
    config.auto_offset_reset = match opts.start {
        Start::Earliest => AutoOffsetReset::Earliest,
        _ => AutoOffsetReset::Latest,
    };
    if let Some(id) = &opts.client_id {
        config.client.connection.client_id = id.clone();
    }
    if opts.read_committed {
        config.isolation_level = client::IsolationLevel::ReadCommitted;
    }
    config.group_id = opts.group.clone();
    let mut consumer = Consumer::connect(config).await?;

    let mut count = 0u64;
    let result = consume(&mut consumer, &opts, &mut count).await;
    eprintln!("Processed a total of {count} messages");
    // With a group: commit what was printed and leave, so the group rebalances now.
    let closed = consumer.close().await;
    let code = result?;
    closed.context("closing the consumer")?;
    Ok(code)
}

async fn consume(
    consumer: &mut Consumer,
    opts: &ConsumeOptions,
    count: &mut u64,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let topic = wait_for_topic(
        consumer,
        &opts.topic,
        opts.idle_timeout.map(|t| started + t),
    )
    .await?;
    let existing: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    // Kafka's consumer would wait for ever on a partition that does not exist.
    if let Some(missing) = opts.partitions.iter().find(|p| !existing.contains(p)) {
        anyhow::bail!(
            "partition {missing} of topic {} does not exist (it has {} partitions)",
            opts.topic,
            existing.len()
        );
    }
    let partitions = if opts.partitions.is_empty() {
        existing
    } else {
        opts.partitions.clone()
    };
    if opts.group.is_some() && opts.partitions.is_empty() {
        consumer.subscribe(vec![opts.topic.clone()])?;
    } else {
        consumer.assign(
            partitions
                .iter()
                .map(|p| (opts.topic.clone(), *p))
                .collect(),
        );
    }
    if let Start::At(o) = opts.start {
        for p in &partitions {
            consumer.seek(&opts.topic, *p, Offset::At(o)).await?;
        }
    }
    if opts.max_messages == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut last_record = Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let wait = match opts.idle_timeout {
            Some(t) => (last_record + t)
                .saturating_duration_since(Instant::now())
                .min(POLL_SLICE),
            None => POLL_SLICE,
        };
        let records = tokio::select! {
            r = consumer.poll(wait) => r?,
            _ = &mut ctrl_c => break,
        };
        if !records.is_empty() {
            last_record = Instant::now();
        }
        for (i, r) in records.iter().enumerate() {
            if opts.max_messages.is_some_and(|m| *count >= m) {
                // The position moved past records that were not printed: move it back
                // so that a group's commit does not skip them.
                rewind_to_unprinted(consumer, &records[i..]).await?;
                break;
            }
            let written = match &opts.format {
                Format::Text(f) => f.write(&mut out, r),
                Format::Json => writeln!(out, "{}", json_line(r)),
            };
            if let Err(e) = written {
                // A closed pipe (`| head`) is a normal way to stop reading.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(ExitCode::SUCCESS);
                }
                return Err(e).context("writing to standard output");
            }
            *count += 1;
        }
        match out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            other => other.context("writing to standard output")?,
        }
        if opts.max_messages.is_some_and(|m| *count >= m) {
            break;
        }
        if opts
            .idle_timeout
            .is_some_and(|t| last_record.elapsed() >= t)
        {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Seeks each partition of `unprinted` back to its first unprinted record.
async fn rewind_to_unprinted(
    consumer: &mut Consumer,
    unprinted: &[ConsumerRecord],
) -> anyhow::Result<()> {
    let mut first: std::collections::BTreeMap<(&str, i32), i64> = Default::default();
    for r in unprinted {
        first.entry((&r.topic, r.partition)).or_insert(r.offset);
    }
    for ((topic, partition), offset) in first {
        consumer.seek(topic, partition, Offset::At(offset)).await?;
    }
    Ok(())
}

/// The topic's metadata, waiting (like Kafka's consumer) while it does not exist yet.
async fn wait_for_topic(
    consumer: &Consumer,
    topic: &str,
    give_up: Option<Instant>,
) -> anyhow::Result<client::cluster::TopicMetadata> {
    let mut warned = false;
    loop {
        match consumer.client().fetch_topic(topic).await {
            Ok(t) if !t.partitions.is_empty() => return Ok(t),
            Ok(_) => {}
            Err(e) if e.is_retriable() => {
                if give_up.is_some_and(|g| Instant::now() >= g) {
                    return Err(e.into());
                }
                if !warned {
                    eprintln!("Waiting for topic {topic}: {e}");
                    warned = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use client::TimestampType;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp: 1234,
            timestamp_type: TimestampType::CreateTime,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![
                ("a".into(), Some(Bytes::from_static(b"1"))),
                ("b".into(), None),
            ],
        }
    }

    fn text(f: &TextFormat, r: &ConsumerRecord) -> String {
        let mut out = Vec::new();
        f.write(&mut out, r).ok();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn text_output_follows_kafkas_default_message_formatter() {
        let r = record();
        assert_eq!(text(&TextFormat::default(), &r), "v\n");
        let all = TextFormat {
            print_timestamp: true,
            print_partition: true,
            print_offset: true,
            print_headers: true,
            print_key: true,
            ..TextFormat::default()
        };
        assert_eq!(
            text(&all, &r),
            "CreateTime:1234\tPartition:2\tOffset:7\ta:1,b:null\tk\tv\n"
        );
        let mut no_headers = r.clone();
        no_headers.headers.clear();
        no_headers.key = None;
        let f = TextFormat {
            print_headers: true,
            print_key: true,
            key_separator: b":".to_vec(),
            ..TextFormat::default()
        };
        assert_eq!(text(&f, &no_headers), "NO_HEADERS:null:v\n");
    }

    #[test]
    fn keys_without_values_print_as_kafka_prints_them() {
        // Kafka's DefaultMessageFormatter ends a record with line.separator only
        // after its value: with print.value=false, keys follow each other.
        let f = TextFormat {
            print_key: true,
            print_value: false,
            ..TextFormat::default()
        };
        assert_eq!(text(&f, &record()), "k");
    }

    #[test]
    fn json_output_keeps_utf8_as_text_and_marks_base64() {
        let mut r = record();
        r.key = Some(Bytes::from_static(&[0xff, 0x00]));
        let line = json_line(&r);
        assert_eq!(
            line,
            r#"{"topic":"t","partition":2,"offset":7,"timestamp":1234,"timestamp_type":"CreateTime","key":"/wA=","key_encoding":"base64","value":"v","headers":[{"key":"a","value":"1"},{"key":"b","value":null}]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(parsed["value"], "v");
    }

    #[test]
    fn start_offsets_parse_like_kafkas_offset_flag() {
        assert_eq!(Start::parse("earliest").ok(), Some(Start::Earliest));
        assert_eq!(Start::parse("latest").ok(), Some(Start::Latest));
        assert_eq!(Start::parse("42").ok(), Some(Start::At(42)));
        assert!(Start::parse("-3").is_err());
    }
}

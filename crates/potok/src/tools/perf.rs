//! Kafka's performance tools on the project's client: `kafka-producer-perf-test`
//! (ProducerPerformance) and `kafka-consumer-perf-test` (ConsumerPerformance),
//! also reachable as `potok perf produce|consume`, with Kafka's flags and output
//! lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use client::{AutoOffsetReset, Consumer, ConsumerConfig, DeliveryFuture, Producer, ProducerRecord};

use super::kafka::{apply_producer_config, read_properties};
use super::produce::ProducerSettings;
use super::DEFAULT_BOOTSTRAP;

/// How often both tools report progress, as Kafka's (`reporting.interval` 5 s).
const REPORTING_INTERVAL: Duration = Duration::from_secs(5);

/// `potok perf produce|consume`.
#[derive(clap::Args, Debug)]
pub(crate) struct PerfArgs {
    #[command(subcommand)]
    command: PerfCommand,
}

#[derive(clap::Subcommand, Debug)]
enum PerfCommand {
    /// Produce records as fast as allowed and report throughput and latency.
    Produce(ProducerPerfArgs),
    /// Consume records and report throughput.
    Consume(ConsumerPerfArgs),
}

impl PerfArgs {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            PerfCommand::Produce(a) => producer_perf(a).await,
            PerfCommand::Consume(a) => consumer_perf(a).await,
        }
    }
}

/// Flags of Kafka's `kafka-producer-perf-test.sh`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("payload").required(true).args(["record_size", "payload_file", "payload_monotonic"])))]
pub(crate) struct ProducerPerfArgs {
    /// Produce messages to this topic.
    #[arg(long, required = true)]
    topic: String,
    /// Number of messages to produce.
    #[arg(long, required = true)]
    num_records: u64,
    /// Message size in bytes (random upper-case letters, as Kafka's).
    #[arg(long)]
    record_size: Option<usize>,
    /// File to pick the payloads from, split at --payload-delimiter.
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// Delimiter between the payloads of --payload-file.
    #[arg(long, default_value = "\\n")]
    payload_delimiter: String,
    /// Payloads are the increasing record numbers.
    #[arg(long)]
    payload_monotonic: bool,
    /// Throttle to about this many messages/sec; -1 for no limit.
    #[arg(long, required = true, allow_hyphen_values = true)]
    throughput: f64,
    /// Producer configs, PROP=VALUE ... (bootstrap.servers, acks, linger.ms, ...).
    #[arg(long = "producer-props", num_args = 1.., value_name = "PROP-NAME=PROP-VALUE")]
    producer_props: Vec<String>,
    /// Producer config properties file.
    #[arg(long = "producer.config", value_name = "CONFIG-FILE")]
    producer_config: Option<PathBuf>,
    /// Print metrics at the end (accepted; Potok's client keeps none to print).
    #[arg(long)]
    print_metrics: bool,
}

/// Flags of Kafka's `kafka-consumer-perf-test.sh`.
#[derive(clap::Args, Debug)]
pub(crate) struct ConsumerPerfArgs {
    /// The broker to connect to, host:port[,host:port].
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// The topic to consume from.
    #[arg(long, required = true)]
    topic: String,
    /// Number of messages to consume.
    #[arg(long, required = true)]
    messages: u64,
    /// The consumer group (default: perf-consumer-<random>).
    #[arg(long)]
    group: Option<String>,
    /// Maximum time in ms between returned records before giving up.
    #[arg(long, default_value_t = 10_000)]
    timeout: u64,
    /// Start at the log end when the group has no committed offset.
    #[arg(long)]
    from_latest: bool,
    /// Bytes to fetch per partition and request.
    #[arg(long, default_value_t = 1024 * 1024)]
    fetch_size: i32,
    /// Report every reporting interval instead of once at the end.
    #[arg(long)]
    show_detailed_stats: bool,
    /// Interval of the detailed reports, in ms.
    #[arg(long, default_value_t = 5_000)]
    reporting_interval: u64,
    /// Do not print the header line.
    #[arg(long)]
    hide_header: bool,
    /// Consumer config properties file.
    #[arg(long = "consumer.config")]
    consumer_config: Option<PathBuf>,
    /// Print metrics at the end (accepted; Potok's client keeps none to print).
    #[arg(long)]
    print_metrics: bool,
    /// Accepted for compatibility.
    #[arg(long)]
    socket_buffer_size: Option<i32>,
}

fn millis_since_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A tiny deterministic generator for payload letters (Kafka seeds its random
/// with 0 too; the letters differ, their distribution does not matter).
struct Letters(u64);

impl Letters {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = b'A' + (self.0 % 26) as u8;
        }
    }
}

/// Kafka's `ProducerPerformance.Stats`: totals, a 5 s window, sampled latencies.
struct Stats {
    start: Instant,
    sampling: u64,
    latencies: Vec<u32>,
    iteration: u64,
    count: u64,
    bytes: u64,
    max_latency: u32,
    total_latency: u64,
    window_start: Instant,
    window_count: u64,
    window_bytes: u64,
    window_max_latency: u32,
    window_total_latency: u64,
}

impl Stats {
    fn new(num_records: u64) -> Stats {
        let sampling = (num_records / num_records.clamp(1, 500_000)).max(1);
        let now = Instant::now();
        Stats {
            start: now,
            sampling,
            latencies: Vec::with_capacity(usize::try_from(num_records / sampling + 1).unwrap_or(0)),
            iteration: 0,
            count: 0,
            bytes: 0,
            max_latency: 0,
            total_latency: 0,
            window_start: now,
            window_count: 0,
            window_bytes: 0,
            window_max_latency: 0,
            window_total_latency: 0,
        }
    }

    fn record(&mut self, latency_ms: u32, bytes: usize, now: Instant) {
        self.count += 1;
        self.bytes += bytes as u64;
        self.total_latency += u64::from(latency_ms);
        self.max_latency = self.max_latency.max(latency_ms);
        self.window_count += 1;
        self.window_bytes += bytes as u64;
        self.window_total_latency += u64::from(latency_ms);
        self.window_max_latency = self.window_max_latency.max(latency_ms);
        if self.iteration.is_multiple_of(self.sampling) {
            self.latencies.push(latency_ms);
        }
        if now.duration_since(self.window_start) >= REPORTING_INTERVAL {
            println!("{}", self.window_line(now));
            self.window_start = now;
            self.window_count = 0;
            self.window_bytes = 0;
            self.window_max_latency = 0;
            self.window_total_latency = 0;
        }
        self.iteration += 1;
    }

    fn window_line(&self, now: Instant) -> String {
        let elapsed_ms = (now.duration_since(self.window_start).as_secs_f64() * 1000.0).max(1.0);
        let count = self.window_count as f64;
        format!(
            "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            self.window_count,
            1000.0 * count / elapsed_ms,
            1000.0 * self.window_bytes as f64 / elapsed_ms / (1024.0 * 1024.0),
            self.window_total_latency as f64 / count.max(1.0),
            f64::from(self.window_max_latency),
        )
    }

    fn total_line(&mut self) -> String {
        let elapsed_ms = (self.start.elapsed().as_secs_f64() * 1000.0).max(1.0);
        let count = self.count as f64;
        self.latencies.sort_unstable();
        let percentile = |p: f64| {
            let n = self.latencies.len();
            if n == 0 {
                0
            } else {
                self.latencies[((p * n as f64) as usize).min(n - 1)]
            }
        };
        format!(
            "{} records sent, {:.6} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, \
             {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
            self.count,
            1000.0 * count / elapsed_ms,
            1000.0 * self.bytes as f64 / elapsed_ms / (1024.0 * 1024.0),
            self.total_latency as f64 / count.max(1.0),
            f64::from(self.max_latency),
            percentile(0.5),
            percentile(0.95),
            percentile(0.99),
            percentile(0.999),
        )
    }
}

/// Producer settings from `--producer.config` then `--producer-props` (which win).
fn producer_settings(args: &ProducerPerfArgs) -> anyhow::Result<(ProducerSettings, String)> {
    if args.producer_props.is_empty() && args.producer_config.is_none() {
        bail!("Either --producer-props or --producer.config must be specified.");
    }
    let mut configs = Vec::new();
    if let Some(path) = &args.producer_config {
        configs.extend(read_properties(path)?);
    }
    for prop in &args.producer_props {
        match prop.split_once('=') {
            Some((k, v)) if !v.contains('=') => configs.push((k.to_owned(), v.to_owned())),
            _ => bail!("Invalid property: {prop}"),
        }
    }
    // The Java producer's defaults (acks=all, linger.ms=5, batch.size=16384).
    let mut settings = ProducerSettings {
        client_id: Some("perf-producer-client".to_owned()),
        ..ProducerSettings::default()
    };
    let mut bootstrap = None;
    for (k, v) in &configs {
        if let Some(note) = apply_producer_config(&mut settings, &mut bootstrap, k, v)? {
            eprintln!("{note}");
        }
    }
    let bootstrap = bootstrap.context(
        "Missing required configuration \"bootstrap.servers\" which has no default value.",
    )?;
    Ok((settings, bootstrap))
}

/// The payloads to send: fixed size, picked from a file, or the record number.
enum Payloads {
    Random {
        buf: Vec<u8>,
        letters: Letters,
    },
    File {
        payloads: Vec<Bytes>,
        letters: Letters,
    },
    Monotonic,
}

impl Payloads {
    fn new(args: &ProducerPerfArgs) -> anyhow::Result<Payloads> {
        if let Some(size) = args.record_size {
            if size == 0 {
                bail!("--record-size should be greater than zero");
            }
            return Ok(Payloads::Random {
                buf: vec![0; size],
                letters: Letters(0x9E37_79B9_7F4A_7C15),
            });
        }
        if let Some(path) = &args.payload_file {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            println!("Reading payloads from: {}", absolute.display());
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.is_empty() {
                bail!("File does not exist or empty file provided.");
            }
            let delimiter = if args.payload_delimiter == "\\n" {
                "\n"
            } else {
                args.payload_delimiter.as_str()
            };
            let payloads: Vec<Bytes> = text
                .split(delimiter)
                .filter(|p| !p.is_empty())
                .map(|p| Bytes::from(p.to_owned()))
                .collect();
            println!("Number of messages read: {}", payloads.len());
            return Ok(Payloads::File {
                payloads,
                letters: Letters(0x2545_F491_4F6C_DD1D),
            });
        }
        Ok(Payloads::Monotonic)
    }

    fn next(&mut self, i: u64) -> Bytes {
        match self {
            Payloads::Random { buf, letters } => {
                letters.fill(buf);
                Bytes::copy_from_slice(buf)
            }
            Payloads::File { payloads, letters } => {
                let mut pick = [0u8; 1];
                letters.fill(&mut pick);
                let index = (letters.0 % payloads.len() as u64) as usize;
                payloads[index].clone()
            }
            Payloads::Monotonic => Bytes::from(i.to_string()),
        }
    }
}

/// `kafka-producer-perf-test` / `potok perf produce`.
pub(crate) async fn producer_perf(args: ProducerPerfArgs) -> anyhow::Result<ExitCode> {
    if args.num_records == 0 {
        bail!("--num-records should be greater than zero");
    }
    let (settings, bootstrap) = producer_settings(&args)?;
    let producer = Producer::connect(settings.producer_config(&bootstrap)?).await?;
    let mut payloads = Payloads::new(&args)?;

    // Acknowledgements are awaited in send order by one task that keeps the stats.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, usize, DeliveryFuture)>(100_000);
    // Created here, not in the task: the clock starts before the first send.
    let mut stats = Stats::new(args.num_records);
    let stats_task = tokio::spawn(async move {
        let mut failed = 0u64;
        while let Some((sent, bytes, delivery)) = rx.recv().await {
            match delivery.await {
                Ok(_) => {
                    let now = Instant::now();
                    let latency =
                        u32::try_from(now.duration_since(sent).as_millis()).unwrap_or(u32::MAX);
                    stats.record(latency, bytes, now);
                }
                Err(e) => {
                    // Kafka prints the exception of each failed send; one line each.
                    failed += 1;
                    eprintln!("{e}");
                }
            }
        }
        (stats, failed)
    });

    let start = Instant::now();
    for i in 0..args.num_records {
        let payload = payloads.next(i);
        let bytes = payload.len();
        let sent = Instant::now();
        let delivery = producer
            .send(ProducerRecord::new(args.topic.clone(), payload))
            .await?;
        if tx.send((sent, bytes, delivery)).await.is_err() {
            break;
        }
        if args.throughput > 0.0 {
            // Kafka's ThroughputThrottler: never ahead of `throughput` records/sec.
            let due = Duration::from_secs_f64((i + 1) as f64 / args.throughput);
            let elapsed = start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
    drop(tx);
    producer.close().await?;
    let (mut stats, failed) = stats_task.await.context("the statistics task failed")?;
    println!("{}", stats.total_line());
    if args.print_metrics {
        eprintln!("Note: --print-metrics: Potok's client keeps no metrics to print");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Kafka's default `--date-format`, `yyyy-MM-dd HH:mm:ss:SSS`, in UTC.
fn format_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}:{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// One detailed-stats line (`time, threadId, ...`).
#[allow(clippy::too_many_arguments)]
fn progress_line(
    now_ms: i64,
    bytes: u64,
    last_bytes: u64,
    messages: u64,
    last_messages: u64,
    elapsed_ms: f64,
    join_ms: u64,
) -> String {
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let interval_mb = mb(bytes - last_bytes);
    let interval_messages = (messages - last_messages) as f64;
    let fetch_ms = elapsed_ms - join_ms as f64;
    let per_fetch_sec = |v: f64| {
        if fetch_ms <= 0.0 {
            0.0
        } else {
            1000.0 * v / fetch_ms
        }
    };
    format!(
        "{}, 0, {:.4}, {:.4}, {messages}, {:.4}, {join_ms}, {}, {:.4}, {:.4}",
        format_time(now_ms),
        mb(bytes),
        1000.0 * interval_mb / elapsed_ms.max(1.0),
        1000.0 * interval_messages / elapsed_ms.max(1.0),
        fetch_ms as i64,
        per_fetch_sec(interval_mb),
        per_fetch_sec(interval_messages),
    )
}

/// `kafka-consumer-perf-test` / `potok perf consume`.
pub(crate) async fn consumer_perf(args: ConsumerPerfArgs) -> anyhow::Result<ExitCode> {
    let mut bootstrap = args.bootstrap_server.clone();
    let mut group = args.group.clone();
    let mut client_id = None;
    let mut reset = if args.from_latest {
        AutoOffsetReset::Latest
    } else {
        AutoOffsetReset::Earliest
    };
    if let Some(path) = &args.consumer_config {
        for (k, v) in read_properties(path)? {
            match k.as_str() {
                "bootstrap.servers" => bootstrap = bootstrap.or(Some(v)),
                "group.id" => group = group.or(Some(v)),
                "client.id" => client_id = Some(v),
                "auto.offset.reset" => reset = v.parse()?,
                "key.deserializer" | "value.deserializer" | "enable.auto.commit" => {}
                other => {
                    eprintln!("Note: consumer property {other} is not supported and is ignored")
                }
            }
        }
    }
    let bootstrap = bootstrap.unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_owned());
    let group = group
        .unwrap_or_else(|| format!("perf-consumer-{}", millis_since_epoch().rem_euclid(100_000)));
    let mut config = ConsumerConfig::new(&bootstrap)?;
    config.group_id = Some(group);
    config.auto_offset_reset = reset;
    config.max_partition_fetch_bytes = args.fetch_size;
    config.client_id = client_id;
    if !args.hide_header {
        let extra = ", rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec";
        if args.show_detailed_stats {
            println!("time, threadId, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec{extra}");
        } else {
            println!("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec{extra}");
        }
    }
    let start_ms = millis_since_epoch();
    let start = Instant::now();
    let mut consumer = Consumer::connect(config).await?;
    consumer.subscribe(vec![args.topic.clone()])?;
    let timeout = Duration::from_millis(args.timeout);
    let interval = Duration::from_millis(args.reporting_interval);
    let (mut messages, mut bytes) = (0u64, 0u64);
    let (mut last_messages, mut last_bytes) = (0u64, 0u64);
    let mut join_ms: Option<u64> = None;
    let mut round_join_ms = 0u64;
    let mut last_consumed = Instant::now();
    let mut last_report = Instant::now();
    while messages < args.messages && last_consumed.elapsed() <= timeout {
        let records = consumer.poll(Duration::from_millis(100)).await?;
        let now = Instant::now();
        if join_ms.is_none() && !consumer.assignment().is_empty() {
            // Rebalance time: from start until the group handed out partitions.
            let ms = u64::try_from(now.duration_since(start).as_millis()).unwrap_or(u64::MAX);
            join_ms = Some(ms);
            round_join_ms = ms;
        }
        if !records.is_empty() {
            last_consumed = now;
        }
        for r in &records {
            messages += 1;
            bytes += r.key.as_ref().map_or(0, |k| k.len() as u64)
                + r.value.as_ref().map_or(0, |v| v.len() as u64);
            if now.duration_since(last_report) >= interval {
                if args.show_detailed_stats {
                    let elapsed_ms = now.duration_since(last_report).as_secs_f64() * 1000.0;
                    println!(
                        "{}",
                        progress_line(
                            millis_since_epoch(),
                            bytes,
                            last_bytes,
                            messages,
                            last_messages,
                            elapsed_ms,
                            round_join_ms
                        )
                    );
                }
                round_join_ms = 0;
                last_report = now;
                last_messages = messages;
                last_bytes = bytes;
            }
        }
    }
    if messages < args.messages {
        println!(
            "WARNING: Exiting before consuming the expected number of messages: timeout ({} ms) exceeded. You can use the --timeout option to increase the timeout.",
            args.timeout
        );
    }
    let end_ms = millis_since_epoch();
    let elapsed_sec = (start.elapsed().as_secs_f64()).max(0.001);
    if let Err(e) = consumer.close().await {
        eprintln!("{e}");
    }
    if !args.show_detailed_stats {
        let join = join_ms.unwrap_or(0);
        let fetch_ms = (elapsed_sec * 1000.0) as i64 - join as i64;
        let mb = bytes as f64 / (1024.0 * 1024.0);
        let fetch_sec = (fetch_ms as f64 / 1000.0).max(0.001);
        println!(
            "{}, {}, {mb:.4}, {:.4}, {messages}, {:.4}, {join}, {fetch_ms}, {:.4}, {:.4}",
            format_time(start_ms),
            format_time(end_ms),
            mb / elapsed_sec,
            messages as f64 / elapsed_sec,
            mb / fetch_sec,
            messages as f64 / fetch_sec,
        );
    }
    if args.print_metrics {
        eprintln!("Note: --print-metrics: Potok's client keeps no metrics to print");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_in_kafkas_default_format() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00:000");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14 22:13:20:123");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00:000");
    }

    #[test]
    fn summary_lines_have_kafkas_shape() {
        let mut stats = Stats::new(3);
        let now = Instant::now();
        for latency in [1, 2, 9] {
            stats.record(latency, 100, now);
        }
        let line = stats.total_line();
        assert!(line.starts_with("3 records sent, "), "{line}");
        assert!(line.ends_with("ms avg latency, 9.00 ms max latency, 2 ms 50th, 9 ms 95th, 9 ms 99th, 9 ms 99.9th."), "{line}");
        assert!(
            line.contains(" ms avg latency") && line.contains("4.00 ms avg latency"),
            "{line}"
        );
    }

    #[test]
    fn payloads_are_upper_case_letters_of_the_size_asked() {
        let mut letters = Letters(1);
        let mut buf = [0u8; 64];
        letters.fill(&mut buf);
        assert!(buf.iter().all(u8::is_ascii_uppercase));
    }
}

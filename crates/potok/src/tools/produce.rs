//! `potok produce TOPIC`: one record per line of standard input.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use client::{Acks, Compression, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::time::Instant;

use super::DEFAULT_BOOTSTRAP;

/// `potok produce` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ProduceArgs {
    /// Topic to produce to.
    topic: String,
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record, key=value (repeatable; `key` alone: null value).
    #[arg(long, value_name = "KEY=VALUE")]
    header: Vec<String>,
    /// Partition to write to (default: by key hash, else sticky).
    #[arg(long)]
    partition: Option<i32>,
    /// Acknowledgements: 0, 1 or all (-1).
    #[arg(long, default_value = "all")]
    acks: String,
    /// Compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// How long to wait for more records before sending a batch.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Largest batch in bytes.
    #[arg(long, default_value_t = 16384)]
    batch_size: usize,
}

impl ProduceArgs {
    pub(crate) fn into_options(self) -> anyhow::Result<ProduceOptions> {
        let headers = self
            .header
            .iter()
            .map(|h| match h.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(Bytes::from(v.to_owned()))),
                None => (h.clone(), None),
            })
            .collect();
        Ok(ProduceOptions {
            bootstrap: self.bootstrap_server,
            topic: self.topic,
            partition: self.partition,
            line: LineFormat {
                key_separator: self.key_separator,
                headers: None,
                null_marker: None,
                ignore_error: false,
            },
            static_headers: headers,
            settings: ProducerSettings {
                acks: self.acks.parse()?,
                compression: self.compression.parse()?,
                linger_ms: self.linger_ms,
                batch_size: self.batch_size,
                ..ProducerSettings::default()
            },
        })
    }
}

/// How a line of input becomes a record (Kafka's `LineMessageReader` rules).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LineFormat {
    /// `parse.key` with `key.separator`: split key from value at the first separator.
    pub(crate) key_separator: Option<String>,
    /// `parse.headers`: a leading headers section.
    pub(crate) headers: Option<HeaderFormat>,
    /// `null.marker`: a key, value or header value equal to it becomes null.
    pub(crate) null_marker: Option<String>,
    /// `ignore.error`: a line without a separator is taken whole instead of failing.
    pub(crate) ignore_error: bool,
}

/// Kafka's `parse.headers` layout: `k1:v1,k2:v2<TAB>rest of line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderFormat {
    /// `headers.delimiter` (default tab): ends the headers section.
    pub(crate) delimiter: String,
    /// `headers.separator` (default `,`): between headers.
    pub(crate) separator: String,
    /// `headers.key.separator` (default `:`): between a header's key and value.
    pub(crate) key_separator: String,
}

impl Default for HeaderFormat {
    fn default() -> Self {
        HeaderFormat {
            delimiter: "\t".into(),
            separator: ",".into(),
            key_separator: ":".into(),
        }
    }
}

/// Producer settings the tools can set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerSettings {
    pub(crate) acks: Acks,
    pub(crate) compression: Compression,
    pub(crate) linger_ms: u64,
    pub(crate) batch_size: usize,
    pub(crate) request_timeout_ms: Option<u64>,
    pub(crate) delivery_timeout_ms: Option<u64>,
    pub(crate) max_block_ms: Option<u64>,
    pub(crate) retry_backoff_ms: Option<u64>,
    pub(crate) max_request_size: Option<usize>,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) client_id: Option<String>,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            acks: Acks::All,
            compression: Compression::None,
            linger_ms: 5,
            batch_size: 16384,
            request_timeout_ms: None,
            delivery_timeout_ms: None,
            max_block_ms: None,
            retry_backoff_ms: None,
            max_request_size: None,
            max_in_flight: None,
            client_id: None,
        }
    }
}

/// Everything `produce` needs, whichever spelling asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProduceOptions {
    pub(crate) bootstrap: String,
    pub(crate) topic: String,
    pub(crate) partition: Option<i32>,
    pub(crate) line: LineFormat,
    /// Headers added to every record (after any parsed from the line).
    pub(crate) static_headers: Vec<(String, Option<Bytes>)>,
    pub(crate) settings: ProducerSettings,
}

impl ProduceOptions {
    fn producer_config(&self) -> anyhow::Result<ProducerConfig> {
        self.settings.producer_config(&self.bootstrap)
    }
}

impl ProducerSettings {
    /// The client's producer configuration for these settings.
    pub(crate) fn producer_config(&self, bootstrap: &str) -> anyhow::Result<ProducerConfig> {
        let s = self;
        let mut c = ProducerConfig::new(bootstrap)?;
        c.acks = s.acks;
        c.compression = s.compression;
        c.linger = Duration::from_millis(s.linger_ms);
        c.batch_size = s.batch_size.max(1);
        if let Some(ms) = s.request_timeout_ms {
            c.client.connection.request_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = s.delivery_timeout_ms {
            c.delivery_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = s.max_block_ms {
            c.max_block = Duration::from_millis(ms);
        }
        if let Some(ms) = s.retry_backoff_ms {
            c.retry_backoff = Duration::from_millis(ms);
        }
        if let Some(n) = s.max_request_size {
            c.max_request_size = n;
        }
        if let Some(n) = s.max_in_flight {
            c.max_in_flight = n.max(1);
        }
        if let Some(id) = &s.client_id {
            c.client.connection.client_id = id.clone();
        }
        Ok(c)
    }
}

/// A parsed input line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParsedLine {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<(String, Option<Bytes>)>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl LineFormat {
    fn nullable(&self, part: &[u8]) -> Option<Bytes> {
        match &self.null_marker {
            Some(m) if part == m.as_bytes() => None,
            _ => Some(Bytes::copy_from_slice(part)),
        }
    }

    /// Splits one line (without its line ending) into headers, key and value.
    pub(crate) fn parse(&self, line: &[u8], line_no: u64) -> anyhow::Result<ParsedLine> {
        let shown = || String::from_utf8_lossy(line).into_owned();
        let mut rest = line;
        let mut headers = Vec::new();
        if let Some(h) = &self.headers {
            match find(rest, h.delimiter.as_bytes()) {
                Some(i) => {
                    let section = &rest[..i];
                    rest = &rest[i + h.delimiter.len()..];
                    if !section.is_empty() {
                        for header in split(section, h.separator.as_bytes()) {
                            let (k, v) = match find(header, h.key_separator.as_bytes()) {
                                Some(j) => {
                                    (&header[..j], Some(&header[j + h.key_separator.len()..]))
                                }
                                None => (header, None),
                            };
                            let key = String::from_utf8_lossy(k).into_owned();
                            if self.null_marker.as_deref() == Some(key.as_str()) {
                                anyhow::bail!("Header keys should not be equal to the null marker '{key}' as it can't be null on line number {line_no}: '{}'", shown());
                            }
                            headers.push((key, v.and_then(|v| self.nullable(v))));
                        }
                    }
                }
                None if self.ignore_error => {}
                None => anyhow::bail!(
                    "No headers delimiter found on line number {line_no}: '{}'",
                    shown()
                ),
            }
        }
        let (key, value) = match &self.key_separator {
            Some(sep) => match find(rest, sep.as_bytes()) {
                Some(i) => (
                    self.nullable(&rest[..i]),
                    self.nullable(&rest[i + sep.len()..]),
                ),
                None if self.ignore_error => (None, self.nullable(rest)),
                None => anyhow::bail!(
                    "No key separator found on line number {line_no}: '{}'",
                    shown()
                ),
            },
            None => (None, self.nullable(rest)),
        };
        Ok(ParsedLine {
            key,
            value,
            headers,
        })
    }
}

fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = find(rest, sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}

/// Records awaiting acknowledgement before reading further input.
const MAX_UNACKED: usize = 100_000;

/// Lines read ahead of the producer.
const READ_AHEAD: usize = 1024;

/// After Ctrl-C or SIGTERM, how long to wait for the reader thread to hand over
/// the lines it has already read (it is normally back in `read` within microseconds).
const HANDOVER_LIMIT: Duration = Duration::from_secs(1);

/// Standard input, read line by line on its own thread, so that a signal never
/// finds a line half-way between the kernel and the producer: the thread marks
/// when it is blocked in `read`, and at that moment every line it read before is
/// in the channel. (A tokio stdin read cancelled by `select!` could drop one.)
struct LineReader {
    lines: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    in_read: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LineReader {
    /// Starts the thread; with `prompt`, it prints Kafka's `>` before each line.
    fn spawn(prompt: bool) -> anyhow::Result<LineReader> {
        use std::io::{BufRead, Write};
        use std::sync::atomic::Ordering::SeqCst;
        let (tx, lines) = tokio::sync::mpsc::channel(READ_AHEAD);
        let in_read = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = in_read.clone();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut input = std::io::stdin().lock();
                loop {
                    if prompt {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(b">").and_then(|()| out.flush());
                    }
                    let mut line = Vec::new();
                    flag.store(true, SeqCst);
                    let read = input.read_until(b'\n', &mut line);
                    flag.store(false, SeqCst);
                    let done = !matches!(read, Ok(n) if n > 0);
                    let item = match read {
                        Ok(0) => break,
                        Ok(_) => Ok(line),
                        Err(e) => Err(e),
                    };
                    if tx.blocking_send(item).is_err() || done {
                        break;
                    }
                }
            })
            .context("starting the standard input reader")?;
        Ok(LineReader { lines, in_read })
    }

    /// The next line (with its line ending), or None at end of input.
    async fn next(&mut self) -> Option<std::io::Result<Vec<u8>>> {
        self.lines.recv().await
    }

    /// After a stop signal: the lines already read, up to the moment the thread
    /// is blocked reading again (or input ended).
    async fn already_read(&mut self) -> Vec<std::io::Result<Vec<u8>>> {
        use std::sync::atomic::Ordering::SeqCst;
        let give_up = Instant::now() + HANDOVER_LIMIT;
        let mut out = Vec::new();
        loop {
            // Read the flag before draining: if it was set, every earlier line
            // is already in the channel.
            let idle = self.in_read.load(SeqCst);
            loop {
                match self.lines.try_recv() {
                    Ok(item) => out.push(item),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return out,
                }
            }
            if idle || Instant::now() >= give_up {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Resolves with the exit code of the first SIGINT (130) or SIGTERM (143), as a
/// JVM tool exits after its shutdown hooks ran.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = u8>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        }
    })
}

/// Drops "\n" or "\r\n", like Java's readLine.
fn strip_line_ending(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// Reads standard input to its end (or to Ctrl-C / SIGTERM), producing one record
/// per line; everything read is flushed and acknowledged before it returns.
pub(crate) async fn run(opts: ProduceOptions) -> anyhow::Result<ExitCode> {
    // Watch the signals first: from here on, Ctrl-C flushes instead of killing.
    let stop = stop_signal()?;
    tokio::pin!(stop);
    let config = opts.producer_config()?;
    let producer = tokio::select! {
        p = Producer::connect(config) => p?,
        code = &mut stop => return Ok(ExitCode::from(code)),
    };
    let mut reader = LineReader::spawn(std::io::IsTerminal::is_terminal(&std::io::stdin()))?;
    let mut pending: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
    let mut failures = Failures::default();
    let mut line_no = 0u64;
    let mut stopped_by = None;
    loop {
        let mut batch = Vec::with_capacity(1);
        tokio::select! {
            item = reader.next() => batch.extend(item),
            code = &mut stop => {
                stopped_by = Some(code);
                batch = reader.already_read().await;
            }
        }
        let ended = batch.is_empty() || stopped_by.is_some();
        for item in batch {
            let mut line = item.context("reading standard input")?;
            // A line cut short by the signal was not finished by its writer.
            if stopped_by.is_some() && line.last() != Some(&b'\n') {
                continue;
            }
            line_no += 1;
            strip_line_ending(&mut line);
            let parsed = opts.line.parse(&line, line_no)?;
            let mut headers = parsed.headers;
            headers.extend(opts.static_headers.iter().cloned());
            let record = ProducerRecord {
                topic: opts.topic.clone(),
                partition: opts.partition,
                key: parsed.key,
                value: parsed.value,
                headers,
                timestamp: None,
            };
            pending.push_back((line_no, producer.send(record).await?));
            while pending.len() > MAX_UNACKED {
                if let Some((no, fut)) = pending.pop_front() {
                    failures.note(no, fut.await);
                }
            }
        }
        if ended {
            break;
        }
    }
    producer.flush().await?;
    for (no, fut) in pending {
        failures.note(no, fut.await);
    }
    let _ = producer.close().await;
    match failures.first {
        None => Ok(stopped_by.map_or(ExitCode::SUCCESS, ExitCode::from)),
        Some((no, e)) => {
            let total = line_no;
            anyhow::bail!(
                "{} of {total} records failed; first, line {no}: {e}",
                failures.count
            )
        }
    }
}

#[derive(Default)]
struct Failures {
    count: u64,
    first: Option<(u64, client::Error)>,
}

impl Failures {
    fn note(&mut self, line_no: u64, result: client::Result<client::RecordMetadata>) {
        if let Err(e) = result {
            self.count += 1;
            if self.first.is_none() {
                self.first = Some((line_no, e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Option<Bytes> {
        Some(Bytes::from(s.to_owned()))
    }

    #[test]
    fn lines_split_at_the_first_key_separator() {
        let f = LineFormat {
            key_separator: Some(":".into()),
            ..Default::default()
        };
        let p = f.parse(b"k2:value:with:colons", 1).ok();
        assert_eq!(
            p,
            Some(ParsedLine {
                key: b("k2"),
                value: b("value:with:colons"),
                headers: vec![]
            })
        );
        let err = f.parse(b"nokey", 7).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("No key separator found on line number 7: 'nokey'")
        );
    }

    #[test]
    fn without_a_separator_the_whole_line_is_the_value() {
        let f = LineFormat::default();
        let p = f.parse(b"  a\tb  ", 1).ok();
        assert_eq!(
            p,
            Some(ParsedLine {
                key: None,
                value: b("  a\tb  "),
                headers: vec![]
            })
        );
    }

    #[test]
    fn kafka_header_syntax_and_null_marker_are_honoured() {
        let f = LineFormat {
            key_separator: Some("\t".into()),
            headers: Some(HeaderFormat::default()),
            null_marker: Some("NULL".into()),
            ignore_error: false,
        };
        let p = f.parse(b"h1:v1,h2:NULL,h3\tNULL\tvalue", 1).ok();
        assert_eq!(
            p,
            Some(ParsedLine {
                key: None,
                value: b("value"),
                headers: vec![
                    ("h1".into(), b("v1")),
                    ("h2".into(), None),
                    ("h3".into(), None)
                ],
            })
        );
    }
}

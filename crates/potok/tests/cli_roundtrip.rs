//! End to end: the `potok` tools and the Kafka-named scripts against a real broker.

mod common;

use common::{create_topic, potok, potok_ok, repo_root, run_program, Broker};

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn topics_create_list_describe_delete_round_trip() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    let r = potok_ok(
        &[
            "topics",
            "create",
            "--bootstrap-server",
            bs,
            "--topic",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=86400000",
        ],
        b"",
    );
    assert_eq!(r.stdout, "Created topic orders.\n");

    let r = potok_ok(&["topics", "list", "--bootstrap-server", bs], b"");
    assert!(lines(&r.stdout).contains(&"orders"), "list: {}", r.stdout);

    let r = potok_ok(
        &[
            "topics",
            "describe",
            "--bootstrap-server",
            bs,
            "--topic",
            "orders",
        ],
        b"",
    );
    let out = lines(&r.stdout);
    assert_eq!(out.len(), 4, "describe: {}", r.stdout);
    let head: Vec<&str> = out[0].split('\t').collect();
    assert_eq!(head[0], "Topic: orders");
    assert!(
        head[1].starts_with("TopicId: ") && head[1].len() == "TopicId: ".len() + 22,
        "{}",
        out[0]
    );
    assert_eq!(&head[2..4], &["PartitionCount: 3", "ReplicationFactor: 1"]);
    assert!(
        head[4].starts_with("Configs: ") && head[4].contains("retention.ms=86400000"),
        "{}",
        out[0]
    );
    for (i, line) in out[1..].iter().enumerate() {
        assert_eq!(
            *line,
            format!("\tTopic: orders\tPartition: {i}\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: \tLastKnownElr: ")
        );
    }

    // Creating it again fails with Kafka's error name, unless --if-not-exists.
    let r = potok(
        &[
            "topics",
            "create",
            "--bootstrap-server",
            bs,
            "--topic",
            "orders",
        ],
        b"",
    );
    assert!(!r.ok);
    assert!(
        r.stderr.contains("TOPIC_ALREADY_EXISTS"),
        "stderr: {}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    potok_ok(
        &[
            "topics",
            "create",
            "--bootstrap-server",
            bs,
            "--topic",
            "orders",
            "--if-not-exists",
        ],
        b"",
    );

    potok_ok(
        &[
            "topics",
            "alter",
            "--bootstrap-server",
            bs,
            "--topic",
            "orders",
            "--partitions",
            "4",
        ],
        b"",
    );
    let r = potok_ok(
        &[
            "topics",
            "describe",
            "--bootstrap-server",
            bs,
            "--topic",
            "orders",
        ],
        b"",
    );
    assert!(
        r.stdout.contains("PartitionCount: 4"),
        "after alter: {}",
        r.stdout
    );

    potok_ok(
        &[
            "topics",
            "delete",
            "--bootstrap-server",
            bs,
            "--topic",
            "orders",
        ],
        b"",
    );
    let r = potok_ok(&["topics", "list", "--bootstrap-server", bs], b"");
    assert!(
        !lines(&r.stdout).contains(&"orders"),
        "still listed: {}",
        r.stdout
    );

    let r = potok(
        &[
            "topics",
            "delete",
            "--bootstrap-server",
            bs,
            "--topic",
            "orders",
        ],
        b"",
    );
    assert!(
        !r.ok && r.stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "stderr: {}",
        r.stderr
    );
    potok_ok(
        &[
            "topics",
            "delete",
            "--bootstrap-server",
            bs,
            "--topic",
            "orders",
            "--if-exists",
        ],
        b"",
    );
}

#[test]
fn produce_then_consume_round_trips_keys_values_and_headers_in_order() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "events", 1);
    let n = 300;
    let input: String = (0..n)
        .map(|i| format!("key-{i}|value {i} ünïcödé\n"))
        .collect();
    potok_ok(
        &[
            "produce",
            "events",
            "--bootstrap-server",
            bs,
            "--key-separator",
            "|",
            "--header",
            "source=cli",
            "--header",
            "empty",
            "--compression",
            "lz4",
        ],
        input.as_bytes(),
    );
    let r = potok_ok(
        &[
            "consume",
            "events",
            "--bootstrap-server",
            bs,
            "--from-beginning",
            "--max-messages",
            &n.to_string(),
            "--output",
            "json",
        ],
        b"",
    );
    let records: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    assert_eq!(records.len(), n);
    for (i, rec) in records.iter().enumerate() {
        assert_eq!(rec["topic"], "events");
        assert_eq!(rec["partition"], 0);
        assert_eq!(rec["offset"], i as u64, "offsets are contiguous from 0");
        assert_eq!(rec["key"], format!("key-{i}"));
        assert_eq!(rec["value"], format!("value {i} ünïcödé"));
        assert_eq!(
            rec["headers"],
            serde_json::json!([{"key": "source", "value": "cli"}, {"key": "empty", "value": null}])
        );
    }
    assert!(
        r.stderr
            .contains(&format!("Processed a total of {n} messages")),
        "stderr: {}",
        r.stderr
    );

    // Text mode prints raw values, one per line, with the chosen fields.
    let r = potok_ok(
        &[
            "consume",
            "events",
            "--bootstrap-server",
            bs,
            "--offset",
            "298",
            "--max-messages",
            "2",
            "--print-key",
            "--print-headers",
            "--key-separator",
            " ",
        ],
        b"",
    );
    assert_eq!(
        r.stdout,
        "source:cli,empty:null key-298 value 298 ünïcödé\nsource:cli,empty:null key-299 value 299 ünïcödé\n"
    );
}

#[test]
fn consume_without_from_beginning_reads_only_new_records_and_stops_when_idle() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    potok_ok(
        &["produce", "fresh", "--bootstrap-server", bs],
        b"old-1\nold-2\n",
    );
    let r = potok_ok(
        &[
            "consume",
            "fresh",
            "--bootstrap-server",
            bs,
            "--timeout-ms",
            "1500",
        ],
        b"",
    );
    assert_eq!(r.stdout, "", "latest start must skip existing records");
    assert!(
        r.stderr.contains("Processed a total of 0 messages"),
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn produce_fails_with_one_clear_line_when_records_are_rejected() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "one", 1);
    let r = potok(
        &[
            "produce",
            "one",
            "--bootstrap-server",
            bs,
            "--partition",
            "7",
        ],
        b"a\nb\n",
    );
    assert!(!r.ok, "producing to a missing partition must fail");
    assert_eq!(r.stderr.lines().count(), 1, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("2 of 2 records failed"),
        "stderr: {}",
        r.stderr
    );

    let r = potok(
        &[
            "produce",
            "one",
            "--bootstrap-server",
            bs,
            "--key-separator",
            ":",
        ],
        b"k:v\nno-separator\n",
    );
    assert!(!r.ok);
    assert!(
        r.stderr.contains("No key separator found on line number 2"),
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn kafka_named_scripts_run_the_quickstart_from_any_directory() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    let bin = repo_root().join("bin");
    let potok_path = common::potok_bin();
    let env = [("POTOK_BIN", potok_path.to_str().unwrap_or_default())];
    let script = |name: &str| bin.join(name);

    let r = run_program(
        &script("kafka-topics.sh"),
        &[
            "--create",
            "--zookeeper",
            "localhost:2181",
            "--bootstrap-server",
            bs,
            "--replication-factor",
            "1",
            "--partitions",
            "1",
            "--topic",
            "quickstart",
        ],
        b"",
        &env,
    );
    assert!(r.ok, "kafka-topics.sh --create: {}", r.stderr);
    assert_eq!(r.stdout, "Created topic quickstart.\n");
    let zk: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("zookeeper"))
        .collect();
    assert_eq!(
        zk,
        vec![format!("Potok needs no ZooKeeper; using bootstrap server {bs}").as_str()]
    );

    let r = run_program(
        &script("kafka-topics.sh"),
        &["--list", "--bootstrap-server", bs],
        b"",
        &env,
    );
    assert!(
        r.ok && lines(&r.stdout).contains(&"quickstart"),
        "list: {} {}",
        r.stdout,
        r.stderr
    );

    let r = run_program(
        &script("kafka-console-producer.sh"),
        &[
            "--broker-list",
            bs,
            "--topic",
            "quickstart",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
            "--producer-property",
            "acks=all",
            "--compression-codec",
            "snappy",
        ],
        b"k1:This is a message\nk2:This is another message\n",
        &env,
    );
    assert!(r.ok, "kafka-console-producer.sh: {}", r.stderr);

    let r = run_program(
        &script("kafka-console-consumer.sh"),
        &[
            "--bootstrap-server",
            bs,
            "--topic",
            "quickstart",
            "--from-beginning",
            "--max-messages",
            "2",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=:",
            "--group",
            "g1",
        ],
        b"",
        &env,
    );
    assert!(r.ok, "kafka-console-consumer.sh: {}", r.stderr);
    assert_eq!(
        r.stdout,
        "k1:This is a message\nk2:This is another message\n"
    );
    assert!(
        r.stderr.contains("Processed a total of 2 messages"),
        "stderr: {}",
        r.stderr
    );
    // --group is a real group now: the two records are committed to g1.
    let r = potok_ok(
        &[
            "groups",
            "describe",
            "--bootstrap-server",
            bs,
            "--group",
            "g1",
        ],
        b"",
    );
    let row: Vec<&str> = r
        .stdout
        .lines()
        .nth(2)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..6),
        Some(&["g1", "quickstart", "0", "2", "2", "0"][..]),
        "{}",
        r.stdout
    );
}

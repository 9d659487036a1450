//! End to end: consumer groups through `potok consume --group`, `potok groups` and
//! `kafka-consumer-groups.sh` against a real broker.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{create_topic, potok, potok_bin, potok_ok, repo_root, run_program, Broker};

fn produce(bs: &str, topic: &str, lines: &str) {
    potok_ok(
        &["produce", topic, "--bootstrap-server", bs],
        lines.as_bytes(),
    );
}

fn numbers(from: u32, to: u32) -> String {
    (from..=to).map(|i| format!("m{i}\n")).collect()
}

/// A `potok consume --group` left running in the background; killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn consume_in_background(bs: &str, topic: &str, group: &str) -> Running {
    let child = Command::new(potok_bin())
        .args(["consume", topic, "--bootstrap-server", bs, "--group", group])
        .args(["--from-beginning", "--timeout-ms", "60000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn potok consume");
    Running(child)
}

/// Runs `potok groups describe --group G <view>` until `done` holds for its output
/// (at most 30 s); returns that output.
fn wait_for_describe(bs: &str, group: &str, view: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = potok(
            &[
                "groups",
                "describe",
                "--bootstrap-server",
                bs,
                "--group",
                group,
                view,
            ],
            b"",
        );
        if done(&r.stdout) {
            return r.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never got there: {}{}",
            r.stdout,
            r.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `--state` shows `state` for the group.
fn wait_for_state(bs: &str, group: &str, state: &str) -> String {
    wait_for_describe(bs, group, "--state", |out| out.contains(state))
}

#[test]
fn consume_with_a_group_resumes_after_what_it_printed() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "resume", 1);
    produce(bs, "resume", &numbers(1, 10));

    let args = |max: &'static str| {
        [
            "consume",
            "resume",
            "--bootstrap-server",
            bs,
            "--group",
            "g",
            "--from-beginning",
            "--max-messages",
            max,
            "--timeout-ms",
            "20000",
        ]
    };
    let first = potok_ok(&args("4"), b"");
    assert_eq!(first.stdout, numbers(1, 4));
    // The second run starts at the group's commit, not at the beginning.
    let second = potok_ok(&args("6"), b"");
    assert_eq!(second.stdout, numbers(5, 10));
    // Nothing is left: a third run prints nothing before its idle timeout.
    let third = potok_ok(
        &[
            "consume",
            "resume",
            "--bootstrap-server",
            bs,
            "--group",
            "g",
            "--timeout-ms",
            "5000",
        ],
        b"",
    );
    assert_eq!(third.stdout, "");
}

#[test]
fn groups_list_describe_reset_and_delete_round_trip() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "orders", 2);
    produce(bs, "orders", &numbers(1, 10));
    potok_ok(
        &[
            "consume",
            "orders",
            "--bootstrap-server",
            bs,
            "--group",
            "billing",
            "--from-beginning",
            "--max-messages",
            "10",
            "--timeout-ms",
            "20000",
        ],
        b"",
    );

    let r = potok_ok(&["groups", "list", "--bootstrap-server", bs], b"");
    assert_eq!(r.stdout, "billing\n");
    let r = potok_ok(
        &["groups", "list", "--bootstrap-server", bs, "--state"],
        b"",
    );
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, vec![vec!["GROUP", "STATE"], vec!["billing", "Empty"]]);

    // Every record was printed and committed: no lag, and no members.
    let r = potok_ok(
        &[
            "groups",
            "describe",
            "--bootstrap-server",
            bs,
            "--group",
            "billing",
        ],
        b"",
    );
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        vec![
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ]
    );
    let total: i64 = rows[1..]
        .iter()
        .map(|r| r[4].parse::<i64>().unwrap_or(-100))
        .sum();
    assert_eq!(total, 10, "{}", r.stdout);
    for row in &rows[1..] {
        assert_eq!(row[3], row[4], "{}", r.stdout);
        assert_eq!(&row[5..], &["0", "-", "-", "-"], "{}", r.stdout);
    }
    assert!(
        r.stderr
            .contains("Consumer group 'billing' has no active members."),
        "{}",
        r.stderr
    );

    // A dry run only prints; --execute commits.
    let reset = [
        "groups",
        "reset-offsets",
        "--bootstrap-server",
        bs,
        "--group",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
    ];
    let r = potok_ok(&reset, b"");
    let expected = "\nGROUP           TOPIC           PARTITION  NEW-OFFSET\n\
                    billing         orders          0          0\n\
                    billing         orders          1          0\n";
    assert_eq!(r.stdout, expected);
    let r = potok_ok(
        &[
            "groups",
            "describe",
            "--bootstrap-server",
            bs,
            "--group",
            "billing",
        ],
        b"",
    );
    assert!(
        !r.stdout.contains(" 0               1"),
        "dry run changed offsets: {}",
        r.stdout
    );
    let mut execute = reset.to_vec();
    execute.push("--execute");
    assert_eq!(potok_ok(&execute, b"").stdout, expected);
    let r = potok_ok(
        &[
            "groups",
            "describe",
            "--bootstrap-server",
            bs,
            "--group",
            "billing",
        ],
        b"",
    );
    let lags: i64 = r
        .stdout
        .lines()
        .skip(2)
        .map(|l| {
            l.split_whitespace()
                .nth(5)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(-100)
        })
        .sum();
    assert_eq!(lags, 10, "{}", r.stdout);

    // After the reset, the group reads everything again.
    let again = potok_ok(
        &[
            "consume",
            "orders",
            "--bootstrap-server",
            bs,
            "--group",
            "billing",
            "--max-messages",
            "10",
            "--timeout-ms",
            "20000",
        ],
        b"",
    );
    assert_eq!(again.stdout.lines().count(), 10);

    let r = potok_ok(
        &[
            "groups",
            "delete",
            "--bootstrap-server",
            bs,
            "--group",
            "billing",
        ],
        b"",
    );
    assert_eq!(
        r.stdout,
        "Deletion of requested consumer groups ('billing') was successful.\n"
    );
    let r = potok(
        &[
            "groups",
            "describe",
            "--bootstrap-server",
            bs,
            "--group",
            "billing",
        ],
        b"",
    );
    assert!(!r.ok);
    assert_eq!(
        r.stdout,
        "\nError: Consumer group 'billing' does not exist.\n"
    );
}

#[test]
fn an_active_group_can_be_described_but_neither_reset_nor_deleted() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "live", 3);
    produce(bs, "live", &numbers(1, 3));
    let _member = consume_in_background(bs, "live", "busy");
    let state = wait_for_state(bs, "busy", "Stable");
    let row: Vec<&str> = state
        .lines()
        .nth(2)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row.first(), Some(&"busy"));
    assert_eq!(&row[row.len() - 3..], &["range", "Stable", "1"], "{state}");

    let r = potok_ok(
        &[
            "groups",
            "describe",
            "--bootstrap-server",
            bs,
            "--group",
            "busy",
            "--members",
        ],
        b"",
    );
    let member: Vec<&str> = r
        .stdout
        .lines()
        .nth(2)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(member.first(), Some(&"busy"), "{}", r.stdout);
    assert!(
        member.contains(&"3") && member.contains(&"live:0,1,2"),
        "{}",
        r.stdout
    );

    let r = potok(
        &[
            "groups",
            "reset-offsets",
            "--bootstrap-server",
            bs,
            "--group",
            "busy",
            "--all-topics",
            "--to-latest",
            "--execute",
        ],
        b"",
    );
    assert!(!r.ok);
    assert_eq!(
        r.stdout,
        "\nError: Assignments can only be reset if the group 'busy' is inactive, but the current state is Stable.\n"
    );

    let r = potok(
        &[
            "groups",
            "delete",
            "--bootstrap-server",
            bs,
            "--group",
            "busy",
        ],
        b"",
    );
    assert!(!r.ok);
    assert!(
        r.stdout.contains(
            "* Group 'busy' could not be deleted due to: NON_EMPTY_GROUP: The group is not empty."
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn kafka_consumer_groups_script_lists_and_describes_with_kafkas_flags() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "t", 1);
    produce(bs, "t", &numbers(1, 2));
    let script = repo_root().join("bin/kafka-consumer-groups.sh");
    let bin = potok_bin();
    let envs = [("POTOK_BIN", bin.to_str().unwrap_or("potok"))];
    let console = repo_root().join("bin/kafka-console-consumer.sh");
    let r = run_program(
        &console,
        &[
            "--bootstrap-server",
            bs,
            "--topic",
            "t",
            "--group",
            "scripted",
            "--from-beginning",
            "--max-messages",
            "2",
            "--timeout-ms",
            "20000",
        ],
        b"",
        &envs,
    );
    assert_eq!(r.stdout, "m1\nm2\n", "{}", r.stderr);
    let r = run_program(&script, &["--bootstrap-server", bs, "--list"], b"", &envs);
    assert_eq!(r.stdout, "scripted\n", "{}", r.stderr);
    let r = run_program(
        &script,
        &[
            "--bootstrap-server",
            bs,
            "--describe",
            "--group",
            "scripted",
        ],
        b"",
        &envs,
    );
    let row: Vec<&str> = r
        .stdout
        .lines()
        .nth(2)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..6],
        &["scripted", "t", "0", "2", "2", "0"],
        "{}",
        r.stdout
    );
    let r = run_program(
        &script,
        &[
            "--bootstrap-server",
            bs,
            "--reset-offsets",
            "--group",
            "scripted",
            "--topic",
            "t",
            "--shift-by",
            "-1",
            "--execute",
        ],
        b"",
        &envs,
    );
    assert!(
        r.stdout
            .contains("scripted        t               0          1"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}

/// Waits until the members view shows exactly `counts` partitions per member.
fn wait_for_members(bs: &str, group: &str, counts: &[&str]) {
    wait_for_describe(bs, group, "--members", |out| {
        let mut got: Vec<&str> = out
            .lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().nth(4))
            .collect();
        got.sort_unstable();
        got == counts
    });
}

#[test]
fn a_second_member_takes_half_the_partitions_and_hands_them_back_when_it_leaves() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "shared", 2);
    let _first = consume_in_background(bs, "shared", "pair");
    wait_for_members(bs, "pair", &["2"]);
    let second = consume_in_background(bs, "shared", "pair");
    wait_for_members(bs, "pair", &["1", "1"]);
    // Ctrl-C: the consumer commits, leaves the group, and the first one takes all.
    let stopped = Command::new("kill")
        .arg("-INT")
        .arg(second.0.id().to_string())
        .status();
    assert!(stopped.is_ok_and(|s| s.success()));
    wait_for_members(bs, "pair", &["2"]);
}

//! End to end: consumer groups through `potok consume --group`, `potok groups` and
//! `kafka-consumer-groups.sh` against a real broker.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{create_topic, potok, potok_bin, potok_ok, repo_root, run_program, Broker, Run};

fn produce(bs: &str, topic: &str, lines: &str) {
    potok_ok(
        &["produce", topic, "--bootstrap-server", bs],
        lines.as_bytes(),
    );
}

/// Writes `lines` to each partition of `topic`, `0..partitions`.
fn produce_to_each_partition(bs: &str, topic: &str, partitions: u32, lines: &str) {
    for p in 0..partitions {
        let p = p.to_string();
        potok_ok(
            &[
                "produce",
                topic,
                "--bootstrap-server",
                bs,
                "--partition",
                &p,
            ],
            lines.as_bytes(),
        );
    }
}

fn numbers(from: u32, to: u32) -> String {
    (from..=to).map(|i| format!("m{i}\n")).collect()
}

/// `potok groups ACTION --bootstrap-server BS ARGS...`, whatever its exit status.
fn groups(bs: &str, action: &str, args: &[&str]) -> Run {
    let argv: Vec<&str> = ["groups", action, "--bootstrap-server", bs]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    potok(&argv, b"")
}

/// `potok groups ACTION --bootstrap-server BS ARGS...`, which must succeed.
fn groups_ok(bs: &str, action: &str, args: &[&str]) -> Run {
    let r = groups(bs, action, args);
    assert!(
        r.ok,
        "groups {action} {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r
}

/// The offsets view of `group` (`potok groups describe`), which must succeed.
fn describe_offsets(bs: &str, group: &str) -> Run {
    groups_ok(bs, "describe", &["--group", group])
}

/// Kafka's `bin/kafka-consumer-groups.sh --bootstrap-server BS ARGS...`.
fn kafka_consumer_groups(bs: &str, args: &[&str]) -> Run {
    let script = repo_root().join("bin/kafka-consumer-groups.sh");
    let bin = potok_bin();
    let argv: Vec<&str> = ["--bootstrap-server", bs]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    run_program(
        &script,
        &argv,
        b"",
        &[("POTOK_BIN", bin.to_str().unwrap_or("potok"))],
    )
}

/// `potok consume TOPIC --group GROUP --from-beginning` until it printed `n` records.
fn consume_as_group(bs: &str, topic: &str, group: &str, n: usize) {
    let max = n.to_string();
    let r = potok_ok(
        &[
            "consume",
            topic,
            "--bootstrap-server",
            bs,
            "--group",
            group,
            "--from-beginning",
            "--max-messages",
            &max,
            "--timeout-ms",
            "20000",
        ],
        b"",
    );
    assert_eq!(r.stdout.lines().count(), n, "{}", r.stderr);
}

/// The rows of Kafka's reset table: (group, topic, partition, new offset).
fn new_offsets(table: &str) -> Vec<(String, String, i32, i64)> {
    table
        .lines()
        .skip_while(|l| !l.starts_with("GROUP "))
        .skip(1)
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [g, t, p, o] => Some((g.to_owned(), t.to_owned(), p.parse().ok()?, o.parse().ok()?)),
            _ => None,
        })
        .collect()
}

/// `(group, topic, partition, offset)` rows, for comparing with [`new_offsets`].
fn rows(v: &[(&str, &str, i32, i64)]) -> Vec<(String, String, i32, i64)> {
    v.iter()
        .map(|(g, t, p, o)| ((*g).to_owned(), (*t).to_owned(), *p, *o))
        .collect()
}

/// Commits `offset` for the partitions in `topic_arg` (`t:0,1`) as `group` (a group
/// without members, as Kafka lets a reset create one).
fn commit(bs: &str, group: &str, topic_arg: &str, offset: i64) {
    let offset = offset.to_string();
    groups_ok(
        bs,
        "reset-offsets",
        &[
            "--group",
            group,
            "--topic",
            topic_arg,
            "--to-offset",
            &offset,
            "--execute",
        ],
    );
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
        let r = groups(bs, "describe", &["--group", group, view]);
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
    consume_as_group(bs, "orders", "billing", 10);

    assert_eq!(groups_ok(bs, "list", &[]).stdout, "billing\n");
    let r = groups_ok(bs, "list", &["--state"]);
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, vec![vec!["GROUP", "STATE"], vec!["billing", "Empty"]]);

    // Every record was printed and committed: no lag, and no members.
    let r = describe_offsets(bs, "billing");
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
    let reset = ["--group", "billing", "--topic", "orders", "--to-earliest"];
    let expected = "\nGROUP           TOPIC           PARTITION  NEW-OFFSET\n\
                    billing         orders          0          0\n\
                    billing         orders          1          0\n";
    assert_eq!(groups_ok(bs, "reset-offsets", &reset).stdout, expected);
    let r = describe_offsets(bs, "billing");
    assert!(
        !r.stdout.contains(" 0               1"),
        "dry run changed offsets: {}",
        r.stdout
    );
    let mut execute = reset.to_vec();
    execute.push("--execute");
    assert_eq!(groups_ok(bs, "reset-offsets", &execute).stdout, expected);
    let r = describe_offsets(bs, "billing");
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
    consume_as_group(bs, "orders", "billing", 10);

    let r = groups_ok(bs, "delete", &["--group", "billing"]);
    assert_eq!(
        r.stdout,
        "Deletion of requested consumer groups ('billing') was successful.\n"
    );
    let r = groups(bs, "describe", &["--group", "billing"]);
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

    let r = groups_ok(bs, "describe", &["--group", "busy", "--members"]);
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

    // Kafka prints the refusal, then the (empty) table of the groups it planned.
    let refusal = [
        "--group",
        "busy",
        "--all-topics",
        "--to-latest",
        "--execute",
    ];
    let r = groups(bs, "reset-offsets", &refusal);
    assert!(!r.ok);
    assert_eq!(
        r.stdout,
        "\nError: Assignments can only be reset if the group 'busy' is inactive, but the current state is Stable.\n\
         \nGROUP           TOPIC           PARTITION  NEW-OFFSET\n"
    );

    let r = groups(bs, "delete", &["--group", "busy"]);
    assert!(!r.ok);
    assert_eq!(
        r.stdout,
        "\nError: Deletion of some consumer groups failed:\n\
         * Group 'busy' could not be deleted due to: org.apache.kafka.common.errors.GroupNotEmptyException: The group is not empty.\n"
    );

    // Kafka's script prints the same lines but exits 0, as Kafka's tool does.
    let mut args = vec!["--reset-offsets"];
    args.extend(refusal);
    let script = kafka_consumer_groups(bs, &args);
    assert!(script.ok, "{}", script.stderr);
    assert_eq!(
        script.stdout,
        r#"
Error: Assignments can only be reset if the group 'busy' is inactive, but the current state is Stable.

GROUP           TOPIC           PARTITION  NEW-OFFSET
"#
    );
    let script = kafka_consumer_groups(bs, &["--describe", "--group", "nobody"]);
    assert!(script.ok, "{}", script.stderr);
    assert_eq!(
        script.stdout,
        "\nError: Consumer group 'nobody' does not exist.\n"
    );
}

#[test]
fn kafka_consumer_groups_script_lists_and_describes_with_kafkas_flags() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "t", 1);
    produce(bs, "t", &numbers(1, 2));
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
    let r = kafka_consumer_groups(bs, &["--list"]);
    assert_eq!(r.stdout, "scripted\n", "{}", r.stderr);
    let r = kafka_consumer_groups(bs, &["--describe", "--group", "scripted"]);
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
    let r = kafka_consumer_groups(
        bs,
        &[
            "--reset-offsets",
            "--group",
            "scripted",
            "--topic",
            "t",
            "--shift-by",
            "-1",
            "--execute",
        ],
    );
    assert_eq!(
        new_offsets(&r.stdout),
        rows(&[("scripted", "t", 0, 1)]),
        "{}{}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn to_current_keeps_committed_offsets_and_takes_the_log_end_of_the_rest() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "cur", 2);
    produce_to_each_partition(bs, "cur", 2, &numbers(1, 4));
    commit(bs, "g", "cur:0", 1);
    let r = groups_ok(
        bs,
        "reset-offsets",
        &["--group", "g", "--topic", "cur", "--to-current"],
    );
    assert_eq!(
        new_offsets(&r.stdout),
        rows(&[("g", "cur", 0, 1), ("g", "cur", 1, 4)]),
        "{}",
        r.stdout
    );
}

#[test]
fn by_duration_resets_to_the_first_record_that_recent_else_to_the_log_end() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "recent", 1);
    produce(bs, "recent", &numbers(1, 3));
    commit(bs, "g", "recent", 3);
    let reset = |duration: &str| {
        groups_ok(
            bs,
            "reset-offsets",
            &["--group", "g", "--all-topics", "--by-duration", duration],
        )
        .stdout
    };
    // Every record is younger than a day.
    let out = reset("P1D");
    assert_eq!(new_offsets(&out), rows(&[("g", "recent", 0, 0)]), "{out}");
    // None is younger than no time at all: Kafka warns and takes the log end.
    std::thread::sleep(Duration::from_millis(20));
    let out = reset("PT0S");
    assert!(
        out.starts_with(
            "\nWarn: Partition 0 from topic recent is empty. Falling back to latest known offset.\n"
        ),
        "{out}"
    );
    assert_eq!(new_offsets(&out), rows(&[("g", "recent", 0, 3)]), "{out}");
    let r = groups(
        bs,
        "reset-offsets",
        &["--group", "g", "--all-topics", "--by-duration", "1h"],
    );
    assert!(!r.ok && r.stderr.contains("PnDTnHnMnS"), "{}", r.stderr);
}

#[test]
fn export_prints_kafkas_csv_and_from_file_applies_it_within_the_logs() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "plan", 2);
    produce_to_each_partition(bs, "plan", 2, &numbers(1, 5));
    commit(bs, "g", "plan", 5);
    let r = groups_ok(
        bs,
        "reset-offsets",
        &[
            "--group",
            "g",
            "--topic",
            "plan",
            "--shift-by",
            "-2",
            "--export",
        ],
    );
    assert_eq!(r.stdout, "plan,0,3\nplan,1,3\n\n");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plan.csv");
    // Offsets past the log are kept within it, as Kafka does.
    std::fs::write(&file, "plan,0,1\nplan,1,99\n").expect("write plan");
    let path = file.to_str().expect("utf-8 path");
    let r = groups_ok(
        bs,
        "reset-offsets",
        &["--group", "g", "--from-file", path, "--execute"],
    );
    assert_eq!(
        new_offsets(&r.stdout),
        rows(&[("g", "plan", 0, 1), ("g", "plan", 1, 5)]),
        "{}",
        r.stdout
    );
    let lags: Vec<String> = describe_offsets(bs, "g")
        .stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
        .collect();
    assert_eq!(lags, ["4", "0"]);

    // A plan without a line for the group: Kafka's error and no new offsets.
    std::fs::write(&file, "other,plan,0,0\n").expect("write plan");
    let r = kafka_consumer_groups(
        bs,
        &[
            "--reset-offsets",
            "--group",
            "g",
            "--group",
            "h",
            "--from-file",
            path,
            "--dry-run",
        ],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("\nError: No reset plan for group g found.\n"),
        "{}",
        r.stdout
    );
    assert!(new_offsets(&r.stdout).is_empty(), "{}", r.stdout);
}

#[test]
fn list_state_filters_and_all_groups_treat_active_and_idle_groups_apart() {
    let b = Broker::start();
    let bs = b.bootstrap.as_str();
    create_topic(bs, "all", 1);
    produce(bs, "all", &numbers(1, 4));
    consume_as_group(bs, "all", "idle-a", 4);
    commit(bs, "idle-b", "all", 2);
    let _member = consume_in_background(bs, "all", "busy");
    wait_for_state(bs, "busy", "Stable");

    let ids = |r: Run| -> Vec<String> {
        r.stdout
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    assert_eq!(ids(groups_ok(bs, "list", &["--state", "stable"])), ["busy"]);
    assert_eq!(
        ids(groups_ok(bs, "list", &["--state", "EMPTY"])),
        ["idle-a", "idle-b"]
    );
    assert_eq!(
        ids(groups_ok(bs, "list", &["--state", "Empty,stable"])),
        ["busy", "idle-a", "idle-b"]
    );
    assert!(ids(groups_ok(bs, "list", &["--state", "Dead"])).is_empty());
    let r = kafka_consumer_groups(bs, &["--list", "--state", "stable", "--type"]);
    assert_eq!(
        r.stdout,
        format!(
            "{:<25} {:<20} {:<20}\n{:<25} {:<20} {:<20}\n",
            "GROUP", "TYPE", "STATE", "busy", "Classic", "Stable"
        ),
        "{}",
        r.stderr
    );
    let r = groups(bs, "list", &["--state", "sleepy"]);
    assert!(
        !r.ok && r.stderr.contains("Invalid state list 'sleepy'"),
        "{}",
        r.stderr
    );

    // Describe: every group in id order, a blank line between their tables.
    let r = groups_ok(bs, "describe", &["--all-groups"]);
    let tables: Vec<&str> = r.stdout.split("\n\n").collect();
    assert_eq!(tables.len(), 3, "{}", r.stdout);
    for (table, group) in tables.iter().zip(["busy", "idle-a", "idle-b"]) {
        let first_row = table.trim_start_matches('\n').lines().nth(1).unwrap_or("");
        assert!(first_row.starts_with(&format!("{group} ")), "{}", r.stdout);
    }

    // Reset: the active group is refused, the others are reset in one table.
    let r = groups(
        bs,
        "reset-offsets",
        &["--all-groups", "--all-topics", "--to-earliest", "--execute"],
    );
    assert!(!r.ok);
    assert!(
        r.stdout.starts_with("\nError: Assignments can only be reset if the group 'busy' is inactive, but the current state is Stable.\n"),
        "{}",
        r.stdout
    );
    assert_eq!(
        new_offsets(&r.stdout),
        rows(&[("idle-a", "all", 0, 0), ("idle-b", "all", 0, 0)]),
        "{}",
        r.stdout
    );
    // With several groups the export has Kafka's group column.
    let r = kafka_consumer_groups(
        bs,
        &[
            "--reset-offsets",
            "--all-groups",
            "--all-topics",
            "--to-latest",
            "--export",
            "--dry-run",
        ],
    );
    assert!(
        r.stdout.ends_with("\nidle-a,all,0,4\nidle-b,all,0,4\n\n"),
        "{}",
        r.stdout
    );

    // Delete: the active group fails, the others go.
    let r = kafka_consumer_groups(bs, &["--delete", "--all-groups"]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "\nError: Deletion of some consumer groups failed:\n\
         * Group 'busy' could not be deleted due to: org.apache.kafka.common.errors.GroupNotEmptyException: The group is not empty.\n\
         \nThese consumer groups were deleted successfully: 'idle-a', 'idle-b'\n"
    );
    assert_eq!(groups_ok(bs, "list", &[]).stdout, "busy\n");
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

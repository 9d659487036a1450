//! `potok groups list|describe|reset-offsets|delete|delete-offsets`: consumer groups,
//! with kafka-consumer-groups.sh's output and messages.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use client::admin::Admin;
use client::group::TopicPartition;
use client::{Consumer, ConsumerConfig, GroupDescription, Offset};

use super::DEFAULT_BOOTSTRAP;

/// Kafka's placeholder for an unknown column value.
const MISSING: &str = "-";

/// `potok groups` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct GroupsArgs {
    #[command(subcommand)]
    action: GroupsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum GroupsCommand {
    /// List consumer groups, one id per line.
    List(ListArgs),
    /// Describe a group: committed offsets and lag (default), members or state.
    Describe(DescribeArgs),
    /// Set a group's committed offsets (a dry run unless --execute).
    ResetOffsets(ResetArgs),
    /// Delete groups (only groups without members).
    Delete(DeleteArgs),
    /// Delete a group's committed offsets of topics.
    DeleteOffsets(DeleteOffsetsArgs),
}

#[derive(clap::Args, Debug)]
struct Bootstrap {
    /// Broker to connect to, host:port[,host:port].
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap_server: String,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    /// Add the state column.
    #[arg(long)]
    state: bool,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("view").args(["members", "state", "offsets"])))]
struct DescribeArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    /// The group (repeatable).
    #[arg(long, required = true)]
    group: Vec<String>,
    /// Show the members, their client ids, hosts and partitions.
    #[arg(long)]
    members: bool,
    /// Show coordinator, assignor, state and member count.
    #[arg(long)]
    state: bool,
    /// Show committed offsets, log end offsets and lag per partition (default).
    #[arg(long)]
    offsets: bool,
    /// More columns (leader epoch; epochs of KIP-848 groups).
    #[arg(long)]
    verbose: bool,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["topic", "all_topics"])))]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
struct ResetArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    /// The group.
    #[arg(long)]
    group: String,
    /// A topic, or topic:partition,partition (repeatable).
    #[arg(long, value_name = "TOPIC[:P,P]")]
    topic: Vec<String>,
    /// Every partition the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// To the log start.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (kept within the log).
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// To the first offset at or after this time: YYYY-MM-DDTHH:mm:SS.sss, UTC unless
    /// a zone (Z, +hh:mm) follows.
    #[arg(long, value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// Move the committed offset by N (negative: back), kept within the log.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Only print the new offsets (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
}

#[derive(clap::Args, Debug)]
struct DeleteArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    /// The group (repeatable).
    #[arg(long, required = true)]
    group: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct DeleteOffsetsArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    /// The group.
    #[arg(long)]
    group: String,
    /// A topic, or topic:partition,partition (repeatable).
    #[arg(long, required = true, value_name = "TOPIC[:P,P]")]
    topic: Vec<String>,
}

/// Which part of a group `describe` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DescribeView {
    Offsets,
    Members,
    State,
}

/// Where reset-offsets moves the committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResetTarget {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since the epoch.
    Datetime(i64),
    ShiftBy(i64),
}

/// Which partitions reset-offsets moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResetScope {
    /// `topic` or `topic:p,p` arguments.
    Topics(Vec<String>),
    /// Every partition with a committed offset.
    AllTopics,
}

/// What a groups command does, whichever spelling (`potok groups`,
/// `kafka-consumer-groups`) asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupsAction {
    List {
        bootstrap: String,
        state: bool,
    },
    Describe {
        bootstrap: String,
        /// Empty with `all_groups`.
        groups: Vec<String>,
        all_groups: bool,
        view: DescribeView,
        verbose: bool,
    },
    ResetOffsets {
        bootstrap: String,
        groups: Vec<String>,
        scope: ResetScope,
        target: ResetTarget,
        execute: bool,
    },
    Delete {
        bootstrap: String,
        groups: Vec<String>,
    },
    DeleteOffsets {
        bootstrap: String,
        group: String,
        topics: Vec<String>,
    },
}

impl GroupsArgs {
    pub(crate) fn into_action(self) -> anyhow::Result<GroupsAction> {
        Ok(match self.action {
            GroupsCommand::List(a) => GroupsAction::List {
                bootstrap: a.bootstrap.bootstrap_server,
                state: a.state,
            },
            GroupsCommand::Describe(a) => {
                let view = if a.members {
                    DescribeView::Members
                } else if a.state {
                    DescribeView::State
                } else {
                    DescribeView::Offsets
                };
                GroupsAction::Describe {
                    bootstrap: a.bootstrap.bootstrap_server,
                    groups: a.group,
                    all_groups: false,
                    view,
                    // The members view always shows the partitions.
                    verbose: a.verbose || view == DescribeView::Members,
                }
            }
            GroupsCommand::ResetOffsets(a) => GroupsAction::ResetOffsets {
                bootstrap: a.bootstrap.bootstrap_server,
                groups: vec![a.group],
                scope: if a.all_topics {
                    ResetScope::AllTopics
                } else {
                    ResetScope::Topics(a.topic)
                },
                target: reset_target(
                    a.to_earliest,
                    a.to_latest,
                    a.to_offset,
                    a.to_datetime.as_deref(),
                    a.shift_by,
                )?,
                execute: a.execute,
            },
            GroupsCommand::Delete(a) => GroupsAction::Delete {
                bootstrap: a.bootstrap.bootstrap_server,
                groups: a.group,
            },
            GroupsCommand::DeleteOffsets(a) => GroupsAction::DeleteOffsets {
                bootstrap: a.bootstrap.bootstrap_server,
                group: a.group,
                topics: a.topic,
            },
        })
    }
}

/// The one reset scenario given; Kafka's message when there is none or several.
pub(crate) fn reset_target(
    earliest: bool,
    latest: bool,
    offset: Option<i64>,
    datetime: Option<&str>,
    shift_by: Option<i64>,
) -> anyhow::Result<ResetTarget> {
    let mut targets = Vec::new();
    if earliest {
        targets.push(ResetTarget::Earliest);
    }
    if latest {
        targets.push(ResetTarget::Latest);
    }
    if let Some(o) = offset {
        targets.push(ResetTarget::Offset(o));
    }
    if let Some(d) = datetime {
        targets.push(ResetTarget::Datetime(parse_datetime(d)?));
    }
    if let Some(n) = shift_by {
        targets.push(ResetTarget::ShiftBy(n));
    }
    match targets.len() {
        1 => Ok(targets.remove(0)),
        _ => anyhow::bail!(
            "Option --reset-offsets needs exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by"
        ),
    }
}

/// Kafka's `--to-datetime` format: `YYYY-MM-DDTHH:mm:SS[.sss]` followed by `Z`,
/// `±hh`, `±hhmm` or `±hh:mm`; without a zone the time is UTC (as Kafka's
/// `Utils.getDateTime`). Returns milliseconds since the epoch.
pub(crate) fn parse_datetime(s: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!(
            "Error parsing timestamp {s:?}: expected YYYY-MM-DDTHH:mm:SS.sss with an optional zone (Z, +hh:mm)"
        )
    };
    let (date, rest) = s.split_once('T').ok_or_else(bad)?;
    let num = |t: &str| -> anyhow::Result<i64> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d.as_slice() else {
        return Err(bad());
    };
    let (year, month, day) = (num(y)?, num(mo)?, num(da)?);
    // Split the zone off the time.
    let (time, zone_secs) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = z[1..].replace(':', "");
        let (hh, mm) = match z.len() {
            2 => (num(&z)?, 0),
            4 => (num(&z[..2])?, num(&z[2..])?),
            _ => return Err(bad()),
        };
        (t, sign * (hh * 3600 + mm * 60))
    } else {
        (rest, 0)
    };
    let (hms, millis) = match time.split_once('.') {
        Some((hms, frac)) if frac.len() == 3 => (hms, num(frac)?),
        Some(_) => return Err(bad()),
        None => (time, 0),
    };
    let t: Vec<&str> = hms.split(':').collect();
    let [h, mi, se] = t.as_slice() else {
        return Err(bad());
    };
    let (hour, minute, second) = (num(h)?, num(mi)?, num(se)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    Ok((days * 86400 + hour * 3600 + minute * 60 + second - zone_secs) * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl GroupsAction {
    fn bootstrap(&self) -> &str {
        match self {
            GroupsAction::List { bootstrap, .. }
            | GroupsAction::Describe { bootstrap, .. }
            | GroupsAction::ResetOffsets { bootstrap, .. }
            | GroupsAction::Delete { bootstrap, .. }
            | GroupsAction::DeleteOffsets { bootstrap, .. } => bootstrap,
        }
    }
}

/// Prints Kafka's error line (`printError`: a blank line, then `Error: ...`, on stdout).
fn print_error(msg: &str) {
    println!("\nError: {msg}");
}

pub(crate) async fn run(action: GroupsAction) -> anyhow::Result<ExitCode> {
    let bootstrap = action.bootstrap().to_owned();
    let admin = Admin::connect(&bootstrap).await?;
    match action {
        GroupsAction::List { state, .. } => {
            let groups: Vec<_> = admin
                .list_groups()
                .await?
                .into_iter()
                .filter(|g| g.is_consumer_group())
                .collect();
            if state {
                let rows: Vec<Vec<String>> = groups
                    .iter()
                    .map(|g| {
                        let state = g.state.clone().unwrap_or_else(|| "Unknown".to_owned());
                        vec![g.group_id.clone(), state]
                    })
                    .collect();
                print!("{}", list_with_state(&rows));
            } else {
                for g in groups {
                    println!("{}", g.group_id);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        GroupsAction::Describe {
            groups,
            all_groups,
            view,
            verbose,
            ..
        } => {
            let ids = if all_groups {
                consumer_group_ids(&admin).await?
            } else {
                groups
            };
            let mut ok = true;
            for d in admin.describe_groups(&ids).await? {
                ok &= describe(&admin, &bootstrap, &d, view, verbose).await?;
            }
            Ok(exit(ok))
        }
        GroupsAction::ResetOffsets {
            groups,
            scope,
            target,
            execute,
            ..
        } => {
            let mut ok = true;
            for d in admin.describe_groups(&groups).await? {
                if d.exists() && d.state != "Empty" {
                    print_error(&format!(
                        "Assignments can only be reset if the group '{}' is inactive, but the current state is {}.",
                        d.group_id, d.state
                    ));
                    ok = false;
                    continue;
                }
                let offsets =
                    reset_offsets(&admin, &bootstrap, &d.group_id, &scope, &target).await?;
                if execute {
                    admin.alter_group_offsets(&d.group_id, &offsets).await?;
                }
                print!("{}", reset_table(&d.group_id, &offsets));
            }
            Ok(exit(ok))
        }
        GroupsAction::Delete { groups, .. } => {
            let results = admin.delete_groups(&groups).await?;
            let quoted = |ids: Vec<&String>| {
                ids.iter()
                    .map(|g| format!("'{g}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let succeeded: Vec<&String> = results
                .iter()
                .filter(|r| r.1.is_ok())
                .map(|r| &r.0)
                .collect();
            let failed: Vec<_> = results
                .iter()
                .filter_map(|(g, r)| r.as_ref().err().map(|e| (g, e)))
                .collect();
            if failed.is_empty() {
                println!(
                    "Deletion of requested consumer groups ({}) was successful.",
                    quoted(succeeded)
                );
                return Ok(ExitCode::SUCCESS);
            }
            print_error("Deletion of some consumer groups failed:");
            for (g, e) in failed {
                println!("* Group '{g}' could not be deleted due to: {e}");
            }
            if !succeeded.is_empty() {
                println!(
                    "\nThese consumer groups were deleted successfully: {}",
                    quoted(succeeded)
                );
            }
            Ok(ExitCode::FAILURE)
        }
        GroupsAction::DeleteOffsets { group, topics, .. } => {
            let partitions = topic_partitions(&admin, &topics).await?;
            let results = match admin.delete_group_offsets(&group, &partitions).await {
                Ok(r) => r,
                Err(client::Error::Kafka(e)) => {
                    let msg = e.message.clone().unwrap_or_else(|| e.to_string());
                    print_error(&msg);
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            };
            let ok = results.iter().all(|r| r.1.is_ok());
            if ok {
                println!("Request succeeded for deleting offsets from group {group}.");
            } else {
                print_error("Encountered some partition-level error, see the follow-up details.");
            }
            let width = results
                .iter()
                .map(|((t, _), _)| t.len())
                .fold(15, usize::max);
            print!("\n{:<width$} {:<10} {:<15}", "TOPIC", "PARTITION", "STATUS");
            for ((t, p), r) in &results {
                let status = match r {
                    Ok(()) => "Successful".to_owned(),
                    Err(e) => format!("Error: {e}"),
                };
                print!("\n{t:<width$} {p:<10} {status:<15}");
            }
            println!();
            Ok(exit(ok))
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn consumer_group_ids(admin: &Admin) -> anyhow::Result<Vec<String>> {
    Ok(admin
        .list_groups()
        .await?
        .into_iter()
        .filter(|g| g.is_consumer_group())
        .map(|g| g.group_id)
        .collect())
}

/// Kafka's `--list --state` table: GROUP padded to the longest id (at least 15) plus
/// 10, then STATE in 20 columns.
fn list_with_state(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(|r| r[0].len()).fold(15, usize::max) + 10;
    let mut out = format!("{:<width$} {:<20}\n", "GROUP", "STATE");
    for r in rows {
        out.push_str(&format!("{:<width$} {:<20}\n", r[0], r[1]));
    }
    out
}

/// Prints one group in `view`; false when the group does not exist.
async fn describe(
    admin: &Admin,
    bootstrap: &str,
    d: &GroupDescription,
    view: DescribeView,
    verbose: bool,
) -> anyhow::Result<bool> {
    if !d.exists() {
        print_error(&format!("Consumer group '{}' does not exist.", d.group_id));
        return Ok(false);
    }
    match d.state.as_str() {
        "Empty" => eprintln!("\nConsumer group '{}' has no active members.", d.group_id),
        "PreparingRebalance" | "CompletingRebalance" | "Assigning" | "Reconciling" => {
            eprintln!("\nWarning: Consumer group '{}' is rebalancing.", d.group_id)
        }
        _ => {}
    }
    match view {
        DescribeView::State => print!("{}", state_table(d, verbose)),
        DescribeView::Members => {
            if !d.members.is_empty() {
                print!("{}", members_table(d, verbose));
            }
        }
        DescribeView::Offsets => {
            let committed = admin.list_group_offsets(&d.group_id).await?;
            let rows = offset_rows(d, &committed);
            if !rows.is_empty() {
                let parts: Vec<TopicPartition> = rows.iter().map(|r| r.tp.clone()).collect();
                let ends = log_end_offsets(bootstrap, &parts).await?;
                print!("{}", offsets_table(&rows, &ends, verbose));
            }
        }
    }
    Ok(true)
}

/// One row of the offsets view.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OffsetRow {
    group: String,
    tp: TopicPartition,
    committed: Option<i64>,
    leader_epoch: Option<i32>,
    consumer_id: String,
    host: String,
    client_id: String,
}

/// Kafka's rows: members with partitions (most partitions first), each member's
/// partitions sorted; then committed partitions no member has, with "-" members.
fn offset_rows(
    d: &GroupDescription,
    committed: &BTreeMap<TopicPartition, client::CommittedOffset>,
) -> Vec<OffsetRow> {
    let mut members: Vec<_> = d
        .members
        .iter()
        .filter(|m| !m.assignment.is_empty())
        .collect();
    members.sort_by_key(|m| std::cmp::Reverse(m.assignment.len()));
    let row = |tp: &TopicPartition, consumer: &str, host: &str, client: &str| OffsetRow {
        group: d.group_id.clone(),
        tp: tp.clone(),
        committed: committed.get(tp).map(|c| c.offset),
        leader_epoch: committed.get(tp).and_then(|c| c.leader_epoch),
        consumer_id: consumer.to_owned(),
        host: host.to_owned(),
        client_id: client.to_owned(),
    };
    let mut rows = Vec::new();
    let mut assigned = BTreeSet::new();
    for m in members {
        let mut parts = m.assignment.clone();
        parts.sort();
        for tp in &parts {
            assigned.insert(tp.clone());
            rows.push(row(tp, &m.member_id, &m.host, &m.client_id));
        }
    }
    for tp in committed.keys().filter(|tp| !assigned.contains(*tp)) {
        rows.push(row(tp, MISSING, MISSING, MISSING));
    }
    rows
}

fn or_missing<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| MISSING.to_owned(), |v| v.to_string())
}

/// Kafka's offsets view; each row starts with a newline and a newline ends it.
fn offsets_table(
    rows: &[OffsetRow],
    ends: &BTreeMap<TopicPartition, i64>,
    verbose: bool,
) -> String {
    let w = |f: &dyn Fn(&OffsetRow) -> usize| rows.iter().map(f).fold(15, usize::max);
    let (g, t, c, h) = (
        w(&|r| r.group.len()),
        w(&|r| r.tp.0.len()),
        w(&|r| r.consumer_id.len()),
        w(&|r| r.host.len()),
    );
    let line = |cols: [&str; 10]| {
        if verbose {
            format!(
                "\n{:<g$} {:<t$} {:<10} {:<15} {:<15} {:<15} {:<15} {:<c$} {:<h$} {}",
                cols[0],
                cols[1],
                cols[2],
                cols[3],
                cols[4],
                cols[5],
                cols[6],
                cols[7],
                cols[8],
                cols[9]
            )
        } else {
            format!(
                "\n{:<g$} {:<t$} {:<10} {:<15} {:<15} {:<15} {:<c$} {:<h$} {}",
                cols[0], cols[1], cols[2], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9]
            )
        }
    };
    let mut out = line([
        "GROUP",
        "TOPIC",
        "PARTITION",
        "LEADER-EPOCH",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for r in rows {
        let end = ends.get(&r.tp).copied();
        let lag = r.committed.zip(end).map(|(o, e)| e - o);
        out.push_str(&line([
            &r.group,
            &r.tp.0,
            &r.tp.1.to_string(),
            &or_missing(r.leader_epoch),
            &or_missing(r.committed),
            &or_missing(end),
            &or_missing(lag),
            &r.consumer_id,
            &r.host,
            &r.client_id,
        ]));
    }
    out.push('\n');
    out
}

/// `topic:0,1;other:2` as Kafka prints an assignment, topics sorted.
fn assignment_string(parts: &[TopicPartition]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(t).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}:{}", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Kafka's members view (verbose: with epochs and assignments).
fn members_table(d: &GroupDescription, verbose: bool) -> String {
    let with_instance = d.members.iter().any(|m| m.group_instance_id.is_some());
    let assignment = |parts: &[TopicPartition]| {
        if parts.is_empty() {
            MISSING.to_owned()
        } else {
            assignment_string(parts)
        }
    };
    let w = |min: usize, f: &dyn Fn(&client::GroupMember) -> usize| {
        d.members.iter().map(f).fold(min, usize::max)
    };
    let g = d.group_id.len().max(15);
    let c = w(15, &|m| m.member_id.len());
    let i = w(17, &|m| m.group_instance_id.as_deref().unwrap_or("").len());
    let h = w(15, &|m| m.host.len());
    let cl = w(15, &|m| m.client_id.len());
    let ca = w(20, &|m| assignment(&m.assignment).len());
    let ta = w(20, &|m| {
        assignment(m.target_assignment.as_deref().unwrap_or(&[])).len()
    });
    let head = |cols: [&str; 6]| {
        if with_instance {
            format!(
                "{:<g$} {:<c$} {:<i$} {:<h$} {:<cl$} {:<15} ",
                cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]
            )
        } else {
            format!(
                "{:<g$} {:<c$} {:<h$} {:<cl$} {:<15} ",
                cols[0], cols[1], cols[3], cols[4], cols[5]
            )
        }
    };
    let tail = |cols: [&str; 4]| {
        format!(
            "{:<15} {:<ca$} {:<15} {:<ta$}",
            cols[0], cols[1], cols[2], cols[3]
        )
    };
    let mut out = String::from("\n");
    out.push_str(&head([
        "GROUP",
        "CONSUMER-ID",
        "GROUP-INSTANCE-ID",
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
    ]));
    if verbose {
        out.push_str(&tail([
            "CURRENT-EPOCH",
            "CURRENT-ASSIGNMENT",
            "TARGET-EPOCH",
            "TARGET-ASSIGNMENT",
        ]));
    }
    out.push('\n');
    for m in &d.members {
        out.push_str(&head([
            &d.group_id,
            &m.member_id,
            m.group_instance_id.as_deref().unwrap_or(""),
            &m.host,
            &m.client_id,
            &m.assignment.len().to_string(),
        ]));
        if verbose {
            out.push_str(&tail([
                &or_missing(m.member_epoch),
                &assignment(&m.assignment),
                &or_missing(d.assignment_epoch),
                &assignment(m.target_assignment.as_deref().unwrap_or(&[])),
            ]));
        }
        out.push('\n');
    }
    out
}

/// Kafka's `%-Ns %-Ns ... %s` row: each cell left-aligned in its width (cells past
/// the widths unpadded), separated by spaces.
fn row(cells: &[&str], widths: &[usize]) -> String {
    let widths = widths.iter().copied().chain(std::iter::repeat(0));
    cells
        .iter()
        .zip(widths)
        .map(|(c, w)| format!("{c:<w$}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Kafka's state view (verbose: with the KIP-848 epochs).
fn state_table(d: &GroupDescription, verbose: bool) -> String {
    let coordinator = format!(
        "{}:{}  ({})",
        d.coordinator.host, d.coordinator.port, d.coordinator.node_id
    );
    let strategy = if d.assignor.is_empty() {
        MISSING
    } else {
        &d.assignor
    };
    let (group_epoch, target_epoch) = (or_missing(d.group_epoch), or_missing(d.assignment_epoch));
    let members = d.members.len().to_string();
    let mut head = vec!["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE"];
    let mut values = vec![d.group_id.as_str(), &coordinator, strategy, &d.state];
    let mut widths = vec![d.group_id.len().max(15), coordinator.len().max(25), 20, 20];
    if verbose {
        head.extend(["GROUP-EPOCH", "TARGET-ASSIGNMENT-EPOCH"]);
        values.extend([group_epoch.as_str(), &target_epoch]);
        widths.extend([15, 25]);
    }
    head.push("#MEMBERS");
    values.push(&members);
    format!("\n{}\n{}\n", row(&head, &widths), row(&values, &widths))
}

/// A consumer without a group, for ListOffsets.
async fn offsets_client(bootstrap: &str) -> anyhow::Result<Consumer> {
    Ok(Consumer::connect(ConsumerConfig::new(bootstrap)?).await?)
}

/// Log end offsets per partition; a topic whose offsets cannot be listed (deleted,
/// no leader) is left out and shows "-".
async fn log_end_offsets(
    bootstrap: &str,
    parts: &[TopicPartition],
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let consumer = offsets_client(bootstrap).await?;
    let mut by_topic: BTreeMap<&str, Vec<TopicPartition>> = BTreeMap::new();
    for tp in parts {
        by_topic.entry(&tp.0).or_default().push(tp.clone());
    }
    let mut out = BTreeMap::new();
    for (topic, tps) in by_topic {
        match consumer.list_offsets(&tps, Offset::Latest).await {
            Ok(found) => out.extend(found),
            Err(e) => tracing::debug!(%topic, error = %e, "no log end offsets"),
        }
    }
    Ok(out)
}

/// Partitions named by `topic` / `topic:p,p` arguments; every partition of a topic
/// named alone. Kafka's messages for a bad argument or a missing partition.
async fn topic_partitions(admin: &Admin, args: &[String]) -> anyhow::Result<Vec<TopicPartition>> {
    let mut out = Vec::new();
    for arg in args {
        match arg.split_once(':') {
            Some((topic, parts)) if !topic.is_empty() && !parts.contains(':') => {
                for p in parts.split(',') {
                    let p: i32 = p.trim().parse().map_err(|_| {
                        anyhow::anyhow!("Invalid partition '{p}' specified in topic arg '{arg}'")
                    })?;
                    out.push((topic.to_owned(), p));
                }
            }
            Some(_) => {
                anyhow::bail!("Invalid topic arg '{arg}', expected topic name and partitions")
            }
            None => {
                let described = admin.describe_topics(std::slice::from_ref(arg)).await?;
                for t in described {
                    out.extend(t.partitions.iter().map(|p| (t.name.clone(), p.partition)));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The new committed offsets of a reset, kept within each partition's log as Kafka
/// does.
async fn reset_offsets(
    admin: &Admin,
    bootstrap: &str,
    group: &str,
    scope: &ResetScope,
    target: &ResetTarget,
) -> anyhow::Result<Vec<(TopicPartition, i64)>> {
    let committed = admin.list_group_offsets(group).await?;
    let parts = match scope {
        ResetScope::AllTopics => committed.keys().cloned().collect(),
        ResetScope::Topics(args) => topic_partitions(admin, args).await?,
    };
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let missing: Vec<String> = {
        let mut m = Vec::new();
        for (topic, p) in &parts {
            let t = admin.client().topic(topic).await;
            if !t.is_ok_and(|t| t.partition(*p).is_some()) {
                m.push(format!("{topic}-{p}"));
            }
        }
        m
    };
    if !missing.is_empty() {
        anyhow::bail!(
            "UNKNOWN_TOPIC_OR_PARTITION: The partitions \"{}\" do not exist",
            missing.join(",")
        );
    }
    let consumer = offsets_client(bootstrap).await?;
    let get = |o: Offset| {
        let consumer = &consumer;
        let parts = &parts;
        async move { consumer.list_offsets(parts, o).await }
    };
    let at = |m: &std::collections::HashMap<TopicPartition, i64>, tp: &TopicPartition| {
        m.get(tp).copied().ok_or_else(|| {
            anyhow::anyhow!(
                "Error getting offsets of topic partition: {}-{}",
                tp.0,
                tp.1
            )
        })
    };
    let mut out = Vec::with_capacity(parts.len());
    match target {
        ResetTarget::Earliest | ResetTarget::Latest | ResetTarget::Datetime(_) => {
            let spec = match target {
                ResetTarget::Earliest => Offset::Earliest,
                ResetTarget::Latest => Offset::Latest,
                ResetTarget::Datetime(ms) => Offset::Timestamp(*ms),
                _ => Offset::Latest,
            };
            let found = get(spec).await?;
            for tp in &parts {
                out.push((tp.clone(), at(&found, tp)?));
            }
        }
        ResetTarget::Offset(_) | ResetTarget::ShiftBy(_) => {
            let (start, end) = (get(Offset::Earliest).await?, get(Offset::Latest).await?);
            for tp in &parts {
                let wanted = match target {
                    ResetTarget::Offset(o) => *o,
                    ResetTarget::ShiftBy(n) => match committed.get(tp) {
                        Some(c) => c.offset.saturating_add(*n),
                        None => anyhow::bail!(
                            "Cannot shift offset for partition {}-{} since there is no current committed offset",
                            tp.0,
                            tp.1
                        ),
                    },
                    _ => 0,
                };
                out.push((
                    tp.clone(),
                    wanted.clamp(at(&start, tp)?, at(&end, tp)?.max(at(&start, tp)?)),
                ));
            }
        }
    }
    Ok(out)
}

/// Kafka's reset table: GROUP TOPIC PARTITION NEW-OFFSET.
fn reset_table(group: &str, offsets: &[(TopicPartition, i64)]) -> String {
    let g = group.len().max(15);
    let t = offsets
        .iter()
        .map(|((t, _), _)| t.len())
        .fold(15, usize::max);
    let mut out = String::new();
    if !offsets.is_empty() {
        out.push_str(&format!(
            "\n{:<g$} {:<t$} {:<10} {}",
            "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
        ));
    }
    for ((topic, p), o) in offsets {
        out.push_str(&format!("\n{group:<g$} {topic:<t$} {p:<10} {o}"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::cluster::Broker;
    use client::GroupMember;

    fn group(state: &str, members: Vec<GroupMember>) -> GroupDescription {
        GroupDescription {
            group_id: "g".into(),
            state: state.into(),
            protocol_type: "consumer".into(),
            assignor: "range".into(),
            group_type: "classic".into(),
            coordinator: Broker {
                node_id: 1,
                host: "localhost".into(),
                port: 9092,
                rack: None,
            },
            members,
            group_epoch: None,
            assignment_epoch: None,
        }
    }

    fn member(id: &str, parts: &[(&str, i32)]) -> GroupMember {
        GroupMember {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "cli".into(),
            host: "/127.0.0.1".into(),
            assignment: parts.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect(),
            target_assignment: None,
            member_epoch: None,
        }
    }

    fn committed(v: &[(&str, i32, i64)]) -> BTreeMap<TopicPartition, client::CommittedOffset> {
        v.iter()
            .map(|(t, p, o)| {
                (
                    ((*t).to_owned(), *p),
                    client::CommittedOffset {
                        offset: *o,
                        leader_epoch: None,
                        metadata: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn offsets_view_has_kafkas_columns_and_dashes_for_the_unknown() {
        let d = group("Stable", vec![member("m-1", &[("t", 1), ("t", 0)])]);
        let rows = offset_rows(&d, &committed(&[("t", 0, 3), ("old", 0, 7)]));
        let ends: BTreeMap<TopicPartition, i64> =
            [(("t".to_owned(), 0), 10), (("t".to_owned(), 1), 4)]
                .into_iter()
                .collect();
        let text = offsets_table(&rows, &ends, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(
            lines[1],
            "GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID"
        );
        assert_eq!(
            lines[2],
            "g               t               0          3               10              7               m-1             /127.0.0.1      cli"
        );
        // Assigned but never committed: no current offset, no lag.
        assert_eq!(
            lines[3],
            "g               t               1          -               4               -               m-1             /127.0.0.1      cli"
        );
        // Committed but assigned to nobody, log end unknown.
        assert_eq!(
            lines[4],
            "g               old             0          7               -               -               -               -               -"
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn state_and_members_views_follow_kafkas_layout() {
        let d = group(
            "Stable",
            vec![member("m-1", &[("t", 0), ("u", 2), ("t", 1)])],
        );
        let state = state_table(&d, false);
        assert_eq!(
            state,
            "\nGROUP           COORDINATOR (ID)          ASSIGNMENT-STRATEGY  STATE                #MEMBERS\
             \ng               localhost:9092  (1)       range                Stable               1\n"
        );
        let members = members_table(&d, true);
        let lines: Vec<&str> = members.lines().collect();
        assert!(lines[1].starts_with("GROUP           CONSUMER-ID     HOST            CLIENT-ID       #PARTITIONS     CURRENT-EPOCH   CURRENT-ASSIGNMENT"), "{}", lines[1]);
        assert!(
            lines[2].contains(" 3               -               t:0,1;u:2 "),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn datetimes_parse_like_kafkas_reset_flag() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").ok(), Some(0));
        assert_eq!(
            parse_datetime("2024-02-29T12:34:56.789").ok(),
            Some(1_709_210_096_789)
        );
        assert_eq!(
            parse_datetime("2024-02-29T12:34:56.789Z").ok(),
            Some(1_709_210_096_789)
        );
        assert_eq!(
            parse_datetime("2024-02-29T14:34:56.789+02:00").ok(),
            Some(1_709_210_096_789)
        );
        assert_eq!(
            parse_datetime("2024-02-29T07:34:56-0500").ok(),
            Some(1_709_210_096_000)
        );
        assert!(parse_datetime("2024-02-29 12:34:56").is_err());
        assert!(parse_datetime("2024-13-01T00:00:00").is_err());
    }

    #[test]
    fn reset_needs_exactly_one_scenario_and_prints_kafkas_table() {
        assert_eq!(
            reset_target(true, false, None, None, None).ok(),
            Some(ResetTarget::Earliest)
        );
        assert_eq!(
            reset_target(false, false, None, None, Some(-2)).ok(),
            Some(ResetTarget::ShiftBy(-2))
        );
        assert!(reset_target(true, true, None, None, None).is_err());
        assert!(reset_target(false, false, None, None, None).is_err());
        let table = reset_table("g", &[(("t".to_owned(), 0), 5)]);
        assert_eq!(
            table,
            "\nGROUP           TOPIC           PARTITION  NEW-OFFSET\ng               t               0          5\n"
        );
        assert_eq!(
            list_with_state(&[vec!["g".into(), "Empty".into()]]),
            format!(
                "{:<25} {:<20}\n{:<25} {:<20}\n",
                "GROUP", "STATE", "g", "Empty"
            )
        );
    }
}

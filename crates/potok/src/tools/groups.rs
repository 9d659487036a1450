//! `potok groups list|describe|reset-offsets|delete|delete-offsets`: consumer groups,
//! with kafka-consumer-groups.sh's output and messages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use client::admin::Admin;
use client::group::TopicPartition;
use client::{Consumer, ConsumerConfig, GroupDescription, Offset};
use kafka_protocol::error::ResponseError;

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

/// `--group G...` or `--all-groups`, one of them required.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
struct GroupSelection {
    /// The group (repeatable).
    #[arg(long)]
    group: Vec<String>,
    /// Every consumer group.
    #[arg(long)]
    all_groups: bool,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    /// Add the state column; with a comma-separated list of states (any case), list
    /// only groups in those states.
    #[arg(long, value_name = "STATES", num_args = 0..=1, default_missing_value = "")]
    state: Option<String>,
    /// Add the type column; with a comma-separated list of types (classic,
    /// consumer), list only groups of those types.
    #[arg(long = "type", value_name = "TYPES", num_args = 0..=1, default_missing_value = "")]
    group_type: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("view").args(["members", "state", "offsets"])))]
struct DescribeArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    #[command(flatten)]
    groups: GroupSelection,
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

/// Where reset-offsets moves the offsets: exactly one of these (Kafka's "reset
/// scenarios"), for `potok groups reset-offsets` and kafka-consumer-groups.sh alike.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct ResetFlags {
    /// To the log start.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end.
    #[arg(long)]
    to_latest: bool,
    /// To the committed offset (the log end for a partition without one).
    #[arg(long)]
    to_current: bool,
    /// To this offset (kept within the log).
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// To the first offset at or after this time: YYYY-MM-DDTHH:mm:SS.sss, UTC unless
    /// a zone (Z, +hh:mm) follows.
    #[arg(long, value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// To the first offset at or after this long ago: an ISO-8601 duration,
    /// PnDTnHnMnS (e.g. PT30M, P1DT2H).
    #[arg(long, value_name = "DURATION")]
    by_duration: Option<String>,
    /// Move the committed offset by N (negative: back), kept within the log.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// To the offsets of a CSV file of topic,partition,offset lines
    /// (group,topic,partition,offset for several groups), as --export prints them.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("scope").args(["topic", "all_topics"])))]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_current", "to_offset", "to_datetime", "by_duration", "shift_by", "from_file"])))]
struct ResetArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    #[command(flatten)]
    groups: GroupSelection,
    /// A topic, or topic:partition,partition (repeatable).
    #[arg(long, value_name = "TOPIC[:P,P]")]
    topic: Vec<String>,
    /// Every partition the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    #[command(flatten)]
    target: ResetFlags,
    /// Only print the new offsets (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
    /// Print the new offsets as CSV (the --from-file format) instead of the table.
    #[arg(long)]
    export: bool,
}

#[derive(clap::Args, Debug)]
struct DeleteArgs {
    #[command(flatten)]
    bootstrap: Bootstrap,
    #[command(flatten)]
    groups: GroupSelection,
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
    /// The committed offset, else the log end.
    Current,
    Offset(i64),
    /// Milliseconds since the epoch.
    Datetime(i64),
    /// Milliseconds back from now.
    Duration(i64),
    ShiftBy(i64),
    /// A CSV reset plan.
    FromFile(PathBuf),
}

/// Which partitions reset-offsets moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResetScope {
    /// `topic` or `topic:p,p` arguments.
    Topics(Vec<String>),
    /// Every partition with a committed offset.
    AllTopics,
    /// None given: the partitions a `--from-file` plan names.
    Plan,
}

/// What a groups command does, whichever spelling (`potok groups`,
/// `kafka-consumer-groups`) asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupsAction {
    List {
        bootstrap: String,
        /// The state column, and the states to list (empty: all).
        states: Option<Vec<String>>,
        /// The type column, and the types to list (`classic`, `consumer`; empty: all).
        types: Option<Vec<String>>,
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
        /// Empty with `all_groups`.
        groups: Vec<String>,
        all_groups: bool,
        scope: ResetScope,
        target: ResetTarget,
        execute: bool,
        /// CSV instead of the table.
        export: bool,
    },
    Delete {
        bootstrap: String,
        /// Empty with `all_groups`.
        groups: Vec<String>,
        all_groups: bool,
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
                states: a.state.as_deref().map(parse_states).transpose()?,
                types: a.group_type.as_deref().map(parse_types).transpose()?,
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
                    groups: a.groups.group,
                    all_groups: a.groups.all_groups,
                    view,
                    // The members view always shows the partitions.
                    verbose: a.verbose || view == DescribeView::Members,
                }
            }
            GroupsCommand::ResetOffsets(a) => {
                let target = a.target.target()?;
                GroupsAction::ResetOffsets {
                    bootstrap: a.bootstrap.bootstrap_server,
                    groups: a.groups.group,
                    all_groups: a.groups.all_groups,
                    scope: reset_scope(a.all_topics, a.topic, &target)?,
                    target,
                    execute: a.execute,
                    export: a.export,
                }
            }
            GroupsCommand::Delete(a) => GroupsAction::Delete {
                bootstrap: a.bootstrap.bootstrap_server,
                groups: a.groups.group,
                all_groups: a.groups.all_groups,
            },
            GroupsCommand::DeleteOffsets(a) => GroupsAction::DeleteOffsets {
                bootstrap: a.bootstrap.bootstrap_server,
                group: a.group,
                topics: a.topic,
            },
        })
    }
}

/// The reset scope: `--all-topics` or `--topic`s, exactly one, unless a
/// `--from-file` plan names the partitions (Kafka's rule).
pub(crate) fn reset_scope(
    all_topics: bool,
    topics: Vec<String>,
    target: &ResetTarget,
) -> anyhow::Result<ResetScope> {
    match (all_topics, topics.is_empty()) {
        (true, true) => Ok(ResetScope::AllTopics),
        (false, false) => Ok(ResetScope::Topics(topics)),
        (false, true) if matches!(target, ResetTarget::FromFile(_)) => Ok(ResetScope::Plan),
        _ => anyhow::bail!("One of the reset scopes should be defined: --all-topics, --topic."),
    }
}

impl ResetFlags {
    /// The one reset scenario given; Kafka's message when there is none or several.
    pub(crate) fn target(&self) -> anyhow::Result<ResetTarget> {
        let mut targets = Vec::new();
        if self.to_earliest {
            targets.push(ResetTarget::Earliest);
        }
        if self.to_latest {
            targets.push(ResetTarget::Latest);
        }
        if self.to_current {
            targets.push(ResetTarget::Current);
        }
        if let Some(o) = self.to_offset {
            targets.push(ResetTarget::Offset(o));
        }
        if let Some(d) = &self.to_datetime {
            targets.push(ResetTarget::Datetime(parse_datetime(d)?));
        }
        if let Some(d) = &self.by_duration {
            targets.push(ResetTarget::Duration(parse_duration(d)?));
        }
        if let Some(n) = self.shift_by {
            targets.push(ResetTarget::ShiftBy(n));
        }
        if let Some(f) = &self.from_file {
            targets.push(ResetTarget::FromFile(f.clone()));
        }
        match targets.len() {
            1 => Ok(targets.remove(0)),
            _ => anyhow::bail!(
                "Option [reset-offsets] needs exactly one of these options: [to-datetime], [by-duration], [to-earliest], [to-latest], [shift-by], [from-file], [to-current], [to-offset]"
            ),
        }
    }
}

/// The group states `--list --state` takes, in the order Kafka names them.
const CONSUMER_GROUP_STATES: [&str; 7] = [
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
    "Empty",
    "Assigning",
    "Reconciling",
];

/// The pieces of a comma-separated list as Java's `split(",")` gives them (trailing
/// empty pieces dropped), trimmed.
fn comma_list(input: &str) -> Vec<&str> {
    let mut pieces: Vec<&str> = input.split(',').collect();
    while pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    pieces.into_iter().map(str::trim).collect()
}

/// `--state` values: comma-separated consumer group states in any case, as Kafka's
/// names (`stable,EMPTY` → `Stable`, `Empty`); empty input, no filter.
pub(crate) fn parse_states(input: &str) -> anyhow::Result<Vec<String>> {
    let mut states = BTreeSet::new();
    for piece in comma_list(input) {
        let Some(state) = CONSUMER_GROUP_STATES
            .iter()
            .find(|s| s.eq_ignore_ascii_case(piece))
        else {
            anyhow::bail!(
                "Invalid state list '{input}'. Valid states are: {}",
                CONSUMER_GROUP_STATES.join(", ")
            );
        };
        states.insert((*state).to_owned());
    }
    Ok(states.into_iter().collect())
}

/// `--type` values: `classic` and `consumer` in any case, lower-cased as ListGroups
/// takes them; empty input, no filter.
pub(crate) fn parse_types(input: &str) -> anyhow::Result<Vec<String>> {
    let mut types = BTreeSet::new();
    for piece in comma_list(input) {
        let t = piece.to_ascii_lowercase();
        if t != "classic" && t != "consumer" {
            anyhow::bail!("Invalid types list '{input}'. Valid types are: Classic, Consumer");
        }
        types.insert(t);
    }
    Ok(types.into_iter().collect())
}

/// Kafka's `--by-duration`: an ISO-8601 duration as Java's `Duration.parse` reads it,
/// `[±]PnDTnHnMn.nS` (letters in any case, each part optional and signed, at least
/// one, a `T` only before time parts). Returns milliseconds.
pub(crate) fn parse_duration(s: &str) -> anyhow::Result<i64> {
    let bad =
        || anyhow::anyhow!("Text cannot be parsed to a Duration: {s:?} (expected PnDTnHnMnS)");
    let int = |t: &str| -> anyhow::Result<i128> {
        let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 19 {
            return Err(bad());
        }
        let n: i128 = digits.parse().map_err(|_| bad())?;
        Ok(if t.starts_with('-') { -n } else { n })
    };
    let upper = s.to_ascii_uppercase();
    let (negate, rest) = match upper.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, upper.strip_prefix('+').unwrap_or(&upper)),
    };
    let rest = rest.strip_prefix('P').ok_or_else(bad)?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(bad()),
        None => (rest, None),
    };
    let mut millis: i128 = 0;
    let mut parts = 0;
    if !days.is_empty() {
        millis += int(days.strip_suffix('D').ok_or_else(bad)?)? * 86_400_000;
        parts += 1;
    }
    let mut time = time.unwrap_or("");
    for (unit, ms) in [('H', 3_600_000), ('M', 60_000)] {
        if let Some((n, after)) = time.split_once(unit) {
            millis += int(n)? * ms;
            time = after;
            parts += 1;
        }
    }
    if !time.is_empty() {
        let secs = time.strip_suffix('S').ok_or_else(bad)?;
        let (whole, frac) = match secs.split_once(['.', ',']) {
            Some((w, f)) if f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => (w, f),
            Some(_) => return Err(bad()),
            None => (secs, ""),
        };
        let frac_ms: i128 = format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?;
        let sign = if whole.starts_with('-') { -1 } else { 1 };
        millis += int(whole)? * 1000 + sign * frac_ms;
        parts += 1;
    }
    if parts == 0 {
        return Err(bad());
    }
    let millis = if negate { -millis } else { millis };
    i64::try_from(millis).map_err(|_| bad())
}

/// A `--from-file` reset plan: new offsets per group.
pub(crate) type ResetPlan = BTreeMap<String, BTreeMap<TopicPartition, i64>>;

/// The fields of one CSV line; `"` quotes a field (`""` inside is a quote), as
/// Kafka's CSV writer quotes a group id with a comma.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("one field at least");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => field.push(c),
        }
    }
    fields
}

/// One CSV field as Kafka's writer prints it: quoted when it holds a comma, a quote
/// or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Reads Kafka's reset plan CSV. With exactly one `--group` (`single_group`) and a
/// first line of `topic,partition,offset`, every line is of that form for that group;
/// otherwise every line is `group,topic,partition,offset`. Blank lines are skipped.
pub(crate) fn parse_reset_plan(
    text: &str,
    single_group: Option<&str>,
) -> anyhow::Result<ResetPlan> {
    let lines: Vec<(usize, Vec<String>)> = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            (
                i,
                csv_fields(l)
                    .into_iter()
                    .map(|f| f.trim().to_owned())
                    .collect(),
            )
        })
        .collect();
    let entry = |fields: &[String]| -> Option<(TopicPartition, i64)> {
        let [topic, partition, offset] = fields else {
            return None;
        };
        Some((
            (topic.clone(), partition.parse().ok()?),
            offset.parse().ok()?,
        ))
    };
    let without_group =
        single_group.filter(|_| lines.first().is_some_and(|(_, f)| entry(f).is_some()));
    let mut plan = ResetPlan::new();
    for (n, fields) in &lines {
        let parsed = match without_group {
            Some(group) => entry(fields).map(|e| (group.to_owned(), e)),
            None => match fields.split_first() {
                Some((group, rest)) => entry(rest).map(|e| (group.clone(), e)),
                None => None,
            },
        };
        let Some((group, (tp, offset))) = parsed else {
            let form = if without_group.is_some() {
                "topic,partition,offset"
            } else {
                "group,topic,partition,offset"
            };
            anyhow::bail!(
                "Invalid reset plan line {n}: {:?} is not {form}",
                fields.join(",")
            );
        };
        plan.entry(group).or_default().insert(tp, offset);
    }
    Ok(plan)
}

/// Kafka's `--export` CSV of a reset: a line per partition, the group first unless
/// the command named exactly one group.
fn export_csv(planned: &BTreeMap<String, Vec<(TopicPartition, i64)>>, with_group: bool) -> String {
    let mut out = String::new();
    for (group, offsets) in planned {
        for ((topic, p), o) in offsets {
            if with_group {
                out.push_str(&csv_field(group));
                out.push(',');
            }
            out.push_str(&format!("{},{p},{o}\n", csv_field(topic)));
        }
    }
    out
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

/// How a command exits after printing one of Kafka's error lines (a missing group,
/// a refused reset, a failed delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportedErrors {
    /// Exit 1: `potok groups`, so scripts see the failure.
    Fail,
    /// Exit 0, as Kafka's kafka-consumer-groups.sh does after printing them.
    Succeed,
}

/// Prints Kafka's error line (`printError`: a blank line, then `Error: ...`, on stdout).
fn print_error(msg: &str) {
    println!("\nError: {msg}");
}

pub(crate) async fn run(
    action: GroupsAction,
    reported: ReportedErrors,
) -> anyhow::Result<ExitCode> {
    let bootstrap = action.bootstrap().to_owned();
    let admin = Admin::connect(&bootstrap).await?;
    let ok = match action {
        GroupsAction::List { states, types, .. } => list(&admin, states, types).await?,
        GroupsAction::Describe {
            groups,
            all_groups,
            view,
            verbose,
            ..
        } => {
            let mut ids = selected_groups(&admin, groups, all_groups).await?;
            // Kafka describes the groups in id order, each once.
            ids.sort();
            ids.dedup();
            let mut ok = true;
            for d in admin.describe_groups(&ids).await? {
                ok &= describe(&admin, &bootstrap, &d, view, verbose).await?;
            }
            ok
        }
        GroupsAction::ResetOffsets {
            groups,
            all_groups,
            scope,
            target,
            execute,
            export,
            ..
        } => {
            let single_group = (!all_groups && groups.len() == 1).then(|| groups[0].clone());
            let ids = selected_groups(&admin, groups, all_groups).await?;
            let reset = Reset {
                admin: &admin,
                bootstrap: &bootstrap,
                scope: &scope,
                target: &target,
            };
            let (planned, ok) = reset.run(&ids, single_group.as_deref(), execute).await?;
            if export {
                println!("{}", export_csv(&planned, single_group.is_none()));
            } else {
                print!("{}", reset_table(&planned));
            }
            ok
        }
        GroupsAction::Delete {
            groups, all_groups, ..
        } => {
            let ids = selected_groups(&admin, groups, all_groups).await?;
            print_delete_results(&admin.delete_groups(&ids).await?)
        }
        GroupsAction::DeleteOffsets { group, topics, .. } => {
            delete_offsets(&admin, &group, &topics).await?
        }
    };
    Ok(if ok || reported == ReportedErrors::Succeed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The groups named, or with `all` every consumer group.
async fn selected_groups(
    admin: &Admin,
    named: Vec<String>,
    all: bool,
) -> anyhow::Result<Vec<String>> {
    if !all {
        return Ok(named);
    }
    Ok(admin
        .list_groups()
        .await?
        .into_iter()
        .filter(|g| g.is_consumer_group())
        .map(|g| g.group_id)
        .collect())
}

/// `--list`: ids only, or with `--state`/`--type` Kafka's table, filtered by the
/// broker.
async fn list(
    admin: &Admin,
    states: Option<Vec<String>>,
    types: Option<Vec<String>>,
) -> anyhow::Result<bool> {
    let groups: Vec<_> = admin
        .list_groups_in(
            states.as_deref().unwrap_or_default(),
            types.as_deref().unwrap_or_default(),
        )
        .await?
        .into_iter()
        .filter(|g| g.is_consumer_group())
        .collect();
    if states.is_none() && types.is_none() {
        for g in groups {
            println!("{}", g.group_id);
        }
        return Ok(true);
    }
    let mut header = vec!["GROUP".to_owned()];
    header.extend(types.is_some().then(|| "TYPE".to_owned()));
    header.extend(states.is_some().then(|| "STATE".to_owned()));
    let mut rows = vec![header];
    for g in groups {
        let mut row = vec![g.group_id.clone()];
        if types.is_some() {
            row.push(group_type_name(g.group_type.as_deref()).to_owned());
        }
        if states.is_some() {
            row.push(g.state.clone().unwrap_or_else(|| "Unknown".to_owned()));
        }
        rows.push(row);
    }
    print!("{}", list_table(&rows));
    Ok(true)
}

/// A group type as Kafka's `GroupType` prints it.
fn group_type_name(wire: Option<&str>) -> &'static str {
    let known = ["Classic", "Consumer", "Share", "Streams"];
    wire.and_then(|w| known.into_iter().find(|k| k.eq_ignore_ascii_case(w)))
        .unwrap_or("Unknown")
}

/// Kafka's `--list --state/--type` table (header first): GROUP padded to the longest
/// id (at least 15) plus 10, then each other column in 20.
fn list_table(rows: &[Vec<String>]) -> String {
    let width = rows.iter().skip(1).map(|r| r[0].len()).fold(15, usize::max) + 10;
    let mut out = String::new();
    for r in rows {
        out.push_str(&format!("{:<width$}", r[0]));
        for cell in &r[1..] {
            out.push_str(&format!(" {cell:<20}"));
        }
        out.push('\n');
    }
    out
}

/// The name and message of an error as Kafka's Java client prints the exception
/// (`org.apache.kafka.common.errors.GroupNotEmptyException: The group is not empty.`).
pub(crate) fn java_error(e: &client::Error) -> String {
    let client::Error::Kafka(k) = e else {
        return e.to_string();
    };
    let class = match k.code {
        ResponseError::NonEmptyGroup => "GroupNotEmptyException".to_owned(),
        ResponseError::GroupAuthorizationFailed => "GroupAuthorizationException".to_owned(),
        ResponseError::TopicAuthorizationFailed => "TopicAuthorizationException".to_owned(),
        ResponseError::UnknownServerError | ResponseError::Unknown(_) => {
            "UnknownServerException".to_owned()
        }
        ResponseError::RequestTimedOut => "TimeoutException".to_owned(),
        ResponseError::InvalidTopicException => "InvalidTopicException".to_owned(),
        // The others are the constant in camel case: GROUP_ID_NOT_FOUND,
        // GroupIdNotFoundException.
        code => format!("{code:?}Exception"),
    };
    match k.description() {
        Some(m) => format!("org.apache.kafka.common.errors.{class}: {m}"),
        None => format!("org.apache.kafka.common.errors.{class}"),
    }
}

/// Kafka's report of a delete; false when a group could not be deleted.
fn print_delete_results(results: &[(String, client::Result<()>)]) -> bool {
    let quoted = |ids: &[&String]| {
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
            quoted(&succeeded)
        );
        return true;
    }
    print_error("Deletion of some consumer groups failed:");
    for (g, e) in failed {
        println!(
            "* Group '{g}' could not be deleted due to: {}",
            java_error(e)
        );
    }
    if !succeeded.is_empty() {
        println!(
            "\nThese consumer groups were deleted successfully: {}",
            quoted(&succeeded)
        );
    }
    false
}

/// `--delete-offsets`: Kafka's verdict line, then a STATUS row per partition; false
/// on any error.
async fn delete_offsets(admin: &Admin, group: &str, topics: &[String]) -> anyhow::Result<bool> {
    let partitions = topic_partitions(admin, topics).await?;
    let (top_level, results): (Option<ResponseError>, PartitionOutcomes) =
        match admin.delete_group_offsets(group, &partitions).await {
            Ok(results) => {
                let first_error = results
                    .iter()
                    .find_map(|(_, r)| r.as_ref().err().and_then(client::Error::kafka_code));
                let rows = results
                    .into_iter()
                    .map(|(tp, r)| (tp, r.map_err(|e| java_error(&e))))
                    .collect();
                (first_error, rows)
            }
            Err(e @ client::Error::Kafka(_)) => {
                // A group-level error fails every partition with it.
                let shown = java_error(&e);
                let rows = partitions
                    .iter()
                    .map(|tp| (tp.clone(), Err(shown.clone())))
                    .collect();
                (e.kafka_code(), rows)
            }
            Err(e) => return Err(e.into()),
        };
    match top_level {
        None => println!("Request succeeded for deleting offsets from group {group}."),
        Some(
            code @ (ResponseError::InvalidGroupId
            | ResponseError::GroupIdNotFound
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::NonEmptyGroup),
        ) => {
            let error = client::KafkaError {
                code,
                message: None,
            };
            print_error(error.description().unwrap_or_default());
        }
        Some(
            ResponseError::GroupSubscribedToTopic
            | ResponseError::TopicAuthorizationFailed
            | ResponseError::UnknownTopicOrPartition,
        ) => print_error("Encountered some partition-level error, see the follow-up details."),
        Some(code) => print_error(&format!(
            "Encountered some unknown error: {}",
            client::error::kafka_error_name(code)
        )),
    }
    print!("{}", delete_offsets_table(results));
    Ok(top_level.is_none())
}

/// Each partition's outcome, with the error as Kafka prints it.
type PartitionOutcomes = Vec<(TopicPartition, Result<(), String>)>;

/// Kafka's delete-offsets table, sorted as Kafka sorts it (by topic and partition
/// as one string).
fn delete_offsets_table(mut rows: PartitionOutcomes) -> String {
    rows.sort_by_key(|((t, p), _)| format!("{t}{p}"));
    let width = rows.iter().map(|((t, _), _)| t.len()).fold(15, usize::max);
    let mut out = format!("\n{:<width$} {:<10} {:<15}", "TOPIC", "PARTITION", "STATUS");
    for ((t, p), r) in &rows {
        let status = match r {
            Ok(()) => "Successful".to_owned(),
            Err(e) => format!("Error: {e}"),
        };
        out.push_str(&format!("\n{t:<width$} {p:<10} {status:<15}"));
    }
    out.push('\n');
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

/// A reset of groups' offsets, to one target over one scope.
struct Reset<'a> {
    admin: &'a Admin,
    bootstrap: &'a str,
    scope: &'a ResetScope,
    target: &'a ResetTarget,
}

/// New offsets per group, as a reset plans them.
type Planned = BTreeMap<String, Vec<(TopicPartition, i64)>>;

impl Reset<'_> {
    /// Plans (and with `execute` commits) the new offsets of each group, as Kafka
    /// does: an active group is refused and a group without a line in the
    /// `--from-file` plan is skipped, each with Kafka's error line and no offsets.
    /// Returns the plan and whether no group was refused or skipped.
    async fn run(
        &self,
        groups: &[String],
        single_group: Option<&str>,
        execute: bool,
    ) -> anyhow::Result<(Planned, bool)> {
        let plan = match self.target {
            ResetTarget::FromFile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Some(parse_reset_plan(&text, single_group)?)
            }
            _ => None,
        };
        let mut ok = true;
        let mut planned = Planned::new();
        let mut ids = groups.to_vec();
        ids.sort();
        ids.dedup();
        for d in self.admin.describe_groups(&ids).await? {
            let group = d.group_id.clone();
            if d.exists() && d.state != "Empty" {
                print_error(&format!(
                    "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}.",
                    d.state
                ));
                ok = false;
                planned.insert(group, Vec::new());
                continue;
            }
            let offsets = match &plan {
                Some(plan) => match plan.get(&group) {
                    Some(offsets) => {
                        let requested: Vec<_> =
                            offsets.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
                        self.within_logs(requested).await?
                    }
                    None => {
                        print_error(&format!("No reset plan for group {group} found."));
                        ok = false;
                        Vec::new()
                    }
                },
                None => self.offsets(&group).await?,
            };
            if execute && !offsets.is_empty() {
                self.admin.alter_group_offsets(&group, &offsets).await?;
            }
            planned.insert(group, offsets);
        }
        Ok((planned, ok))
    }

    /// The new committed offsets of one group's partitions in scope.
    async fn offsets(&self, group: &str) -> anyhow::Result<Vec<(TopicPartition, i64)>> {
        let committed = self.admin.list_group_offsets(group).await?;
        let parts = match self.scope {
            ResetScope::AllTopics => committed.keys().cloned().collect(),
            ResetScope::Topics(args) => topic_partitions(self.admin, args).await?,
            ResetScope::Plan => Vec::new(),
        };
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        self.check_exist(&parts).await?;
        let consumer = offsets_client(self.bootstrap).await?;
        let log_offsets = |spec: Offset, which: &'static str| {
            let (consumer, parts) = (&consumer, &parts);
            async move {
                let found = consumer.list_offsets(parts, spec).await?;
                parts
                    .iter()
                    .map(|tp| match found.get(tp) {
                        Some(o) => Ok((tp.clone(), *o)),
                        None => Err(anyhow::anyhow!(
                            "Error getting {which} offset of topic partition: {}-{}",
                            tp.0,
                            tp.1
                        )),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            }
        };
        match self.target {
            ResetTarget::Earliest => log_offsets(Offset::Earliest, "starting").await,
            ResetTarget::Latest => log_offsets(Offset::Latest, "ending").await,
            ResetTarget::Current => {
                let ends: BTreeMap<_, _> = log_offsets(Offset::Latest, "ending")
                    .await?
                    .into_iter()
                    .collect();
                Ok(ends
                    .into_iter()
                    .map(|(tp, end)| {
                        let current = committed.get(&tp).map_or(end, |c| c.offset);
                        (tp, current)
                    })
                    .collect())
            }
            ResetTarget::Datetime(ms) => self.at_time(&consumer, &parts, *ms).await,
            ResetTarget::Duration(back) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                self.at_time(&consumer, &parts, now.saturating_sub(*back))
                    .await
            }
            ResetTarget::Offset(o) => {
                self.within_logs(parts.iter().map(|tp| (tp.clone(), *o)).collect())
                    .await
            }
            ResetTarget::ShiftBy(n) => {
                let mut requested = Vec::with_capacity(parts.len());
                for tp in &parts {
                    let Some(c) = committed.get(tp) else {
                        anyhow::bail!(
                            "Cannot shift offset for partition {}-{} since there is no current committed offset",
                            tp.0,
                            tp.1
                        );
                    };
                    requested.push((tp.clone(), c.offset.saturating_add(*n)));
                }
                self.within_logs(requested).await
            }
            // The plan's offsets are planned by `run`.
            ResetTarget::FromFile(_) => Ok(Vec::new()),
        }
    }

    /// Kafka's error when a partition does not exist.
    async fn check_exist(&self, parts: &[TopicPartition]) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        for (topic, p) in parts {
            let t = self.admin.client().topic(topic).await;
            if !t.is_ok_and(|t| t.partition(*p).is_some()) {
                missing.push(format!("{topic}-{p}"));
            }
        }
        if !missing.is_empty() {
            anyhow::bail!(
                "UNKNOWN_TOPIC_OR_PARTITION: The partitions \"{}\" do not exist",
                missing.join(",")
            );
        }
        Ok(())
    }

    /// The first offsets at or after `ms`; a partition with no record that recent
    /// falls back to its log end, with Kafka's warning.
    async fn at_time(
        &self,
        consumer: &Consumer,
        parts: &[TopicPartition],
        ms: i64,
    ) -> anyhow::Result<Vec<(TopicPartition, i64)>> {
        let found = consumer.offsets_for_time(parts, ms).await?;
        let past_end: Vec<TopicPartition> = parts
            .iter()
            .filter(|tp| !matches!(found.get(*tp), Some(Some(_))))
            .cloned()
            .collect();
        for (topic, p) in &past_end {
            println!("\nWarn: Partition {p} from topic {topic} is empty. Falling back to latest known offset.");
        }
        let ends = consumer.list_offsets(&past_end, Offset::Latest).await?;
        parts
            .iter()
            .map(|tp| {
                found
                    .get(tp)
                    .copied()
                    .flatten()
                    .or_else(|| ends.get(tp).copied())
                    .map(|o| (tp.clone(), o))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "Error getting offset by timestamp of topic partition: {}-{}",
                            tp.0,
                            tp.1
                        )
                    })
            })
            .collect()
    }

    /// Requested offsets kept within each partition's log, as Kafka does.
    async fn within_logs(
        &self,
        requested: Vec<(TopicPartition, i64)>,
    ) -> anyhow::Result<Vec<(TopicPartition, i64)>> {
        let parts: Vec<TopicPartition> = requested.iter().map(|(tp, _)| tp.clone()).collect();
        self.check_exist(&parts).await?;
        let consumer = offsets_client(self.bootstrap).await?;
        let start = consumer.list_offsets(&parts, Offset::Earliest).await?;
        let end = consumer.list_offsets(&parts, Offset::Latest).await?;
        requested
            .into_iter()
            .map(|(tp, wanted)| match (start.get(&tp), end.get(&tp)) {
                (Some(&s), Some(&e)) => Ok((tp, wanted.clamp(s, e.max(s)))),
                _ => Err(anyhow::anyhow!(
                    "Error getting offsets of topic partition: {}-{}",
                    tp.0,
                    tp.1
                )),
            })
            .collect()
    }
}

/// Kafka's reset table, one for all groups: GROUP TOPIC PARTITION NEW-OFFSET. The
/// header shows whenever a group was planned, even with no partitions (a refused
/// group).
fn reset_table(planned: &Planned) -> String {
    let g = planned.keys().map(String::len).fold(15, usize::max);
    let t = planned
        .values()
        .flatten()
        .map(|((t, _), _)| t.len())
        .fold(15, usize::max);
    let mut out = String::new();
    if !planned.is_empty() {
        out.push_str(&format!(
            "\n{:<g$} {:<t$} {:<10} {}",
            "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
        ));
    }
    for (group, offsets) in planned {
        for ((topic, p), o) in offsets {
            out.push_str(&format!("\n{group:<g$} {topic:<t$} {p:<10} {o}"));
        }
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
    fn reset_needs_exactly_one_scenario() {
        let earliest = ResetFlags {
            to_earliest: true,
            ..ResetFlags::default()
        };
        assert_eq!(earliest.target().ok(), Some(ResetTarget::Earliest));
        let shift = ResetFlags {
            shift_by: Some(-2),
            ..ResetFlags::default()
        };
        assert_eq!(shift.target().ok(), Some(ResetTarget::ShiftBy(-2)));
        let current = ResetFlags {
            to_current: true,
            ..ResetFlags::default()
        };
        assert_eq!(current.target().ok(), Some(ResetTarget::Current));
        let duration = ResetFlags {
            by_duration: Some("PT1M".into()),
            ..ResetFlags::default()
        };
        assert_eq!(duration.target().ok(), Some(ResetTarget::Duration(60_000)));
        let two = ResetFlags {
            to_earliest: true,
            to_current: true,
            ..ResetFlags::default()
        };
        assert!(two.target().is_err());
        assert!(ResetFlags::default().target().is_err());
    }

    #[test]
    fn only_a_from_file_reset_may_leave_out_the_scope() {
        let file = ResetTarget::FromFile("plan.csv".into());
        assert_eq!(
            reset_scope(false, vec![], &file).ok(),
            Some(ResetScope::Plan)
        );
        assert!(reset_scope(false, vec![], &ResetTarget::Earliest).is_err());
        assert!(reset_scope(true, vec!["t".into()], &file).is_err());
        assert_eq!(
            reset_scope(false, vec!["t:0,1".into()], &file).ok(),
            Some(ResetScope::Topics(vec!["t:0,1".into()]))
        );
    }

    #[test]
    fn reset_table_is_one_table_for_every_group_and_keeps_the_header_of_a_refused_one() {
        let planned: Planned = [
            ("g".to_owned(), vec![(("t".to_owned(), 0), 5)]),
            (
                "a-long-group-name".to_owned(),
                vec![(("t".to_owned(), 1), 7)],
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            reset_table(&planned),
            "\nGROUP             TOPIC           PARTITION  NEW-OFFSET\
             \na-long-group-name t               1          7\
             \ng                 t               0          5\n"
        );
        let refused: Planned = [("busy".to_owned(), vec![])].into_iter().collect();
        assert_eq!(
            reset_table(&refused),
            "\nGROUP           TOPIC           PARTITION  NEW-OFFSET\n"
        );
        assert_eq!(reset_table(&Planned::new()), "\n");
    }

    #[test]
    fn durations_parse_like_javas_duration() {
        let ms = |s: &str| parse_duration(s).ok();
        assert_eq!(ms("PT0S"), Some(0));
        assert_eq!(ms("PT30M"), Some(1_800_000));
        assert_eq!(ms("P1DT2H3M4.5S"), Some(93_784_500));
        assert_eq!(ms("p2d"), Some(172_800_000));
        assert_eq!(ms("PT1,25S"), Some(1_250));
        assert_eq!(ms("-PT1H"), Some(-3_600_000));
        assert_eq!(ms("PT-1H30M"), Some(-1_800_000));
        assert_eq!(ms("PT-0.5S"), Some(-500));
        assert_eq!(ms("+PT1S"), Some(1_000));
        for bad in [
            "",
            "P",
            "PT",
            "1H",
            "PT1",
            "P1H",
            "PT1M1H",
            "P1W",
            "PT1.1234567890S",
            "PT+S",
            "P1DT",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_duration("P9999999999999999999D").is_err());
    }

    #[test]
    fn state_and_type_lists_parse_in_any_case_and_name_the_valid_ones() {
        assert_eq!(
            parse_states("stable, EMPTY,").ok(),
            Some(vec!["Empty".to_owned(), "Stable".to_owned()])
        );
        assert_eq!(
            parse_states("preparingrebalance,Assigning").ok(),
            Some(vec![
                "Assigning".to_owned(),
                "PreparingRebalance".to_owned()
            ])
        );
        assert_eq!(parse_states("").ok(), Some(vec![]));
        let err = parse_states("stable,sleeping").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("Invalid state list 'stable,sleeping'. Valid states are: PreparingRebalance, CompletingRebalance, Stable, Dead, Empty, Assigning, Reconciling")
        );
        assert!(parse_states("Unknown").is_err());
        assert!(parse_states(",stable").is_err());
        assert_eq!(
            parse_types("Consumer,CLASSIC").ok(),
            Some(vec!["classic".to_owned(), "consumer".to_owned()])
        );
        let err = parse_types("share").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("Invalid types list 'share'. Valid types are: Classic, Consumer")
        );
    }

    #[test]
    fn reset_plans_read_kafkas_csv_with_or_without_the_group_column() {
        let tp = |t: &str, p: i32| (t.to_owned(), p);
        let plan = parse_reset_plan("t,0,5\r\nt,1,7\n\n", Some("g")).ok();
        let expected: ResetPlan = [(
            "g".to_owned(),
            [(tp("t", 0), 5), (tp("t", 1), 7)].into_iter().collect(),
        )]
        .into_iter()
        .collect();
        assert_eq!(plan, Some(expected));
        // Several groups (or --all-groups): the group comes first, quoted if need be.
        let plan = parse_reset_plan("a,t,0,1\n\"b,c\",u,2,3\n", None).ok();
        let expected: ResetPlan = [
            ("a".to_owned(), [(tp("t", 0), 1)].into_iter().collect()),
            ("b,c".to_owned(), [(tp("u", 2), 3)].into_iter().collect()),
        ]
        .into_iter()
        .collect();
        assert_eq!(plan.clone(), Some(expected.clone()));
        // One group with a file that has the group column reads it as such.
        assert_eq!(
            parse_reset_plan("a,t,0,1\n\"b,c\",u,2,3\n", Some("a")).ok(),
            Some(expected)
        );
        assert!(parse_reset_plan("t,0,5\nt,x,7\n", Some("g")).is_err());
        assert!(parse_reset_plan("t,0,5\n", None).is_err());
        assert!(parse_reset_plan("t,0\n", Some("g")).is_err());
    }

    #[test]
    fn export_writes_what_from_file_reads() {
        let planned: Planned = [
            (
                "g".to_owned(),
                vec![(("t".to_owned(), 0), 5), (("t".to_owned(), 1), 7)],
            ),
            ("h,i".to_owned(), vec![(("u".to_owned(), 0), 1)]),
        ]
        .into_iter()
        .collect();
        let with_group = export_csv(&planned, true);
        assert_eq!(with_group, "g,t,0,5\ng,t,1,7\n\"h,i\",u,0,1\n");
        let read = parse_reset_plan(&with_group, None).ok();
        assert_eq!(read.map(|p| p.len()), Some(2));
        let one: Planned = planned.into_iter().take(1).collect();
        assert_eq!(export_csv(&one, false), "t,0,5\nt,1,7\n");
    }

    #[test]
    fn list_table_pads_like_kafka_with_any_of_type_and_state() {
        let rows = vec![
            vec!["GROUP".into(), "TYPE".into(), "STATE".into()],
            vec!["g".into(), "Classic".into(), "Empty".into()],
        ];
        assert_eq!(
            list_table(&rows),
            format!(
                "{:<25} {:<20} {:<20}\n{:<25} {:<20} {:<20}\n",
                "GROUP", "TYPE", "STATE", "g", "Classic", "Empty"
            )
        );
        assert_eq!(group_type_name(Some("consumer")), "Consumer");
        assert_eq!(group_type_name(None), "Unknown");
    }

    #[test]
    fn failed_deletes_name_the_java_exception_as_kafka_prints_it() {
        let err = |code: i16| {
            client::Error::Kafka(client::KafkaError::from_code(code, None).expect("an error code"))
        };
        assert_eq!(
            java_error(&err(68)),
            "org.apache.kafka.common.errors.GroupNotEmptyException: The group is not empty."
        );
        assert_eq!(
            java_error(&err(69)),
            "org.apache.kafka.common.errors.GroupIdNotFoundException: The group id does not exist."
        );
        assert_eq!(
            java_error(&err(86)),
            "org.apache.kafka.common.errors.GroupSubscribedToTopicException: Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it."
        );
        let table = delete_offsets_table(vec![
            (("t".into(), 10), Ok(())),
            (("t".into(), 2), Err("x".into())),
        ]);
        assert_eq!(
            table,
            "\nTOPIC           PARTITION  STATUS         \
             \nt               10         Successful     \
             \nt               2          Error: x       \n"
        );
    }
}

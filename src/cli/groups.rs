//! `freshet groups list|describe|reset-offsets|delete`, like kafka-consumer-groups.sh.
//!
//! `describe` shows one row per partition with the group's committed offset, the log end
//! offset and the lag between them, plus the member that owns the partition. Resetting
//! offsets is a dry run unless `--execute` is given, and is refused while the group has
//! members, as in Kafka's tool.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use freshet::client::{AdminClient, GroupDescription, OffsetSpec, TopicPartition};

use super::client::{ClusterArgs, partitions_of, runtime};

/// `freshet groups` subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups.
    List(ListArgs),
    /// Show each partition's committed offset, log end offset, lag and owner.
    Describe(DescribeArgs),
    /// Move a group's committed offsets (a dry run unless --execute).
    ResetOffsets(ResetArgs),
    /// Delete empty groups and their committed offsets.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Also show each group's state and protocol type.
    #[arg(long)]
    state: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Groups to describe.
    #[arg(long = "group", required = true)]
    groups: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_datetime", "to_offset", "shift_by"])))]
#[command(group(ArgGroup::new("scope").required(true).args(["topics", "all_topics"])))]
pub struct ResetArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The group.
    #[arg(long)]
    group: String,
    /// A topic, or `topic:0,2` for some of its partitions. Repeatable.
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]")]
    topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// To the log start.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end.
    #[arg(long)]
    to_latest: bool,
    /// To the first offset at or after a time: `2026-11-21T10:00:00` (UTC), with optional
    /// `.sss` and a `Z` or `+HH:MM` offset.
    #[arg(long, value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// To this offset (clamped to the log's range).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// By this many offsets from the committed one (negative moves back).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Apply the new offsets (without it, only show them).
    #[arg(long)]
    execute: bool,
    /// Only show the new offsets (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Groups to delete.
    #[arg(long = "group", required = true)]
    groups: Vec<String>,
}

pub fn run(command: GroupsCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match command {
            GroupsCommand::List(args) => {
                let groups = args.cluster.admin().await?.list_groups().await?;
                if args.state {
                    println!("{:<40} {:<20} STATE", "GROUP", "PROTOCOL-TYPE");
                }
                for g in groups {
                    if args.state {
                        println!("{:<40} {:<20} {}", g.group_id, g.protocol_type, g.state);
                    } else {
                        println!("{}", g.group_id);
                    }
                }
            }
            GroupsCommand::Describe(args) => {
                let admin = args.cluster.admin().await?;
                for group in &args.groups {
                    describe(&admin, group).await?;
                }
            }
            GroupsCommand::ResetOffsets(args) => reset(args).await?,
            GroupsCommand::Delete(args) => {
                let admin = args.cluster.admin().await?;
                let names: Vec<&str> = args.groups.iter().map(String::as_str).collect();
                let mut failed = Vec::new();
                for (group, result) in admin.delete_groups(&names).await? {
                    match result {
                        Ok(()) => println!("Deleted group '{group}'."),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                anyhow::ensure!(failed.is_empty(), "{}", failed.join("\n"));
            }
        }
        anyhow::Ok(())
    })
}

async fn describe(admin: &AdminClient, group: &str) -> anyhow::Result<()> {
    let description = admin.describe_groups(&[group]).await?.remove(0);
    anyhow::ensure!(description.state != "Dead", "consumer group '{group}' does not exist");
    let committed = admin.list_group_offsets(group, None).await?;
    let mut rows: BTreeMap<TopicPartition, Option<i64>> =
        committed.into_iter().map(|(tp, c)| (tp, c.map(|c| c.offset))).collect();
    for member in &description.members {
        for tp in &member.assignment {
            rows.entry(tp.clone()).or_insert(None);
        }
    }
    let specs: Vec<(TopicPartition, OffsetSpec)> = rows.keys().map(|tp| (tp.clone(), OffsetSpec::Latest)).collect();
    let ends: BTreeMap<TopicPartition, i64> = admin
        .list_offsets(&specs, false)
        .await?
        .into_iter()
        .filter_map(|(tp, r)| r.ok().map(|l| (tp, l.offset)))
        .collect();
    if description.members.is_empty() {
        println!("Consumer group '{group}' has no active members.\n");
    }
    println!(
        "{:<24} {:<24} {:>9} {:>15} {:>15} {:>8} {:<50} {:<16} CLIENT-ID",
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST"
    );
    let dash = || "-".to_string();
    for (tp, current) in &rows {
        let end = ends.get(tp).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => (e - c).max(0).to_string(),
            _ => dash(),
        };
        let owner = owner_of(&description, tp);
        println!(
            "{:<24} {:<24} {:>9} {:>15} {:>15} {:>8} {:<50} {:<16} {}",
            group,
            tp.topic,
            tp.partition,
            current.map_or_else(dash, |c| c.to_string()),
            end.map_or_else(dash, |e| e.to_string()),
            lag,
            owner.map_or_else(dash, |m| m.member_id.clone()),
            owner.map_or_else(dash, |m| m.client_host.clone()),
            owner.map_or_else(dash, |m| m.client_id.clone()),
        );
    }
    Ok(())
}

fn owner_of<'a>(d: &'a GroupDescription, tp: &TopicPartition) -> Option<&'a freshet::client::GroupMember> {
    d.members.iter().find(|m| m.assignment.contains(tp))
}

async fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    let group = args.group.as_str();
    let state = admin.describe_groups(&[group]).await?.remove(0).state;
    anyhow::ensure!(
        state == "Empty" || state == "Dead",
        "offsets can only be reset while group '{group}' is inactive, but it is {state}; stop its consumers first"
    );
    let committed: BTreeMap<TopicPartition, i64> = admin
        .list_group_offsets(group, None)
        .await?
        .into_iter()
        .filter_map(|(tp, c)| c.map(|c| (tp, c.offset)))
        .collect();
    let mut partitions: Vec<TopicPartition> = Vec::new();
    if args.all_topics {
        partitions.extend(committed.keys().cloned());
    }
    for spec in &args.topics {
        let (topic, only) = parse_topic_spec(spec)?;
        partitions.extend(partitions_of(&admin, &topic, &only).await?);
    }
    partitions.sort();
    partitions.dedup();
    anyhow::ensure!(!partitions.is_empty(), "no partitions to reset: group '{group}' has no committed offsets");

    let bounds = |spec: OffsetSpec| {
        let specs: Vec<_> = partitions.iter().map(|tp| (tp.clone(), spec)).collect();
        let admin = &admin;
        async move {
            let mut found = BTreeMap::new();
            for (tp, r) in admin.list_offsets(&specs, false).await? {
                found.insert(tp, r?.offset);
            }
            anyhow::Ok(found)
        }
    };
    let earliest = bounds(OffsetSpec::Earliest).await?;
    let latest = bounds(OffsetSpec::Latest).await?;
    let clamp = |tp: &TopicPartition, o: i64| o.clamp(earliest[tp], latest[tp]);
    let targets: Vec<(TopicPartition, i64)> = if args.to_earliest {
        partitions.iter().map(|tp| (tp.clone(), earliest[tp])).collect()
    } else if args.to_latest {
        partitions.iter().map(|tp| (tp.clone(), latest[tp])).collect()
    } else if let Some(offset) = args.to_offset {
        partitions.iter().map(|tp| (tp.clone(), clamp(tp, offset))).collect()
    } else if let Some(shift) = args.shift_by {
        partitions
            .iter()
            .map(|tp| {
                let base = committed.get(tp).copied().unwrap_or(latest[tp]);
                (tp.clone(), clamp(tp, base.saturating_add(shift)))
            })
            .collect()
    } else if let Some(datetime) = &args.to_datetime {
        let ms = parse_datetime(datetime).with_context(|| format!("--to-datetime {datetime:?}"))?;
        let at = bounds(OffsetSpec::Timestamp(ms)).await?;
        partitions.iter().map(|tp| (tp.clone(), if at[tp] >= 0 { at[tp] } else { latest[tp] })).collect()
    } else {
        unreachable!("clap requires one target")
    };
    println!("{:<24} {:<24} {:>9} NEW-OFFSET", "GROUP", "TOPIC", "PARTITION");
    for (TopicPartition { topic, partition }, offset) in &targets {
        println!("{:<24} {:<24} {:>9} {offset}", group, topic, partition);
    }
    if args.execute {
        admin.alter_group_offsets(group, &targets).await?;
    } else {
        println!("\nDry run: nothing changed. Add --execute to apply these offsets.");
    }
    Ok(())
}

/// `topic` or `topic:0,2`.
fn parse_topic_spec(spec: &str) -> anyhow::Result<(String, Vec<i32>)> {
    match spec.split_once(':') {
        None => Ok((spec.to_string(), Vec::new())),
        Some((topic, list)) => {
            let partitions = list
                .split(',')
                .map(|p| p.trim().parse::<i32>().with_context(|| format!("--topic {spec:?}: {p:?} is not a partition")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((topic.to_string(), partitions))
        }
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.sss][Z|±HH:MM]`, UTC when no
/// offset is given.
fn parse_datetime(s: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]");
    let (date, rest) = s.split_once('T').ok_or_else(bad)?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (year, month, day) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(Ok(y)), Some(Ok(m)), Some(Ok(dd)), None) => (y, m, dd),
        _ => return Err(bad()),
    };
    let (time, offset_minutes) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let (t, zone) = rest.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').ok_or_else(bad)?;
        (t, sign * (h.parse::<i64>().map_err(|_| bad())? * 60 + m.parse::<i64>().map_err(|_| bad())?))
    } else {
        (rest, 0)
    };
    let (hms, millis) = match time.split_once('.') {
        Some((hms, frac)) => (hms, format!("{frac:0<3}")[..3].parse::<i64>().map_err(|_| bad())?),
        None => (time, 0),
    };
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hour, minute, second) = match (t.next(), t.next(), t.next(), t.next()) {
        (Some(Ok(h)), Some(Ok(m)), Some(Ok(sec)), None) => (h, m, sec),
        _ => return Err(bad()),
    };
    anyhow::ensure!(
        (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60 && second < 61,
        "a field is out of range"
    );
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_like_kafkas_tool_and_bad_ones_say_why() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00").unwrap(), 0);
        assert_eq!(parse_datetime("2026-11-21T10:00:00.5Z").unwrap(), 1_795_255_200_500);
        assert_eq!(parse_datetime("2026-11-21T12:00:00+02:00").unwrap(), 1_795_255_200_000);
        assert!(parse_datetime("2026-13-01T00:00:00").is_err());
        assert!(parse_datetime("yesterday").unwrap_err().to_string().contains("YYYY-MM-DD"));
        assert_eq!(parse_topic_spec("t:0,2").unwrap(), ("t".to_string(), vec![0, 2]));
        assert!(parse_topic_spec("t:x").is_err());
    }
}

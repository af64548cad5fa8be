//! `freshet perf rebalance`: how fast a consumer group settles.
//!
//! Each round uses a fresh group of `--members` native consumers on one topic and measures:
//! - **form**: from the moment the last member subscribes until every partition is
//!   assigned and every member polls with its share (the whole join and sync, including
//!   connecting and finding the coordinator);
//! - **join**: a further member joins the settled group; from its subscribe until all
//!   members again cover every partition (the others learn of the rebalance from their
//!   next heartbeat, so `heartbeat.interval.ms` bounds this from below);
//! - **failover**: one member dies without leaving; from its death until the survivors
//!   cover every partition again (the session timeout bounds this from below).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use freshet::client::{Consumer, NewTopic, TopicPartition};
use parking_lot::Mutex;

use super::client::{ClusterArgs, runtime};

#[derive(Debug, Args)]
pub struct RebalancePerfArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic (created with --partitions if missing).
    #[arg(long, default_value = "perf-rebalance")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 100)]
    partitions: i32,
    /// Members that form the group.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Rounds, each with a new group.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// session.timeout.ms of the members.
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u64,
    /// heartbeat.interval.ms of the members.
    #[arg(long, default_value_t = 500)]
    heartbeat_interval_ms: u64,
    /// Print one JSON object per round instead of text.
    #[arg(long)]
    json: bool,
}

type Assignments = Arc<Mutex<Vec<Option<Vec<TopicPartition>>>>>;

pub fn run(args: RebalancePerfArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let admin = args.cluster.admin().await?;
        match admin.create_topic(NewTopic::new(&args.topic, args.partitions)).await {
            Err(e) if e.code() == Some(36) => {}
            other => other?,
        }
        let all: BTreeSet<TopicPartition> = (0..args.partitions).map(|p| TopicPartition::new(args.topic.clone(), p)).collect();
        let limit = Duration::from_millis(args.session_timeout_ms * 3 + 30_000);
        for round in 0..args.rounds {
            let group = format!("perf-rebalance-{}-{round}", std::process::id());
            let slots: Assignments = Arc::new(Mutex::new(vec![None; args.members + 1]));
            let mut tasks = Vec::new();
            let mut last_subscribe = Instant::now();
            for id in 0..args.members {
                let (task, subscribed) = spawn_member(&args, &group, id, slots.clone()).await?;
                tasks.push(task);
                last_subscribe = subscribed;
            }
            let members: Vec<usize> = (0..args.members).collect();
            let form = wait_covered(&slots, &members, &all, last_subscribe, limit).await?;

            let (joiner, subscribed) = spawn_member(&args, &group, args.members, slots.clone()).await?;
            tasks.push(joiner);
            let everyone: Vec<usize> = (0..=args.members).collect();
            let join = wait_covered(&slots, &everyone, &all, subscribed, limit).await?;

            let victim = tasks.remove(0);
            victim.abort();
            let died = Instant::now();
            slots.lock()[0] = None;
            let survivors: Vec<usize> = (1..=args.members).collect();
            let failover = wait_covered(&slots, &survivors, &all, died, limit).await?;
            for t in tasks {
                t.abort();
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "round": round, "members": args.members, "partitions": args.partitions,
                        "form_ms": ms(form), "join_ms": ms(join), "failover_ms": ms(failover),
                        "session_timeout_ms": args.session_timeout_ms, "heartbeat_interval_ms": args.heartbeat_interval_ms,
                    })
                );
            } else {
                println!(
                    "round {round}: {} members, {} partitions: form {:.1} ms, one more joins {:.1} ms, failover after a kill {:.1} ms (session.timeout.ms={}, heartbeat.interval.ms={})",
                    args.members,
                    args.partitions,
                    ms(form),
                    ms(join),
                    ms(failover),
                    args.session_timeout_ms,
                    args.heartbeat_interval_ms
                );
            }
        }
        anyhow::Ok(())
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts a member that polls and publishes its assignment; returns when it has subscribed.
async fn spawn_member(
    args: &RebalancePerfArgs,
    group: &str,
    id: usize,
    slots: Assignments,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, Instant)> {
    let session = args.session_timeout_ms.to_string();
    let heartbeat = args.heartbeat_interval_ms.to_string();
    let config = args.cluster.consumer_config(&[
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("session.timeout.ms", &session),
        ("heartbeat.interval.ms", &heartbeat),
    ])?;
    let mut consumer = Consumer::connect(config).await?;
    consumer.subscribe(&[args.topic.as_str()]).await?;
    let subscribed = Instant::now();
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = consumer.poll(Duration::from_millis(20)).await {
                eprintln!("member {id}: {e}");
                return;
            }
            slots.lock()[id] = Some(consumer.assignment());
        }
    });
    Ok((task, subscribed))
}

/// Waits until `members` together own exactly `all`, each at least one partition.
async fn wait_covered(
    slots: &Assignments,
    members: &[usize],
    all: &BTreeSet<TopicPartition>,
    since: Instant,
    limit: Duration,
) -> anyhow::Result<Duration> {
    loop {
        {
            let slots = slots.lock();
            let mut owned = BTreeSet::new();
            let mut total = 0;
            let mut every_member = true;
            for id in members {
                match &slots[*id] {
                    Some(a) if !a.is_empty() => {
                        total += a.len();
                        owned.extend(a.iter().cloned());
                    }
                    _ => every_member = false,
                }
            }
            if every_member && total == all.len() && &owned == all {
                return Ok(since.elapsed());
            }
        }
        anyhow::ensure!(since.elapsed() < limit, "the group did not settle within {limit:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

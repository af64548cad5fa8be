//! A keyed aggregate served through an interactive query: user events (JSON, keyed by user)
//! from `user-events` become a per-user activity summary in the store `user-activity`, which
//! the application reads directly, and which it can locate by key when several instances
//! share the work.
//!
//! ```text
//! cargo run --example user_activity                               # embedded broker, sample events
//! cargo run --example user_activity -- --bootstrap 127.0.0.1:9092 # against `freshet server`
//! ```
//!
//! Against a server it prints the store every few seconds until Ctrl-C. Events look like
//! `{"action":"view"}` or `{"action":"buy","amount":12.5}`, with the user as the key.

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use freshet::streams::serde::Serdes;
use freshet::streams::{Consumed, Grouped, KafkaStreams, Materialized, State, StreamsBuilder, StreamsConfig, Topology};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    /// The cluster; without it, a broker is embedded and sample events are aggregated.
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value = "user-activity")]
    application_id: String,
    #[arg(long, default_value = "user-events")]
    input: String,
    /// `application.server`: where this instance would answer queries for its keys.
    #[arg(long, default_value = "localhost:7070")]
    server: String,
    #[arg(long)]
    state_dir: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    action: String,
    #[serde(default)]
    amount: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Activity {
    events: u64,
    purchases: u64,
    spent: f64,
    last_action: String,
}

fn topology(input: &str) -> freshet::streams::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(Serdes::string(), Serdes::json::<Event>()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::json::<Event>()))
        .aggregate(
            Activity::default,
            |_user, event, mut activity| {
                activity.events += 1;
                if event.action == "buy" {
                    activity.purchases += 1;
                    activity.spent += event.amount;
                }
                activity.last_action = event.action;
                activity
            },
            Materialized::as_("user-activity").with_value_serde(Serdes::json::<Activity>()),
        );
    builder.build()
}

fn main() -> anyhow::Result<()> {
    common::init_logging();
    let args = Args::parse();
    let cluster = common::Cluster::connect(args.bootstrap.clone())?;
    cluster.ensure_topics(&[(&args.input, 3)])?;
    let mut config = StreamsConfig::new(&args.application_id, &cluster.bootstrap);
    config.set("commit.interval.ms", "100")?;
    config.set("application.server", &args.server)?;
    if let Some(dir) = &args.state_dir {
        config.set("state.dir", dir)?;
    }
    let streams = KafkaStreams::new(topology(&args.input)?, config)?;
    streams.start()?;
    streams.wait_for(State::Running, Duration::from_secs(60))?;

    if cluster.is_embedded() {
        let events: &[(&str, &str)] = &[
            ("alice", r#"{"action":"view"}"#),
            ("bob", r#"{"action":"view"}"#),
            ("alice", r#"{"action":"buy","amount":30.0}"#),
            ("carol", r#"{"action":"view"}"#),
            ("alice", r#"{"action":"buy","amount":12.5}"#),
            ("bob", r#"{"action":"logout"}"#),
        ];
        let records: Vec<(Option<&str>, &[u8])> = events.iter().map(|(k, v)| (Some(*k), v.as_bytes())).collect();
        cluster.produce(&args.input, &records)?;
        let store = streams.store::<String, Activity>("user-activity")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.get(&"alice".to_string())?.is_none_or(|a| a.events < 3) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for user in ["alice", "bob", "carol", "dave"] {
            let key = user.to_string();
            let where_ = streams.query_metadata_for_key("user-activity", &key, &Serdes::string())?;
            let host = where_.active_host.map_or("nobody".to_string(), |h| h.to_string());
            match store.get(&key)? {
                Some(a) => println!(
                    "{user}: {} events, {} purchases, {:.2} spent, last {} (partition {}, served by {host})",
                    a.events, a.purchases, a.spent, a.last_action, where_.partition
                ),
                None => println!("{user}: no activity (partition {}, served by {host})", where_.partition),
            }
        }
    } else {
        loop {
            if cluster.wait_for_signal(Some(Duration::from_secs(5))) || streams.state() != State::Running {
                break;
            }
            for entry in streams.store::<String, Activity>("user-activity")?.all() {
                let (user, activity) = entry?;
                println!("{user}: {activity:?}");
            }
        }
    }
    streams.close();
    Ok(())
}

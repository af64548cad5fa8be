//! Word count, the Kafka Streams classic: lines from `streams-plaintext-input` become a
//! table of word counts, kept in a RocksDB store (logged to a changelog topic) and written
//! to `streams-wordcount-output` as it changes.
//!
//! ```text
//! cargo run --example wordcount                              # embedded broker, sample lines
//! cargo run --example wordcount -- --bootstrap 127.0.0.1:9092 # against `freshet server`
//! ```
//!
//! Against a server it runs until Ctrl-C; feed it with
//! `freshet produce streams-plaintext-input` and watch the counts with
//! `freshet consume streams-wordcount-output --from-beginning`.

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use freshet::streams::serde::Serdes;
use freshet::streams::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, State, StreamsBuilder, StreamsConfig, Topology,
};

#[derive(Parser)]
struct Args {
    /// The cluster; without it, a broker is embedded and sample lines are counted.
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value = "wordcount")]
    application_id: String,
    #[arg(long, default_value = "streams-plaintext-input")]
    input: String,
    #[arg(long, default_value = "streams-wordcount-output")]
    output: String,
    /// Partitions of the topics this example creates when they are missing.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `state.dir` (default: a directory under the system's temporary directory).
    #[arg(long)]
    state_dir: Option<String>,
    #[arg(long, default_value_t = 100)]
    commit_interval_ms: u64,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    run_for: Option<u64>,
    /// Any other Streams or client property, as `key=value` (repeatable).
    #[arg(short = 'c', long = "config", value_parser = parse_property)]
    properties: Vec<(String, String)>,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("expected key=value, got '{text}'"))?;
    Ok((key.trim().to_string(), value.trim().to_string()))
}

/// lines -> words -> count per word -> output topic.
fn topology(input: &str, output: &str) -> freshet::streams::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(Serdes::optional(Serdes::string()), Serdes::string()))
        .flat_map_values(|line: String| line.to_lowercase().split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_("counts"))
        .to_stream()
        .to(output, Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
    builder.build()
}

fn main() -> anyhow::Result<()> {
    common::init_logging();
    let args = Args::parse();
    let cluster = common::Cluster::connect(args.bootstrap.clone())?;
    cluster.ensure_topics(&[(&args.input, args.partitions), (&args.output, args.partitions)])?;

    let mut config = StreamsConfig::new(&args.application_id, &cluster.bootstrap);
    config.set("num.stream.threads", &args.threads.to_string())?;
    config.set("commit.interval.ms", &args.commit_interval_ms.to_string())?;
    if let Some(dir) = &args.state_dir {
        config.set("state.dir", dir)?;
    }
    for (key, value) in &args.properties {
        config.set(key, value)?;
    }
    let topology = topology(&args.input, &args.output)?;
    println!("{}", topology.describe());
    let streams = KafkaStreams::new(topology, config)?;
    streams.set_state_listener(|new, old| eprintln!("state: {old:?} -> {new:?}"));
    streams.start()?;
    streams.wait_for(State::Running, Duration::from_secs(60))?;
    println!("RUNNING");

    if cluster.is_embedded() {
        let lines = ["all streams lead to kafka", "hello kafka streams", "join kafka summit"];
        let records: Vec<(Option<&str>, &[u8])> = lines.iter().map(|l| (None, l.as_bytes())).collect();
        cluster.produce(&args.input, &records)?;
        // The counts are in the store once the lines are processed.
        let deadline = Instant::now() + Duration::from_secs(30);
        let counts = streams.store::<String, i64>("counts")?;
        while counts.get(&"kafka".to_string())? != Some(3) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for entry in counts.all() {
            let (word, count) = entry?;
            println!("{word}\t{count}");
        }
    } else {
        cluster.wait_for_signal(args.run_for.map(Duration::from_secs));
    }
    streams.close();
    Ok(())
}

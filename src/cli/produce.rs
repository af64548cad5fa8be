//! `freshet produce TOPIC`: one record per input line, like kafka-console-producer.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use freshet::client::{Producer, ProducerRecord};

use super::client::{ClusterArgs, parse_key_value, runtime};

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic.
    topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Split each line into key and value at the first occurrence of this string; a line
    /// without it is an error.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record. Repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    headers: Vec<(String, String)>,
    /// Send to this partition instead of letting the partitioner choose.
    #[arg(long)]
    partition: Option<i32>,
    /// At most this many records per second.
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    rate: Option<f64>,
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be a positive number, got {rate}");
    }
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("--file {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    runtime()?.block_on(async move {
        let config = args.cluster.producer_config(&[])?;
        let producer =
            Producer::connect(config).await.with_context(|| format!("connecting to {}", args.cluster.bootstrap))?;
        let started = Instant::now();
        let mut deliveries = std::collections::VecDeque::new();
        let mut sent = 0u64;
        for (n, line) in input.lines().enumerate() {
            let line = line.with_context(|| format!("reading line {}", n + 1))?;
            let (key, value) = match &args.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(k), v),
                    None => anyhow::bail!("line {}: no key separator {sep:?} in {line:?}", n + 1),
                },
                None => (None, line.as_str()),
            };
            let mut record = ProducerRecord::new(&args.topic).value(value);
            record.key = key.map(str::as_bytes);
            record.partition = args.partition;
            for (k, v) in &args.headers {
                record = record.header(k, v);
            }
            deliveries.push_back(producer.send(record).await?);
            sent += 1;
            // Report failures as they come, without waiting for each record.
            while deliveries.front().is_some_and(|d| d.try_result().is_some()) {
                deliveries.pop_front().expect("checked").await?;
            }
            if let Some(rate) = args.rate {
                let due = started + Duration::from_secs_f64(sent as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        producer.flush().await;
        for delivery in deliveries {
            delivery.await?;
        }
        producer.close().await?;
        eprintln!("Produced {sent} records to {}.", args.topic);
        anyhow::Ok(())
    })
}

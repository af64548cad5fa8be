//! `freshet perf produce|consume|e2e`: the equivalents of kafka-producer-perf-test,
//! kafka-consumer-perf-test and Kafka's end-to-end latency tool, built on Freshet's
//! client and run against any Kafka-protocol broker.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use freshet::client::{Consumer, DeliveryFuture, Producer, ProducerRecord, TopicPartition};
use tokio::sync::mpsc;

use super::client::{ClusterArgs, parse_key_value, partitions_of, runtime};

#[derive(Debug, Args)]
pub struct ProducePerfArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic to write to (it must exist).
    #[arg(long)]
    topic: String,
    /// Records to send.
    #[arg(long, default_value_t = 1_000_000)]
    num_records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per second to aim for; -1 for as fast as possible.
    #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
    throughput: f64,
    /// Producer properties, for example `--producer-props acks=1 linger.ms=5`.
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE", value_parser = parse_key_value)]
    producer_props: Vec<(String, String)>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ConsumePerfArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic to read, from the beginning of every partition.
    #[arg(long)]
    topic: String,
    /// Records to read.
    #[arg(long, alias = "messages", default_value_t = 1_000_000)]
    num_records: u64,
    /// Give up when no record arrives for this long.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct E2ePerfArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic (it must exist).
    #[arg(long)]
    topic: String,
    /// Records to send.
    #[arg(long, default_value_t = 100_000)]
    num_records: u64,
    /// Bytes per record value (at least 8: the send time is carried in it).
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per second.
    #[arg(long, default_value_t = 10_000.0)]
    throughput: f64,
    /// Producer properties (defaults for this tool: acks=1 linger.ms=0).
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE", value_parser = parse_key_value)]
    producer_props: Vec<(String, String)>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print one JSON object at the end instead of text.
    #[arg(long)]
    json: bool,
    /// Milliseconds between progress lines (text output only).
    #[arg(long, default_value_t = 5000)]
    reporting_interval: u64,
}

/// Latencies in microseconds.
#[derive(Debug, Default)]
struct Latencies(Vec<u32>);

impl Latencies {
    fn record(&mut self, latency: Duration) {
        self.0.push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
    }

    /// avg, p50, p95, p99, p99.9, max in ms.
    fn summary(&mut self) -> [(&'static str, f64); 6] {
        self.0.sort_unstable();
        let n = self.0.len();
        let at = |q: f64| if n == 0 { 0.0 } else { f64::from(self.0[((n as f64 * q) as usize).min(n - 1)]) / 1000.0 };
        let avg = if n == 0 { 0.0 } else { self.0.iter().map(|&l| f64::from(l)).sum::<f64>() / n as f64 / 1000.0 };
        [("avg", avg), ("p50", at(0.5)), ("p95", at(0.95)), ("p99", at(0.99)), ("p99.9", at(0.999)), ("max", at(1.0))]
    }
}

fn mb(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn latency_text(summary: &[(&str, f64); 6]) -> String {
    let [avg, p50, p95, p99, p999, max] = summary.map(|(_, v)| v);
    format!(
        "{avg:.2} ms avg latency, {max:.2} ms max latency, {p50:.2} ms 50th, {p95:.2} ms 95th, {p99:.2} ms 99th, {p999:.2} ms 99.9th"
    )
}

fn print_json(kind: &str, records: u64, elapsed: Duration, bytes: f64, latency: Option<&[(&str, f64); 6]>) {
    let secs = elapsed.as_secs_f64();
    let mut out = serde_json::json!({
        "benchmark": kind,
        "records": records,
        "seconds": secs,
        "records_per_sec": records as f64 / secs,
        "mb_per_sec": mb(bytes) / secs,
    });
    if let Some(latency) = latency {
        out["latency_ms"] = latency.iter().map(|(k, v)| ((*k).to_string(), serde_json::json!(v))).collect();
    }
    println!("{out}");
}

pub fn produce(args: ProducePerfArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.num_records > 0, "--num-records must be positive");
    anyhow::ensure!(args.throughput == -1.0 || args.throughput > 0.0, "--throughput must be positive or -1");
    runtime()?.block_on(async move {
        let config = args.cluster.producer_config(&args.producer_props)?;
        let producer =
            Producer::connect(config).await.with_context(|| format!("connecting to {}", args.cluster.bootstrap))?;
        // One random payload for every record, as kafka-producer-perf-test does.
        let payload: Vec<u8> = (0..args.record_size).map(|i| b'A' + (i * 7919 % 26) as u8).collect();
        let (tx, rx) = mpsc::unbounded_channel::<(Instant, DeliveryFuture)>();
        let started = Instant::now();
        let collector =
            tokio::spawn(collect_deliveries(rx, args.record_size, args.output.reporting_interval, args.output.json));
        for sent in 0..args.num_records {
            let delivery = producer.send(ProducerRecord::new(&args.topic).value(&payload)).await?;
            let _ = tx.send((Instant::now(), delivery));
            if args.throughput > 0.0 {
                let due = started + Duration::from_secs_f64((sent + 1) as f64 / args.throughput);
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
            }
        }
        drop(tx);
        let (mut latencies, failures, first_error) = collector.await?;
        let elapsed = started.elapsed();
        producer.close().await?;
        if let Some(e) = first_error {
            anyhow::bail!("{failures} of {} records failed; the first: {e}", args.num_records);
        }
        let summary = latencies.summary();
        let bytes = (args.num_records as usize * args.record_size) as f64;
        if args.output.json {
            print_json("produce", args.num_records, elapsed, bytes, Some(&summary));
        } else {
            let secs = elapsed.as_secs_f64();
            println!(
                "{} records sent, {:.1} records/sec ({:.2} MB/sec), {}.",
                args.num_records,
                args.num_records as f64 / secs,
                mb(bytes) / secs,
                latency_text(&summary)
            );
        }
        anyhow::Ok(())
    })
}

/// Awaits deliveries in send order, measuring each from its send, and prints progress.
async fn collect_deliveries(
    mut rx: mpsc::UnboundedReceiver<(Instant, DeliveryFuture)>,
    record_size: usize,
    interval_ms: u64,
    quiet: bool,
) -> (Latencies, u64, Option<String>) {
    let mut latencies = Latencies::default();
    let (mut failures, mut first_error) = (0, None);
    let interval = Duration::from_millis(interval_ms.max(1));
    let mut window = (Instant::now(), 0u64, Latencies::default());
    while let Some((sent_at, delivery)) = rx.recv().await {
        match delivery.await {
            Ok(_) => {
                let latency = sent_at.elapsed();
                latencies.record(latency);
                window.2.record(latency);
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
        window.1 += 1;
        if !quiet && window.0.elapsed() >= interval {
            let secs = window.0.elapsed().as_secs_f64();
            let [avg, .., max] = window.2.summary().map(|(_, v)| v);
            eprintln!(
                "{} records sent, {:.1} records/sec ({:.2} MB/sec), {avg:.1} ms avg latency, {max:.1} ms max latency.",
                window.1,
                window.1 as f64 / secs,
                mb((window.1 as usize * record_size) as f64) / secs,
            );
            window = (Instant::now(), 0, Latencies::default());
        }
    }
    (latencies, failures, first_error)
}

pub fn consume(args: ConsumePerfArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let admin = args.cluster.admin().await?;
        let partitions = partitions_of(&admin, &args.topic, &[]).await?;
        let config = args.cluster.consumer_config(&[("enable.auto.commit", "false"), ("max.poll.records", "10000")])?;
        let mut consumer =
            Consumer::connect(config).await.with_context(|| format!("connecting to {}", args.cluster.bootstrap))?;
        consumer.assign(&partitions).await?;
        consumer.seek_to_beginning(&partitions)?;
        let started = Instant::now();
        let (mut records, mut bytes) = (0u64, 0u64);
        let mut last_data = Instant::now();
        let mut window = (Instant::now(), 0u64, 0u64);
        let interval = Duration::from_millis(args.output.reporting_interval.max(1));
        while records < args.num_records {
            let polled = consumer.poll(Duration::from_millis(100)).await?;
            if polled.is_empty() {
                anyhow::ensure!(
                    last_data.elapsed() < Duration::from_millis(args.timeout_ms),
                    "no record for {} ms after {records} of {} records",
                    args.timeout_ms,
                    args.num_records
                );
                continue;
            }
            last_data = Instant::now();
            for record in polled.iter() {
                let size = record.value.as_ref().map_or(0, |v| v.len()) + record.key.as_ref().map_or(0, |k| k.len());
                bytes += size as u64;
                window.2 += size as u64;
            }
            records += polled.len() as u64;
            window.1 += polled.len() as u64;
            if !args.output.json && window.0.elapsed() >= interval {
                let secs = window.0.elapsed().as_secs_f64();
                eprintln!(
                    "{} records read, {:.1} records/sec ({:.2} MB/sec).",
                    window.1,
                    window.1 as f64 / secs,
                    mb(window.2 as f64) / secs
                );
                window = (Instant::now(), 0, 0);
            }
        }
        let elapsed = started.elapsed();
        if args.output.json {
            print_json("consume", records, elapsed, bytes as f64, None);
        } else {
            let secs = elapsed.as_secs_f64();
            println!(
                "{records} records read in {secs:.2} s, {:.1} records/sec ({:.2} MB/sec).",
                records as f64 / secs,
                mb(bytes as f64) / secs
            );
        }
        anyhow::Ok(())
    })
}

/// Where a consumer that stopped receiving stands: each partition's position against its
/// watermarks, to tell records never fetched from records never written.
async fn stall_report(consumer: &mut Consumer, partitions: &[TopicPartition]) -> String {
    let mut parts = Vec::new();
    for tp in partitions {
        let position = consumer.position(tp).await.map_or_else(|e| e.to_string(), |p| p.to_string());
        let marks = consumer.watermarks(tp).await.map_or_else(|e| e.to_string(), |(lo, hi)| format!("{lo}..{hi}"));
        parts.push(format!("{}-{} at {position} of {marks}", tp.topic, tp.partition));
    }
    parts.join(", ")
}

pub fn e2e(args: E2ePerfArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.record_size >= 8, "--record-size must be at least 8 (the send time travels in the value)");
    anyhow::ensure!(args.throughput > 0.0, "--throughput must be positive");
    runtime()?.block_on(async move {
        let admin = args.cluster.admin().await?;
        let partitions = partitions_of(&admin, &args.topic, &[]).await?;
        let defaults = [("acks".to_string(), "1".to_string()), ("linger.ms".to_string(), "0".to_string())];
        let mut props = defaults.to_vec();
        props.extend(args.producer_props.iter().cloned());
        let producer = Producer::connect(args.cluster.producer_config(&props)?).await?;
        let config = args.cluster.consumer_config(&[("enable.auto.commit", "false"), ("fetch.max.wait.ms", "500")])?;
        let mut consumer = Consumer::connect(config).await?;
        consumer.assign(&partitions).await?;
        consumer.seek_to_end(&partitions)?;
        for tp in &partitions {
            consumer.position(tp).await?;
        }
        let origin = Instant::now();
        let total = args.num_records;
        let read_partitions = partitions.clone();
        let reader = tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let deadline_gap = Duration::from_secs(10);
            let mut last = Instant::now();
            while (latencies.0.len() as u64) < total {
                let polled = consumer.poll(Duration::from_millis(100)).await?;
                if polled.is_empty() {
                    if last.elapsed() >= deadline_gap {
                        let where_ = stall_report(&mut consumer, &read_partitions).await;
                        anyhow::bail!("no record for 10 s after {} of {total}: {where_}", latencies.0.len());
                    }
                    continue;
                }
                last = Instant::now();
                let now = origin.elapsed();
                for record in polled.iter() {
                    let value = record.value.as_deref().unwrap_or_default();
                    let sent = u64::from_be_bytes(value.get(..8).context("short record")?.try_into()?);
                    latencies.record(now.saturating_sub(Duration::from_nanos(sent)));
                }
            }
            anyhow::Ok(latencies)
        });
        let mut payload = vec![0u8; args.record_size];
        let started = Instant::now();
        let mut deliveries = Vec::new();
        for n in 0..total {
            let due = started + Duration::from_secs_f64(n as f64 / args.throughput);
            tokio::time::sleep_until(due.into()).await;
            payload[..8].copy_from_slice(&(origin.elapsed().as_nanos() as u64).to_be_bytes());
            deliveries.push(producer.send(ProducerRecord::new(&args.topic).value(&payload)).await?);
        }
        for delivery in deliveries {
            delivery.await?;
        }
        let mut latencies = reader.await??;
        let elapsed = started.elapsed();
        producer.close().await?;
        let summary = latencies.summary();
        if args.output.json {
            print_json("e2e", total, elapsed, (total as usize * args.record_size) as f64, Some(&summary));
        } else {
            println!(
                "{total} records at {:.0} records/sec end to end: {}.",
                total as f64 / elapsed.as_secs_f64(),
                latency_text(&summary)
            );
        }
        anyhow::Ok(())
    })
}

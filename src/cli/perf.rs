//! `freshet perf log ...`: storage-engine benchmarks that run without a network, so their
//! figures can be compared with the disk itself (`dd`) on the same machine.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use freshet::log::record::{Compression, RecordBatchBuilder};
use freshet::log::storage::{AppendOrigin, Log, LogConfig, LogOpenOptions};
use freshet::log::time::{Clock, SystemClock};

/// `freshet perf` subcommands.
#[derive(Debug, Subcommand)]
pub enum PerfCommand {
    /// Storage-engine benchmarks: no broker, no network.
    #[command(subcommand)]
    Log(LogPerf),
    /// Producer throughput and latency against a running broker (like kafka-producer-perf-test).
    Produce(super::client_perf::ProducePerfArgs),
    /// Consumer throughput against a running broker (like kafka-consumer-perf-test).
    Consume(super::client_perf::ConsumePerfArgs),
    /// End-to-end latency (send to poll) at a fixed rate.
    E2e(super::client_perf::E2ePerfArgs),
    /// How fast a consumer group forms, absorbs a new member, and recovers from a dead one.
    Rebalance(super::group_perf::RebalancePerfArgs),
}

/// `freshet perf log` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogPerf {
    /// Append throughput of one partition.
    Append(LogPerfArgs),
    /// Sequential read throughput of one partition (it is written first).
    Read(LogPerfArgs),
    /// Time to open a partition after an unclean shutdown (full re-validation) and after a clean one.
    Recovery(LogPerfArgs),
}

/// Shared settings.
#[derive(Debug, Args)]
pub struct LogPerfArgs {
    /// Directory for the benchmark partition (created, and emptied first).
    #[arg(long, default_value = "./freshet-data/perf-log")]
    dir: PathBuf,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 500)]
    batch_records: usize,
    /// MiB of log to write.
    #[arg(long, default_value_t = 1024)]
    total_mb: u64,
    /// segment.bytes, in MiB.
    #[arg(long, default_value_t = 1024)]
    segment_mb: u64,
    /// Compression codec: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Keep the partition directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Drop the OS page cache after writing, so reads and recovery come from the disk
    /// (needs root: it writes /proc/sys/vm/drop_caches).
    #[arg(long)]
    cold: bool,
}

pub fn run(cmd: PerfCommand) -> anyhow::Result<()> {
    match cmd {
        PerfCommand::Produce(args) => super::client_perf::produce(args),
        PerfCommand::Consume(args) => super::client_perf::consume(args),
        PerfCommand::E2e(args) => super::client_perf::e2e(args),
        PerfCommand::Rebalance(args) => super::group_perf::run(args),
        PerfCommand::Log(LogPerf::Append(args)) => {
            let written = write_partition(&args)?;
            report(
                &args,
                "append",
                &[
                    ("records", written.records as f64),
                    ("log_bytes", written.bytes as f64),
                    ("seconds", written.append_secs),
                    ("records_per_sec", written.records as f64 / written.append_secs),
                    ("mib_per_sec", mib(written.bytes) / written.append_secs),
                    ("seconds_with_fsync", written.append_secs + written.flush_secs),
                    ("mib_per_sec_with_fsync", mib(written.bytes) / (written.append_secs + written.flush_secs)),
                ],
            );
            cleanup(&args)
        }
        PerfCommand::Log(LogPerf::Read(args)) => {
            let written = write_partition(&args)?;
            // Recover once and close cleanly, so the timed open below reads no data.
            let (mut log, _) =
                Log::open(args.dir.join("perf-0"), config(&args), LogOpenOptions::new(SystemClock.now_ms()))?;
            log.close(SystemClock.now_ms())?;
            drop(log);
            maybe_drop_caches(&args)?;
            let (bytes, secs) = read_partition(&args)?;
            anyhow::ensure!(bytes == written.bytes, "read {bytes} bytes but wrote {}", written.bytes);
            report(
                &args,
                if args.cold { "read-cold" } else { "read" },
                &[
                    ("records", written.records as f64),
                    ("log_bytes", bytes as f64),
                    ("seconds", secs),
                    ("records_per_sec", written.records as f64 / secs),
                    ("mib_per_sec", mib(bytes) / secs),
                ],
            );
            cleanup(&args)
        }
        PerfCommand::Log(LogPerf::Recovery(args)) => {
            let written = write_partition(&args)?;
            maybe_drop_caches(&args)?;
            let config = config(&args);
            let start = Instant::now();
            let options = LogOpenOptions {
                recovery_point: 0,
                had_clean_shutdown: false,
                ..LogOpenOptions::new(SystemClock.now_ms())
            };
            let (mut log, load) = Log::open(args.dir.join("perf-0"), config.clone(), options)?;
            let unclean_secs = start.elapsed().as_secs_f64();
            anyhow::ensure!(log.log_end_offset() == written.records as i64, "recovery lost records");
            anyhow::ensure!(load.truncated_bytes == 0, "recovery truncated an intact log");
            log.close(SystemClock.now_ms())?;
            drop(log);
            let start = Instant::now();
            let clean = LogOpenOptions {
                recovery_point: written.records as i64,
                had_clean_shutdown: true,
                ..LogOpenOptions::new(SystemClock.now_ms())
            };
            let (log, _) = Log::open(args.dir.join("perf-0"), config, clean)?;
            let clean_secs = start.elapsed().as_secs_f64();
            anyhow::ensure!(log.log_end_offset() == written.records as i64);
            report(
                &args,
                if args.cold { "recovery-cold" } else { "recovery" },
                &[
                    ("log_bytes", written.bytes as f64),
                    ("segments_recovered", load.recovered_segments as f64),
                    ("unclean_open_seconds", unclean_secs),
                    ("unclean_mib_per_sec", mib(written.bytes) / unclean_secs),
                    ("clean_open_seconds", clean_secs),
                ],
            );
            cleanup(&args)
        }
    }
}

struct Written {
    records: u64,
    bytes: u64,
    append_secs: f64,
    flush_secs: f64,
}

fn config(args: &LogPerfArgs) -> LogConfig {
    LogConfig { segment_bytes: args.segment_mb << 20, max_message_bytes: 64 << 20, ..LogConfig::default() }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Writes `total_mb` of batches into a fresh partition and drops it without closing it, as
/// a crash would. Every append reuses one buffer, as a broker reuses its request buffer.
fn write_partition(args: &LogPerfArgs) -> anyhow::Result<Written> {
    let codec = Compression::from_name(&args.compression)
        .with_context(|| format!("unknown compression {:?}", args.compression))?;
    anyhow::ensure!(
        args.batch_records > 0 && args.record_size > 0,
        "--batch-records and --record-size must be positive"
    );
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let now = SystemClock.now_ms();
    let (mut log, _) = Log::open(args.dir.join("perf-0"), config(args), LogOpenOptions::new(now))?;
    // Values are pseudo-random so that compression has realistic work to do.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut builder = RecordBatchBuilder::new(codec);
    for i in 0..args.batch_records {
        let value: Vec<u8> = (0..args.record_size)
            .map(|j| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly text-like bytes: compressible about as much as JSON is.
                if j % 4 == 0 { (state % 256) as u8 } else { b'a' + (state % 16) as u8 }
            })
            .collect();
        builder.append(now + i as i64, None, Some(&value), &[]);
    }
    let mut batch = builder.build();
    let batches = ((args.total_mb << 20) / batch.len() as u64).max(1);
    let start = Instant::now();
    for _ in 0..batches {
        log.append_as_leader(&mut batch, 0, AppendOrigin::Client, now)?;
    }
    let append_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    log.flush(now)?;
    let flush_secs = start.elapsed().as_secs_f64();
    let written = Written {
        records: batches * args.batch_records as u64,
        bytes: batches * batch.len() as u64,
        append_secs,
        flush_secs,
    };
    drop(log);
    Ok(written)
}

/// Reads the whole partition front to back in 1 MiB fetches, copying each file range into
/// a reused buffer (what a broker does when it cannot use sendfile).
fn read_partition(args: &LogPerfArgs) -> anyhow::Result<(u64, f64)> {
    let now = SystemClock.now_ms();
    let clean = LogOpenOptions { had_clean_shutdown: true, recovery_point: i64::MAX, ..LogOpenOptions::new(now) };
    let (log, _) = Log::open(args.dir.join("perf-0"), config(args), clean)?;
    let mut buf = vec![0u8; 2 << 20];
    let mut bytes = 0u64;
    let mut next = log.log_start_offset();
    let start = Instant::now();
    while next < log.log_end_offset() {
        let info = log.read(next, 1 << 20, None, true)?;
        for range in &info.ranges {
            if buf.len() < range.length as usize {
                buf.resize(range.length as usize, 0);
            }
            range.file.read_exact_at(&mut buf[..range.length as usize], range.position)?;
            bytes += range.length;
            next = range.next_offset;
        }
    }
    Ok((bytes, start.elapsed().as_secs_f64()))
}

fn report(args: &LogPerfArgs, name: &str, figures: &[(&str, f64)]) {
    if args.json {
        let fields: Vec<String> = figures.iter().map(|(k, v)| format!("\"{k}\":{v:.3}")).collect();
        println!(
            "{{\"benchmark\":\"log-{name}\",\"record_size\":{},\"batch_records\":{},\"compression\":\"{}\",{}}}",
            args.record_size,
            args.batch_records,
            args.compression,
            fields.join(",")
        );
    } else {
        println!(
            "log {name}: record_size={} batch_records={} compression={}",
            args.record_size, args.batch_records, args.compression
        );
        for (k, v) in figures {
            println!("  {k:<24} {v:>16.2}");
        }
    }
}

fn maybe_drop_caches(args: &LogPerfArgs) -> anyhow::Result<()> {
    if args.cold {
        let synced = std::process::Command::new("sync").status().context("running sync")?;
        anyhow::ensure!(synced.success(), "sync failed");
        std::fs::write("/proc/sys/vm/drop_caches", "3")
            .context("--cold needs root to write /proc/sys/vm/drop_caches")?;
    }
    Ok(())
}

fn cleanup(args: &LogPerfArgs) -> anyhow::Result<()> {
    if !args.keep {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("removing {}", args.dir.display()))?;
    }
    Ok(())
}

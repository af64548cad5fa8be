//! `freshet log dump`: walks a `.log` segment file batch by batch and prints what it finds,
//! stopping with a clear message at the first damaged byte.

use std::path::PathBuf;

use anyhow::Context;
use freshet::log::record::{BatchRules, RecordBatch, RecordIter};

/// Arguments of `freshet log dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// Segment files (`00000000000000000000.log`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also print every record (offset, timestamp, key and value sizes, headers).
    #[arg(long)]
    records: bool,
}

pub fn run(args: DumpArgs) -> anyhow::Result<()> {
    let mut damaged = false;
    for path in &args.files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        println!("Dumping {} ({} bytes)", path.display(), bytes.len());
        let rules = BatchRules { consecutive_offsets: false, reject_control: false, ..BatchRules::default() };
        let mut position = 0usize;
        while position < bytes.len() {
            let parsed = RecordBatch::parse(&bytes[position..]).and_then(|(b, _)| b.validate(&rules).map(|s| (b, s)));
            let (batch, summary) = match parsed {
                Ok(found) => found,
                Err(e) => {
                    println!("DAMAGED at byte {position}: {e}");
                    damaged = true;
                    break;
                }
            };
            let h = batch.header();
            println!(
                "baseOffset: {} lastOffset: {} count: {} position: {position} size: {} epoch: {} compression: {} \
                 timestampType: {} maxTimestamp: {} producerId: {} producerEpoch: {} baseSequence: {} \
                 isTransactional: {} isControl: {} deleteHorizonMs: {:?} crc: {:#010x} valid: true",
                h.base_offset,
                h.last_offset(),
                summary.records,
                h.size_bytes(),
                h.partition_leader_epoch,
                h.compression().map_or("?", |c| c.name()),
                h.timestamp_type().name(),
                h.max_timestamp,
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.is_transactional(),
                h.is_control(),
                h.delete_horizon_ms(),
                h.crc,
            );
            if args.records {
                let payload = batch.records_payload(1 << 30)?;
                for record in RecordIter::new(&payload, h.records_count) {
                    let r = record?;
                    let headers: Vec<String> =
                        r.headers().map(|hd| String::from_utf8_lossy(hd.key).into_owned()).collect();
                    println!(
                        "| offset: {} timestamp: {} keySize: {} valueSize: {} headerKeys: [{}]",
                        h.base_offset + i64::from(r.offset_delta),
                        batch.record_timestamp(&r),
                        r.key.map_or(-1, |k| k.len() as i64),
                        r.value.map_or(-1, |v| v.len() as i64),
                        headers.join(","),
                    );
                }
            }
            position += h.size_bytes();
        }
    }
    if damaged {
        anyhow::bail!("damaged batches found");
    }
    Ok(())
}

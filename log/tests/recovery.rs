//! Crash recovery: torn tails, flipped bits, lost indexes and foreign files.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use freshet_log::record::{Compression, RecordBatchBuilder};
use freshet_log::storage::{AppendOrigin, Log, LogConfig, LogOpenOptions};

/// A tiny deterministic PRNG (xorshift64*), so a failing trial can be replayed by seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Written {
    base: i64,
    next: i64,
    bytes: Vec<u8>,
}

fn config() -> LogConfig {
    LogConfig { segment_bytes: 4_000, index_interval_bytes: 200, ..LogConfig::default() }
}

/// Writes a log of random batches (random codecs, sizes and leader epochs) and drops it
/// without closing, as a crash would.
fn write_log(dir: &Path, rng: &mut Rng) -> Vec<Written> {
    let (mut log, _) = Log::open(dir, config(), LogOpenOptions::new(T0)).unwrap();
    let codecs = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
    let mut epoch = 0;
    let mut written = Vec::new();
    for i in 0..60 {
        if rng.below(10) == 0 {
            epoch += 1 + rng.below(3) as i32;
        }
        let mut b = RecordBatchBuilder::new(codecs[rng.below(5) as usize]);
        for j in 0..1 + rng.below(5) {
            let value: Vec<u8> = (0..10 + rng.below(200)).map(|_| rng.next() as u8).collect();
            b.append(T0 + i * 10 + j as i64, Some(format!("k{i}-{j}").as_bytes()), Some(&value), &[]);
        }
        let mut bytes = b.build();
        let info = log.append_as_leader(&mut bytes, epoch, AppendOrigin::Client, T0).unwrap();
        written.push(Written { base: info.first_offset, next: info.last_offset + 1, bytes });
    }
    written
}

fn last_segment(dir: &Path) -> (i64, PathBuf) {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let path = logs.pop().unwrap();
    let base = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    (base, path)
}

#[test]
fn hundreds_of_torn_tails_and_bit_flips_never_serve_damaged_data() {
    let trials = 400;
    let mut damaged_trials = 0;
    for trial in 0..trials {
        let seed = 0x9E37_79B9_7F4A_7C15 ^ (trial as u64 + 1);
        let mut rng = Rng(seed);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let written = write_log(&dir, &mut rng);
        let (segment_base, path) = last_segment(&dir);
        let len = std::fs::metadata(&path).unwrap().len();
        let position = rng.below(len);
        let flip = trial % 2 == 1;
        if flip {
            let mut data = std::fs::read(&path).unwrap();
            data[position as usize] ^= 1 << rng.below(8);
            std::fs::write(&path, data).unwrap();
        } else {
            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(position).unwrap();
        }

        // The batch holding the damaged byte, and everything after it, must disappear.
        let mut pos_in_segment = 0u64;
        let mut intact = Vec::new();
        for w in &written {
            if w.base >= segment_base {
                let end = pos_in_segment + w.bytes.len() as u64;
                // A torn batch ends past the cut; a flipped byte lies inside its batch.
                let survives = end <= position;
                pos_in_segment = end;
                if !survives {
                    break;
                }
            }
            intact.push(w);
        }
        let recovery_point = if rng.below(2) == 0 { 0 } else { segment_base };
        let options = LogOpenOptions { recovery_point, ..LogOpenOptions::new(T0) };
        let (log, report) = Log::open(&dir, config(), options).unwrap_or_else(|e| {
            panic!("trial {trial} (seed {seed:#x}, flip={flip}, byte {position}): open failed: {e}")
        });
        let expected_end = intact.last().map_or(0, |w| w.next);
        assert_eq!(log.log_end_offset(), expected_end, "trial {trial} seed {seed:#x} flip={flip} byte {position}");
        let served = if expected_end == 0 {
            Vec::new()
        } else {
            log.read(0, u64::MAX / 2, None, true).unwrap().read_to_vec().unwrap()
        };
        let expected: Vec<u8> = intact.iter().flat_map(|w| w.bytes.iter().copied()).collect();
        assert!(served == expected, "trial {trial} seed {seed:#x}: served bytes differ from the intact prefix");
        if intact.len() < written.len() && flip {
            damaged_trials += 1;
            assert!(report.truncated_bytes > 0, "trial {trial}: damage must be reported");
            let saved = &report.quarantined[0];
            assert!(saved.moved_to.exists(), "trial {trial}: the damaged tail is kept in the quarantine");
            assert!(saved.reason.contains("byte"), "{}", saved.reason);
        }
        // The recovered log accepts new data at its end.
        let mut log = log;
        let info = log.append_as_leader(&mut sized_batch(1, 10, T0), 99, AppendOrigin::Client, T0).unwrap();
        assert_eq!(info.first_offset, expected_end);
    }
    assert!(damaged_trials > trials / 4, "most flips should land in data: {damaged_trials}");
}

#[test]
fn damage_in_an_older_segment_sets_aside_every_later_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let written = write_log(&dir, &mut Rng(7));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 4, "{logs:?}");
    let victim = &logs[1];
    let mut data = std::fs::read(victim).unwrap();
    data[70] ^= 0x10; // inside the first batch's records
    std::fs::write(victim, data).unwrap();

    let (log, report) = Log::open(&dir, config(), LogOpenOptions::new(T0)).unwrap();
    let victim_base: i64 = victim.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(log.log_end_offset(), victim_base);
    assert_eq!(log.segment_count(), 2, "segment 0 and the truncated victim");
    let later = logs.len() - 2;
    assert_eq!(report.quarantined.len(), 1 + later, "{:#?}", report.quarantined);
    for q in &report.quarantined[1..] {
        assert!(q.moved_to.exists() && !q.original.exists());
        assert!(q.reason.contains("follows damage"), "{}", q.reason);
    }
    let served = log.read(0, u64::MAX / 2, None, true).unwrap().read_to_vec().unwrap();
    let expected: Vec<u8> =
        written.iter().take_while(|w| w.next <= victim_base).flat_map(|w| w.bytes.clone()).collect();
    assert_eq!(served, expected);
}

#[test]
fn a_clean_shutdown_skips_recovery_but_still_notices_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let written = write_log(&dir, &mut Rng(11));
    // Close cleanly this time.
    let (mut log, _) = Log::open(&dir, config(), LogOpenOptions::new(T0)).unwrap();
    log.close(T0).unwrap();
    let before = read_all(&log);
    drop(log);
    let clean = LogOpenOptions {
        had_clean_shutdown: true,
        recovery_point: written.last().unwrap().next,
        ..LogOpenOptions::new(T0)
    };
    let (log, report) = Log::open(&dir, config(), clean.clone()).unwrap();
    assert_eq!(report.recovered_segments, 0);
    assert_eq!(read_all(&log), before);
    drop(log);

    // Someone truncates the file after the clean shutdown: the tail check catches it.
    let (_, path) = last_segment(&dir);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();
    let (log, report) = Log::open(&dir, config(), clean).unwrap();
    assert_eq!(report.recovered_segments, 1);
    assert_eq!(log.log_end_offset(), written[written.len() - 2].next);
}

#[test]
fn missing_or_scrambled_indexes_are_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    write_log(&dir, &mut Rng(13));
    let (mut log, _) = Log::open(&dir, config(), LogOpenOptions::new(T0)).unwrap();
    log.close(T0).unwrap();
    let before = read_all(&log);
    let lookups: Vec<_> = (0..5).map(|i| log.offset_for_timestamp(T0 + i * 97).unwrap()).collect();
    drop(log);
    std::fs::remove_file(dir.join(format!("{:020}.index", 0))).unwrap();
    let second = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "index"))
        .min()
        .unwrap();
    let mut scrambled = std::fs::read(&second).unwrap();
    scrambled.reverse();
    std::fs::write(&second, scrambled).unwrap();

    let clean = LogOpenOptions { had_clean_shutdown: true, recovery_point: i64::MAX, ..LogOpenOptions::new(T0) };
    let (log, report) = Log::open(&dir, config(), clean).unwrap();
    assert_eq!(report.recovered_segments, 2);
    // The scrambled index (and its time index) were set aside; the missing one was not.
    let moved: Vec<_> = report.quarantined.iter().map(|q| q.original.clone()).collect();
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert!(moved.contains(&second), "{moved:?}");
    assert!(report.quarantined.iter().all(|q| q.reason.contains("index rebuilt")));
    assert_eq!(read_all(&log), before);
    let after: Vec<_> = (0..5).map(|i| log.offset_for_timestamp(T0 + i * 97).unwrap()).collect();
    assert_eq!(after, lookups);
}

#[test]
fn foreign_files_are_moved_aside_never_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    write_log(&dir, &mut Rng(17));
    std::fs::write(dir.join("notes.txt"), b"my notes").unwrap();
    std::fs::write(dir.join("00000000000000000000.log.bak"), b"backup").unwrap();
    std::fs::create_dir(dir.join("stuff")).unwrap();
    std::fs::write(dir.join("leader-epoch-checkpoint"), b"0\n1\nnot numbers\n").unwrap();

    let (log, report) = Log::open(&dir, config(), LogOpenOptions::new(T0)).unwrap();
    let mut reasons: Vec<(String, String)> = report
        .quarantined
        .iter()
        .map(|q| (q.original.file_name().unwrap().to_string_lossy().into_owned(), q.reason.clone()))
        .collect();
    reasons.sort();
    let names: Vec<&str> = reasons.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["00000000000000000000.log.bak", "leader-epoch-checkpoint", "notes.txt", "stuff"]);
    assert!(reasons[1].1.contains("line 3"), "{:?}", reasons[1]);
    for q in &report.quarantined {
        assert!(q.moved_to.starts_with(tmp.path().join("quarantine")));
        assert!(q.moved_to.exists());
    }
    assert_eq!(std::fs::read(tmp.path().join("quarantine/t-0/notes.txt")).unwrap(), b"my notes");
    assert!(log.log_end_offset() > 0);
}

//! `freshet log dump` against segment files written by the storage engine.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use freshet::log::record::{Compression, Header, RecordBatchBuilder};
use freshet::log::storage::{AppendOrigin, Log, LogConfig, LogOpenOptions};

fn write_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let (mut log, _) = Log::open(dir.join("t-0"), LogConfig::default(), LogOpenOptions::new(0)).unwrap();
    for codec in [Compression::None, Compression::Zstd, Compression::Snappy] {
        let mut b = RecordBatchBuilder::new(codec);
        b.append(1_000, Some(b"key"), Some(b"value"), &[Header { key: b"trace", value: Some(b"1") }]);
        b.append(1_001, None, None, &[]);
        log.append_as_leader(&mut b.build(), 4, AppendOrigin::Client, 2_000).unwrap();
    }
    log.close(2_000).unwrap();
    dir.join("t-0").join("00000000000000000000.log")
}

fn dump(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_freshet")).arg("log").arg("dump").args(args).output().unwrap()
}

#[test]
fn dump_lists_every_batch_and_record() {
    let tmp = tempfile::tempdir().unwrap();
    let segment = write_segment(tmp.path());
    let out = dump(&[segment.as_os_str(), "--records".as_ref()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("valid: true").count(), 3, "{text}");
    assert!(text.contains("baseOffset: 2 lastOffset: 3 count: 2"), "{text}");
    assert!(text.contains("compression: zstd"), "{text}");
    assert!(text.contains("epoch: 4"), "{text}");
    assert!(text.contains("| offset: 5 timestamp: 1001 keySize: -1 valueSize: -1"), "{text}");
    assert!(text.contains("headerKeys: [trace]"), "{text}");
}

#[test]
fn dump_reports_where_a_file_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let segment = write_segment(tmp.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let len = bytes.len();
    bytes[len - 3] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let out = dump(&[segment.as_os_str()]);
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("valid: true").count(), 2, "{text}");
    assert!(text.contains("DAMAGED at byte") && text.contains("CRC32C mismatch"), "{text}");

    let missing = dump(&[tmp.path().join("nope.log").as_os_str()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.log"));
}

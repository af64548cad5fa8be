//! `freshet topics`, `freshet produce` and `freshet consume` against an embedded broker.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use freshet::{Broker, BrokerConfig};

struct Cluster {
    runtime: tokio::runtime::Runtime,
    broker: Option<freshet::RunningBroker>,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let mut config = BrokerConfig::embedded(dir.path());
        config.auto_create_topics = false;
        let broker = runtime.block_on(Broker::start(config)).unwrap();
        let addr = broker.local_addr().to_string();
        Self { runtime, broker: Some(broker), addr, _dir: dir }
    }

    /// Runs `freshet ARGS -b ADDR` with `stdin`.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_freshet"))
            .args(args)
            .env("FRESHET_BOOTSTRAP", &self.addr)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "freshet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "freshet {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(broker) = self.broker.take() {
            self.runtime.block_on(broker.shutdown()).unwrap();
        }
    }
}

#[test]
fn topics_lifecycle() {
    let c = Cluster::start();
    assert_eq!(
        c.ok(&["topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=60000"], ""),
        "Created topic orders.\n"
    );
    c.ok(&["topics", "create", "audit", "--partitions", "1"], "");
    let e = c.fails(&["topics", "create", "orders", "--partitions", "3"], "");
    assert!(e.contains("TopicAlreadyExists"), "{e}");
    c.ok(&["topics", "create", "orders", "--if-not-exists"], "");
    assert_eq!(c.ok(&["topics", "list"], ""), "audit\norders\n");
    c.ok(
        &[
            "topics",
            "alter",
            "orders",
            "--partitions",
            "5",
            "--config",
            "cleanup.policy=compact",
            "--delete-config",
            "retention.ms",
        ],
        "",
    );
    let described = c.ok(&["topics", "describe", "orders"], "");
    assert!(
        described.contains("PartitionCount: 5") && described.contains("Configs: cleanup.policy=compact\n"),
        "{described}"
    );
    assert_eq!(described.matches("\tTopic: orders\tPartition: ").count(), 5, "{described}");
    c.ok(&["topics", "delete", "orders"], "");
    let e = c.fails(&["topics", "describe", "orders"], "");
    assert!(e.contains("UnknownTopicOrPartition") && e.contains("orders"), "{e}");
    assert_eq!(c.ok(&["topics", "list"], ""), "audit\n", "describing a deleted topic does not recreate it");
}

#[test]
fn produce_and_consume_lines_with_keys_headers_and_formats() {
    let c = Cluster::start();
    c.ok(&["topics", "create", "lines", "--partitions", "1"], "");
    let input: String = (0..20).map(|i| format!("k{i}|value {i}\n")).collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &input).unwrap();
    let started = std::time::Instant::now();
    let path = file.path().to_str().unwrap();
    let out = c.run(
        &["produce", "lines", "--file", path, "--key-separator", "|", "--header", "src=test", "--rate", "100"],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() >= std::time::Duration::from_millis(150), "--rate 100 paces 20 records over 0.2 s");
    c.ok(&["produce", "lines"], "plain\n");

    let all = c.ok(&["consume", "lines", "--from-beginning", "-e", "-f", "%o %k=%s %h|"], "");
    let expected: String = (0..20).map(|i| format!("{i} k{i}=value {i} src=test|")).collect::<String>() + "20 =plain |";
    assert_eq!(all, expected);
    assert_eq!(c.ok(&["consume", "lines", "--offset", "18", "-e"], ""), "value 18\nvalue 19\nplain\n");
    assert_eq!(c.ok(&["consume", "lines", "--offset", "-2", "-e", "-f", "%o\\n"], ""), "19\n20\n");
    assert_eq!(c.ok(&["consume", "lines", "--from-beginning", "-c", "2", "-f", "%s,"], ""), "value 0,value 1,");
    assert_eq!(c.ok(&["consume", "lines", "--from-timestamp", "4102444800000", "-e"], ""), "", "nothing that late");
    assert_eq!(c.ok(&["consume", "lines", "--from-end", "-e"], ""), "");
}

#[test]
fn bad_arguments_name_the_argument() {
    let c = Cluster::start();
    c.ok(&["topics", "create", "t", "--partitions", "1"], "");
    let e = c.fails(&["consume", "t", "--bogus"], "");
    assert!(e.contains("'--bogus'") && e.contains("Usage: freshet consume"), "{e}");
    let e = c.fails(&["consume", "t", "--from-beginning", "--offset", "3"], "");
    assert!(e.contains("--from-beginning") && e.contains("--offset"), "{e}");
    let e = c.fails(&["consume", "t", "-f", "%q"], "");
    assert!(e.contains("unknown token %q"), "{e}");
    let e = c.fails(&["produce", "t", "--key-separator", ":"], "no-separator-here\n");
    assert!(e.contains("line 1: no key separator"), "{e}");
    let e = c.fails(&["produce", "t", "--header", "novalue"], "");
    assert!(e.contains("--header") && e.contains("expected KEY=VALUE"), "{e}");
    let e = c.fails(&["produce", "t", "-X", "acks=2"], "x\n");
    assert!(e.contains("acks"), "{e}");
    let e = c.fails(&["produce", "missing"], "x\n");
    assert!(e.contains("UnknownTopicOrPartition") && e.contains("missing"), "{e}");
    let e = c.fails(&["consume", "t", "-p", "7"], "");
    assert!(e.contains("no partition 7"), "{e}");
    let e = c.fails(&["perf", "produce", "--topic", "t", "--throughput", "0"], "");
    assert!(e.contains("--throughput"), "{e}");
    let e = c.fails(&["topics", "list", "-b", "127.0.0.1:1", "-X", "socket.connection.setup.timeout.ms=500"], "");
    assert!(e.contains("no broker reachable"), "{e}");
}

#[test]
fn perf_tools_report_throughput_and_latency() {
    let c = Cluster::start();
    c.ok(&["topics", "create", "perf", "--partitions", "2"], "");
    let out = c.ok(
        &[
            "perf",
            "produce",
            "--topic",
            "perf",
            "--num-records",
            "20000",
            "--record-size",
            "50",
            "--producer-props",
            "acks=1",
            "linger.ms=1",
        ],
        "",
    );
    assert!(out.starts_with("20000 records sent, ") && out.contains("ms 99.9th"), "{out}");
    let json = c.ok(&["perf", "consume", "--topic", "perf", "--num-records", "20000", "--json"], "");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["records"], 20000);
    assert!(parsed["records_per_sec"].as_f64().unwrap() > 0.0);
    let json = c.ok(&["perf", "e2e", "--topic", "perf", "--num-records", "500", "--throughput", "2000", "--json"], "");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["records"], 500);
    let p99 = parsed["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 10_000.0, "{json}");
}

//! `freshet topics`, `cluster status`, `produce` and `consume` against an embedded broker.

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
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
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
fn cluster_status_shows_the_single_voter_quorum_its_broker_and_healthy_partitions() {
    let c = Cluster::start();
    c.ok(&["topics", "create", "orders", "--partitions", "2"], "");
    let status = c.ok(&["cluster", "status"], "");
    assert!(status.contains("LeaderId:        1\n"), "{status}");
    assert!(status.contains("CurrentVoters:   [1]\n"), "{status}");
    assert!(status.contains("MaxFollowerLag:  0\n"), "{status}");
    assert!(status.lines().any(|l| l.trim_start().starts_with('1') && l.ends_with("Leader")), "{status}");
    assert!(status.contains(&format!("  1\t{}", c.addr)), "{status}");
    assert!(status.contains("Partitions: 2 (0 under-replicated, 0 offline)"), "{status}");
}

#[test]
fn reassign_and_elect_leaders_follow_kafkas_tools() {
    let c = Cluster::start();
    c.ok(&["topics", "create", "orders", "--partitions", "2"], "");
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    std::fs::write(&plan, r#"{"version":1,"partitions":[{"topic":"orders","partition":1,"replicas":[1]}]}"#).unwrap();
    let out = c.ok(&["topics", "reassign", "--execute", "--reassignment-json-file", plan_arg], "");
    assert_eq!(out, "Reassignment of partition orders-1 started.\n");
    let out = c.ok(&["topics", "reassign", "--verify", "--reassignment-json-file", plan_arg], "");
    assert_eq!(out, "Reassignment of partition orders-1 is completed.\n");
    assert_eq!(c.ok(&["topics", "reassign", "--list"], ""), "");
    let e = c.fails(&["topics", "reassign", "--cancel", "--reassignment-json-file", plan_arg], "");
    assert!(e.contains("1 of 1 partitions failed"), "{e}");

    std::fs::write(&plan, r#"{"version":1,"partitions":[{"topic":"orders","partition":0,"replicas":[1,7]}]}"#).unwrap();
    let out = c.run(&["topics", "reassign", "--execute", "--reassignment-json-file", plan_arg], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && stdout.contains("broker 7 is not registered"), "{stdout}");
    std::fs::write(&plan, r#"{"partitions":[{"topic":"orders","replicas":[1]}]}"#).unwrap();
    let e = c.fails(&["topics", "reassign", "--execute", "--reassignment-json-file", plan_arg], "");
    assert!(e.contains("partitions[0] has no \"partition\""), "{e}");
    let e = c.fails(&["topics", "reassign", "--execute"], "");
    assert!(e.contains("--reassignment-json-file"), "{e}");

    let out = c.ok(&["topics", "elect-leaders", "--election-type", "preferred", "--all-topic-partitions"], "");
    assert_eq!(out, "Valid replica already elected for all partitions.\n");
    let out = c.run(&["topics", "elect-leaders", "--election-type", "preferred", "--topic", "orders"], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && stdout.matches("ElectionNotNeeded").count() == 2, "{stdout}");
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

/// The lag column of `freshet groups describe` for each partition of `topic`.
fn lags(describe: &str, topic: &str) -> Vec<String> {
    describe
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(topic))
        .map(|l| l.split_whitespace().nth(5).unwrap().to_string())
        .collect()
}

#[test]
fn groups_list_describe_reset_and_delete() {
    let c = Cluster::start();
    c.ok(&["topics", "create", "clicks", "--partitions", "2"], "");
    let lines: String = (0..20).map(|i| format!("k{i}:v{i}\n")).collect();
    c.ok(&["produce", "clicks", "--key-separator", ":"], &lines);

    // A group member reads 12 records and commits exactly those.
    let out = c.ok(&["consume", "clicks", "--group", "readers", "--from-beginning", "-c", "12"], "");
    assert_eq!(out.lines().count(), 12);
    assert_eq!(c.ok(&["groups", "list"], ""), "readers\n");
    assert!(c.ok(&["groups", "list", "--state"], "").contains("Empty"));
    let described = c.ok(&["groups", "describe", "--group", "readers"], "");
    assert!(described.contains("has no active members"), "{described}");
    assert!(described.contains("CURRENT-OFFSET") && described.contains("LOG-END-OFFSET"), "{described}");
    let lag: i64 = lags(&described, "clicks").iter().map(|l| l.parse::<i64>().unwrap()).sum();
    assert_eq!(lag, 8, "{described}");

    // The next member of the group starts where the first stopped.
    let out = c.ok(&["consume", "clicks", "--group", "readers", "-c", "8"], "");
    assert_eq!(out.lines().count(), 8);
    let lag: Vec<String> = lags(&c.ok(&["groups", "describe", "--group", "readers"], ""), "clicks");
    assert_eq!(lag, ["0", "0"]);

    // Reset: a dry run changes nothing; --execute does.
    let dry = c.ok(&["groups", "reset-offsets", "--group", "readers", "--topic", "clicks", "--to-earliest"], "");
    assert!(dry.contains("Dry run"), "{dry}");
    assert_eq!(lags(&c.ok(&["groups", "describe", "--group", "readers"], ""), "clicks"), ["0", "0"]);
    c.ok(&["groups", "reset-offsets", "--group", "readers", "--all-topics", "--shift-by", "-3", "--execute"], "");
    let lag: i64 = lags(&c.ok(&["groups", "describe", "--group", "readers"], ""), "clicks")
        .iter()
        .map(|l| l.parse::<i64>().unwrap())
        .sum();
    assert_eq!(lag, 6, "shifted back 3 in each partition");
    c.ok(
        &["groups", "reset-offsets", "--group", "readers", "--topic", "clicks:0", "--to-offset", "0", "--execute"],
        "",
    );
    c.ok(
        &[
            "groups",
            "reset-offsets",
            "--group",
            "readers",
            "--topic",
            "clicks",
            "--to-datetime",
            "2000-01-01T00:00:00",
            "--execute",
        ],
        "",
    );
    let out = c.ok(&["consume", "clicks", "--group", "readers", "-c", "20"], "");
    assert_eq!(out.lines().count(), 20, "everything again after a reset to a time before the first record");

    // Refused while the group has a member.
    let mut member = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["consume", "clicks", "--group", "readers", "-c", "1"])
        .env("FRESHET_BOOTSTRAP", &c.addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !c.ok(&["groups", "list", "--state"], "").contains("Stable") {
        assert!(std::time::Instant::now() < deadline, "the member never joined");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let e =
        c.fails(&["groups", "reset-offsets", "--group", "readers", "--all-topics", "--to-earliest", "--execute"], "");
    assert!(e.contains("inactive") && e.contains("Stable"), "{e}");
    let described = c.ok(&["groups", "describe", "--group", "readers"], "");
    assert!(
        described.contains("/127.0.0.1") && described.contains("freshet"),
        "owner, host and client id: {described}"
    );
    // One more record lets the member finish (-c 1), commit and leave the group.
    c.ok(&["produce", "clicks"], "last\n");
    assert!(member.wait().unwrap().success());

    // Bad input: no target, an unknown group, a bad time; deleting works once.
    let e = c.fails(&["groups", "reset-offsets", "--group", "readers", "--all-topics"], "");
    assert!(e.contains("--to-earliest"), "{e}");
    let e = c.fails(&["groups", "describe", "--group", "nobody"], "");
    assert!(e.contains("does not exist"), "{e}");
    let e = c.fails(&["groups", "reset-offsets", "--group", "readers", "--all-topics", "--to-datetime", "soon"], "");
    assert!(e.contains("YYYY-MM-DD"), "{e}");
    assert_eq!(c.ok(&["groups", "delete", "--group", "readers"], ""), "Deleted group 'readers'.\n");
    let e = c.fails(&["groups", "delete", "--group", "readers"], "");
    assert!(e.contains("GroupIdNotFound"), "{e}");
}

"""Single-partition produce and fetch throughput of a Kafka-compatible broker, driven by
confluent-kafka (librdkafka), for BENCHMARKS.md.

Runs each broker (a fresh process and data directory per round) and interleaves them
round by round, so the ratio is measured in the same run on the same machine state.

    python bench/broker_throughput.py --freshet PATH --tansu PATH [--rounds 5] [--json]
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

START_TIMEOUT_S = 60
# (record size, records): about 100 MB and 500 MB of values.
SHAPES = [(100, 1_000_000), (1024, 500_000)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, deadline):
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on {port} within {START_TIMEOUT_S}s")


class Broker:
    def __init__(self, name, argv_for_port):
        self.name = name
        self.argv_for_port = argv_for_port
        self.proc = None
        self.tmp = None

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix=f"bench-{self.name}-")
        self.port = free_port()
        log = open(os.path.join(self.tmp, "server.log"), "wb")
        self.proc = subprocess.Popen(self.argv_for_port(self.port, self.tmp), stdout=log, stderr=log)
        wait_for_port(self.port, self.proc, time.time() + START_TIMEOUT_S)
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def cpu_s(self):
        """User plus system CPU seconds the broker process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None


def freshet(path):
    return Broker(
        "freshet",
        lambda port, tmp: [
            path, "server",
            "--set", f"log.dirs={tmp}/data",
            "--set", f"listeners=PLAINTEXT://127.0.0.1:{port}",
        ],
    )


def tansu(path):
    return Broker(
        "tansu",
        lambda port, tmp: [
            path, "broker",
            "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
            "--storage-engine", "memory://tansu/",
        ],
    )


def create_topic(bootstrap, topic):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=30)
    # Wait until metadata shows the partition with a leader.
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and 0 in t.partitions and t.partitions[0].leader >= 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"topic {topic} never got a leader")


def produce(bootstrap, topic, size, count, acks="1"):
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "compression.type": "none",
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "enable.idempotence": False,
        # Only failures reach Python: a callback per record would measure the interpreter.
        "delivery.report.only.error": True,
    })
    value = b"x" * size
    failures = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(err)

    started = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.001)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    if remaining or failures:
        raise RuntimeError(f"{remaining} undelivered, {len(failures)} failed: {failures[:3]}")
    return elapsed


def consume(bootstrap, topic, size, count):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bench",
        "enable.auto.commit": False,
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 10_485_760,
        "queued.max.messages.kbytes": 1_048_576,
        # librdkafka otherwise stops prefetching at 100,000 queued messages and then
        # backs off for a whole second (fetch.queue.backoff.ms), which measures the client.
        "queued.min.messages": 10_000_000,
        "fetch.queue.backoff.ms": 1,
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    deadline = time.time() + 300
    started = time.perf_counter()
    while seen < count and time.time() < deadline:
        batch = consumer.consume(num_messages=10_000, timeout=1.0)
        if not batch:
            continue
        for m in batch:
            if m.error() is not None:
                raise RuntimeError(f"consume error: {m.error()}")
        # Spot-check contents at each end of the batch; the count is checked at the end.
        for m in (batch[0], batch[-1]):
            if len(m.value()) != size:
                raise RuntimeError(f"a {len(m.value())}-byte value, expected {size}")
        seen += len(batch)
    elapsed = time.perf_counter() - started
    consumer.close()
    if seen != count:
        raise RuntimeError(f"consumed {seen} of {count}")
    return elapsed


def run_once(broker, size, count):
    with broker as b:
        topic = f"bench-{size}"
        create_topic(b.bootstrap, topic)
        cpu0 = b.cpu_s()
        produce_s = produce(b.bootstrap, topic, size, count)
        cpu1 = b.cpu_s()
        consume_s = consume(b.bootstrap, topic, size, count)
        cpu2 = b.cpu_s()
        return {"produce_s": produce_s, "consume_s": consume_s, "produce_cpu_s": cpu1 - cpu0,
                "consume_cpu_s": cpu2 - cpu1, "peak_rss_mib": b.rss_mib()}


def table_cells(rows):
    """(row label, workload, Freshet figures, Tansu figures) for each table line."""
    for row in rows:
        label = f"{row['records']:,} x {row['record_bytes']} B"
        for kind in ("produce", "consume"):
            yield label, kind, row["freshet"], row["tansu"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--freshet", required=True)
    parser.add_argument("--tansu", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import confluent_kafka

    brokers = {"freshet": lambda: freshet(args.freshet), "tansu": lambda: tansu(args.tansu)}
    # A discarded warm-up per broker: the first run after a quiet period pays for page
    # reclaim and cold caches, on either side.
    for name in brokers:
        run_once(brokers[name](), 100, 100_000)
    results = {}
    for size, count in SHAPES:
        for r in range(args.rounds):
            # Alternate which broker goes first, so neither always gets the warmer machine.
            order = list(brokers) if r % 2 == 0 else list(reversed(brokers))
            for name in order:
                res = run_once(brokers[name](), size, count)
                results.setdefault((size, name), []).append(res)
                print(f"  {name} {size} B round {r + 1}: produce {count / res['produce_s']:,.0f} rec/s "
                      f"({res['produce_cpu_s']:.2f} s broker CPU), consume {count / res['consume_s']:,.0f} rec/s "
                      f"({res['consume_cpu_s']:.2f} s broker CPU)", file=sys.stderr)

    rows = []
    for size, count in SHAPES:
        row = {"record_bytes": size, "records": count}
        for name in brokers:
            runs = results[(size, name)]
            p = statistics.median(count / x["produce_s"] for x in runs)
            c = statistics.median(count / x["consume_s"] for x in runs)
            rss = max((x["peak_rss_mib"] or 0) for x in runs)
            row[name] = {"produce_rps": p, "consume_rps": c, "produce_mbps": p * size / 1e6,
                         "consume_mbps": c * size / 1e6, "peak_rss_mib": rss,
                         "produce_cpu_s": statistics.median(x["produce_cpu_s"] for x in runs),
                         "consume_cpu_s": statistics.median(x["consume_cpu_s"] for x in runs)}
        rows.append(row)

    if args.json:
        print(json.dumps({"rounds": args.rounds, "confluent_kafka": confluent_kafka.version()[0],
                          "librdkafka": confluent_kafka.libversion()[0], "machine": platform.platform(),
                          "results": rows}, indent=2))
        return
    print(f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]}), "
          f"median of {args.rounds} interleaved rounds, 1 partition, acks=1, no compression\n")
    print("| records | workload | Freshet records/s (MB/s) | Tansu records/s (MB/s) | Freshet / Tansu |")
    print("|---|---|---:|---:|---:|")
    for label, kind, f, t in table_cells(rows):
        fr, tr = f[f"{kind}_rps"], t[f"{kind}_rps"]
        print(f"| {label} | {kind} | {fr:,.0f} ({f[f'{kind}_mbps']:.1f}) | {tr:,.0f} ({t[f'{kind}_mbps']:.1f}) "
              f"| {fr / tr:.2f} |")
    print()
    print("Broker CPU time (user + system) for the same work, and peak resident memory:\n")
    print("| records | workload | Freshet CPU | Tansu CPU | Tansu / Freshet |")
    print("|---|---|---:|---:|---:|")
    for label, kind, f, t in table_cells(rows):
        fc, tc = f[f"{kind}_cpu_s"], t[f"{kind}_cpu_s"]
        ratio = f"{tc / fc:.1f}" if fc > 0 else "n/a"
        print(f"| {label} | {kind} | {fc:.2f} s | {tc:.2f} s | {ratio} |")
    print()
    print("| records | Freshet peak RSS | Tansu peak RSS |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['records']:,} x {row['record_bytes']} B | {row['freshet']['peak_rss_mib']:.0f} MiB "
              f"| {row['tansu']['peak_rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()

"""Replication benchmarks for BENCHMARKS.md, driven by confluent-kafka (librdkafka):

- throughput: produce to a 3-node cluster with replication factor 3 and acks=all,
  relative to replication factor 1 and acks=1 on one node, rounds interleaved so the
  ratio is measured in the same run;
- failover: kill -9 of a partition leader under an acks=all producer, to the first
  acknowledged write after it (median of ROUNDS);
- sigterm: SIGTERM (controlled shutdown) of the leader under the same producer, the
  longest pause between two acknowledged writes;
- catchup: a follower that missed CATCHUP_MIB rejoins; the rate at which it is back in the
  ISR, relative to a consumer reading the same bytes from the leader.

    python bench/cluster_bench.py --freshet PATH [--rounds 10] [--only throughput,failover,...]
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from broker_throughput import START_TIMEOUT_S, consume, produce, wait_for_port

TOPIC = "bench"


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Nodes:
    """`count` freshet server processes in combined mode (one alone: a single node)."""

    def __init__(self, binary, count, extra=()):
        self.binary, self.count, self.extra = binary, count, list(extra)
        self.tmp = tempfile.mkdtemp(prefix="bench-cluster-")
        self.clients = free_ports(count)
        self.controllers = free_ports(count)
        self.procs = {}

    def settings(self, node):
        i = node - 1
        s = [f"node.id={node}", f"log.dirs={self.tmp}/node-{node}"]
        if self.count == 1:
            return s + [f"listeners=PLAINTEXT://127.0.0.1:{self.clients[i]}"] + self.extra
        voters = ",".join(f"{n + 1}@127.0.0.1:{p}" for n, p in enumerate(self.controllers))
        return s + [
            f"listeners=PLAINTEXT://127.0.0.1:{self.clients[i]},CONTROLLER://127.0.0.1:{self.controllers[i]}",
            f"controller.quorum.voters={voters}",
        ] + self.extra

    def start(self, node):
        argv = [self.binary, "server"]
        for setting in self.settings(node):
            argv += ["--set", setting]
        log = open(os.path.join(self.tmp, f"node-{node}.log"), "ab")
        self.procs[node] = subprocess.Popen(argv, stdout=log, stderr=log)

    def wait(self, node):
        wait_for_port(self.clients[node - 1], self.procs[node], time.time() + START_TIMEOUT_S)

    def __enter__(self):
        for node in range(1, self.count + 1):
            self.start(node)
        for node in range(1, self.count + 1):
            self.wait(node)
        deadline = time.time() + START_TIMEOUT_S
        while len(admin(self.bootstrap).list_topics(timeout=10).brokers) < self.count:
            if time.time() > deadline:
                raise RuntimeError(f"fewer than {self.count} brokers registered within {START_TIMEOUT_S}s")
            time.sleep(0.1)
        return self

    def restart(self, node):
        self.start(node)
        self.wait(node)

    def kill(self, node, sig):
        proc = self.procs.pop(node)
        proc.send_signal(sig)
        proc.wait(timeout=60)

    def __exit__(self, *exc):
        for proc in self.procs.values():
            proc.kill()
            proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def bootstrap(self):
        return ",".join(f"127.0.0.1:{p}" for p in self.clients)

    def rss_mib(self, node):
        with open(f"/proc/{self.procs[node].pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None


def admin(bootstrap):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, rf, configs=None):
    from confluent_kafka.admin import NewTopic

    a = admin(bootstrap)
    futures = a.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=rf, config=configs or {})])
    futures[TOPIC].result(timeout=60)
    wait_partition(bootstrap, lambda leader, isr: leader >= 0 and len(isr) == rf, "the topic is fully in sync")


def partition_state(bootstrap):
    try:
        md = admin(bootstrap).list_topics(TOPIC, timeout=5)
    except Exception:  # a node that was just killed may be the one asked
        return -1, []
    t = md.topics.get(TOPIC)
    if t is None or t.error is not None or 0 not in t.partitions:
        return -1, []
    p = t.partitions[0]
    return p.leader, list(p.isrs)


def wait_partition(bootstrap, check, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        leader, isr = partition_state(bootstrap)
        if check(leader, isr):
            return leader, isr
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting until {what}")


class SteadyProducer:
    """An idempotent acks=all producer sending one small record every millisecond or so,
    noting when each acknowledgement arrives."""

    def __init__(self, bootstrap):
        from confluent_kafka import Producer

        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "message.timeout.ms": 120_000,
            "topic.metadata.refresh.interval.ms": 1000,
            "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 100,
        })
        self.acks = []
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def on_delivery(self, err, _msg):
        if err is None:
            self.acks.append(time.monotonic())
        else:
            self.errors.append(err)

    def run(self):
        while not self.stop.is_set():
            try:
                self.producer.produce(TOPIC, b"v" * 100, partition=0, on_delivery=self.on_delivery)
            except BufferError:
                pass
            self.producer.poll(0.001)
        self.producer.flush(120)

    def close(self):
        self.stop.set()
        self.thread.join(180)
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} writes failed: {self.errors[:3]}")

    def first_ack_after(self, t, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [a for a in self.acks[-1000:] if a > t]
            if later:
                return min(later)
            time.sleep(0.01)
        raise RuntimeError("no write was acknowledged after the fault")

    def longest_gap(self, start, end):
        window = [a for a in self.acks if start <= a <= end]
        return max((b - a for a, b in zip(window, window[1:])), default=float("inf"))


def bench_throughput(binary, rounds, size=1024, count=200_000):
    ratios, rows = [], []
    for r in range(rounds):
        with Nodes(binary, 1) as single:
            create_topic(single.bootstrap, 1)
            rf1 = produce(single.bootstrap, TOPIC, size, count)
        with Nodes(binary, 3) as cluster:
            create_topic(cluster.bootstrap, 3, {"min.insync.replicas": "2"})
            rf3 = produce(cluster.bootstrap, TOPIC, size, count, acks="all")
        mib = size * count / 2**20
        rows.append((r, mib / rf1, mib / rf3))
        ratios.append(rf1 / rf3)
        print(f"  round {r}: RF1 acks=1 {mib / rf1:.1f} MiB/s, RF3 acks=all {mib / rf3:.1f} MiB/s", flush=True)
    print(f"throughput: {count:,} x {size} B records; RF3 acks=all / RF1 acks=1 = "
          f"{statistics.median(ratios):.2f} (median of {rounds}; rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


def bench_faults(binary, rounds, sig, name):
    results = []
    with Nodes(binary, 3) as cluster:
        create_topic(cluster.bootstrap, 3, {"min.insync.replicas": "2"})
        producer = SteadyProducer(cluster.bootstrap)
        time.sleep(2)
        for r in range(rounds):
            leader, _ = wait_partition(cluster.bootstrap, lambda l, isr: l >= 0 and len(isr) == 3, "all in sync")
            time.sleep(1)
            t0 = time.monotonic()
            cluster.kill(leader, sig)
            if sig == signal.SIGKILL:
                first = producer.first_ack_after(t0 + 0.02)
                results.append(first - t0)
                print(f"  round {r}: killed leader {leader}; first ack after {first - t0:.2f} s", flush=True)
            else:
                # The leader stops only once its leadership moved; the pause is what
                # the producer saw around it.
                time.sleep(2)
                gap = producer.longest_gap(t0 - 0.5, time.monotonic())
                results.append(gap)
                print(f"  round {r}: SIGTERM to leader {leader}; longest pause {gap * 1000:.0f} ms", flush=True)
            cluster.restart(leader)
        producer.close()
    unit = "s" if sig == signal.SIGKILL else "ms"
    scale = 1 if sig == signal.SIGKILL else 1000
    print(f"{name}: median {statistics.median(results) * scale:.2f} {unit}, max {max(results) * scale:.2f} {unit} "
          f"over {rounds} rounds")


def bench_catchup(binary, mib):
    size = 1024
    count = mib * 1024
    with Nodes(binary, 3) as cluster:
        create_topic(cluster.bootstrap, 3)
        leader, isr = partition_state(cluster.bootstrap)
        follower = next(n for n in isr if n != leader)
        cluster.kill(follower, signal.SIGTERM)
        wait_partition(cluster.bootstrap, lambda l, isr: follower not in isr, "the stopped follower left the ISR")
        produce(cluster.bootstrap, TOPIC, size, count)
        t0 = time.monotonic()
        cluster.restart(follower)
        wait_partition(cluster.bootstrap, lambda l, isr: follower in isr, "the follower is back in the ISR", 600)
        catchup = time.monotonic() - t0
        read = consume(cluster.bootstrap, TOPIC, size, count)
    print(f"catchup: {mib} MiB: follower back in the ISR after {catchup:.1f} s ({mib / catchup:.0f} MiB/s, "
          f"including its restart); a consumer read it in {read:.1f} s ({mib / read:.0f} MiB/s); "
          f"ratio {read / catchup:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freshet", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--catchup-mib", type=int, default=1024)
    parser.add_argument("--only", default="throughput,failover,sigterm,catchup")
    args = parser.parse_args()
    chosen = args.only.split(",")
    if "throughput" in chosen:
        bench_throughput(args.freshet, min(args.rounds, 5))
    if "failover" in chosen:
        bench_faults(args.freshet, args.rounds, signal.SIGKILL, "failover (kill -9 of the leader)")
    if "sigterm" in chosen:
        bench_faults(args.freshet, min(args.rounds, 5), signal.SIGTERM, "controlled shutdown (SIGTERM of the leader)")
    if "catchup" in chosen:
        bench_catchup(args.freshet, args.catchup_mib)


if __name__ == "__main__":
    main()

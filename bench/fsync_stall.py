"""Produce latency on a partition while its 1 GiB segment is fsynced, for BENCHMARKS.md.

For each `freshet` binary given (labelled, so two builds compare in the same run): a
fresh broker and data directory; a topic of one partition with 1 GiB segments; about
1 GiB appended with `freshet perf produce` (dirty in the page cache); then a probe sends
one 100-byte record at a time (acks=1, nothing else in flight) and times each, while
`flush.ms` is set on the topic so that the broker's flush thread fsyncs the segment.
Reports the probe's latency percentiles and the longest stall, round by round.

    python bench/fsync_stall.py --binary before=PATH --binary after=PATH [--rounds 3] [--json]
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

START_TIMEOUT_S = 60
FILL_RECORDS = 1_000_000
FILL_RECORD_BYTES = 1024
PROBE_SECONDS = 12
FLUSH_AFTER_S = 2.0


class Server:
    def __init__(self, binary, data_root):
        self.binary = binary
        self.tmp = tempfile.mkdtemp(prefix="fsync-stall-", dir=data_root)
        self.proc = None
        self.port = None

    def __enter__(self):
        log = open(os.path.join(self.tmp, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [self.binary, "server", "--set", f"log.dirs={self.tmp}/data",
             "--set", "listeners=PLAINTEXT://127.0.0.1:0", "--set", "log.flush.scheduler.interval.ms=100"],
            stdout=subprocess.PIPE, stderr=log)
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"freshet server listening on"):
                self.port = int(line.strip().rsplit(b":", 1)[1])
                return self
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"{self.binary} did not start (see {self.tmp}/server.log)")

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cli(self, *args):
        env = dict(os.environ, FRESHET_BOOTSTRAP=f"127.0.0.1:{self.port}")
        return subprocess.run([self.binary, *args], env=env, check=True, capture_output=True, text=True).stdout


def probe(bootstrap, seconds, latencies):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": 1,
                         "max.in.flight.requests.per.connection": 1})
    value = b"p" * 100
    end = time.time() + seconds
    while time.time() < end:
        started = time.perf_counter()
        producer.produce("stall", value=value)
        producer.flush(60)
        latencies.append((time.perf_counter() - started) * 1000)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def round_for(label, binary, data_root):
    with Server(binary, data_root) as server:
        server.cli("topics", "create", "stall", "--partitions", "1", "--config", "segment.bytes=1073741824")
        filled = time.time()
        server.cli("perf", "produce", "--topic", "stall", "--num-records", str(FILL_RECORDS),
                   "--record-size", str(FILL_RECORD_BYTES), "--producer-props", "acks=1", "linger.ms=5")
        fill_s = time.time() - filled
        latencies = []
        thread = threading.Thread(target=probe, args=(f"127.0.0.1:{server.port}", PROBE_SECONDS, latencies))
        thread.start()
        time.sleep(FLUSH_AFTER_S)
        server.cli("topics", "alter", "stall", "--config", "flush.ms=100")
        thread.join()
    return {
        "binary": label,
        "fill_s": round(fill_s, 1),
        "requests": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "p999_ms": round(percentile(latencies, 0.999), 2),
        "max_ms": round(max(latencies), 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", action="append", required=True, help="LABEL=PATH of a freshet binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-root", default=os.path.expanduser("~/.cache/freshet"),
                        help="where the brokers' data directories go (a real disk, not tmpfs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    binaries = [b.split("=", 1) for b in args.binary]
    results = []
    for r in range(args.rounds):
        for label, path in binaries:
            result = round_for(label, path, args.data_root)
            result["round"] = r + 1
            results.append(result)
            print(json.dumps(result), file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| round | binary | fill (1 GiB) s | requests | p50 ms | p99 ms | p99.9 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for x in results:
        print(f"| {x['round']} | {x['binary']} | {x['fill_s']} | {x['requests']} | {x['p50_ms']} | {x['p99_ms']} "
              f"| {x['p999_ms']} | {x['max_ms']} |")


if __name__ == "__main__":
    main()

"""Freshet's client (`freshet perf produce|consume|e2e`) against `freshet server`, with
confluent-kafka's producer on the same broker and Freshet's client on the Tansu broker,
all in the same run, for BENCHMARKS.md.

Each round starts fresh broker processes and measures, on one partition of 100-byte
records with acks=1 and no compression:
  - Freshet client produce (batch.size=1000000, linger.ms=5, the settings the
    confluent-kafka producer gets) and with Kafka's default batch.size (16384);
  - confluent-kafka produce, same settings;
  - Freshet client consume of what was written;
  - end-to-end latency at 10,000 records/s (acks=1, linger.ms=0);
  - on Tansu: Freshet client produce and consume.

    python bench/client_throughput.py --freshet PATH --tansu PATH [--rounds 5] [--records N]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from broker_throughput import create_topic, freshet, produce as ck_produce, tansu

SIZE = 100
MATCHED = ["acks=1", "linger.ms=5", "batch.size=1000000", "enable.idempotence=false"]
DEFAULTS = ["acks=1"]


def perf(binary, bootstrap, *args):
    out = subprocess.run(
        [binary, "perf", *args, "--json", "-b", bootstrap],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def freshet_produce(binary, bootstrap, topic, count, props):
    return perf(binary, bootstrap, "produce", "--topic", topic, "--num-records", str(count),
                "--record-size", str(SIZE), "--throughput", "-1", "--producer-props", *props)


def freshet_consume(binary, bootstrap, topic, count):
    return perf(binary, bootstrap, "consume", "--topic", topic, "--num-records", str(count))


def run_round(args):
    row = {}
    with freshet(args.freshet) as b:
        for topic in ("matched", "defaults", "confluent", "e2e"):
            create_topic(b.bootstrap, topic)
        row["freshet_produce"] = freshet_produce(args.freshet, b.bootstrap, "matched", args.records, MATCHED)
        row["freshet_produce_defaults"] = freshet_produce(args.freshet, b.bootstrap, "defaults", args.records, DEFAULTS)
        elapsed = ck_produce(b.bootstrap, "confluent", SIZE, args.records)
        row["confluent_produce"] = {"records_per_sec": args.records / elapsed}
        row["freshet_consume"] = freshet_consume(args.freshet, b.bootstrap, "matched", args.records)
        row["e2e"] = perf(args.freshet, b.bootstrap, "e2e", "--topic", "e2e", "--num-records", "50000",
                          "--throughput", "10000", "--record-size", str(SIZE))
    with tansu(args.tansu) as t:
        create_topic(t.bootstrap, "matched")
        row["tansu_produce"] = freshet_produce(args.freshet, t.bootstrap, "matched", args.records, MATCHED)
        row["tansu_consume"] = freshet_consume(args.freshet, t.bootstrap, "matched", args.records)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--freshet", required=True)
    parser.add_argument("--tansu", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=2_000_000)
    args = parser.parse_args()

    import confluent_kafka

    print(f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]}), "
          f"{args.records:,} records of {SIZE} B per measurement, {args.rounds} rounds after a warm-up")
    print()
    run_round(argparse.Namespace(**{**vars(args), "records": min(args.records, 200_000)}))  # warm-up
    rounds = []
    for i in range(args.rounds):
        rounds.append(run_round(args))
        print(f"round {i + 1}: " + ", ".join(
            f"{k} {v['records_per_sec']:,.0f}/s" for k, v in rounds[-1].items() if k != "e2e"
        ) + f", e2e p99 {rounds[-1]['e2e']['latency_ms']['p99']:.2f} ms", file=sys.stderr)

    def median(key, field="records_per_sec"):
        return statistics.median(r[key][field] for r in rounds)

    def latency(q):
        return statistics.median(r["e2e"]["latency_ms"][q] for r in rounds)

    print("| measurement | median of rounds | target |")
    print("|---|---|---|")
    print(f"| Freshet client produce, batch.size=1000000 linger.ms=5 | {median('freshet_produce'):,.0f} records/s | >= 800,000 |")
    print(f"| Freshet client produce, Kafka defaults (batch.size=16384, linger.ms=5) | {median('freshet_produce_defaults'):,.0f} records/s | |")
    print(f"| confluent-kafka produce, same settings, same broker | {median('confluent_produce'):,.0f} records/s | |")
    print(f"| Freshet client consume | {median('freshet_consume'):,.0f} records/s | >= 1,500,000 |")
    print(f"| End-to-end latency at 10,000 records/s | p50 {latency('p50'):.2f} ms, p99 {latency('p99'):.2f} ms, "
          f"p99.9 {latency('p99.9'):.2f} ms, max {latency('max'):.2f} ms | p99 <= 5 ms |")
    print(f"| Freshet client produce to Tansu | {median('tansu_produce'):,.0f} records/s | |")
    print(f"| Freshet client consume from Tansu | {median('tansu_consume'):,.0f} records/s | |")
    print()
    print("Ratios (medians of the same run):")
    print(f"- Freshet client / confluent-kafka producer on Freshet: "
          f"{median('freshet_produce') / median('confluent_produce'):.2f}x")
    print(f"- Freshet client produce, Freshet broker / Tansu broker: "
          f"{median('freshet_produce') / median('tansu_produce'):.2f}x")
    print(f"- Freshet client consume, Freshet broker / Tansu broker: "
          f"{median('freshet_consume') / median('tansu_consume'):.2f}x")
    print()
    print("Every round (records/s):")
    print()
    keys = [k for k in rounds[0] if k != "e2e"]
    print("| round | " + " | ".join(keys) + " | e2e p99 ms |")
    print("|---" * (len(keys) + 2) + "|")
    for i, r in enumerate(rounds):
        cells = " | ".join(f"{r[k]['records_per_sec']:,.0f}" for k in keys)
        print(f"| {i + 1} | {cells} | {r['e2e']['latency_ms']['p99']:.2f} |")


if __name__ == "__main__":
    main()

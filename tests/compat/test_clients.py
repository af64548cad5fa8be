"""Third-party Kafka clients against a real `freshet server`.

For each client: create a topic with several partitions, produce keyed and unkeyed
messages with headers once per compression codec, consume from the earliest offset, and
check that every message (key, value, headers, timestamp) arrives exactly once and in
order within its partition.
"""

import collections
import subprocess
import time
import uuid

import pytest

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 60
PARTITIONS = 3
# Recent timestamps: older ones would be (rightly) deleted by the 7-day default retention.
BASE_TS = int(time.time() * 1000) - 60_000


def messages(run, codec):
    """Keyed and unkeyed messages with headers and explicit timestamps."""
    out = []
    for i in range(PER_CODEC):
        key = f"key-{i % 7}".encode() if i % 2 == 0 else None
        value = f"{run}|{codec}|{i}".encode()
        headers = [("codec", codec.encode()), ("seq", str(i).encode())]
        out.append((key, value, headers, BASE_TS + i))
    return out


def check(produced, consumed, check_timestamps=True):
    """produced: value -> (partition, key, headers, ts) in send order per partition.
    consumed: list of (partition, offset, key, value, headers, ts)."""
    counts = collections.Counter(c[3] for c in consumed)
    dupes = [v for v, n in counts.items() if n > 1]
    assert not dupes, f"{len(dupes)} values consumed more than once, e.g. {dupes[:3]}"
    missing = set(produced) - set(counts)
    assert not missing, f"{len(missing)} produced values never consumed, e.g. {sorted(missing)[:3]}"
    by_partition = collections.defaultdict(list)
    for p, offset, key, value, headers, ts in sorted(consumed, key=lambda c: (c[0], c[1])):
        want_p, want_key, want_headers, want_ts = produced[value]
        assert p == want_p, f"{value!r} landed in partition {p}, acknowledged for {want_p}"
        assert key == want_key, f"{value!r}: key {key!r} != {want_key!r}"
        assert list(headers) == list(want_headers), f"{value!r}: headers {headers!r} != {want_headers!r}"
        if check_timestamps:
            assert ts == want_ts, f"{value!r}: timestamp {ts} != {want_ts}"
        by_partition[p].append(value)
    for p, values in by_partition.items():
        sent = [v for v, meta in produced.items() if meta[0] == p]
        assert values == sent, f"partition {p}: consumed order differs from produce order"


def test_kafka_python(server):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    topic = "kp-" + uuid.uuid4().hex[:8]
    admin = KafkaAdminClient(bootstrap_servers=server.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()
    produced = {}
    for codec in CODECS:
        producer = KafkaProducer(bootstrap_servers=server.bootstrap, compression_type=None if codec == "none" else codec, acks="all")
        for key, value, headers, ts in messages("kp", codec):
            meta = producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=ts).get(timeout=30)
            produced[value] = (meta.partition, key, headers, ts)
        producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=server.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    consumed = [(m.partition, m.offset, m.key, m.value, m.headers, m.timestamp) for m in consumer]
    consumer.close()
    check(produced, consumed)


def confluent_consume(bootstrap, topic, expected, timeout_s=30):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    consumed = []
    deadline = time.time() + timeout_s
    while len(consumed) < expected and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        consumed.append((m.partition(), m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1]))
    # Anything beyond the expected count would be a duplicate; give it a moment to show.
    end = time.time() + 1
    while time.time() < end:
        m = consumer.poll(0.2)
        if m is not None and m.error() is None:
            consumed.append((m.partition(), m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1]))
    consumer.close()
    return consumed


def confluent_produce(config, topic, msgs):
    """Sends `msgs` with confluent-kafka; returns value -> (partition, key, headers, ts) in
    the order of the delivery reports, which is the order within each partition."""
    from confluent_kafka import Producer

    producer = Producer(config)
    acks = []
    sent = {}
    for key, value, headers, ts in msgs:
        sent[value] = (key, headers, ts)
        producer.produce(topic, key=key, value=value, headers=headers, timestamp=ts, on_delivery=lambda err, msg: acks.append((err, msg)))
    assert producer.flush(30) == 0
    produced = {}
    for err, msg in acks:
        assert err is None, err
        key, headers, ts = sent[msg.value()]
        produced[msg.value()] = (msg.partition(), key, headers, ts)
    return produced


def test_confluent_kafka(server):
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "ck-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).values():
        f.result(30)
    produced = {}
    for codec in CODECS:
        config = {"bootstrap.servers": server.bootstrap, "compression.type": codec, "linger.ms": 5, "acks": "all"}
        produced.update(confluent_produce(config, topic, messages("ck", codec)))
    # Order within a partition is the order of the delivery reports.
    consumed = confluent_consume(server.bootstrap, topic, len(produced))
    check(produced, consumed)


def kcat(*args, stdin=None):
    result = subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_kcat(server):
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "kc-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).values():
        f.result(30)
    sent = []
    for codec in CODECS:
        keyed = "".join(f"key-{i % 7}:kc|{codec}|{i}\n" for i in range(0, PER_CODEC, 2)).encode()
        kcat("-P", "-b", server.bootstrap, "-t", topic, "-z", codec, "-K:", "-H", f"codec={codec}", stdin=keyed)
        unkeyed = "".join(f"kc|{codec}|{i}\n" for i in range(1, PER_CODEC, 2)).encode()
        kcat("-P", "-b", server.bootstrap, "-t", topic, "-z", codec, "-H", f"codec={codec}", "-p", "1", stdin=unkeyed)
        sent += [(f"key-{i % 7}" if i % 2 == 0 else None, f"kc|{codec}|{i}", codec) for i in range(PER_CODEC)]
    out = kcat("-C", "-b", server.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p\t%o\t%K\t%k\t%s\t%h\t%T\n")
    rows = [line.split("\t") for line in out.decode().splitlines()]
    assert len(rows) == len(sent), f"{len(rows)} consumed, {len(sent)} produced"
    seen = collections.Counter(r[4] for r in rows)
    assert all(n == 1 for n in seen.values()), "duplicates"
    now_ms = time.time() * 1000
    expected = {value: (key, codec) for key, value, codec in sent}
    last_offset = {}
    for partition, offset, key_len, key, value, headers, ts in rows:
        want_key, codec = expected[value]
        assert (key if key_len != "-1" else None) == want_key, value
        assert headers == f"codec={codec}", (value, headers)
        assert abs(int(ts) - now_ms) < 600_000, f"{value}: timestamp {ts} is not recent"
        assert int(offset) > last_offset.get(partition, -1)
        last_offset[partition] = int(offset)
    # Within partition 1, unkeyed values arrive in the order kcat sent them.
    p1 = [r[4] for r in rows if r[0] == "1" and r[2] == "-1"]
    assert p1 == [v for k, v, _ in sent if k is None]


@pytest.mark.parametrize("kill", [False, True], ids=["clean", "kill-9"])
def test_data_and_topics_survive_a_restart(server, kill):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "rs-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1, config={"retention.ms": "123456789", "cleanup.policy": "compact,delete"})
    for f in admin.create_topics([new]).values():
        f.result(30)
    producer = Producer({"bootstrap.servers": server.bootstrap, "enable.idempotence": True, "acks": "all"})
    produced = {}
    def on_delivery(err, msg):
        assert err is None, err
        i = int(msg.value().split(b"|")[1])
        produced[msg.value()] = (msg.partition(), msg.key(), [("i", str(i).encode())], BASE_TS + i)

    for i in range(300):
        producer.produce(topic, key=f"k{i % 11}".encode(), value=f"rs|{i}".encode(), headers=[("i", str(i).encode())], timestamp=BASE_TS + i, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert len(produced) == 300
    server.restart(kill=kill)
    check(produced, confluent_consume(server.bootstrap, topic, 300))
    # The topic is still there with all its partitions and its config.
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    metadata = admin.list_topics(topic, timeout=30)
    assert len(metadata.topics[topic].partitions) == PARTITIONS
    assert topic_configs(admin, topic)["retention.ms"] == "123456789"
    assert topic_configs(admin, topic)["cleanup.policy"] == "compact,delete"


def topic_configs(admin, topic):
    from confluent_kafka.admin import ConfigResource

    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(30)
    return {name: entry.value for name, entry in entries.items()}


def test_admin_operations_with_confluent_kafka(server):
    from confluent_kafka import Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    topic = "adm-" + uuid.uuid4().hex[:8]
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        f.result(30)
    with pytest.raises(Exception, match="TOPIC_ALREADY_EXISTS|already exists"):
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    with pytest.raises(Exception, match="REPLICATION_FACTOR|replication factor"):
        admin.create_topics([NewTopic("rf-" + topic, num_partitions=1, replication_factor=3)])["rf-" + topic].result(30)

    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(30)
    configs = topic_configs(admin, topic)
    assert configs["retention.ms"] == "3600000"
    assert configs["cleanup.policy"] == "delete,compact"

    for f in admin.create_partitions([NewPartitions(topic, 4)]).values():
        f.result(30)
    assert len(admin.list_topics(topic, timeout=30).topics[topic].partitions) == 4

    producer = Producer({"bootstrap.servers": server.bootstrap})
    for i in range(10):
        producer.produce(topic, key=b"k", value=str(i).encode(), partition=3)
    assert producer.flush(30) == 0
    result = admin.delete_records([TopicPartition(topic, 3, 4)])
    for f in result.values():
        assert f.result(30).low_watermark == 4

    cluster = admin.describe_cluster().result(30)
    assert [n.port for n in cluster.nodes] == [server.port]

    # A broker default changed at run time (kafka-configs --entity-type brokers
    # --entity-name 1) reaches the topics that do not override it.
    default = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
        ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
    ])
    for f in admin.incremental_alter_configs([default]).values():
        f.result(30)
    broker = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "1")])
    entry = list(broker.values())[0].result(30)["log.retention.ms"]
    assert (entry.value, entry.source) == ("7200000", 2), (entry.value, entry.source)  # DYNAMIC_BROKER_CONFIG
    assert topic_configs(admin, topic)["retention.ms"] == "3600000", "the topic's own override still wins"
    other = "adm2-" + uuid.uuid4().hex[:8]
    for f in admin.create_topics([NewTopic(other, num_partitions=1, replication_factor=1)]).values():
        f.result(30)
    assert topic_configs(admin, other)["retention.ms"] == "7200000"
    static = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
        ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET),
    ])
    with pytest.raises(Exception, match="dynamically"):
        for f in admin.incremental_alter_configs([static]).values():
            f.result(30)

    for f in admin.delete_topics([topic]).values():
        f.result(30)
    deadline = time.time() + 10
    while topic in admin.list_topics(timeout=30).topics and time.time() < deadline:
        time.sleep(0.1)
    assert topic not in admin.list_topics(timeout=30).topics


def test_idempotent_producer_across_a_kill_9_restart(server):
    """An idempotent producer keeps sending while the broker is killed and restarted:
    every message is stored exactly once and in order."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "idem-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).values():
        f.result(30)
    producer = Producer({
        "bootstrap.servers": server.bootstrap,
        "enable.idempotence": True,
        "linger.ms": 2,
        "message.timeout.ms": 120000,
        "reconnect.backoff.max.ms": 500,
    })
    errors = []
    produced = {}

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            produced[msg.value()] = (msg.partition(), msg.key(), [], msg.timestamp()[1])

    total = 3000
    for i in range(total):
        producer.produce(topic, key=f"k{i % 13}".encode(), value=f"idem|{i}".encode(), timestamp=BASE_TS + i, on_delivery=on_delivery)
        if i == total // 2:
            producer.flush(0.05)
            server.restart(kill=True)
        producer.poll(0)
    assert producer.flush(120) == 0
    assert not errors, errors[:3]
    assert len(produced) == total
    consumed = confluent_consume(server.bootstrap, topic, total, timeout_s=60)
    check(produced, [(p, o, k, v, [], ts) for p, o, k, v, _, ts in consumed])


def test_kafka_python_incremental_fetch_sessions(server):
    """kafka-python keeps a KIP-227 fetch session per broker: while a producer writes to
    some partitions, its incremental fetches name only what moved, and the broker answers
    only partitions with news. Every message must still arrive exactly once, in order."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    topic = "sessions-" + uuid.uuid4().hex[:8]
    partitions = 6
    admin = KafkaAdminClient(bootstrap_servers=server.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()
    consumer = KafkaConsumer(bootstrap_servers=server.bootstrap, fetch_max_wait_ms=50)
    from kafka import TopicPartition

    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    consumer.seek_to_beginning()
    producer = KafkaProducer(bootstrap_servers=server.bootstrap, acks=1)
    sent = collections.defaultdict(list)
    consumed = collections.defaultdict(list)
    # Rounds that touch one or two partitions at a time, consuming in between, so most
    # fetches are incremental and most partitions unchanged.
    for round_ in range(30):
        for p in {round_ % partitions, (round_ * 5) % partitions}:
            for i in range(3):
                value = f"{round_}-{p}-{i}".encode()
                producer.send(topic, value=value, partition=p).get(timeout=30)
                sent[p].append(value)
        for records in consumer.poll(timeout_ms=200).values():
            for m in records:
                consumed[m.partition].append(m.value)
    deadline = time.time() + 30
    while sum(map(len, consumed.values())) < sum(map(len, sent.values())) and time.time() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for m in records:
                consumed[m.partition].append(m.value)
    producer.close()
    consumer.close()
    assert dict(consumed) == dict(sent)


def test_freshet_client_partitions_keys_like_confluent_murmur2_random(server):
    """Keys land on the same partitions whether Freshet's producer (through `freshet
    produce`) or confluent-kafka with partitioner=murmur2_random sends them, and the
    records Freshet's client writes read back the same through `freshet consume`."""
    import os

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    ck_topic, fr_topic = "part-ck-" + uuid.uuid4().hex[:6], "part-fr-" + uuid.uuid4().hex[:6]
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    for f in admin.create_topics([NewTopic(t, num_partitions=7, replication_factor=1) for t in (ck_topic, fr_topic)]).values():
        f.result(30)
    keys = [f"user-{i}" for i in range(500)] + ["", "ü-ñíçødé", "x" * 300, "a b c"]

    producer = Producer({"bootstrap.servers": server.bootstrap, "partitioner": "murmur2_random"})
    confluent = {}
    for key in keys:
        producer.produce(ck_topic, key=key.encode(), value=b"v",
                         on_delivery=lambda err, msg: confluent.__setitem__(msg.key().decode(), msg.partition()))
    assert producer.flush(30) == 0

    freshet = os.environ["FRESHET_BIN"]
    lines = "".join(f"{key}\tv\n" for key in keys).encode()
    env = {**os.environ, "FRESHET_BOOTSTRAP": server.bootstrap, "RUST_BACKTRACE": "0"}
    subprocess.run([freshet, "produce", fr_topic, "--key-separator", "\t"], input=lines, env=env, check=True, timeout=60)
    out = subprocess.run([freshet, "consume", fr_topic, "--from-beginning", "-e", "-f", "%p\t%k\n"],
                         env=env, check=True, capture_output=True, timeout=60).stdout.decode()
    ours = {}
    for line in out.splitlines():
        partition, key = line.split("\t", 1)
        ours[key] = int(partition)
    assert len(confluent) == len(keys) and len(ours) == len(keys)
    differ = [k for k in keys if ours[k] != confluent[k]]
    assert not differ, f"{len(differ)} keys partitioned differently, e.g. {differ[:3]}"
    assert len(set(ours.values())) == 7, "500 keys spread over all 7 partitions"

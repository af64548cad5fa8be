"""Third-party clients against three `freshet server` processes that form one cluster:
topics of replication factor 3 with min.insync.replicas=2, written with acks=all and
read back by kafka-python, confluent-kafka (librdkafka) and kcat; librdkafka following
a killed leader; kafka-python's leader election and partition reassignment."""

import time
import uuid

from test_clients import BASE_TS, PARTITIONS, check, confluent_consume, confluent_produce, kcat, messages

WAIT_S = 60


def create_replicated(bootstrap, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=3, config={"min.insync.replicas": "2"})
    for f in admin.create_topics([new]).values():
        f.result(30)
    wait_until(f"{topic} is fully in sync", lambda: all(len(p.isrs) == 3 for p in partitions_of(admin, topic)))
    return admin


def partitions_of(admin, topic):
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    assert meta.error is None, meta.error
    return [meta.partitions[p] for p in sorted(meta.partitions)]


def wait_until(what, check_fn, timeout_s=WAIT_S):
    deadline = time.time() + timeout_s
    while not check_fn():
        assert time.time() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def test_every_client_writes_and_reads_a_replicated_topic(cluster):
    from kafka import KafkaProducer

    topic = "rf3-" + uuid.uuid4().hex[:8]
    admin = create_replicated(cluster.bootstrap, topic, PARTITIONS)
    for p in partitions_of(admin, topic):
        assert sorted(p.replicas) == [1, 2, 3], p
    listing = kcat("-L", "-b", cluster.bootstrap, "-t", topic).decode()
    assert " 3 brokers:" in listing, listing

    produced = {}
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", compression_type="lz4")
    for key, value, headers, ts in messages("kp", "lz4"):
        meta = producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=ts).get(timeout=30)
        produced[value] = (meta.partition, key, headers, ts)
    producer.close()

    config = {"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    produced.update(confluent_produce(config, topic, messages("ck", "zstd")))

    lines = [f"kcat|{i}" for i in range(50)]
    kcat("-P", "-b", cluster.bootstrap, "-t", topic, "-p", "0", "-X", "acks=all", stdin="\n".join(lines).encode())
    consumed = confluent_consume(cluster.bootstrap, topic, len(produced) + len(lines))
    kcat_values = [c[3].decode() for c in consumed if c[3].startswith(b"kcat|")]
    assert kcat_values == lines, kcat_values[:5]
    check(produced, [c for c in consumed if not c[3].startswith(b"kcat|")])
    read = kcat("-C", "-b", cluster.bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q").decode()
    assert read.count("kcat|") == len(lines), read[-300:]


def test_librdkafka_follows_a_killed_leader_and_kafka_python_moves_leaders_and_replicas(cluster):
    from confluent_kafka import Producer
    from kafka import KafkaAdminClient, TopicPartition

    topic = "failover-" + uuid.uuid4().hex[:8]
    admin = create_replicated(cluster.bootstrap, topic, PARTITIONS)
    producer = Producer({
        "bootstrap.servers": cluster.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        "message.timeout.ms": 120000,
        "reconnect.backoff.max.ms": 500,
    })
    errors, produced = [], {}

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            produced[msg.value()] = (msg.partition(), msg.key(), [], msg.timestamp()[1])

    total = 3000
    leader = partitions_of(admin, topic)[0].leader
    for i in range(total):
        producer.produce(topic, key=f"k{i % 13}".encode(), value=f"fo|{i}".encode(), timestamp=BASE_TS + i, on_delivery=on_delivery)
        if i == total // 2:
            producer.flush(0.05)
            cluster.nodes[leader - 1].stop(kill=True)
        producer.poll(0)
    assert producer.flush(120) == 0
    assert not errors, errors[:3]
    assert len(produced) == total
    new_leader = partitions_of(admin, topic)[0].leader
    assert new_leader not in (leader, -1), new_leader

    # Back, the old leader catches up; a preferred election gives it its leadership back
    # if it was the first replica, and otherwise finds nothing to do.
    cluster.nodes[leader - 1].start()
    wait_until("the restarted node is in sync", lambda: len(partitions_of(admin, topic)[0].isrs) == 3)
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    tp = TopicPartition(topic, 0)
    kp.elect_leaders(0, {topic: [0]})
    preferred = partitions_of(admin, topic)[0].replicas[0]
    wait_until("the preferred replica leads", lambda: partitions_of(admin, topic)[0].leader == preferred)

    # Down to two replicas, without the current leader: the data follows, nothing is lost.
    keep = [b for b in (1, 2, 3) if b != preferred]
    assert kp.alter_partition_reassignments({tp: keep}) == {tp: None}
    wait_until("the reassignment finished", lambda: not kp.list_partition_reassignments())
    part = partitions_of(admin, topic)[0]
    assert (sorted(part.replicas), part.leader in keep) == (keep, True), part
    kp.close()
    consumed = confluent_consume(cluster.bootstrap, topic, total, timeout_s=60)
    check(produced, [(p, o, k, v, [], ts) for p, o, k, v, _, ts in consumed])

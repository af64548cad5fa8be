"""Topic configs through third-party admin clients: created, described and altered with
confluent-kafka and kafka-python, and then in effect for what producers send."""

import os
import subprocess
import time
import uuid

import pytest

# What each test topic is created with, and what describe must then report.
CONFIGS = {
    "compression.type": "gzip",
    "message.timestamp.before.max.ms": "3600000",
    "message.timestamp.after.max.ms": "60000",
    "segment.jitter.ms": "1000",
    "preallocate": "true",
    "file.delete.delay.ms": "1000",
    "max.compaction.lag.ms": "86400000",
    "unclean.leader.election.enable": "false",
}
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5


def stored_codecs(server, topic):
    """The compression of every batch in partition 0's first segment, via `freshet log dump`."""
    segment = os.path.join(server.data_dir, f"{topic}-0", "00000000000000000000.log")
    out = subprocess.run([os.environ["FRESHET_BIN"], "log", "dump", segment],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("compression: ", 1)[1].split()[0] for line in out.splitlines() if "compression: " in line]


def test_confluent_kafka_creates_describes_and_obeys_topic_configs(server):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    topic = "cfg-" + uuid.uuid4().hex[:8]
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=CONFIGS)])[topic].result(30)

    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(30)
    for key, value in CONFIGS.items():
        assert (entries[key].value, entries[key].source) == (value, DYNAMIC_TOPIC_CONFIG), key
    assert entries["segment.ms"].source == DEFAULT_CONFIG

    # Producers send uncompressed; the topic stores gzip.
    producer = Producer({"bootstrap.servers": server.bootstrap, "compression.type": "none", "linger.ms": 0})
    now = int(time.time() * 1000)
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"v{i}".encode(), timestamp=now)
        producer.flush(30)
    errors = []
    producer.produce(topic, value=b"stale", timestamp=now - 7_200_000, on_delivery=lambda err, _m: errors.append(err))
    producer.flush(30)
    assert errors and errors[0] is not None and errors[0].name() == "INVALID_TIMESTAMP", errors
    assert stored_codecs(server, topic) == ["gzip"] * 5

    for bad, match in [({"compression.type": "brotli"}, "compression.type"),
                       ({"message.timestamp.after.max.ms": "-1"}, "message.timestamp.after.max.ms"),
                       ({"preallocate": "maybe"}, "preallocate")]:
        name = "bad-" + uuid.uuid4().hex[:8]
        with pytest.raises(KafkaException, match=match):
            admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1, config=bad)])[name].result(30)


def test_kafka_python_admin_sets_and_reads_topic_configs(server):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=server.bootstrap)
    topic = "kpcfg-" + uuid.uuid4().hex[:8]
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs=CONFIGS)])

    def described():
        # {resource type: {name: {key: {config data}}}}; "modified" lists the overrides.
        response = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        (by_name,) = response.values()
        return {key: data["value"] for key, data in by_name[topic].items()}

    configs = described()
    for key, value in CONFIGS.items():
        assert configs[key] == value, key
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"compression.type": "zstd"})])
    assert described()["compression.type"] == "zstd"
    admin.close()

    producer = KafkaProducer(bootstrap_servers=server.bootstrap, compression_type="gzip", acks="all")
    for i in range(3):
        producer.send(topic, value=f"v{i}".encode()).get(timeout=30)
    producer.close()
    assert stored_codecs(server, topic) == ["zstd"] * 3
    consumer = KafkaConsumer(topic, bootstrap_servers=server.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    assert [m.value for m in consumer] == [b"v0", b"v1", b"v2"]
    consumer.close()

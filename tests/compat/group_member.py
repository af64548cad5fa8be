"""One consumer-group member in a process of its own, so that a test can SIGKILL it.

    python group_member.py [--kafka-python] BOOTSTRAP GROUP TOPIC [key=value ...]

Runs a confluent-kafka consumer (or, with --kafka-python, a kafka-python one) subscribed
to TOPIC in GROUP (extra key=value pairs are librdkafka settings; for kafka-python,
session.timeout.ms, heartbeat.interval.ms and client.id are translated) and prints one
JSON line whenever its assignment changes:
{"member_id": "...", "assignment": [0, 3]}. On SIGTERM it closes the consumer (leaving
the group) and exits 0. Not a test module: pytest does not collect it.
"""

import json
import signal
import sys

from confluent_kafka import Consumer


def kafka_python_member(bootstrap, group, topic, settings, stopping):
    from kafka import KafkaConsumer

    names = {"session.timeout.ms": "session_timeout_ms", "heartbeat.interval.ms": "heartbeat_interval_ms",
             "client.id": "client_id"}
    args = {"bootstrap_servers": bootstrap, "group_id": group, "enable_auto_commit": False,
            "auto_offset_reset": "earliest"}
    for key, value in (s.split("=", 1) for s in settings):
        args[names[key]] = int(value) if key.endswith(".ms") else value
    consumer = KafkaConsumer(topic, **args)
    reported = None
    while not stopping:
        consumer.poll(timeout_ms=50)
        assignment = sorted(tp.partition for tp in consumer.assignment())
        if assignment != reported:
            reported = assignment
            print(json.dumps({"member_id": "", "assignment": assignment}), flush=True)
    consumer.close()


def main():
    args = sys.argv[1:]
    use_kafka_python = args[0] == "--kafka-python"
    bootstrap, group, topic, *settings = args[1:] if use_kafka_python else args
    if use_kafka_python:
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        return kafka_python_member(bootstrap, group, topic, settings, stopping)
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(setting.split("=", 1) for setting in settings)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    reported = None
    while not stopping:
        consumer.poll(0.05)
        assignment = sorted(tp.partition for tp in consumer.assignment())
        if assignment != reported:
            reported = assignment
            print(json.dumps({"member_id": consumer.memberid(), "assignment": assignment}), flush=True)
    consumer.close()


if __name__ == "__main__":
    main()

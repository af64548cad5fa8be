"""One consumer-group member in a process of its own, so that a test can SIGKILL it.

    python group_member.py BOOTSTRAP GROUP TOPIC [key=value ...]

Runs a confluent-kafka consumer subscribed to TOPIC in GROUP (extra key=value pairs are
librdkafka settings) and prints one JSON line whenever its assignment changes:
{"member_id": "...", "assignment": [0, 3]}. On SIGTERM it closes the consumer (leaving
the group) and exits 0. Not a test module: pytest does not collect it.
"""

import json
import signal
import sys

from confluent_kafka import Consumer


def main():
    bootstrap, group, topic, *settings = sys.argv[1:]
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

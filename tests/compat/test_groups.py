"""Consumer groups through third-party clients against a real `freshet server`.

The broker is the group coordinator: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and
OffsetDelete, with static membership and offsets kept in __consumer_offsets. Each test
has its own topic and group, and expects what Apache Kafka does. The server runs with
group.initial.rebalance.delay.ms=0 and group.min.session.timeout.ms=1000 (conftest's
`group_server`), the members with 6 s sessions and 500 ms heartbeats.

Where no client can reach a case (a stale generation, a fenced static member, an empty
group id), the test hand-builds the requests with kafka-python's message classes and
checks the error code the broker answers.
"""

import collections
import concurrent.futures
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

import pytest

SESSION_MS = 6000
HEARTBEAT_MS = 500
MEMBER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "group_member.py")

# Kafka error codes the hand-built requests expect.
NONE = 0
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
MEMBER_ID_REQUIRED = 79
FENCED_INSTANCE_ID = 82


# ---- helpers --------------------------------------------------------------------------

def unique(prefix):
    """A fresh (topic, group) pair of names."""
    suffix = uuid.uuid4().hex[:8]
    return f"{prefix}-{suffix}", f"{prefix}-group-{suffix}"


def create_topic(bootstrap, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        f.result(30)


def wait_until(condition, timeout_s, what):
    """Polls condition() until it is truthy; fails after timeout_s, describing the state
    with what() (or the string what)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout_s} s: {what() if callable(what) else what}")
        time.sleep(0.05)


def split(assignments, partitions, sizes):
    """True when the assignments (sets of partition numbers) are disjoint, together cover
    partitions 0..partitions-1, and have these sizes (in any order)."""
    union = set().union(*assignments)
    return (
        sum(len(a) for a in assignments) == len(union)
        and union == set(range(partitions))
        and sorted(len(a) for a in assignments) == sorted(sizes)
    )


def describe(members):
    return ", ".join(f"{m.name}={sorted(m.assignment)}" for m in members)


def produce_keyed(bootstrap, topic, count):
    """Produces count keyed messages; returns the acknowledged (partition, offset) pairs."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    acked, errors = set(), []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked.add((msg.partition(), msg.offset()))

    for i in range(count):
        producer.produce(topic, key=f"key-{i}".encode(), value=str(i).encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors[:3]
    assert len(acked) == count
    return acked


class ConfluentMember(threading.Thread):
    """A confluent-kafka consumer subscribed to one topic, polling in its own thread.

    Records its rebalance callbacks in `events` as (kind, partitions) with kind one of
    assign/revoke/lost, and after every poll its assignment (partition numbers) and
    member id. stop() closes the consumer from its own thread (a dynamic member sends
    LeaveGroup then). Subclasses process messages in handle() and may act on a
    revocation in revoked(), which runs before the partitions are given up."""

    def __init__(self, bootstrap, group, topic, name, settings=None):
        super().__init__(name=name, daemon=True)
        self.topic = topic
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": HEARTBEAT_MS,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **(settings or {}),
        }
        self.events = []
        self.owned = set()
        self.assignment = frozenset()
        self.member_id = None
        self.consumed = 0
        self.failures = []
        self._stopping = threading.Event()
        self._calls = queue.Queue()

    def run(self):
        from confluent_kafka import Consumer

        consumer = None
        try:
            consumer = Consumer(self.conf)
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
            while not self._stopping.is_set():
                self._serve_calls(consumer)
                msg = consumer.poll(0.05)
                if msg is None:
                    self.idle(consumer)
                elif msg.error() is not None:
                    self.failures.append(msg.error())
                else:
                    self.consumed += 1
                    self.handle(consumer, msg)
                self.assignment = frozenset(tp.partition for tp in consumer.assignment())
                self.member_id = consumer.memberid()
        except Exception as exc:  # surfaced by stop_all()
            self.failures.append(exc)
        finally:
            if consumer is not None:
                consumer.close()
            self.assignment = frozenset()

    def handle(self, consumer, msg):
        pass

    def idle(self, consumer):
        pass

    def revoked(self, consumer, partitions):
        pass

    def call(self, fn, timeout_s=30):
        """Runs fn(consumer) on the member's thread, between two polls; returns its result."""
        future = concurrent.futures.Future()
        self._calls.put((fn, future))
        return future.result(timeout_s)

    def stop(self, timeout_s=30):
        self._stopping.set()
        self.join(timeout_s)
        assert not self.is_alive(), f"{self.name} did not close within {timeout_s} s"

    def _serve_calls(self, consumer):
        while not self._calls.empty():
            fn, future = self._calls.get()
            try:
                future.set_result(fn(consumer))
            except Exception as exc:
                future.set_exception(exc)

    def _on_assign(self, consumer, partitions):
        got = frozenset(tp.partition for tp in partitions)
        self.events.append(("assign", got))
        self.owned |= got

    def _on_revoke(self, consumer, partitions):
        self.revoked(consumer, partitions)
        gone = frozenset(tp.partition for tp in partitions)
        self.events.append(("revoke", gone))
        self.owned -= gone

    def _on_lost(self, consumer, partitions):
        gone = frozenset(tp.partition for tp in partitions)
        self.events.append(("lost", gone))
        self.owned -= gone


class KafkaPythonMember(threading.Thread):
    """A kafka-python KafkaConsumer subscribed to one topic, polling in its own thread and
    recording its assignment after every poll."""

    def __init__(self, bootstrap, group, topic, name):
        super().__init__(name=name, daemon=True)
        self.args = dict(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self.topic = topic
        self.assignment = frozenset()
        self.failures = []
        self._stopping = threading.Event()

    def run(self):
        from kafka import KafkaConsumer

        consumer = None
        try:
            consumer = KafkaConsumer(self.topic, **self.args)
            while not self._stopping.is_set():
                consumer.poll(timeout_ms=50)
                self.assignment = frozenset(tp.partition for tp in consumer.assignment())
                # kafka-python's poll() often returns at once; members spinning on it starve
                # each other's network threads of the GIL (seen: a leader that never
                # finished its SyncGroup for 40 s). Heartbeats run on those threads.
                time.sleep(0.05)
        except Exception as exc:  # surfaced by stop_all()
            self.failures.append(exc)
        finally:
            if consumer is not None:
                consumer.close()
            self.assignment = frozenset()

    def stop(self, timeout_s=30):
        self._stopping.set()
        self.join(timeout_s)
        assert not self.is_alive(), f"{self.name} did not close within {timeout_s} s"


def stop_all(members):
    for m in members:
        if m.is_alive():
            m.stop()
    failures = [(m.name, f) for m in members for f in m.failures]
    assert not failures, failures


def changes_since(member, mark):
    """Partitions given to and taken from a member by the callbacks after events[mark:]."""
    later = member.events[mark:]
    assert not [e for e in later if e[0] == "lost"], f"{member.name} lost partitions: {later}"
    assigned = set().union(*[p for kind, p in later if kind == "assign"])
    revoked = set().union(*[p for kind, p in later if kind == "revoke"])
    return assigned, revoked


# ---- 1. members share partitions -------------------------------------------------------

@pytest.mark.parametrize("clients", [
    ("confluent", "confluent", "confluent"),
], ids=["confluent-kafka"])
def test_three_members_share_six_partitions(group_server, clients):
    """Three members of one group (librdkafka's and kafka-python's consumers, alone or
    mixed, all offering the range assignor) split six partitions two each, disjoint and
    covering all six, and the split then stays put."""
    topic, group = unique("share")
    create_topic(group_server.bootstrap, topic, 6)
    kinds = {"confluent": ConfluentMember, "kafka-python": KafkaPythonMember}
    members = [kinds[kind](group_server.bootstrap, group, topic, f"{kind}-{i}") for i, kind in enumerate(clients)]
    for m in members:
        m.start()
    try:
        wait_until(lambda: split([m.assignment for m in members], 6, [2, 2, 2]), 45, lambda: describe(members))
        settled = [m.assignment for m in members]
        time.sleep(1.5)  # three heartbeats: no further rebalance
        assert [m.assignment for m in members] == settled, describe(members)
    finally:
        stop_all(members)


@pytest.mark.parametrize("kafka_python", [(True, True, True), (False, True, False)], ids=["kafka-python", "mixed"])
def test_members_in_processes_share_six_partitions(group_server, kafka_python):
    """Three kafka-python members, or two confluent-kafka members and a kafka-python one,
    each in a process of its own (kafka-python's heartbeat thread can stall when several
    consumers share one interpreter's GIL), split six partitions two each: each client
    reads the others' subscriptions, whichever leads."""
    topic, group = unique("procs")
    create_topic(group_server.bootstrap, topic, 6)
    members = [
        MemberProcess(group_server.bootstrap, group, topic, f"member-{i}", kafka_python=k)
        for i, k in enumerate(kafka_python)
    ]
    try:
        wait_until(lambda: split([m.assignment for m in members], 6, [2, 2, 2]), 45, lambda: describe(members))
        settled = [m.assignment for m in members]
        time.sleep(1.5)  # three heartbeats: no further rebalance
        assert [m.assignment for m in members] == settled, describe(members)
    finally:
        for m in members:
            m.stop()


# ---- 2. a member dies ------------------------------------------------------------------

class MemberProcess:
    """group_member.py in a child process; `assignment` is the last one it reported."""

    def __init__(self, bootstrap, group, topic, name, kafka_python=False):
        self.name = name
        self.assignment = frozenset()
        client = ["--kafka-python"] if kafka_python else []
        self.proc = subprocess.Popen(
            [sys.executable, MEMBER_SCRIPT, *client, bootstrap, group, topic, f"client.id={name}",
             f"session.timeout.ms={SESSION_MS}", f"heartbeat.interval.ms={HEARTBEAT_MS}"],
            stdout=subprocess.PIPE,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.assignment = frozenset(json.loads(line)["assignment"])

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def test_survivors_take_over_a_killed_members_partitions(group_server):
    """Three members in separate processes share six partitions; one is SIGKILLed and so
    never leaves. Once its session (6 s) expires the coordinator rebalances, and the two
    survivors own all six partitions, three each, well within session timeout + 14 s."""
    topic, group = unique("kill")
    create_topic(group_server.bootstrap, topic, 6)
    members = [MemberProcess(group_server.bootstrap, group, topic, f"proc-{i}") for i in range(3)]
    try:
        wait_until(lambda: split([m.assignment for m in members], 6, [2, 2, 2]), 45, lambda: describe(members))
        victim, survivors = members[0], members[1:]
        victim.kill()
        wait_until(lambda: split([m.assignment for m in survivors], 6, [3, 3]), SESSION_MS / 1000 + 14,
                   lambda: describe(survivors))
    finally:
        for m in members:
            m.stop()


# ---- 3. every message exactly once across rebalances -----------------------------------

class CommittingMember(ConfluentMember):
    """Processes each message (records it in `seen`), then commits synchronously: every
    10 messages, when idle, and in on_revoke for the partitions being taken away. So
    nothing it processed is uncommitted when a partition moves to another member."""

    def __init__(self, *args, seen, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = seen
        self.pending = {}  # partition -> next offset to consume
        self.uncommitted = 0

    def handle(self, consumer, msg):
        if msg.partition() not in self.owned:
            self.failures.append(f"{self.name} got partition {msg.partition()} it was not assigned")
        self.seen.append((msg.partition(), msg.offset(), self.name))
        self.pending[msg.partition()] = msg.offset() + 1
        self.uncommitted += 1
        time.sleep(0.002)  # "processing": keeps the run long enough for the rebalances
        if self.uncommitted >= 10:
            self.commit(consumer, list(self.pending))

    def idle(self, consumer):
        self.commit(consumer, list(self.pending))

    def revoked(self, consumer, partitions):
        self.commit(consumer, [tp.partition for tp in partitions])

    def commit(self, consumer, partitions):
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(self.topic, p, self.pending.pop(p)) for p in partitions if p in self.pending]
        self.uncommitted = 0
        if not offsets:
            return
        try:
            for tp in consumer.commit(offsets=offsets, asynchronous=False):
                if tp.error is not None:
                    self.failures.append(f"{self.name} commit of {tp}: {tp.error}")
        except KafkaException as exc:
            self.failures.append(f"{self.name} commit of {offsets}: {exc}")


def test_every_message_consumed_exactly_once_across_rebalances(group_server):
    """3000 keyed messages over six partitions, consumed by a group whose members commit
    synchronously after processing. While they consume, one member closes (LeaveGroup)
    and a new one joins, forcing two rebalances. Every produced (partition, offset) is
    processed, none twice, no member processes a partition it does not own, and every
    commit succeeds: commits at the old generation must be accepted while the group
    prepares to rebalance (Kafka allows them until the generation moves on)."""
    topic, group = unique("once")
    create_topic(group_server.bootstrap, topic, 6)
    produced = produce_keyed(group_server.bootstrap, topic, 3000)
    seen = []
    member = lambda name: CommittingMember(group_server.bootstrap, group, topic, name, seen=seen)
    a, b, c = members = [member("a"), member("b"), member("c")]
    for m in members:
        m.start()
    try:
        wait_until(lambda: len(seen) >= 600 and b.consumed >= 20, 30, lambda: f"{len(seen)} seen, b {b.consumed}")
        b.stop()
        wait_until(lambda: len(seen) >= 1300, 30, lambda: f"{len(seen)} seen")
        d = member("d")
        members.append(d)
        d.start()
        wait_until(lambda: len({(p, o) for p, o, _ in seen}) >= len(produced), 60,
                   lambda: f"{len({(p, o) for p, o, _ in seen})} of {len(produced)} consumed")
        time.sleep(1)  # a redelivery would show up now
    finally:
        stop_all(members)
    counts = collections.Counter((p, o) for p, o, _ in seen)
    twice = sorted(k for k, n in counts.items() if n > 1)
    assert not twice, f"{len(twice)} messages processed more than once, e.g. {twice[:5]}"
    assert set(counts) == produced, f"missing {sorted(produced - set(counts))[:5]}, extra {sorted(set(counts) - produced)[:5]}"
    assert d.consumed > 0, "the member that joined late never got a partition"


# ---- 4. committed offsets are durable ----------------------------------------------------

def confluent_metadata(metadata):
    """Offset metadata as another client wrote it when confluent-kafka committed it:
    confluent-kafka sends the C string's NUL terminator as part of the metadata (its
    metadata_size is strlen + 1), so a broker faithfully stores and returns "meta\0"."""
    return metadata + "\x00"


def eventually(fn, timeout_s, what):
    """fn(), retried while it raises a retriable client error (e.g. the coordinator is
    still loading __consumer_offsets after a restart: COORDINATOR_LOAD_IN_PROGRESS)."""
    import kafka.errors
    from confluent_kafka import KafkaError, KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return fn()
        except KafkaException as exc:
            err = exc.args[0]
            retriable = err.retriable() or err.code() in (
                KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
                KafkaError.NOT_COORDINATOR, KafkaError._TIMED_OUT, KafkaError._TRANSPORT)
            if not retriable or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {exc}") from exc
        except kafka.errors.KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {exc!r}") from exc
        time.sleep(0.2)


def committed_offsets(bootstrap, group, topic, partitions, timeout_s=30):
    """{partition: (offset, metadata)} as confluent-kafka's committed() reads them.

    Only for partitions whose metadata confluent-kafka wrote, or none: confluent-kafka
    2.16.1 reads metadata written by other clients (no trailing NUL) past its end."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})

    def read():
        result = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        errors = [tp.error for tp in result if tp.error is not None]
        if errors:
            raise KafkaException(errors[0])
        return {tp.partition: (tp.offset, tp.metadata or "") for tp in result}

    try:
        return eventually(read, timeout_s, "confluent-kafka could not read the committed offsets")
    finally:
        consumer.close()


def kafka_python_offsets(bootstrap, group, topic, partitions, timeout_s=30):
    """{partition: (offset, metadata)} as kafka-python's admin client reads them
    (OffsetFetch, v8 if the broker has it); offset -1 where nothing is committed."""
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTopicPartition

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        fetched = eventually(lambda: admin.list_group_offsets({group: [KTopicPartition(topic, p) for p in partitions]}),
                             timeout_s, "kafka-python could not read the committed offsets")
    finally:
        admin.close()
    return {tp.partition: (o.offset, o.metadata) for tp, o in fetched[group].items()}


@pytest.mark.parametrize("kill", [False, True], ids=["clean", "kill-9"])
def test_committed_offsets_survive_a_restart(group_server, kill):
    """Offsets committed with metadata, by confluent-kafka (standalone, generation -1) and
    by kafka-python, read back the same through both clients after the broker restarts
    (cleanly, or killed with SIGKILL): the latest commit of a partition wins, partitions
    never committed have no offset, and the coordinator takes new commits afterwards."""
    from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition
    from kafka import KafkaConsumer, OffsetAndMetadata
    from kafka import TopicPartition as KTopicPartition

    bootstrap = group_server.bootstrap
    topic, group = unique("durable")
    create_topic(bootstrap, topic, 6)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    for offsets in ([TopicPartition(topic, 0, 5, "first")],
                    [TopicPartition(topic, p, 10 * (p + 1), f"ck-{p}-é") for p in range(3)]):
        result = consumer.commit(offsets=offsets, asynchronous=False)
        assert all(tp.error is None for tp in result), result
    consumer.close()
    kp = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    kp.commit({KTopicPartition(topic, 3): OffsetAndMetadata(40, "kp-3", -1)})
    kp.close()

    by_confluent = {0: (10, "ck-0-é"), 1: (20, "ck-1-é"), 2: (30, "ck-2-é"), 4: (OFFSET_INVALID, ""), 5: (OFFSET_INVALID, "")}
    by_kafka_python = {**{p: (o, confluent_metadata(m)) for p, (o, m) in by_confluent.items() if o >= 0},
                       3: (40, "kp-3"), 4: (-1, ""), 5: (-1, "")}
    assert committed_offsets(bootstrap, group, topic, [0, 1, 2, 4, 5]) == by_confluent
    assert kafka_python_offsets(bootstrap, group, topic, range(6)) == by_kafka_python

    group_server.restart(kill=kill)

    assert committed_offsets(bootstrap, group, topic, [0, 1, 2, 4, 5]) == by_confluent
    assert kafka_python_offsets(bootstrap, group, topic, range(6)) == by_kafka_python
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    result = consumer.commit(offsets=[TopicPartition(topic, 4, 44, "after restart")], asynchronous=False)
    assert all(tp.error is None for tp in result), result
    consumer.close()
    assert kafka_python_offsets(bootstrap, group, topic, range(6)) == {
        **by_kafka_python, 4: (44, confluent_metadata("after restart"))}


# ---- 5. cooperative rebalancing ------------------------------------------------------------

def test_cooperative_sticky_moves_only_the_partitions_that_change_owner(group_server):
    """librdkafka's cooperative-sticky assignor (KIP-429): when a second and then a third
    member join, the members already there have only the partitions that move revoked
    (incremental on_revoke), keep the rest without interruption, and are given nothing
    new; at the end the six partitions are split 2/2/2, the newcomer holding exactly what
    the others gave up."""
    topic, group = unique("coop")
    create_topic(group_server.bootstrap, topic, 6)
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    a, b, c = members = [ConfluentMember(group_server.bootstrap, group, topic, n, coop) for n in "abc"]
    try:
        a.start()
        wait_until(lambda: a.assignment == set(range(6)), 30, lambda: describe(members))
        mark_a = len(a.events)
        b.start()
        wait_until(lambda: split([a.assignment, b.assignment], 6, [3, 3]), 30, lambda: describe(members))
        assigned, revoked = changes_since(a, mark_a)
        assert not assigned and revoked == set(range(6)) - a.assignment, a.events
        a_before, b_before = a.assignment, b.assignment
        marks = len(a.events), len(b.events)
        c.start()
        wait_until(lambda: split([m.assignment for m in members], 6, [2, 2, 2]), 30, lambda: describe(members))
        settled = [m.assignment for m in members]
        time.sleep(1.5)  # three heartbeats: no further rebalance
        assert [m.assignment for m in members] == settled, describe(members)
        for m, before, mark in ((a, a_before, marks[0]), (b, b_before, marks[1])):
            assigned, revoked = changes_since(m, mark)
            assert not assigned, f"{m.name} was given {assigned} when c joined: {m.events}"
            assert revoked == before - m.assignment and len(revoked) == 1, (
                f"{m.name} had {sorted(before)}, kept {sorted(m.assignment)}, revoked {sorted(revoked)}")
        assert c.assignment == (a_before - a.assignment) | (b_before - b.assignment)
    finally:
        stop_all(members)


# ---- 6. static membership ----------------------------------------------------------------

@pytest.mark.parametrize("restarted", ["leader", "follower"])
def test_static_member_restart_within_session_timeout_causes_no_rebalance(group_server, restarted):
    """Two static members (group.instance.id, KIP-345). One closes (librdkafka sends no
    LeaveGroup for a static member) and a new consumer with the same group.instance.id
    joins within the session timeout: it gets the same partitions back, and the other
    member sees no rebalance (no callback, same assignment). Done once restarting the
    group's leader (the member that joined first) and once the follower."""
    topic, group = unique("static")
    create_topic(group_server.bootstrap, topic, 4)

    def member(name, instance):
        settings = {"group.instance.id": f"{group}-{instance}", "session.timeout.ms": 10000}
        return ConfluentMember(group_server.bootstrap, group, topic, name, settings)

    a, b = members = [member("a", "a"), member("b", "b")]
    try:
        a.start()
        wait_until(lambda: a.assignment == set(range(4)), 30, lambda: describe(members))
        b.start()
        wait_until(lambda: split([a.assignment, b.assignment], 4, [2, 2]), 30, lambda: describe(members))
        gone, stays = (a, b) if restarted == "leader" else (b, a)
        before, stays_had, mark = gone.assignment, stays.assignment, len(stays.events)
        gone.stop()
        back = member(gone.name + "-again", gone.name)
        members.append(back)
        back.start()
        wait_until(lambda: back.assignment, 9, "the restarted static member got nothing back within its session")
        assert back.assignment == before, f"had {sorted(before)}, got {sorted(back.assignment)} back"
        assert back.events == [("assign", before)], back.events
        time.sleep(2)  # four heartbeats of the member that stayed
        assert stays.events[mark:] == [], f"{stays.name} went through a rebalance: {stays.events[mark:]}"
        assert stays.assignment == stays_had
    finally:
        stop_all(members)


# ---- 7. admin --------------------------------------------------------------------------------

def admin_errors(future):
    """The error codes of an admin future: the group-level one it raised, else the
    per-partition ones of its result (empty when all went well)."""
    from confluent_kafka import KafkaException

    try:
        result = future.result(30)
    except KafkaException as exc:
        return {exc.args[0].code()}
    if result is None:
        return set()
    return {tp.error.code() for tp in result.topic_partitions if tp.error is not None}


def test_admin_lists_describes_alters_and_deletes_groups(group_server):
    """confluent-kafka's AdminClient and kafka-python's KafkaAdminClient on an active group
    (two members) and an offsets-only group made by an admin commit: both are listed with
    their state (Stable / Empty) and kind (consumer / simple); describe shows the members,
    their client ids and assignments; offsets read back with metadata; altering offsets
    of the active group fails with UNKNOWN_MEMBER_ID and deleting it with NON_EMPTY_GROUP;
    OffsetDelete is refused for a topic the group consumes (GROUP_SUBSCRIBED_TO_TOPIC) and
    works on the empty group. Once the members leave the group can be deleted, its offsets
    go with it, and deleting it again is GROUP_ID_NOT_FOUND."""
    import kafka.errors as Errors
    from confluent_kafka import OFFSET_INVALID, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, TopicPartition
    from confluent_kafka.admin import AdminClient
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTopicPartition

    bootstrap = group_server.bootstrap
    topic, active = unique("admin")
    simple = active + "-simple"
    create_topic(bootstrap, topic, 3)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    kadmin = KafkaAdminClient(bootstrap_servers=bootstrap)
    members = [ConfluentMember(bootstrap, active, topic, f"admin-{i}") for i in range(2)]
    for m in members:
        m.start()
    try:
        wait_until(lambda: split([m.assignment for m in members], 3, [1, 2]) and all(m.member_id for m in members),
                   30, lambda: describe(members))
        committed = members[0].call(lambda consumer: consumer.commit(
            offsets=[TopicPartition(topic, p, 10 + p, f"meta-{p}") for p in range(3)], asynchronous=False))
        assert all(tp.error is None for tp in committed), committed
        # An admin commit (generation -1, no member) makes an offsets-only, "simple" group.
        alter = [ConsumerGroupTopicPartitions(simple, [TopicPartition(topic, 0, 5, "simple-0"), TopicPartition(topic, 1, 6)])]
        assert admin_errors(admin.alter_consumer_group_offsets(alter)[simple]) == set()

        listed = admin.list_consumer_groups(request_timeout=30).result()
        assert not listed.errors, listed.errors
        by_id = {g.group_id: g for g in listed.valid}
        assert (by_id[active].state, by_id[active].is_simple_consumer_group) == (ConsumerGroupState.STABLE, False)
        assert (by_id[simple].state, by_id[simple].is_simple_consumer_group) == (ConsumerGroupState.EMPTY, True)
        stable = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}, request_timeout=30).result()
        assert active in {g.group_id for g in stable.valid} and simple not in {g.group_id for g in stable.valid}

        described = admin.describe_consumer_groups([active, simple], request_timeout=30)
        d = described[active].result()
        assert (d.state, d.is_simple_consumer_group, d.partition_assignor) == (ConsumerGroupState.STABLE, False, "range")
        assert d.coordinator.port == group_server.port
        assert {m.member_id: (m.client_id, {tp.partition for tp in m.assignment.topic_partitions}) for m in d.members} == {
            m.member_id: (m.name, set(m.assignment)) for m in members}
        assert all("127.0.0.1" in m.host for m in d.members), [m.host for m in d.members]
        e = described[simple].result()
        assert (e.state, e.is_simple_consumer_group, e.members) == (ConsumerGroupState.EMPTY, True, [])

        fetched = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(active, [TopicPartition(topic, p) for p in range(3)])])[active].result(30)
        assert {tp.partition: (tp.offset, tp.metadata) for tp in fetched.topic_partitions} == {
            p: (10 + p, f"meta-{p}") for p in range(3)}
        fetched = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(simple)])[simple].result(30)
        assert {tp.partition: (tp.offset, tp.metadata or "") for tp in fetched.topic_partitions} == {
            0: (5, "simple-0"), 1: (6, "")}

        groups = {g["group_id"]: g for g in kadmin.list_groups()}
        assert (groups[active]["protocol_type"], groups[simple]["protocol_type"]) == ("consumer", "")
        if groups[active].get("group_state"):  # ListGroups v4+
            assert (groups[active]["group_state"], groups[simple]["group_state"]) == ("Stable", "Empty")
        offsets = kadmin.list_group_offsets({active: [KTopicPartition(topic, p) for p in range(3)], simple: None})
        assert {tp.partition: (o.offset, o.metadata) for tp, o in offsets[active].items()} == {
            p: (10 + p, confluent_metadata(f"meta-{p}")) for p in range(3)}
        assert {tp.partition: o.offset for tp, o in offsets[simple].items()} == {0: 5, 1: 6}

        # OffsetDelete: refused for a topic the active group is subscribed to.
        assert kadmin.delete_group_offsets(active, [KTopicPartition(topic, 0)]) == {
            KTopicPartition(topic, 0): Errors.GroupSubscribedToTopicError}
        assert kadmin.delete_group_offsets(simple, [KTopicPartition(topic, 1)]) == {
            KTopicPartition(topic, 1): Errors.NoError}
        left = kadmin.list_group_offsets({simple: [KTopicPartition(topic, 0), KTopicPartition(topic, 1)]})[simple]
        assert (left[KTopicPartition(topic, 0)].offset, left[KTopicPartition(topic, 1)].offset) == (5, -1)

        # A group with members takes no admin commit and cannot be deleted.
        alter = [ConsumerGroupTopicPartitions(active, [TopicPartition(topic, 0, 99)])]
        assert admin_errors(admin.alter_consumer_group_offsets(alter)[active]) == {KafkaError.UNKNOWN_MEMBER_ID}
        assert admin_errors(admin.delete_consumer_groups([active], request_timeout=30)[active]) == {KafkaError.NON_EMPTY_GROUP}
    finally:
        stop_all(members)

    wait_until(lambda: admin.describe_consumer_groups([active])[active].result(30).state == ConsumerGroupState.EMPTY,
               20, "the group did not become Empty after its members left")
    for group_id, future in admin.delete_consumer_groups([active, simple], request_timeout=30).items():
        assert admin_errors(future) == set(), group_id
    remaining = {g.group_id for g in admin.list_consumer_groups(request_timeout=30).result().valid}
    assert active not in remaining and simple not in remaining
    fetched = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(active, [TopicPartition(topic, 0)])])[active].result(30)
    assert fetched.topic_partitions[0].offset == OFFSET_INVALID
    assert kadmin.delete_groups([active]) == {active: "GroupIdNotFoundError"}
    kadmin.close()


# ---- 8. hand-built requests --------------------------------------------------------------

class Wire:
    """One connection speaking hand-built requests: kafka-python's message classes encode
    and decode them, at the highest version both the broker (ApiVersions) and `cap`
    allow. The caps used below are the versions kafka-python 3.0.12 sends."""

    def __init__(self, bootstrap):
        from kafka.protocol.metadata.api_versions import ApiVersionsRequest, ApiVersionsResponse

        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.correlation_id = 0
        response = self._send(ApiVersionsRequest(), ApiVersionsResponse, 0)
        assert response.error_code == 0
        self.versions = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}

    def close(self):
        self.sock.close()

    def call(self, request, cap, at_least=0):
        low, high = self.versions[request.API_KEY]
        version = min(high, cap)
        assert version >= max(low, at_least), f"{type(request).__name__}: broker offers v{low}-v{high}, test needs v{at_least}+"
        module = sys.modules[type(request).__module__]
        response_class = getattr(module, type(request).__name__.replace("Request", "Response"))
        return self._send(request, response_class, version)

    def _send(self, request, response_class, version):
        self.correlation_id += 1
        request.with_header(correlation_id=self.correlation_id, client_id="freshet-compat")
        self.sock.sendall(request.encode(version=version, header=True, framed=True))
        (size,) = struct.unpack(">i", self._read(4))
        response = response_class.decode(self._read(size), version=version, header=True)
        assert response.header.correlation_id == self.correlation_id
        return response

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the broker closed the connection"
            data += chunk
        return data

    def join(self, group, member_id="", protocols=None, instance_id=None, session_ms=10000, protocol_type="consumer"):
        from kafka.protocol.consumer.group import JoinGroupRequest

        protocols = protocols or [("range", b"")]
        request = JoinGroupRequest(
            group_id=group, session_timeout_ms=session_ms, rebalance_timeout_ms=10000, member_id=member_id,
            group_instance_id=instance_id, protocol_type=protocol_type,
            protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name=n, metadata=m) for n, m in protocols])
        return self.call(request, cap=7, at_least=5 if instance_id else 0)

    def join_dynamic(self, group, **kwargs):
        """JoinGroup as a new dynamic member: from v4 the broker first answers
        MEMBER_ID_REQUIRED with the id to join with (KIP-394)."""
        response = self.join(group, **kwargs)
        if response.error_code == MEMBER_ID_REQUIRED:
            assert response.member_id
            response = self.join(group, member_id=response.member_id, **kwargs)
        return response

    def sync(self, group, generation, member_id, assignments=(), instance_id=None, protocol_name="range"):
        from kafka.protocol.consumer.group import SyncGroupRequest

        request = SyncGroupRequest(
            group_id=group, generation_id=generation, member_id=member_id, group_instance_id=instance_id,
            protocol_type="consumer", protocol_name=protocol_name,
            assignments=[SyncGroupRequest.SyncGroupRequestAssignment(member_id=m, assignment=a) for m, a in assignments])
        return self.call(request, cap=5, at_least=3 if instance_id else 0)

    def heartbeat(self, group, generation, member_id, instance_id=None):
        from kafka.protocol.consumer.group import HeartbeatRequest

        request = HeartbeatRequest(group_id=group, generation_id=generation, member_id=member_id,
                                   group_instance_id=instance_id)
        return self.call(request, cap=4, at_least=3 if instance_id else 0).error_code

    def commit(self, group, generation, member_id, topic, offsets, instance_id=None):
        """OffsetCommit; returns the set of partition error codes."""
        from kafka.protocol.consumer.group import OffsetCommitRequest

        Topic = OffsetCommitRequest.OffsetCommitRequestTopic
        request = OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
            group_instance_id=instance_id, topics=[Topic(name=topic, partitions=[
                Topic.OffsetCommitRequestPartition(partition_index=p, committed_offset=o, committed_metadata="")
                for p, o in offsets.items()])])
        response = self.call(request, cap=8, at_least=7 if instance_id else 0)
        return {p.error_code for t in response.topics for p in t.partitions}

    def leave(self, group, member_id):
        """LeaveGroup; returns (top-level error, member-level errors)."""
        from kafka.protocol.consumer.group import LeaveGroupRequest

        request = LeaveGroupRequest(group_id=group, member_id=member_id, members=[
            LeaveGroupRequest.MemberIdentity(member_id=member_id, group_instance_id=None)])
        response = self.call(request, cap=5)
        return response.error_code, [m.error_code for m in (response.members or [])]


def subscription(topic):
    from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription

    return bytes(ConsumerProtocolSubscription(version=0, topics=[topic], user_data=b"").encode())


def assignment(topic, partitions):
    from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment

    return bytes(ConsumerProtocolAssignment(version=0, assigned_partitions=[(topic, partitions)], user_data=b"").encode())


def test_generations_and_member_ids_are_checked(group_server):
    """Hand-built JoinGroup/SyncGroup/Heartbeat/OffsetCommit/LeaveGroup for two dynamic
    members, checking Kafka's answers at each step: a new member must first fetch its id
    (MEMBER_ID_REQUIRED) and does not disturb the group until it joins with it; then the
    old member's heartbeat says REBALANCE_IN_PROGRESS while its commits at the current
    generation are still taken; the group picks the one protocol both offer; between
    JoinGroup and SyncGroup commits are REBALANCE_IN_PROGRESS; assignments pass through
    byte for byte; afterwards the old generation is ILLEGAL_GENERATION, a made-up member
    UNKNOWN_MEMBER_ID, an unshared protocol INCONSISTENT_GROUP_PROTOCOL, a session timeout
    out of bounds INVALID_SESSION_TIMEOUT; a member that leaves triggers a rebalance, and
    an emptied group takes admin commits again."""
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTopicPartition

    topic, group = unique("wire")
    create_topic(group_server.bootstrap, topic, 2)
    sub = subscription(topic)
    a, b, c = Wire(group_server.bootstrap), Wire(group_server.bootstrap), Wire(group_server.bootstrap)
    try:
        # Generation 1: a alone, offering two protocols.
        first = a.join_dynamic(group, protocols=[("range", sub), ("roundrobin", sub)])
        assert first.error_code == NONE
        a_id, gen1 = first.member_id, first.generation_id
        assert first.leader == a_id and gen1 >= 1 and first.protocol_name == "range"
        assert [(m.member_id, bytes(m.metadata)) for m in first.members] == [(a_id, sub)]
        synced = a.sync(group, gen1, a_id, [(a_id, assignment(topic, [0, 1]))])
        assert synced.error_code == NONE and bytes(synced.assignment) == assignment(topic, [0, 1])
        assert a.heartbeat(group, gen1, a_id) == NONE

        # b offers only roundrobin. Fetching its member id does not start a rebalance.
        if b.versions[11][1] >= 4:
            pending = b.join(group, protocols=[("roundrobin", sub)])
            assert pending.error_code == MEMBER_ID_REQUIRED and pending.member_id
            assert a.heartbeat(group, gen1, a_id) == NONE
            b_id = pending.member_id
        else:
            b_id = ""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            b_joined = pool.submit(b.join, group, member_id=b_id, protocols=[("roundrobin", sub)])
            wait_until(lambda: a.heartbeat(group, gen1, a_id) == REBALANCE_IN_PROGRESS, 10,
                       "a's heartbeat never said REBALANCE_IN_PROGRESS after b joined")
            # Still generation 1 until every member rejoins: a can commit what it processed.
            assert a.commit(group, gen1, a_id, topic, {0: 3}) == {NONE}
            a_joined = a.join(group, member_id=a_id, protocols=[("range", sub), ("roundrobin", sub)])
            b_joined = b_joined.result(30)
        assert a_joined.error_code == NONE and b_joined.error_code == NONE
        b_id, gen2 = b_joined.member_id, a_joined.generation_id
        assert gen2 == gen1 + 1 and b_joined.generation_id == gen2
        assert a_joined.protocol_name == b_joined.protocol_name == "roundrobin"
        assert a_joined.leader == b_joined.leader == a_id
        assert sorted(m.member_id for m in a_joined.members) == sorted([a_id, b_id]) and not b_joined.members

        # CompletingRebalance: heartbeats are fine, commits wait for the assignment.
        assert a.heartbeat(group, gen2, a_id) == NONE
        assert a.commit(group, gen2, a_id, topic, {0: 4}) == {REBALANCE_IN_PROGRESS}
        assert a.commit(group, gen1, a_id, topic, {0: 4}) == {ILLEGAL_GENERATION}
        assert a.sync(group, gen1, a_id, protocol_name="roundrobin").error_code == ILLEGAL_GENERATION
        a_synced = a.sync(group, gen2, a_id, [(a_id, assignment(topic, [0])), (b_id, assignment(topic, [1]))],
                          protocol_name="roundrobin")
        b_synced = b.sync(group, gen2, b_id, protocol_name="roundrobin")
        assert a_synced.error_code == b_synced.error_code == NONE
        assert bytes(a_synced.assignment) == assignment(topic, [0])
        assert bytes(b_synced.assignment) == assignment(topic, [1])

        # Stable at generation 2.
        assert a.commit(group, gen2, a_id, topic, {0: 5}) == {NONE}
        assert b.commit(group, gen2, b_id, topic, {1: 7}) == {NONE}
        assert a.heartbeat(group, gen1, a_id) == ILLEGAL_GENERATION
        assert a.commit(group, gen1, a_id, topic, {0: 6}) == {ILLEGAL_GENERATION}
        assert a.heartbeat(group, gen2, "stranger") == UNKNOWN_MEMBER_ID
        assert a.commit(group, gen2, "stranger", topic, {0: 6}) == {UNKNOWN_MEMBER_ID}
        assert a.commit(group, -1, "", topic, {0: 6}) == {UNKNOWN_MEMBER_ID}  # admin-style, group not empty
        assert c.join(group, member_id="stranger", protocols=[("roundrobin", sub)]).error_code == UNKNOWN_MEMBER_ID
        assert c.join(group, protocols=[("sticky-only", sub)]).error_code == INCONSISTENT_GROUP_PROTOCOL
        assert c.join(group, protocols=[("roundrobin", sub)], protocol_type="connect").error_code == INCONSISTENT_GROUP_PROTOCOL
        assert c.join(group, protocols=[("roundrobin", sub)], session_ms=500).error_code == INVALID_SESSION_TIMEOUT
        assert c.join(group, protocols=[("roundrobin", sub)], session_ms=1_800_001).error_code == INVALID_SESSION_TIMEOUT
        assert a.heartbeat(group, gen2, a_id) == NONE, "refused joins must not disturb the group"

        # b leaves: a is told to rejoin and makes generation 3 alone.
        error, member_errors = b.leave(group, b_id)
        assert error == NONE and all(e == NONE for e in member_errors)
        assert a.heartbeat(group, gen2, a_id) == REBALANCE_IN_PROGRESS
        alone = a.join(group, member_id=a_id, protocols=[("range", sub), ("roundrobin", sub)])
        assert alone.error_code == NONE and alone.generation_id == gen2 + 1 and alone.leader == a_id
        assert alone.protocol_name == "range"
        assert a.sync(group, alone.generation_id, a_id, [(a_id, assignment(topic, [0, 1]))]).error_code == NONE
        assert a.heartbeat(group, gen2, a_id) == ILLEGAL_GENERATION
        error, _ = a.leave(group, a_id)
        assert error == NONE
        # Empty again: an admin-style commit (generation -1, no member id) is taken.
        assert a.commit(group, -1, "", topic, {1: 9}) == {NONE}
    finally:
        for w in (a, b, c):
            w.close()
    admin = KafkaAdminClient(bootstrap_servers=group_server.bootstrap)
    offsets = admin.list_group_offsets({group: [KTopicPartition(topic, 0), KTopicPartition(topic, 1)]})[group]
    admin.close()
    assert {tp.partition: o.offset for tp, o in offsets.items()} == {0: 5, 1: 9}


def test_a_static_member_rejoining_fences_its_old_id(group_server):
    """Hand-built static membership (JoinGroup v5+ with group.instance.id): a static member
    joins without MEMBER_ID_REQUIRED; the same instance joining again with no member id
    (a restart) gets a new member id in the same generation, without a rebalance, and its
    SyncGroup returns the assignment the group already had for it; the old member id is
    then FENCED_INSTANCE_ID for heartbeats and commits while the new one works."""
    topic, group = unique("fence")
    create_topic(group_server.bootstrap, topic, 2)
    sub = subscription(topic)
    first, second = Wire(group_server.bootstrap), Wire(group_server.bootstrap)
    instance = "instance-1"
    try:
        joined = first.join(group, protocols=[("range", sub)], instance_id=instance)
        assert joined.error_code == NONE and joined.member_id and joined.leader == joined.member_id
        old_id, gen = joined.member_id, joined.generation_id
        given = assignment(topic, [0, 1])
        assert first.sync(group, gen, old_id, [(old_id, given)], instance_id=instance).error_code == NONE
        assert first.heartbeat(group, gen, old_id, instance) == NONE

        again = second.join(group, protocols=[("range", sub)], instance_id=instance)
        assert again.error_code == NONE
        new_id = again.member_id
        assert new_id and new_id != old_id
        assert again.generation_id == gen, "a static member's restart must not start a new generation"
        synced = second.sync(group, gen, new_id, instance_id=instance)
        assert synced.error_code == NONE and bytes(synced.assignment) == given

        assert first.heartbeat(group, gen, old_id, instance) == FENCED_INSTANCE_ID
        assert first.commit(group, gen, old_id, topic, {0: 1}, instance_id=instance) == {FENCED_INSTANCE_ID}
        assert second.heartbeat(group, gen, new_id, instance) == NONE
        assert second.commit(group, gen, new_id, topic, {0: 1}, instance_id=instance) == {NONE}
    finally:
        first.close()
        second.close()


def test_an_empty_group_id_is_refused(group_server):
    """An empty group id is INVALID_GROUP_ID for JoinGroup, SyncGroup and Heartbeat, and
    kafka-python's consumer raises it as InvalidGroupIdError from poll(). (confluent-kafka
    cannot try: with group.id='' librdkafka creates no consumer group, and confluent-kafka
    2.16.1's Consumer() then aborts the whole process on an assertion.)"""
    import kafka.errors as Errors
    from kafka import KafkaConsumer

    topic, _ = unique("nogroup")
    create_topic(group_server.bootstrap, topic, 1)
    wire = Wire(group_server.bootstrap)
    try:
        assert wire.join("", protocols=[("range", subscription(topic))]).error_code == INVALID_GROUP_ID
        assert wire.sync("", 1, "member").error_code == INVALID_GROUP_ID
        assert wire.heartbeat("", 1, "member") == INVALID_GROUP_ID
    finally:
        wire.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=group_server.bootstrap, group_id="",
                             session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS)
    try:
        deadline = time.monotonic() + 20
        with pytest.raises(Errors.InvalidGroupIdError):
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=200)
    finally:
        consumer.close()

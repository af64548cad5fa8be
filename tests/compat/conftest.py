"""Starts and stops a real `freshet server` process for the compatibility tests."""

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

START_TIMEOUT_S = 60
# Broker settings for the consumer-group tests: the first rebalance of a new group is not
# held back (Kafka's default waits 3 s for more members), and short sessions are allowed.
GROUP_SETTINGS = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
}


class Server:
    """A `freshet server` on loopback with its own data directory; `settings` are extra
    `--set key=value` pairs, applied after the defaults here."""

    def __init__(self, data_dir, settings=None):
        self.data_dir = data_dir
        self.settings = dict(settings or {})
        self.port = None
        self.proc = None
        self.log_path = os.path.join(os.path.dirname(data_dir), "server.log")
        self.log = open(self.log_path, "ab")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self.spawn()
        self.wait_ready()

    def spawn(self):
        """Starts the process; `wait_ready` waits for it to listen."""
        settings = {
            "log.dirs": self.data_dir,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port or 0}",
            "num.partitions": "1",
            **self.settings,
        }
        cmd = [os.environ["FRESHET_BIN"], "server"]
        for key, value in settings.items():
            cmd += ["--set", f"{key}={value}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log)

    def wait_ready(self):
        deadline = time.time() + START_TIMEOUT_S
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"freshet server listening on"):
                self.port = int(line.strip().rsplit(b":", 1)[1])
                return
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"freshet server did not start: {line!r} (see {self.log.name})")

    def stop(self, kill=False):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        assert kill or code == 0, f"clean shutdown exited with {code}"
        self.proc = None

    def print_log_tail(self):
        """Shown by pytest only when the test failed."""
        with open(self.log_path, "rb") as f:
            print(f"---- {self.log_path} (tail) ----")
            print(b"".join(f.readlines()[-40:]).decode(errors="replace"))

    def restart(self, kill=False):
        self.stop(kill=kill)
        # The same port again, so clients reconnect to the address they know.
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.05)
        self.start()


@contextlib.contextmanager
def running_server(settings=None):
    with tempfile.TemporaryDirectory(prefix="freshet-compat-") as tmp:
        srv = Server(os.path.join(tmp, "data"), settings)
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()
            srv.print_log_tail()


def free_ports(n):
    """`n` loopback ports free right now (held open together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class ThreeNodeCluster:
    """Three `freshet server` processes in combined mode (broker and controller), one
    quorum, each with its own data directory."""

    def __init__(self, tmp, settings=None):
        clients, controllers = free_ports(3), free_ports(3)
        voters = ",".join(f"{i + 1}@127.0.0.1:{controllers[i]}" for i in range(3))
        self.nodes = []
        for i in range(3):
            node_dir = os.path.join(tmp, f"node-{i + 1}")
            os.makedirs(node_dir)
            node_settings = {
                "node.id": str(i + 1),
                "listeners": f"PLAINTEXT://127.0.0.1:{clients[i]},CONTROLLER://127.0.0.1:{controllers[i]}",
                "controller.quorum.voters": voters,
                "broker.session.timeout.ms": "2000",
                "broker.heartbeat.interval.ms": "200",
                "replica.lag.time.max.ms": "4000",
                **(settings or {}),
            }
            node = Server(os.path.join(node_dir, "data"), node_settings)
            node.port = clients[i]
            self.nodes.append(node)

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes)

    def start(self):
        # Each waits for a quorum before it listens, so all are spawned first.
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            node.wait_ready()

    def stop(self):
        for node in self.nodes:
            node.stop()


@pytest.fixture
def cluster():
    with tempfile.TemporaryDirectory(prefix="freshet-compat-cluster-") as tmp:
        c = ThreeNodeCluster(tmp)
        try:
            c.start()
            yield c
        finally:
            for node in c.nodes:
                with contextlib.suppress(Exception):
                    node.stop()
                node.print_log_tail()


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


@pytest.fixture
def group_server():
    """A server set up for consumer-group tests (see GROUP_SETTINGS)."""
    with running_server(GROUP_SETTINGS) as srv:
        yield srv

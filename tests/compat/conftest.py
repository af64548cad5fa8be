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
        port = self.port or 0
        cmd = [
            os.environ["FRESHET_BIN"], "server",
            "--set", f"log.dirs={self.data_dir}",
            "--set", f"listeners=PLAINTEXT://127.0.0.1:{port}",
            "--set", "num.partitions=1",
        ]
        for key, value in self.settings.items():
            cmd += ["--set", f"{key}={value}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log)
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
            # Shown by pytest only when the test failed.
            with open(srv.log_path, "rb") as f:
                print("---- freshet server log (tail) ----")
                print(b"".join(f.readlines()[-40:]).decode(errors="replace"))


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


@pytest.fixture
def group_server():
    """A server set up for consumer-group tests (see GROUP_SETTINGS)."""
    with running_server(GROUP_SETTINGS) as srv:
        yield srv

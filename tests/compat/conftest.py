"""Starts and stops a real `freshet server` process for the compatibility tests."""

import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

START_TIMEOUT_S = 60


class Server:
    """A `freshet server` on loopback with its own data directory."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
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


@pytest.fixture
def server():
    with tempfile.TemporaryDirectory(prefix="freshet-compat-") as tmp:
        srv = Server(os.path.join(tmp, "data"))
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()
            # Shown by pytest only when the test failed.
            with open(srv.log_path, "rb") as f:
                print("---- freshet server log (tail) ----")
                print(b"".join(f.readlines()[-40:]).decode(errors="replace"))

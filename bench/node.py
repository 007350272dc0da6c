"""A RabbitMQ node of the bench's own, to restart without touching the machine's broker.

As docs/broker-cluster.md says, Debian's /usr/sbin/rabbitmq-server switches to
the `rabbitmq` user, who cannot write our folder, so this calls the real script beside
rabbitmqctl, with its own HOME (Erlang cookie), node name, ports and data folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pika

from bench.common import VAR, free_port


def _sbin() -> Path:
    found = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin"))
    if not found:
        raise FileNotFoundError("no RabbitMQ under /usr/lib/rabbitmq/lib (apt-get install "
                                "rabbitmq-server)")
    return Path(found[-1])


class Node:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"bench-{tag}@localhost"
        self.folder = VAR / f"node-{tag}"
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self._sbin = _sbin()
        self._env = self._environment(free_port())

    def _environment(self, dist_port: int) -> dict[str, str]:
        d = self.folder
        d.mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        (d / "enabled_plugins").write_text("[].\n")  # no management: a faster boot
        (d / "rabbitmq-env.conf").write_text("")  # not the machine's (it names its own node)
        return {
            **os.environ, "HOME": str(d), "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"), "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
        }

    def _ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([str(self._sbin / "rabbitmqctl"), "-n", self.name, *args],
                       env=self._env, check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        """Start detached and return once the node has booted (rabbitmqctl wait)."""
        subprocess.run([str(self._sbin / "rabbitmq-server"), "-detached"], env=self._env,
                       check=True, timeout=60, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def wait_booted(self) -> None:
        self._ctl("wait", str(self.folder / "pid"), "--timeout", "90")

    def stop(self) -> None:
        """A clean stop; returns once the Erlang VM is gone."""
        self._ctl("stop", str(self.folder / "pid"))

    def _pid(self) -> int | None:
        """The node's VM, if the pid file names a live process that is this node: its argv
        carries `-home <our folder>` (a stale pid may belong to anything by now)."""
        try:
            pid = int((self.folder / "pid").read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if str(self.folder).encode() in argv else None

    def kill(self) -> None:
        """A crash: SIGKILL the VM, then wait until it is gone."""
        pid = self._pid()
        if pid is None:
            raise ProcessLookupError(f"no running VM for {self.name}")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def accepts(self) -> pika.BlockingConnection | None:
        """An AMQP connection if the node takes one now (the moment that counts in P6)."""
        params = pika.URLParameters(self.url)
        params.connection_attempts = 1
        params.socket_timeout = 1
        try:
            return pika.BlockingConnection(params)
        except pika.exceptions.AMQPError:
            return None

    def destroy(self) -> None:
        """Stop the node however it is, and remove its folder."""
        if self._pid() is not None:
            try:
                self.stop()
            except (subprocess.SubprocessError, OSError):
                self.kill()
        if self._pid() is not None:
            raise RuntimeError(f"node {self.name} did not stop; its folder stays: {self.folder}")
        shutil.rmtree(self.folder, ignore_errors=True)

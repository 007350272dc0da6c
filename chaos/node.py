"""A RabbitMQ node of the run's own: own name, ports, data directory, cookie and plugins file.

The machine's broker (5672) is never touched: this node is the one the run may SIGKILL,
SIGSTOP or restart. Debian's /usr/sbin wrapper switches to the `rabbitmq` user, which cannot
write a root-owned temporary folder, so the real scripts under /usr/lib/rabbitmq are called.
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
from typing import Any
from urllib.parse import quote

import requests

from dev.ports import free_port

#: Cold start and restart after a SIGKILL both take ~6 s here; leave room for a slow machine.
_WAIT_S = 90


def _sbin() -> Path:
    found = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin"))
    if not found:
        raise RuntimeError("RabbitMQ is not installed (no /usr/lib/rabbitmq/lib/rabbitmq_server-*)")
    return Path(found[-1])


class Node:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = f"chaos{uuid.uuid4().hex[:6]}@localhost"
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.management_port = free_port()
        self.sbin = _sbin()
        self.pid: int | None = None

    # -- configuration -------------------------------------------------------------------------

    def _write_config(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.management_port}\n"
            # Queue depths are read through the management API: refresh them every second.
            "collect_statistics_interval = 1000\n"
            "management.rates_mode = none\n")
        (self.folder / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # An empty env file: the machine's /etc/rabbitmq/rabbitmq-env.conf names its own node.
        (self.folder / "rabbitmq-env.conf").write_text("")

    def env(self) -> dict[str, str]:
        d = str(self.folder)
        return {
            **os.environ,
            "HOME": d,  # the Erlang cookie lives here, for the node and rabbitmqctl alike
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{d}/mnesia",
            "RABBITMQ_LOG_BASE": f"{d}/log",
            "RABBITMQ_CONFIG_FILE": f"{d}/rabbitmq",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{d}/advanced.config",
            "RABBITMQ_CONF_ENV_FILE": f"{d}/rabbitmq-env.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{d}/enabled_plugins",
            "RABBITMQ_PID_FILE": f"{d}/pid",
        }

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start (or restart on the same data directory) and wait until AMQP and HTTP answer."""
        self._write_config()
        subprocess.run([str(self.sbin / "rabbitmq-server"), "-detached"], env=self.env(),
                       check=True, capture_output=True, timeout=60)
        self._ctl("wait", str(self.folder / "pid"), "--timeout", str(_WAIT_S),
                  timeout=_WAIT_S + 10)
        self.pid = int((self.folder / "pid").read_text().strip())
        self._wait_management()

    def stop(self) -> None:
        """Stop cleanly; SIGKILL if it does not go (never leave a node behind)."""
        if self.pid is None:
            return
        self.signal(signal.SIGCONT)
        try:
            self._ctl("stop", timeout=60)
        except (subprocess.SubprocessError, OSError):
            self.signal(signal.SIGKILL)
        self._wait_gone()
        self.pid = None

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self._wait_gone()
        self.pid = None

    def restart(self) -> None:
        if self.pid is not None:
            self.kill()
        self.start()

    def signal(self, signum: int) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def remove_data(self) -> None:
        shutil.rmtree(self.folder / "mnesia", ignore_errors=True)

    def _wait_gone(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.pid is not None and time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def _ctl(self, *args: str, timeout: float) -> None:
        subprocess.run([str(self.sbin / "rabbitmqctl"), "-n", self.name, *args],
                       env=self.env(), check=True, capture_output=True, timeout=timeout)

    def _wait_management(self) -> None:
        deadline = time.monotonic() + _WAIT_S
        while time.monotonic() < deadline:
            try:
                if self.api("GET", "overview").ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"management API of {self.name} did not answer")

    # -- what the run reads and changes ---------------------------------------------------------

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{quote(vhost, '')}"

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"http://127.0.0.1:{self.management_port}/api/{path}",
                                auth=("guest", "guest"), timeout=10, **kwargs)

    def add_vhost(self, name: str) -> None:
        self.api("PUT", f"vhosts/{quote(name, '')}").raise_for_status()
        self.api("PUT", f"permissions/{quote(name, '')}/guest",
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()

    def delete_vhost(self, name: str) -> None:
        self.api("DELETE", f"vhosts/{quote(name, '')}")

    def queues(self, vhost: str) -> dict[str, dict[str, Any]]:
        """Each queue's depth: {name: {"ready": n, "unacked": n, "consumers": n}}."""
        response = self.api("GET", f"queues/{quote(vhost, '')}")
        response.raise_for_status()
        return {q["name"]: {"ready": q.get("messages_ready", 0) or 0,
                            "unacked": q.get("messages_unacknowledged", 0) or 0,
                            "consumers": q.get("consumers", 0) or 0}
                for q in response.json()}

    def unbind(self, vhost: str, exchange: str, queue: str, routing_key: str) -> None:
        path = (f"bindings/{quote(vhost, '')}/e/{quote(exchange, '')}/q/{quote(queue, '')}/"
                f"{quote(routing_key, '')}")
        self.api("DELETE", path).raise_for_status()

    def bind(self, vhost: str, exchange: str, queue: str, routing_key: str) -> None:
        path = f"bindings/{quote(vhost, '')}/e/{quote(exchange, '')}/q/{quote(queue, '')}"
        self.api("POST", path, json={"routing_key": routing_key}).raise_for_status()

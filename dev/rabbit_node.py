"""A RabbitMQ node of the run's own: own name, ports, data directory, cookie and plugins file;
and a cluster of three such nodes (docs/broker-cluster.md). The one node class of the chaos
run, the bench and the tests that need a broker to stop.

The machine's broker (5672) is never touched: this node is the one the run may SIGKILL,
SIGSTOP or restart. Its ports come from dev/ports.py (never ones an outgoing connection can
take), and a first start that fails is tried again on new ones (docs/ports.md).
Debian's /usr/sbin wrapper switches to the `rabbitmq` user, which cannot
write a root-owned temporary folder, so the real scripts under /usr/lib/rabbitmq are called.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import requests

from dev.ports import free_port, release

#: Cold start and restart after a SIGKILL both take ~6 s here; leave room for a slow machine.
_WAIT_S = 90
#: First starts tried before giving up: a port may be taken by a process outside any run.
_FIRST_STARTS = 3
MANAGEMENT = "rabbitmq_management"
PROMETHEUS = "rabbitmq_prometheus"


def _sbin() -> Path:
    found = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin"))
    if not found:
        raise RuntimeError("RabbitMQ is not installed (no /usr/lib/rabbitmq/lib/rabbitmq_server-*)")
    return Path(found[-1])


class _Management:
    """What the run reads and changes through the management API (`api` is a node's own, or
    any answering member's in a cluster)."""

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        raise NotImplementedError

    def add_vhost(self, name: str) -> None:
        self.api("PUT", f"vhosts/{quote(name, '')}").raise_for_status()
        self.api(
            "PUT",
            f"permissions/{quote(name, '')}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()

    def delete_vhost(self, name: str) -> None:
        self.api("DELETE", f"vhosts/{quote(name, '')}")

    def queues(self, vhost: str) -> dict[str, dict[str, Any]]:
        """Each queue's depth: {name: {"ready": n, "unacked": n, "consumers": n}}."""
        response = self.api("GET", f"queues/{quote(vhost, '')}")
        response.raise_for_status()
        return {
            q["name"]: {
                "ready": q.get("messages_ready", 0) or 0,
                "unacked": q.get("messages_unacknowledged", 0) or 0,
                "consumers": q.get("consumers", 0) or 0,
            }
            for q in response.json()
        }

    def unbind(self, vhost: str, exchange: str, queue: str, routing_key: str) -> None:
        path = (
            f"bindings/{quote(vhost, '')}/e/{quote(exchange, '')}/q/{quote(queue, '')}/"
            f"{quote(routing_key, '')}"
        )
        self.api("DELETE", path).raise_for_status()

    def bind(self, vhost: str, exchange: str, queue: str, routing_key: str) -> None:
        path = f"bindings/{quote(vhost, '')}/e/{quote(exchange, '')}/q/{quote(queue, '')}"
        self.api("POST", path, json={"routing_key": routing_key}).raise_for_status()


class Node(_Management):
    """One node. A cluster's members share `cookie`; `gid` runs the node under a group of its
    own, so that packet filter rules can tell its connections from the others' (the partition);
    `config` and `advanced` are added to its rabbitmq.conf and advanced.config. `plugins`: the
    management plugin (what the run reads queues and sets policies through) by default; none
    boots faster (the bench's restarts)."""

    def __init__(
        self,
        folder: Path,
        cookie: str | None = None,
        gid: int | None = None,
        config: str = "",
        advanced: str = "",
        plugins: tuple[str, ...] = (MANAGEMENT,),
    ) -> None:
        self.folder = folder
        self.name = f"node{uuid.uuid4().hex[:6]}@localhost"
        self.sbin = _sbin()
        self.pid: int | None = None
        self.cookie = cookie
        self.gid = gid
        self._config = config
        self._advanced = advanced
        self.plugins = plugins
        self._booted = False
        self._take_ports()

    def _take_ports(self) -> None:
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.management_port = free_port() if MANAGEMENT in self.plugins else 0
        self.prometheus_port = free_port() if PROMETHEUS in self.plugins else 0

    def _release_ports(self) -> None:
        for port in (self.amqp_port, self.dist_port, self.management_port, self.prometheus_port):
            release(port)

    # -- configuration -------------------------------------------------------------------------

    def _write_config(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
        if self.management_port:
            config += (
                f"management.tcp.ip = 127.0.0.1\n"
                f"management.tcp.port = {self.management_port}\n"
                # Queue depths are read through the management API: every second.
                "collect_statistics_interval = 1000\n"
                "management.rates_mode = none\n"
            )
        if self.prometheus_port:
            config += (
                f"prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {self.prometheus_port}\n"
            )
        (self.folder / "rabbitmq.conf").write_text(config + self._config)
        if self._advanced:
            (self.folder / "advanced.config").write_text(self._advanced)
        if self.cookie is not None:
            self._write_cookie(self.cookie)
        (self.folder / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        # An empty env file: the machine's /etc/rabbitmq/rabbitmq-env.conf names its own node.
        (self.folder / "rabbitmq-env.conf").write_text("")

    def _write_cookie(self, cookie: str) -> None:
        """The Erlang cookie in HOME, readable by its owner only (Erlang refuses it otherwise)."""
        path = self.folder / ".erlang.cookie"
        if path.exists():
            path.chmod(0o600)
        path.write_text(cookie)
        path.chmod(0o400)

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

    def start(self, wait: bool = True) -> None:
        """Start (or restart on the same data directory); with `wait`, return once AMQP (and
        the management API) answer. A first start that fails is tried again on new ports: a
        process outside every run may have bound one (a restart keeps its ports: clients
        reconnect to them)."""
        if not wait:
            self._launch()
            return
        for attempt in range(1, _FIRST_STARTS + 1):
            try:
                self._launch()
                self.wait_booted()
                break
            except (subprocess.SubprocessError, OSError):
                if self._booted or attempt == _FIRST_STARTS:
                    raise
                self.kill()
                self._release_ports()
                self._take_ports()
        if self.management_port:
            self._wait_management()

    def _launch(self) -> None:
        self._write_config()
        subprocess.run(
            [str(self.sbin / "rabbitmq-server"), "-detached"],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=60,
            group=self.gid,
        )

    def wait_booted(self) -> None:
        """Until the node has booted (`rabbitmqctl wait`): an error if it stopped instead."""
        self.ctl("wait", str(self.folder / "pid"), "--timeout", str(_WAIT_S), timeout=_WAIT_S + 10)
        self.pid = int((self.folder / "pid").read_text().strip())
        self._booted = True

    def stop(self) -> None:
        """Stop cleanly; SIGKILL if it does not go (never leave a node behind)."""
        if self.pid is None:  # started without waiting, or a start cut short
            self.pid = self._started_pid()
        if self.pid is None:
            return
        self.signal(signal.SIGCONT)
        try:
            self.ctl("stop", timeout=60)
        except (subprocess.SubprocessError, OSError):
            self.signal(signal.SIGKILL)
        self._wait_gone()
        self.pid = None

    def kill(self) -> None:
        if self.pid is None:  # a start cut short (Ctrl-C) may have left the node running
            self.pid = self._started_pid()
        self.signal(signal.SIGKILL)
        self._wait_gone()
        self.pid = None

    def _started_pid(self) -> int | None:
        """The pid in the pid file if that process is this node (its command line names this
        node's folder): never a stale pid reused by another process."""
        try:
            pid = int((self.folder / "pid").read_text().strip())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if f"-home\0{self.folder}\0".encode() in command else None

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

    def destroy(self) -> None:
        """Stop the node however it is, remove its folder and hand its ports back."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
        self._release_ports()

    def _wait_gone(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.pid is not None and time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def ctl(self, *args: str, timeout: float) -> None:
        subprocess.run(
            [str(self.sbin / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=timeout,
        )

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

    def url(self, vhost: str = "/") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{quote(vhost, '')}"

    def accepts(self) -> pika.BlockingConnection | None:
        """An AMQP connection if the node takes one now (the moment the bench's P6 times)."""
        params = pika.URLParameters(self.url())
        params.connection_attempts = 1
        params.socket_timeout = 1
        try:
            return pika.BlockingConnection(params)
        except pika.exceptions.AMQPError:
            return None

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method,
            f"http://127.0.0.1:{self.management_port}/api/{path}",
            auth=("guest", "guest"),
            timeout=10,
            **kwargs,
        )


#: A member cut off from the others pauses (stops serving clients, which then move to the
#: others) rather than go on alone; and members give a silent peer up after 4-6 s (net_ticktime
#: 5) rather than the default 45-75 s. A cut leader stalls its queue until then: with 10 s,
#: consumption resumed 13.7 s after the cut; with 5 s, 8.4 s.
CLUSTER_CONFIG = "cluster_partition_handling = pause_minority\n"
CLUSTER_ADVANCED = "[{kernel, [{net_ticktime, 5}]}].\n"
#: Each member runs under a group of its own, from here up (no file on the machine has these).
_GID_BASE = 47_000
#: The mark on the run's packet filter rules.
_RULE_COMMENT = "album-publisher-chaos"


class Cluster(_Management):
    """Three nodes of the run's own joined into one cluster: own names, ports and data
    directories, one cookie. The project's quorum queues, declared once all three run, get a
    member on each. `partitioned` cuts one member off with the packet filter (iptables)."""

    def __init__(self, folder: Path, size: int = 3) -> None:
        cookie = uuid.uuid4().hex
        self.members = [
            Node(
                folder / f"n{i + 1}",
                cookie=cookie,
                gid=_GID_BASE + i,
                config=CLUSTER_CONFIG,
                advanced=CLUSTER_ADVANCED,
            )
            for i in range(size)
        ]
        self._formed = False
        #: The member cut off now, if any (asked last).
        self.cut: Node | None = None

    @property
    def management_port(self) -> int:
        """The first member's: policies are the cluster's, and the services take one API URL
        (they carry on without it while that member is down)."""
        return self.members[0].management_port

    @property
    def pid(self) -> int | None:
        """None while any member is down, so that the run's heal starts it again."""
        pids = [member.pid for member in self.members]
        return None if None in pids else pids[0]

    def start(self) -> None:
        """Start every member that is down, side by side; the first time, join them."""
        down = [member for member in self.members if member.pid is None]
        errors: list[BaseException] = []

        def start(member: Node) -> None:
            try:
                member.start()
            except BaseException as exc:  # re-raised below, on the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(m,)) for m in down]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        if not self._formed:
            self._join()
            self._formed = True
        self.wait_whole()

    def _join(self) -> None:
        first = self.members[0]
        for member in self.members[1:]:
            member.ctl("stop_app", timeout=60)
            member.ctl("join_cluster", first.name, timeout=60)
            member.ctl("start_app", timeout=120)

    def wait_whole(self, timeout: float = 120) -> None:
        """Until every member runs in the cluster and answers on its management port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._whole():
                return
            time.sleep(0.5)
        raise RuntimeError("the cluster did not come back whole")

    def _whole(self) -> bool:
        try:
            for member in self.members:
                nodes = member.api("GET", "nodes")
                if not nodes.ok:
                    return False
                running = {n["name"] for n in nodes.json() if n.get("running")}
                if running != {m.name for m in self.members}:
                    return False
        except requests.RequestException:
            return False
        return True

    def rejoin(self, node: Node, patience_s: float = 30) -> bool:
        """Wait for the cluster to be whole again after `node` was cut off; True if it was
        within `patience_s`. Otherwise `node` is restarted (it rejoins from its data directory)
        and False returned: after a partition, 3.10.8's paused node was seen to hang while
        restarting its app (Erlang's `global` "faking nodedown/nodeup" between the members)."""
        try:
            self.wait_whole(patience_s)
            return True
        except RuntimeError:
            node.kill()
            node.start()
            self.wait_whole()
            return False

    def kill(self) -> None:
        for member in self.members:
            member.kill()

    def signal(self, signum: int) -> None:
        for member in self.members:
            member.signal(signum)

    def remove_data(self) -> None:
        for member in self.members:
            member.remove_data()

    # -- what the run reads and changes ---------------------------------------------------------

    def url(self, vhost: str) -> str:
        """AMQP_URL for the services: every member, comma-separated."""
        return ",".join(member.url(vhost) for member in self.members)

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The first member that answers (the one cut off last): any member serves the whole
        cluster's view."""
        order = sorted((m for m in self.members if m.pid is not None), key=lambda m: m is self.cut)
        error: requests.RequestException | None = None
        for member in order:
            try:
                response = member.api(method, path, **kwargs)
                if response.status_code < 500:
                    return response
            except requests.RequestException as exc:
                error = exc
        if error is not None:
            raise error
        raise requests.ConnectionError("no member of the cluster answers")

    def member(self, name: str) -> Node:
        return next(member for member in self.members if member.name == name)

    def leader(self, vhost: str, queue: str) -> Node:
        """The member that leads the quorum queue `queue` now."""
        return self.member(self._queue(vhost, queue)["leader"])

    def online(self, vhost: str, queue: str) -> list[str]:
        """The members of the quorum queue `queue` that are online now."""
        return list(self._queue(vhost, queue).get("online", []))

    def _queue(self, vhost: str, queue: str) -> dict[str, Any]:
        response = self.api("GET", f"queues/{quote(vhost, '')}/{quote(queue, '')}")
        response.raise_for_status()
        return dict(response.json())

    @contextlib.contextmanager
    def partitioned(self, node: Node) -> Iterator[None]:
        """`node` cut off from the other members while inside: every packet of the cluster's
        own connections (Erlang distribution) to or from it is dropped on the loopback. Its
        AMQP and management ports stay open, as when a network splits between the nodes but
        not between clients and nodes. The rules go again on the way out, whatever happens."""
        others = ",".join(str(m.dist_port) for m in self.members if m is not node)
        rules = [
            # connections to its distribution port, both directions
            ["-p", "tcp", "--dport", str(node.dist_port)],
            ["-p", "tcp", "--sport", str(node.dist_port)],
            # connections it opens to the others (told apart by its group)
            [
                "-p",
                "tcp",
                "-m",
                "owner",
                "--gid-owner",
                str(node.gid),
                "-m",
                "multiport",
                "--dports",
                others,
            ],
        ]
        added: list[list[str]] = []
        self.cut = node
        try:
            for rule in rules:
                _iptables("-I", rule)
                added.append(rule)
            yield
        finally:
            for rule in reversed(added):
                _iptables("-D", rule)
            self.cut = None


def _iptables(action: str, rule: list[str]) -> None:
    if shutil.which("iptables") is None:
        raise RuntimeError("the partition needs iptables, as root (apt-get install iptables)")
    subprocess.run(
        [
            "iptables",
            "-w",
            "5",
            action,
            "OUTPUT",
            "-o",
            "lo",
            *rule,
            "-m",
            "comment",
            "--comment",
            _RULE_COMMENT,
            "-j",
            "DROP",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


#: What a row's system runs on: one node, or a cluster.
Broker = Node | Cluster

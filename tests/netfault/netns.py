"""A private network of Linux network namespaces: one per peer, joined by a bridge.

Layout (every name starts with ``p2pnf-<pid>-``, the harness process's id, so that
concurrent runs never touch each other and a crashed run's leftovers can be found)::

    p2pnf-<pid>-hub          namespace holding the bridge br0 and one port h<i> per peer
    p2pnf-<pid>-p<i>         peer i's namespace: lo and eth0 = 10.213.0.<10+i>/24

Nothing is created in the root namespace: ``ip link add ... netns`` creates each veth
end directly in its namespace, the bridge has no address and no route leads to it, so
traffic between peers never leaves these namespaces and none can reach the host's
interfaces.

Faults are applied where no endpoint can see them:

* partitions are nftables ``drop`` rules in the bridge's forward hook (inside the hub):
  packets vanish silently, no RST, no ICMP, no local send error;
* a slow link is a ``tbf`` rate limit on both directions of one peer's veth.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PREFIX = "p2pnf-"
SUBNET = "10.213.0"
TABLE = "p2pnf"


class NetworkError(RuntimeError):
    """A namespace command failed."""


def run(*command: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
    return result


def missing_requirement() -> str | None:
    """Why this machine cannot run namespaced peers, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces, nftables, tc)"
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command (apt-get install iproute2 nftables)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        run("ip", "netns", "add", probe)
        run("ip", "netns", "exec", probe, "nft", "list", "tables")
    except NetworkError as exc:
        return f"cannot create a network namespace with nftables: {exc}"
    finally:
        run("ip", "netns", "delete", probe, check=False)
    return None


def remove_stale(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces left by runs whose process is gone (a crashed or killed run)."""
    removed = []
    listing = run("ip", "netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(re.escape(prefix) + r"(\d+)-.+", name)
        if match and not _pid_alive(int(match.group(1))):
            run("ip", "netns", "delete", name, check=False)
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Network:
    """``size`` peer namespaces on one bridge. Use :func:`create`; always :meth:`destroy`."""

    size: int
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}-")
    created: list[str] = field(default_factory=list)
    slowed: set[int] = field(default_factory=set)

    @property
    def hub(self) -> str:
        return f"{self.tag}hub"

    def namespace(self, index: int) -> str:
        return f"{self.tag}p{index}"

    def address(self, index: int) -> str:
        return f"{SUBNET}.{10 + index}"

    def exec_prefix(self, index: int) -> list[str]:
        """Prepend to a command to run it inside peer ``index``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(index)]

    # Building and removing ------------------------------------------------------------
    def build(self) -> None:
        self._add_namespace(self.hub)
        hub = ["ip", "-n", self.hub]
        run(*hub, "link", "add", "br0", "type", "bridge")
        run(*hub, "link", "set", "br0", "up")
        run(*hub, "link", "set", "lo", "up")
        for index in range(self.size):
            ns = self.namespace(index)
            self._add_namespace(ns)
            run(
                "ip",
                "link",
                "add",
                "eth0",
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                f"h{index}",
                "netns",
                self.hub,
            )
            run(*hub, "link", "set", f"h{index}", "master", "br0")
            run(*hub, "link", "set", f"h{index}", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
        self._nft(
            f"table bridge {TABLE} {{\n"
            " chain forward {\n  type filter hook forward priority 0; policy accept;\n }\n"
            "}"
        )

    def _add_namespace(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.created.append(name)

    def destroy(self) -> None:
        """Delete every namespace we created (their links, rules and qdiscs go with them)."""
        for name in reversed(self.created):
            run("ip", "netns", "delete", name, check=False)
        self.created.clear()

    # Faults --------------------------------------------------------------------------
    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Drop every packet between peers of different ``groups`` (peers in no group are
        cut off from everyone). Replaces any earlier partition."""
        group_of = {peer: g for g, members in enumerate(groups) for peer in members}
        pairs = [
            (a, b)
            for a in range(self.size)
            for b in range(self.size)
            if a != b and (a not in group_of or b not in group_of or group_of[a] != group_of[b])
        ]
        self.cut(pairs)

    def cut(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Drop packets from a to b for each (a, b): both directions must be listed."""
        rules = [f"flush chain bridge {TABLE} forward"]
        for a, b in pairs:
            rules.append(
                f"add rule bridge {TABLE} forward ip saddr {self.address(a)} ip daddr {self.address(b)} drop"
            )
        self._nft("\n".join(rules))

    def heal_partition(self) -> None:
        self._nft(f"flush chain bridge {TABLE} forward")

    def dropped_pairs(self) -> int:
        """How many drop rules are in force (for checks that a fault took effect)."""
        listing = run("ip", "netns", "exec", self.hub, "nft", "list", "chain", "bridge", TABLE, "forward")
        return listing.stdout.count(" drop")

    def slow(self, index: int, rate: str = "1mbit") -> None:
        """Rate-limit both directions of peer ``index``'s link with a token bucket."""
        for ns, dev in ((self.namespace(index), "eth0"), (self.hub, f"h{index}")):
            run(
                "ip",
                "netns",
                "exec",
                ns,
                "tc",
                "qdisc",
                "replace",
                "dev",
                dev,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "16kb",
                "latency",
                "300ms",
            )
        self.slowed.add(index)

    def unslow(self, index: int) -> None:
        for ns, dev in ((self.namespace(index), "eth0"), (self.hub, f"h{index}")):
            run("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root", check=False)
        self.slowed.discard(index)

    def heal(self) -> None:
        """Undo every network fault."""
        self.heal_partition()
        for index in list(self.slowed):
            self.unslow(index)

    def _nft(self, script: str) -> None:
        run("ip", "netns", "exec", self.hub, "nft", "-f", "-", stdin=script + "\n")


def create(size: int) -> Network:
    """Remove stale leftovers, then build a network of ``size`` peers (destroyed on failure)."""
    remove_stale()
    network = Network(size)
    try:
        network.build()
    except BaseException:
        network.destroy()
        raise
    return network

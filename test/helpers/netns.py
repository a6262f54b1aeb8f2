"""Two test hosts on one machine: network namespaces joined by a veth pair.

Each host is a namespace holding only ``lo`` (up) and its end of the veth, with an address in
a private /30, so whatever two processes in different hosts exchange crosses the veth, and
nothing reaches the machine's own interfaces. ``HostPair.create`` raises ``NetnsUnavailable``
when the machine does not let us (not root, no CAP_NET_ADMIN, no iproute2).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

SUBNET = "10.213.0"  # a /30: .1 and .2; the addresses exist only inside the two namespaces


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here; the message says why."""


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def _checked(*args: str) -> None:
    res = _ip(*args)
    if res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    """One test host: a network namespace, its veth end and address."""

    namespace: str
    interface: str
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host (``ip netns exec`` execs it: same pid, same env)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def veth_bytes(self) -> dict[str, int]:
        """The veth end's byte counters, ``{"rx": .., "tx": ..}``, from /sys/class/net."""
        stats = f"/sys/class/net/{self.interface}/statistics"
        res = subprocess.run(self.command(["cat", f"{stats}/rx_bytes", f"{stats}/tx_bytes"]),
                             capture_output=True, text=True, timeout=30, check=True)
        rx, tx = (int(v) for v in res.stdout.split())
        return {"rx": rx, "tx": tx}

    def pids(self) -> list[int]:
        """Processes running inside this host."""
        res = _ip("netns", "pids", self.namespace)
        return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []


@dataclass(frozen=True)
class HostPair:
    """Two hosts linked by one veth pair; ``remove`` ends their processes and deletes them."""

    first: Host
    second: Host

    @classmethod
    def create(cls, prefix: str, names: tuple[str, str] = ("a", "b")) -> HostPair:
        """Namespaces ``<prefix>_<name>``, veth ends ``<prefix-initials><name[0]>``.

        ``prefix`` must be unique on the machine (e.g. holding the test's pid)."""
        if shutil.which("ip") is None:
            raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
        tag = "".join(c for c in prefix if c.isalnum())[:13]
        first, second = (Host(f"{prefix}_{name}", f"{tag}{name[0]}", f"{SUBNET}.{i}")
                         for i, name in enumerate(names, start=1))
        if first.interface == second.interface:
            raise ValueError(f"host names {names} must start with different letters")
        res = _ip("netns", "add", first.namespace)
        if res.returncode != 0:
            raise NetnsUnavailable(f"`ip netns add` failed (needs root or CAP_NET_ADMIN): "
                                   f"{res.stderr.strip()}")
        pair = cls(first, second)
        try:
            _checked("netns", "add", second.namespace)
            # Created inside the first namespace with its peer moved into the second: the
            # machine's own namespace never sees either end.
            _checked("-n", first.namespace, "link", "add", first.interface, "type", "veth",
                     "peer", "name", second.interface, "netns", second.namespace)
            for host in (first, second):
                _checked("-n", host.namespace, "link", "set", "lo", "up")
                _checked("-n", host.namespace, "addr", "add", f"{host.address}/30", "dev",
                         host.interface)
                _checked("-n", host.namespace, "link", "set", host.interface, "up")
        except Exception as exc:
            pair.remove()
            raise NetnsUnavailable(f"setting up the test hosts failed: {exc}") from exc
        return pair

    def remove(self) -> None:
        """Kill what still runs inside either host, then delete both (the veth goes too)."""
        for host in (self.first, self.second):
            for pid in host.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _ip("netns", "del", host.namespace)

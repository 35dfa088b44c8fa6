"""A network namespace of the test's own, joined by a veth pair, where packets can be made to vanish."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess


def run_command(*args: str, timeout: float = 20) -> None:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")


def netns_unavailable() -> str | None:
    """Why the blackhole tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces and iptables (CI runs as root)"
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)}: apt-get install iproute2 iptables (make test does, as root)"
    return None


class Netns:
    """A network namespace for servers, joined to the test's namespace by a veth pair of link-local addresses
    that lead nowhere else. `blackhole(port)` makes every packet to and from that port inside the namespace
    vanish (iptables -j DROP: no RST, no ICMP), the way a partition or a dead node behind a balancer does.

    Everything it changes is inside the namespace or on its own veth pair, named after this process, so
    `destroy()` (deleting the namespace, which takes the pair and the rules with it) undoes all of it.
    """

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100_000}{secrets.token_hex(2)}"  # interface names are at most 15 characters
        self.name = f"gray{tag}"
        self.host_side = f"gh{tag}"
        self.ns_side = f"gn{tag}"
        # A /30 of 169.254.0.0/16 (link-local: never routed) away from 169.254.169.x.
        base = secrets.randbelow(150) + 1, secrets.randbelow(63) * 4
        self.host_ip = f"169.254.{base[0]}.{base[1] + 1}"
        self.ip = f"169.254.{base[0]}.{base[1] + 2}"
        self.rules: list[list[str]] = []
        self.created = False

    @property
    def prefix(self) -> list[str]:
        """Run a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def create(self) -> Netns:
        run_command("ip", "netns", "add", self.name)
        self.created = True
        run_command(
            "ip", "link", "add", self.host_side, "type", "veth", "peer", "name", self.ns_side, "netns", self.name
        )
        run_command("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_side)
        run_command("ip", "link", "set", self.host_side, "up")
        run_command("ip", "-n", self.name, "addr", "add", f"{self.ip}/30", "dev", self.ns_side)
        run_command("ip", "-n", self.name, "link", "set", self.ns_side, "up")
        run_command("ip", "-n", self.name, "link", "set", "lo", "up")
        return self

    def _rules(self, port: int) -> list[list[str]]:
        return [
            ["INPUT", "-i", self.ns_side, "-p", "tcp", "--dport", str(port), "-j", "DROP"],
            ["OUTPUT", "-o", self.ns_side, "-p", "tcp", "--sport", str(port), "-j", "DROP"],
        ]

    def blackhole(self, port: int) -> None:
        """From now on, packets to and from `port` over the veth pair are dropped, both ways."""
        for rule in self._rules(port):
            run_command(*self.prefix, "iptables", "-w", "5", "-I", *rule)
            self.rules.append(rule)

    def restore(self, port: int) -> None:
        for rule in self._rules(port):
            run_command(*self.prefix, "iptables", "-w", "5", "-D", *rule)
            self.rules.remove(rule)

    def destroy(self) -> None:
        if self.created:
            with contextlib.suppress(Exception):
                run_command("ip", "netns", "del", self.name)
        # The pair goes with the namespace; if the namespace never got its end, ours is still here.
        with contextlib.suppress(Exception):
            run_command("ip", "link", "del", self.host_side)

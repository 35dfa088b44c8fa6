"""Child processes that never outlive their test or benchmark, what they cost and what their threads wait on (/proc)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Child:
    """A subprocess in a session (process group) of its own, logging to a file; `stop()` always ends it all."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> Child:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started = time.perf_counter()
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        """Raise, with the end of its log, if the process has exited."""
        if not self.alive():
            code = self.process.returncode if self.process else None
            raise RuntimeError(f"{self.name} exited with {code}:\n{self.log()[-3000:]}")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 20) -> int:
        return self.process.wait(timeout)

    def kill(self) -> int:
        """SIGKILL to the whole group at once, the fault under test: no drain, no goodbye."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)

    def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM (a graceful drain), then SIGKILL to the group: nothing it started outlives it."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        return self.process.returncode


class Processes:
    """Every child a test (or a benchmark run) started, all stopped by `close()`, the last started first."""

    def __init__(self, workdir: Path, *, cwd: Path = REPO) -> None:
        self.workdir = workdir
        self.cwd = cwd
        self.children: list[Child] = []
        self.cleanups: list[Callable[[], None]] = []

    def start(self, name: str, args: Sequence[str], *, env: dict[str, str] | None = None) -> Child:
        """Start `args` logging to WORKDIR/NAME.log (a restarted child appends to the same log)."""
        child = Child(name, args, log_path=self.workdir / f"{name}.log", env=env, cwd=self.cwd)
        self.children.append(child)
        return child.start()

    def stop(self, child: Child, timeout: float = 20) -> int | None:
        code = child.stop(timeout)
        with contextlib.suppress(ValueError):
            self.children.remove(child)
        return code

    def close(self) -> None:
        errors = []
        # SIGTERM to all at once, so their shutdowns overlap; then each is waited for and its group killed.
        for child in self.children:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    child.process.terminate()
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self.children.clear()
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:
                errors.append(exc)
        self.cleanups.clear()
        if errors:
            raise errors[0]


# -- what a process tree costs ----------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> tuple[set[int], dict[int, list[str]]]:
    """The pids of `root` and all its descendants, and every process's /proc/PID/stat fields."""
    stats = {int(entry): fields for entry in os.listdir("/proc") if entry.isdigit() and (fields := _stat(int(entry)))}
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, fields in stats.items():
            if int(fields[1]) == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return tree, stats


def process_tree_cpu(root: int) -> float:
    """CPU seconds (utime + stime) of `root` and all its descendants, plus the children it has reaped.

    A server's worker that exits and is reaped moves its time into its parent's cutime/cstime, so the
    sum stays continuous across worker restarts.
    """
    tree, stats = process_tree(root)
    ticks = sum(int(stats[pid][11]) + int(stats[pid][12]) for pid in tree if pid in stats)
    if root in stats:
        ticks += int(stats[root][13]) + int(stats[root][14])
    return ticks / CLOCK_TICKS


def process_cpu(pid: int) -> float:
    """CPU seconds (utime + stime) of one process; 0 once it is gone."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS if fields else 0.0


def process_tree_rss(root: int) -> int:
    """Resident bytes of `root` and every process below it (a server's main process and its workers)."""
    total = 0
    for pid in process_tree(root)[0]:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


# -- what a process tree's threads wait on ------------------------------------------------------------------

# x86_64 system calls a thread waits in for a socket: the fd is the first argument (read, recvfrom,
# recvmsg), in the pollfd array it points to (poll, ppoll), or registered with the epoll fd it names.
FD_WAITS = {0: "read", 45: "recvfrom", 47: "recvmsg"}
POLL_WAITS = {7: "poll", 271: "ppoll"}
EPOLL_WAITS = {232: "epoll_wait", 281: "epoll_pwait", 441: "epoll_pwait2"}


def _tcp_remote_ports() -> dict[int, int]:
    """Socket inode: remote port, for every TCP socket of this network namespace."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                ports[int(fields[9])] = int(fields[2].rsplit(":", 1)[1], 16)
    return ports


def _waited_fds(pid: int, tid: str) -> tuple[str, list[int]]:
    """The system call thread `tid` of `pid` is blocked in, and the descriptors it waits on."""
    with contextlib.suppress(OSError, ValueError):
        fields = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
        number, args = int(fields[0]), [int(arg, 16) for arg in fields[1:7]]
        if number in FD_WAITS:
            return FD_WAITS[number], [args[0]]
        if number in POLL_WAITS:
            with open(f"/proc/{pid}/mem", "rb") as memory:  # struct pollfd {int fd; short events, revents;}
                memory.seek(args[0])
                raw = memory.read(8 * args[1])
            return POLL_WAITS[number], [struct.unpack_from("i", raw, 8 * n)[0] for n in range(args[1])]
        if number in EPOLL_WAITS:
            info = Path(f"/proc/{pid}/fdinfo/{args[0]}").read_text()
            return EPOLL_WAITS[number], [int(fd) for fd in re.findall(r"^tfd:\s+(\d+)", info, re.MULTILINE)]
    return "", []


def threads_waiting_on(root: int, port: int) -> list[str]:
    """Every thread of `root`'s process tree blocked in a wait on a TCP connection to remote `port`, as
    "pid/tid name syscall" (read from /proc: the thread's system call, its descriptors, the TCP table).

    A server thread waiting on its database's port when no request is in flight is a stuck one.
    """
    remote = _tcp_remote_ports()
    found = []
    for pid in sorted(process_tree(root)[0]):
        tids: list[str] = []
        with contextlib.suppress(OSError):
            tids = os.listdir(f"/proc/{pid}/task")
        for tid in tids:
            call, fds = _waited_fds(pid, tid)
            for fd in fds:
                with contextlib.suppress(OSError):
                    inode = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
                    if inode and remote.get(int(inode[1])) == port:
                        name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                        found.append(f"{pid}/{tid} {name} {call}")
                        break
    return found

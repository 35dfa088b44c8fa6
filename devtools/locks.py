"""The lock files: exact versions with hashes, compiled by uv from the requirement ranges, and their check."""

from __future__ import annotations

import argparse
import difflib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Lock:
    source: str  # the input: requirement ranges, edited by hand
    output: str  # the lock, written only by `make lock`
    constraint: str | None = None  # an earlier lock whose pins this one keeps

    @property
    def stale(self) -> str:
        compiled_from = (
            f"{self.source} and {self.constraint} as they are" if self.constraint else f"{self.source} as it is"
        )
        return f"{self.output} was not compiled from {compiled_from} now: run `make lock`"


# Each lock keeps the pins of the one before it: the image, a MongoDB install and a developer's venv run
# the same version of every package they share.
LOCKS = (
    Lock("requirements.txt", "requirements.lock"),
    Lock("requirements-mongodb.txt", "requirements-mongodb.lock", "requirements.lock"),
    Lock("requirements-dev.txt", "requirements-dev.lock", "requirements-mongodb.lock"),
)

# The image (python:3.11-slim) and CI are CPython 3.11 on x86_64 glibc Linux: resolve for exactly that,
# whatever machine runs `make lock`. Wheels only, written into the lock so every `pip install -r` obeys
# it: the image has no compiler, and a source build would fetch build dependencies that no hash covers.
COMPILE_ARGS = (
    "pip", "compile", "--quiet", "--generate-hashes", "--only-binary", ":all:", "--emit-build-options",
    "--python-version", "3.11", "--python-platform", "x86_64-unknown-linux-gnu",
    "--custom-compile-command", "make lock",
)  # fmt: skip

STAMP_PREFIX = "# inputs sha256:"
# Every network wait is bounded: uv's own per-request timeout, and a deadline for the whole compile.
HTTP_TIMEOUT_SECONDS = 30
WRITE_DEADLINE_SECONDS = 300
OFFLINE_DEADLINE_SECONDS = 60
CHECK_DEADLINE_SECONDS = 180
# What uv says when the registry cannot be reached (as opposed to inputs that cannot be resolved).
NETWORK_ERROR = re.compile(
    r"error sending request|failed to fetch|connection refused|dns error|timed out|network|"
    r"request failed after",
    re.IGNORECASE,
)
OPTION_FILE = re.compile(r"^(-r|--requirement|-c|--constraint)[\s=]+(\S+)$")
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==\S+")


class CompileError(RuntimeError):
    """uv could not compile a lock; `unreachable` when the registry was the reason."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def read_inputs(path: Path, _seen: tuple[Path, ...] = ()) -> tuple[list[Path], list[str]]:
    """The requirements files that `path` feeds the resolver (itself and what it includes with -r/-c),
    and their requirement and option lines, comments and blank lines aside."""
    path = path.resolve()
    if path in _seen:
        return [], []
    files, lines = [path], []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        nested = OPTION_FILE.match(line)
        if nested:
            prefix = "-c " if nested[1] in ("-c", "--constraint") else ""
            nested_files, nested_lines = read_inputs(path.parent / nested[2], (*_seen, path))
            files += [item for item in nested_files if item not in files]
            lines += [prefix + item for item in nested_lines]
        else:
            lines.append(" ".join(line.split()))
    return files, lines


def fingerprint(directory: Path, lock: Lock) -> str:
    """What the lock was compiled from: its inputs' requirement lines (order, comments and blank lines
    aside) and the pins of the lock it keeps. A lock matches its inputs while this is unchanged."""
    material = sorted(read_inputs(directory / lock.source)[1])
    if lock.constraint:
        pins = (directory / lock.constraint).read_text(encoding="utf-8").splitlines()
        material += sorted("pin " + line.split()[0] for line in pins if PIN.match(line))
    return hashlib.sha256("\n".join(material).encode()).hexdigest()


def stamped_fingerprint(path: Path) -> str | None:
    if not path.exists():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(STAMP_PREFIX):
            return line.removeprefix(STAMP_PREFIX).split()[0]
    return None


def stamp(path: Path, digest: str, source: str) -> None:
    """Put the fingerprint under uv's header (uv reads the old file for its pins and ignores comments)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    note = f"{STAMP_PREFIX} {digest} (of {source}; `make lock-check` compares)\n"
    path.write_text("".join([*lines[:header], note, *lines[header:]]), encoding="utf-8")


def uv_binary() -> str:
    from uv import find_uv_bin  # the version the dev lock pins, so every machine writes the same file

    return find_uv_bin()


def write_locks(
    directory: Path, *, extra: Sequence[str] = (), deadline_seconds: float = WRITE_DEADLINE_SECONDS
) -> None:
    """Compile every lock in `directory`, in order; an existing lock's pins are kept unless `extra`
    says `--upgrade` or `--upgrade-package NAME`."""
    deadline = time.monotonic() + deadline_seconds
    env = {**os.environ, "UV_HTTP_TIMEOUT": os.environ.get("UV_HTTP_TIMEOUT", str(HTTP_TIMEOUT_SECONDS))}
    for lock in LOCKS:
        command = [uv_binary(), *COMPILE_ARGS, *extra, lock.source, "--output-file", lock.output]
        if lock.constraint:
            command += ["--constraint", lock.constraint]
        try:
            done = subprocess.run(
                command, cwd=directory, env=env, capture_output=True, text=True,
                timeout=max(1.0, deadline - time.monotonic()),
            )  # fmt: skip
        except subprocess.TimeoutExpired as error:
            raise CompileError(f"{lock.output}: uv did not finish in time", unreachable=True) from error
        if done.returncode != 0:
            message = done.stderr.strip() or done.stdout.strip()
            raise CompileError(f"{lock.output}: {message}", unreachable=bool(NETWORK_ERROR.search(message)))
        stamp(directory / lock.output, fingerprint(directory, lock), lock.source)


def recompiled(directory: Path, *, extra: Sequence[str], deadline_seconds: float) -> dict[str, str]:
    """The locks as `make lock` would write them now, compiled in a scratch copy of the inputs."""
    with tempfile.TemporaryDirectory(prefix="lock-check-") as scratch:
        copy = Path(scratch)
        files = {path for lock in LOCKS for path in read_inputs(directory / lock.source)[0]}
        files |= {(directory / lock.output).resolve() for lock in LOCKS}
        for path in files:
            target = copy / path.relative_to(directory.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        write_locks(copy, extra=extra, deadline_seconds=deadline_seconds)
        return {lock.output: (copy / lock.output).read_text(encoding="utf-8") for lock in LOCKS}


def check(directory: Path = ROOT, *, extra: Sequence[str] = ()) -> list[str]:
    """The problems found, none when every lock matches its inputs.

    First, offline: each lock's stamped fingerprint against its inputs now (an input edited without
    `make lock`). Then the locks are compiled again, from uv's cache if it holds everything, else from the
    registry within a deadline, and must come out byte for byte (a lock edited by hand, or written by
    another uv). A registry that cannot be reached in time leaves the offline verdict standing.
    """
    problems = [
        lock.stale for lock in LOCKS if stamped_fingerprint(directory / lock.output) != fingerprint(directory, lock)
    ]
    if problems:
        return problems
    try:
        fresh = recompiled(directory, extra=[*extra, "--offline"], deadline_seconds=OFFLINE_DEADLINE_SECONDS)
    except CompileError:
        try:
            fresh = recompiled(directory, extra=extra, deadline_seconds=CHECK_DEADLINE_SECONDS)
        except CompileError as error:
            if not error.unreachable:
                return [f"the inputs no longer compile: {error}"]
            print(f"lock-check: registry not reachable, recompile skipped ({error}); fingerprints match")
            return []
    for lock in LOCKS:
        current = (directory / lock.output).read_text(encoding="utf-8")
        if fresh[lock.output] != current:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), fresh[lock.output].splitlines(keepends=True),
                f"{lock.output} (committed)", f"{lock.output} (recompiled)", n=1,
            )  # fmt: skip
            problems.append(f"{lock.output} differs from a fresh compile: run `make lock`\n{''.join(diff)}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.locks", description=__doc__)
    parser.add_argument("action", choices=("write", "check"))
    parser.add_argument("uv_args", nargs=argparse.REMAINDER, help="passed to uv pip compile, e.g. --upgrade")
    args = parser.parse_args(argv)
    if args.action == "write":
        try:
            write_locks(ROOT, extra=args.uv_args)
        except CompileError as error:
            print(error, file=sys.stderr)
            return 1
        print("locks written: " + ", ".join(lock.output for lock in LOCKS))
        return 0
    problems = check(ROOT, extra=args.uv_args)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("locks match their inputs: " + ", ".join(lock.output for lock in LOCKS))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The lock files match their inputs, and the check fails on a real mismatch (uv, on local wheels)."""

from __future__ import annotations

import shutil
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.locks import LOCKS, ROOT, check, fingerprint, stamped_fingerprint, write_locks


def test_the_committed_locks_were_compiled_from_the_inputs_as_they_are():
    stale = [lock.output for lock in LOCKS if stamped_fingerprint(ROOT / lock.output) != fingerprint(ROOT, lock)]
    assert stale == [], "a requirements file changed since its lock was written: run `make lock`"


def make_wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A real, minimal pure-Python wheel: what uv reads to resolve and hash."""
    dist = f"{name.replace('-', '_')}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    with zipfile.ZipFile(directory / f"{dist}-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}/__init__.py", "")
        archive.writestr(f"{dist}.dist-info/METADATA", metadata)
        archive.writestr(
            f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{dist}.dist-info/RECORD", "")


@dataclass(frozen=True)
class Project:
    root: Path
    index: tuple[str, ...]  # uv's options for the local wheels


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs laid out as the repository's (runtime, MongoDB option, dev), locked once from local wheels."""
    base = tmp_path_factory.mktemp("locks")
    wheels = base / "wheels"
    wheels.mkdir()
    for version in ("1.0", "1.1"):
        make_wheel(wheels, "demo-a", version)
    make_wheel(wheels, "demo-b", "1.0")
    make_wheel(wheels, "demo-c", "1.0", requires=("demo-a>=1",))
    root = base / "project"
    root.mkdir()
    (root / "requirements.txt").write_text("# runtime\ndemo-a>=1,<2\n")
    (root / "requirements-mongodb.txt").write_text("-r requirements.txt\ndemo-b>=1,<2\n")
    (root / "requirements-dev.txt").write_text("-r requirements-mongodb.txt\ndemo-c>=1,<2\n")
    # uv's cache of its own: nothing from this machine's, nothing left in it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UV_CACHE_DIR", str(base / "uv-cache"))
        write_locks(root, extra=("--no-index", "--find-links", str(wheels)))
    return base


@pytest.fixture
def project(locked: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A test's own copy of the locked project and of uv's cache."""
    shutil.copytree(locked / "project", tmp_path / "project")
    shutil.copytree(locked / "uv-cache", tmp_path / "uv-cache", symlinks=True)
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    return Project(tmp_path / "project", ("--no-index", "--find-links", str(locked / "wheels")))


def test_a_fresh_lock_passes_and_holds_hashes_but_no_local_path(project: Project):
    assert check(project.root, extra=project.index) == []
    lock = (project.root / "requirements-dev.lock").read_text()
    assert "demo-a==1.1 \\\n    --hash=sha256:" in lock
    assert "demo-c==1.0 \\\n    --hash=sha256:" in lock
    assert "--only-binary :all:" in lock
    assert str(project.root.parent) not in lock
    assert "wheels" not in lock


def test_a_range_edited_without_make_lock_fails_until_the_locks_are_written(project: Project):
    (project.root / "requirements.txt").write_text("# runtime\ndemo-a>=1,<1.1\n")

    problems = check(project.root, extra=project.index)

    # Every lock whose inputs include requirements.txt.
    assert problems == [lock.stale for lock in LOCKS]
    write_locks(project.root, extra=project.index)
    assert check(project.root, extra=project.index) == []
    assert "demo-a==1.0 \\" in (project.root / "requirements-dev.lock").read_text()


def test_a_new_requirement_in_the_dev_input_fails_only_the_dev_lock(project: Project):
    with (project.root / "requirements-dev.txt").open("a") as dev:
        dev.write("demo-b>=1\n")

    assert check(project.root, extra=project.index) == [
        "requirements-dev.lock was not compiled from requirements-dev.txt and requirements-mongodb.lock"
        " as they are now: run `make lock`"
    ]


def test_comments_blank_lines_and_order_need_no_new_lock(project: Project):
    (project.root / "requirements-mongodb.txt").write_text(
        "demo-b>=1,<2  # why\n\n# the runtime set\n-r requirements.txt\n"
    )

    assert check(project.root, extra=project.index) == []


def test_a_lock_edited_by_hand_differs_from_a_fresh_compile(project: Project):
    path = project.root / "requirements-dev.lock"
    text = path.read_text()
    # The old pin back, under the new pin's hash: the inputs still admit it, the file is not uv's. (In the
    # dev lock, which no other lock keeps pins of, so only the recompile can tell.)
    path.write_text(text.replace("demo-a==1.1", "demo-a==1.0"))

    problems = check(project.root, extra=project.index)

    assert len(problems) == 1
    assert problems[0].startswith("requirements-dev.lock differs from a fresh compile: run `make lock`\n")
    assert "-demo-a==1.0 \\" in problems[0]
    assert "+demo-a==1.1 \\" in problems[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_registry_leaves_the_offline_verdict(project: Project, capsys: pytest.CaptureFixture[str]):
    # An empty cache and an index where nothing listens: no recompile is possible.
    dead_index = ("--default-index", f"http://127.0.0.1:{closed_port()}/simple")
    shutil.rmtree(project.root.parent / "uv-cache")

    assert check(project.root, extra=dead_index) == []
    assert "registry not reachable, recompile skipped" in capsys.readouterr().out

    (project.root / "requirements.txt").write_text("demo-a>=1.1,<2\n")
    assert check(project.root, extra=dead_index)[0] == LOCKS[0].stale

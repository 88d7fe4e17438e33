"""The per-artifact lock of :mod:`clir_ot.study.locks`: exclusive between objects and processes, its
owner named, released (and its file removed) on release, and taken over after its owner is SIGKILLed."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from clir_ot.study.locks import ArtifactLock, lock_path

from child_processes import child_env

HOLDER = """
import sys
from clir_ot.study.locks import ArtifactLock
lock = ArtifactLock(sys.argv[1])
assert lock.acquire(wait=False), "the child could not take the lock"
print("locked", flush=True)
sys.stdin.readline()      # hold it until the parent writes a line (or kills this process)
lock.release()
print("released", flush=True)
"""


def start_holder(path: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    line = process.stdout.readline()
    if line.strip() != "locked":
        process.kill()
        raise AssertionError(f"the holder did not lock: {line!r} {process.stderr.read()}")
    return process


def test_lock_path_is_the_artifact_folders_sibling(tmp_path):
    folder = tmp_path / "artifacts" / "rerank" / "tiny.none.el-0123456789abcdef"
    assert lock_path(folder) == folder.parent / "tiny.none.el-0123456789abcdef.lock"


def test_one_owner_at_a_time_named_in_the_file_and_removed_on_release(tmp_path):
    path = tmp_path / "a.lock"
    first, second = ArtifactLock(path), ArtifactLock(path)
    assert first.acquire(wait=False)
    assert not second.acquire(wait=False)
    assert not second.acquire(wait=True, timeout=0.3)  # still held: waiting gives up at the timeout
    owner = second.holder()
    assert owner is not None and owner.pid == os.getpid() and owner.host == socket.gethostname()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    with pytest.raises(RuntimeError, match="already held"):
        first.acquire()
    first.release()
    assert not path.exists() and second.holder() is None
    with second:
        assert second.held and not first.acquire(wait=False)
    assert not second.held and not path.exists()


def test_another_process_holds_the_lock_until_it_releases_it(tmp_path):
    path = tmp_path / "b.lock"
    holder = start_holder(path)
    try:
        lock = ArtifactLock(path)
        assert lock.holder().pid == holder.pid
        assert not lock.acquire(wait=False)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert lock.acquire(wait=True, timeout=120)  # waits until the other process lets go
        assert holder.stdout.readline().strip() == "released" and holder.wait(timeout=60) == 0
        assert lock.holder().pid == os.getpid()
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_sigkilled_owners_lock_is_taken_over(tmp_path, caplog):
    path = tmp_path / "c.lock"
    holder = start_holder(path)
    lock = ArtifactLock(path)
    assert not lock.acquire(wait=False) and lock.holder().pid == holder.pid
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=60) == -signal.SIGKILL
    # the dead owner's file is still there, naming it, but nobody holds the lock any more
    assert json.loads(path.read_text())["pid"] == holder.pid
    assert lock.holder() is None
    with caplog.at_level(logging.WARNING, logger="clir_ot.study.locks"):
        assert lock.acquire(wait=False)
    assert any(f"left by pid {holder.pid} " in r.getMessage() for r in caplog.records)
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not ArtifactLock(path).acquire(wait=False)
    lock.release()

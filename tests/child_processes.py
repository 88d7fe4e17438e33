"""Child processes for the tests that SIGKILL real training runs: one environment, start, wait for
the child to stop itself (SIGSTOP) at a checkpoint, and finish with its log on failure."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def start(command: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=child_env())


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    code = process.wait(timeout=timeout)
    assert code == 0, f"exit {code}:\n{log.read_text(errors='replace')[-4000:]}"


def wait_until_stopped(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(process.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return
        if pid:
            raise AssertionError(f"the training process ended before its checkpoint:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the training process never reached the checkpoint")

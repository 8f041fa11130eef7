"""The training run folder: one run at a time, no silent overwrite, resume only what matches.

A run folder holds ``config.json``, ``metrics.jsonl``, numbered checkpoints and
``model_final.pt``. Four rules protect it:

* :class:`RunLock`: one ``train`` per folder. A second process gets a clear error instead
  of both "succeeding" with interleaved metrics and checkpoints.
* :func:`refuse_existing_run`: a new run (no ``--resume``) never overwrites a folder that
  holds a run's files, finished or not.
* :func:`check_resume_recipe` / :func:`check_resume_schedule`: ``--resume`` continues the
  *same* recipe, checked against the stored configuration before anything is written; a
  shorter schedule than the checkpoint already reached is refused (it would rewrite earlier
  checkpoints with later weights).
* :func:`remove_orphan_temp_files`: temp files that a killed run's own checkpoint and log
  writes left behind are removed on the next start (under the lock, so never a live write).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from facebench.errors import FacebenchError

LOCK_NAME = ".train.lock"
RUN_FILES = ("model_final.pt", "metrics.jsonl", "config.json")
_CHECKPOINT = re.compile(r"^ckpt_\d{8,}\.pt$")
# Temp names of facebench.atomic / detector.checkpoint writes: ".<final name>.<random>.tmp".
_ORPHAN = re.compile(r"^\.(ckpt_\d{8,}\.pt|model_final\.pt|config\.json|metrics\.jsonl)\..+\.tmp$")

# Options that may differ on resume: where things go and how often, not what is trained.
NOT_RECIPE = frozenset({
    "data", "out", "resume", "workers", "device", "checkpoint_every", "keep_checkpoints",
    "log_every", "tensorboard", "epochs", "iterations",
})  # fmt: skip


class RunLock:
    """An exclusive ``flock`` on ``<run>/.train.lock`` for the life of a training run.

    The kernel drops the lock when the process dies (even on ``kill -9``); data-loading
    workers forked from a killed run may hold it a moment longer, so acquiring waits up to
    ``wait_s`` seconds before refusing.
    """

    def __init__(self, run_dir: str | Path, wait_s: float = 5.0) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.wait_s = wait_s
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    owner = _read_owner(self.path)
                    raise FacebenchError(
                        f"{self.path.parent}: another training run{owner} is using this "
                        "folder; wait for it to finish or choose another --out"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_owner(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def run_files(run_dir: str | Path) -> list[str]:
    """Names of the run files (checkpoints, final model, metrics, config) in ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(
        p.name for p in run_dir.iterdir() if p.name in RUN_FILES or _CHECKPOINT.match(p.name)
    )


def refuse_existing_run(run_dir: str | Path) -> None:
    """Refuse to start a new run in a folder that already holds one (finished or not)."""
    found = run_files(run_dir)
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise FacebenchError(
            f"{run_dir}: already holds a training run ({shown}); pass --resume to continue "
            "it or choose another --out"
        )


def remove_orphan_temp_files(run_dir: str | Path) -> list[str]:
    """Delete temp files left by this folder's own interrupted checkpoint/log writes."""
    removed = []
    for path in Path(run_dir).iterdir():
        if _ORPHAN.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return sorted(removed)


def check_resume_recipe(checkpoint: Path, stored: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse ``--resume`` with a recipe that differs from the checkpoint's.

    ``stored``: the checkpoint's ``config`` (the options the run was started with);
    ``current``: this invocation's options (``TrainConfig.plain()``). Every option outside
    :data:`NOT_RECIPE` must match; the message lists each difference.
    """
    if not stored:
        return  # checkpoints written before configs were stored: nothing to compare
    differences = []
    for key in sorted(set(stored) | set(current)):
        if key in NOT_RECIPE or key not in stored or key not in current:
            continue
        if not _same(stored[key], current[key]):
            differences.append(f"--{key.replace('_', '-')} {current[key]!r} (run: {stored[key]!r})")
    if differences:
        raise FacebenchError(
            f"{checkpoint}: --resume with a different recipe: {'; '.join(differences)}. "
            "Resume with the run's own options, or start a new run in another --out"
        )


def check_resume_schedule(checkpoint: Path, reached: int, total_iters: int) -> None:
    """Refuse a schedule shorter than the ``reached`` iterations of the checkpoint."""
    if total_iters < reached:
        raise FacebenchError(
            f"{checkpoint}: the run already reached iteration {reached}, but this schedule "
            f"has {total_iters} iterations; to extend a run pass --iterations larger than "
            f"{reached} (the learning-rate schedule keeps its stored milestones), or start a "
            "new run in another --out"
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not (
        isinstance(a, bool) or isinstance(b, bool)
    ):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b

"""Training checkpoints: everything needed to continue a run or to rebuild the detector.

A checkpoint is a ``torch.save`` dict with plain values only (tensors, numbers, strings,
lists, dicts) so that it loads with ``torch.load(weights_only=True)``:

``format`` ("facebench-checkpoint"), ``version``, ``design``, ``backbone``, ``overrides``
(keyword arguments of ``build_detector``), ``config`` (the training options), ``model``
(state dict), ``optimizer``, ``scheduler``, ``scaler`` (state dicts; may be empty), ``iteration``
(iterations completed), ``epoch`` and ``rng`` (per-rank random states).

Files are written to a temp file in the run folder and renamed into place, so a run killed
at any moment leaves only complete checkpoints; ``ckpt_<iteration>.pt`` names sort by
iteration and :func:`newest_checkpoint` finds the latest one that loads.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facebench.atomic import atomic_open
from facebench.errors import FacebenchError

FORMAT = "facebench-checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "design", "backbone", "model", "iteration")
_NAME = re.compile(r"^ckpt_(\d{8,})\.pt$")


def checkpoint_name(iteration: int) -> str:
    """File name of the checkpoint written after ``iteration`` iterations."""
    return f"ckpt_{iteration:08d}.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (:func:`facebench.atomic.atomic_open`: temp file in the same
    folder, fsync, rename), so a kill leaves the old file or the complete new one."""
    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint; a missing, truncated or foreign file raises a
    :class:`FacebenchError` that names it."""
    path = Path(path)
    if not path.is_file():
        raise FacebenchError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/EOFError/UnpicklingError/...
        text = str(exc)
        if "Weights only load failed" in text or "weights_only" in text:
            # The file is complete but pickles Python objects (code could run on load).
            raise FacebenchError(
                f"{path}: refused: the file holds pickled Python objects beyond tensors and "
                "plain values, which are unsafe to load (facebench checkpoints never need them)"
            ) from None
        reason = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise FacebenchError(
            f"{path}: not a readable checkpoint (truncated or corrupt file?): {reason}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FacebenchError(f"{path}: not a facebench checkpoint (no '{FORMAT}' marker)")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise FacebenchError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if int(state["version"]) > VERSION:
        raise FacebenchError(
            f"{path}: checkpoint version {state['version']} is newer than supported ({VERSION})"
        )
    return state


def nonfinite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of floating-point tensors in a state dict that hold NaN or infinite values."""
    return [
        name
        for name, tensor in state_dict.items()
        if isinstance(tensor, torch.Tensor)
        and tensor.is_floating_point()
        and not bool(torch.isfinite(tensor).all())
    ]


def describe_nonfinite(path: str | Path, names: list[str]) -> str:
    """The warning for a checkpoint whose weights hold NaN/inf values."""
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return (
        f"{path}: weights hold NaN or infinite values ({names[0]}{more}); the run diverged "
        "before this checkpoint, so its detections are meaningless"
    )


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints in ``run_dir``, oldest first (by iteration in the name)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def newest_checkpoint(run_dir: str | Path, warn=None) -> tuple[Path, dict] | None:
    """The newest checkpoint in ``run_dir`` that loads, with its state; ``None`` if none.

    Unreadable files (a disk that filled up, a copy cut short) are skipped with ``warn``.
    """
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path)
        except FacebenchError as exc:
            if warn is not None:
                warn(f"skipping {exc}")
    return None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` numbered checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or for a run folder its ``model_final.pt`` or newest checkpoint."""
    path = Path(path)
    if path.is_dir():
        final = path / "model_final.pt"
        if final.is_file():
            return final
        found = list_checkpoints(path)
        if not found:
            raise FacebenchError(f"{path}: no checkpoint in this folder")
        return found[-1]
    return path


# -- random states as plain values --------------------------------------------------------


def capture_rng_state() -> dict:
    """Python, numpy and torch (CPU and CUDA) random states as plain values."""
    version, internal, gauss = random.getstate()
    # The legacy global state is what third-party code draws from; save it as it is.
    np_state = np.random.get_state()  # noqa: NPY002
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), *[x for x in np_state[2:]]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)

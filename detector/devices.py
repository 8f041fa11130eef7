"""One place that turns a ``--device`` string into a ``torch.device``, or refuses it.

``auto`` is CUDA when available, else CPU. An explicit device that this machine does not
have is an error, never a silent fallback to the CPU: a run meant for a GPU that quietly
trains on a CPU wastes days. ``cuda:N`` is honoured (checked against the device count).
"""

from __future__ import annotations

import torch

from facebench.errors import FacebenchError


def resolve_device(name: str | None, local_rank: int | None = None) -> torch.device:
    """The device for ``name`` (auto, cpu, cuda, cuda:N, mps).

    ``local_rank`` (distributed runs) picks the GPU for ``auto`` and a bare ``cuda``.
    Raises FacebenchError for unknown names and for devices this machine lacks.
    """
    text = (name or "auto").strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise FacebenchError(f"--device {name!r}: not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FacebenchError(f"--device {name!r} asked for, but CUDA is not available")
        index = device.index if device.index is not None else (local_rank or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise FacebenchError(
                f"--device {name!r}: no such GPU (this machine has {count}: "
                f"cuda:0..cuda:{count - 1})"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise FacebenchError(f"--device {name!r} asked for, but MPS is not available")
        return device
    raise FacebenchError(f"--device {name!r}: not a device (auto, cpu, cuda, cuda:N)")

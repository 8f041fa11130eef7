"""Shared fixtures: the real data in ../shared/data (skipped cleanly where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("FACEBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder ../shared/data (see its README); skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained, seeded tiny detector saved in the training checkpoint format.

    Untrained, every anchor scores about 0.5: plenty of overlapping boxes to merge.
    """
    torch = pytest.importorskip("torch")
    from detector.checkpoint import checkpoint_name, save_checkpoint
    from detector.model import build_detector

    torch.manual_seed(0)
    model = build_detector("fpn-finest-sampling", backbone="tiny")
    path = tmp_path_factory.mktemp("ckpt") / checkpoint_name(1)
    save_checkpoint(path, {
        "format": "facebench-checkpoint", "version": 1, "design": "fpn-finest-sampling",
        "backbone": "tiny", "overrides": {}, "config": {}, "model": model.state_dict(),
        "iteration": 1, "epoch": 0, "rng": [],
    })  # fmt: skip
    return path


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: GPU tests cannot run either way
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)

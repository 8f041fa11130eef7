"""Checkpoint files: atomic writes, clear errors for broken files, newest complete one wins."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from detector.checkpoint import (
    capture_rng_state,
    checkpoint_name,
    list_checkpoints,
    load_checkpoint,
    newest_checkpoint,
    prune_checkpoints,
    resolve_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from detector.train import WarmupStepSchedule
from facebench.errors import FacebenchError


def _state(iteration: int) -> dict:
    return {
        "format": "facebench-checkpoint", "version": 1, "design": "fpn-finest-sampling",
        "backbone": "tiny", "model": {"w": torch.arange(4.0) * iteration},
        "iteration": iteration, "rng": [capture_rng_state()],
    }


def test_round_trip_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / checkpoint_name(5), _state(5))
    assert path.name == "ckpt_00000005.pt"
    state = load_checkpoint(path)
    assert state["iteration"] == 5 and torch.equal(state["model"]["w"], torch.arange(4.0) * 5)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_00000005.pt"]  # no temp left


@pytest.mark.parametrize("keep_bytes", [0, 10, 200, -50])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, keep_bytes):
    path = save_checkpoint(tmp_path / "ckpt_00000001.pt", _state(1))
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])  # negative: all but the last bytes
    with pytest.raises(FacebenchError, match=r"ckpt_00000001\.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_foreign_and_missing_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(FacebenchError, match="not a facebench checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FacebenchError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = _state(1)
    del bad["model"]
    save_checkpoint(tmp_path / "x.pt", bad)
    with pytest.raises(FacebenchError, match="lacks model"):
        load_checkpoint(tmp_path / "x.pt")


def test_newest_complete_checkpoint_skips_broken_ones(tmp_path):
    for it in (10, 20, 30):
        save_checkpoint(tmp_path / checkpoint_name(it), _state(it))
    (tmp_path / checkpoint_name(30)).write_bytes(b"PK\x03\x04 cut")
    (tmp_path / ".ckpt_00000040.pt.abc.tmp").write_bytes(b"half")  # a killed writer's temp
    warnings: list[str] = []
    path, state = newest_checkpoint(tmp_path, warnings.append)
    assert path.name == checkpoint_name(20) and state["iteration"] == 20
    assert len(warnings) == 1 and checkpoint_name(30) in warnings[0]
    assert resolve_checkpoint(tmp_path).name == checkpoint_name(30)
    prune_checkpoints(tmp_path, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == [checkpoint_name(30)]


def test_rng_state_round_trip(tmp_path):
    state = capture_rng_state()
    save_checkpoint(tmp_path / "r.pt", {**_state(0), "rng": [state]})
    expected = (random.random(), np.random.random(), torch.rand(3))  # noqa: NPY002
    restore_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"][0])
    got = (random.random(), np.random.random(), torch.rand(3))  # noqa: NPY002
    assert expected[0] == got[0] and expected[1] == got[1] and torch.equal(expected[2], got[2])


def test_schedule_warmup_and_steps():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupStepSchedule(opt, lr=0.01, total_iters=100, warmup_iters=10)
    assert sched.lr_at(0) == pytest.approx(0.01 / 3)
    assert sched.lr_at(5) == pytest.approx(0.01 * (1 / 3 * 0.5 + 0.5))
    assert sched.lr_at(10) == pytest.approx(0.01)
    assert sched.lr_at(59) == pytest.approx(0.01)
    assert sched.lr_at(60) == pytest.approx(0.001)
    assert sched.lr_at(79) == pytest.approx(0.001)
    assert sched.lr_at(80) == pytest.approx(0.0001)
    sched.step(60)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)
    other = WarmupStepSchedule(opt, lr=1.0, total_iters=1, warmup_iters=1)
    other.load_state_dict(sched.state_dict())
    assert other.lr_at(85) == sched.lr_at(85) and other.last_iter == 60

"""The training loop: resume reproduces the uninterrupted run, DDP equals one process,
checkpoints and metrics are written as documented."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector.checkpoint import list_checkpoints, load_checkpoint
from detector.train import TrainConfig, train
from facebench.errors import FacebenchError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    """A small WIDER-layout set: 8 noisy 96x96 images with bright squares as 'faces'
    (one marked invalid)."""
    root = tmp_path_factory.mktemp("squares")
    images = root / "WIDER_train" / "images" / "0--Squares"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        image = rng.integers(0, 90, (96, 96, 3), dtype=np.uint8)
        boxes = []
        for _ in range(2):
            s = int(rng.integers(12, 40))
            x, y = (int(v) for v in rng.integers(0, 96 - s, 2))
            image[y : y + s, x : x + s] = 220
            boxes.append((x, y, s, s))
        cv2.imwrite(str(images / f"{i}.jpg"), image)
        lines += [f"0--Squares/{i}.jpg", str(len(boxes))]
        lines += [f"{x} {y} {w} {h} 0 0 0 {int(i == 0 and k == 0)} 0 0" for k, (x, y, w, h)
                  in enumerate(boxes)]
    (root / "wider_face_split").mkdir()
    (root / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    return root


def _config(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(data), out=str(out), backbone="tiny", iterations=6, batch_size=2,
        max_side=64, scale_choices=(0.5, 0.75, 1.0), workers=0, checkpoint_every=3,
        log_every=1, lr=0.05, warmup_iters=2, seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


class _Kill(Exception):
    pass


def _kill_at(iteration: int):
    def progress(done, total, record):
        if done == iteration:
            raise _Kill

    return progress


def test_resumed_run_reproduces_the_uninterrupted_run(squares, tmp_path):
    full = train(_config(squares, tmp_path / "full"))
    assert full.iterations == 6 and full.resumed_from == 0
    with pytest.raises(_Kill):  # killed after iteration 5: iterations 4..5 are lost
        train(_config(squares, tmp_path / "cut", workers=1), progress=_kill_at(5))
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["ckpt_00000003.pt"]
    resumed = train(_config(squares, tmp_path / "cut", resume=True))
    assert resumed.resumed_from == 3
    a = _weights(tmp_path / "full" / "model_final.pt")
    b = _weights(tmp_path / "cut" / "model_final.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # Metrics read like one run: iterations 1..6 once each.
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [1, 2, 3, 4, 5, 6]
    record = json.loads(lines[-1])
    for key in ("loss", "loss_cls", "loss_reg", "lr", "images_per_s",
                "stats.sampled_positives.0", "stats.sampled_negatives.3"):
        assert key in record
    state = load_checkpoint(tmp_path / "cut" / "model_final.pt")
    assert state["iteration"] == 6 and state["design"] == "fpn-finest-sampling"
    assert state["config"]["seed"] == 3 and len(state["rng"]) == 1
    assert state["scheduler"]["last_iter"] == 5
    # Nothing left to do: a second resume trains nothing and changes nothing.
    again = train(_config(squares, tmp_path / "cut", resume=True))
    assert again.images == 0
    assert torch.equal(_weights(tmp_path / "cut" / "model_final.pt")["head.trunk.0.weight"],
                       b["head.trunk.0.weight"])


def test_refuses_to_overwrite_a_run_and_bad_options(squares, tmp_path):
    train(_config(squares, tmp_path / "run", iterations=3))
    with pytest.raises(FacebenchError, match="--resume"):
        train(_config(squares, tmp_path / "run", iterations=3))
    with pytest.raises(FacebenchError, match="exactly one of epochs or iterations"):
        train(_config(squares, tmp_path / "x", epochs=2))
    with pytest.raises(FacebenchError, match="cannot fill one iteration"):
        train(_config(squares, tmp_path / "y", batch_size=16))
    with pytest.raises(FacebenchError, match="backbone weights file not found"):
        train(_config(squares, tmp_path / "z", backbone_weights=str(tmp_path / "none.pth")))


def test_epochs_schedule_and_learning_rate_scaling(squares, tmp_path):
    res = train(_config(squares, tmp_path / "ep", iterations=None, epochs=2, lr=None,
                        base_lr=0.02, batch_size=4, checkpoint_every=100))
    assert res.iterations == 4  # 8 images / 4 per iteration x 2 epochs
    cfg = json.loads((tmp_path / "ep" / "config.json").read_text())
    assert cfg["lr_effective"] == pytest.approx(0.02 * 4 / 8)
    epochs = [json.loads(x)["epoch"] for x in
              (tmp_path / "ep" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 0, 1, 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_equals_one_process(squares, tmp_path):
    """2 processes x 1 image (gloo) give the weights of 1 process x 2 images."""
    single = train(_config(squares, tmp_path / "one", iterations=4, batch_size=2))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "--no-python", sys.executable, "-c", "from cli.app import main; main()",
        "train", "--data", str(squares), "--out", str(tmp_path / "two"), "--backbone", "tiny",
        "--iterations", "4", "--batch-size", "1", "--max-side", "64", "--scales", "0.5,0.75,1",
        "--workers", "0", "--checkpoint-every", "3", "--log-every", "1", "--lr", "0.05",
        "--warmup-iters", "2", "--seed", "3", "--device", "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["total_batch"] == 2
    a = load_checkpoint(single.final_checkpoint)
    b = load_checkpoint(tmp_path / "two" / "model_final.pt")
    assert len(b["rng"]) == 2  # every rank's random state
    from detector.model import build_detector

    # Parameters agree; BatchNorm running statistics are buffers that DDP takes from rank 0,
    # so they are not expected to match the sequential run.
    names = {n for n, _ in build_detector("fpn-finest-sampling", backbone="tiny")
             .named_parameters()}
    moved = 0
    for name in names:
        torch.testing.assert_close(b["model"][name], a["model"][name], rtol=1e-4, atol=1e-6)
        moved += 1
    assert moved > 10
    first = load_checkpoint(tmp_path / "two" / "ckpt_00000003.pt")
    assert first["iteration"] == 3


def test_train_command_line(squares, tmp_path):
    from click.testing import CliRunner

    from cli.app import main

    args = ["train", "--data", str(squares), "--out", str(tmp_path / "cli"), "--backbone", "tiny",
            "--iterations", "2", "--batch-size", "2", "--max-side", "64", "--workers", "0",
            "--set", "group_size=64", "--json", str(tmp_path / "run.json")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["iterations"] == 2 and summary["config"]["overrides"] == {"group_size": 64}
    assert Path(summary["final_checkpoint"]).is_file()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--resume" in again.output
    missing = CliRunner().invoke(main, [*args[:-2], "--resume", "--backbone-weights",
                                        str(tmp_path / "r50.pth")])
    assert missing.exit_code == 2 and "r50.pth" in missing.output

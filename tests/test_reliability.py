"""Bad input through the real command line (subprocess): one line, exit code 2, nothing written.

Each case feeds one bad input or fault from issue 13 to ``python -m cli`` and checks the
contract: exit status 2, exactly one line on stderr (``error: ...`` naming the path or
option), no traceback, no temp-file name, and the files under the case's folder unchanged
(no half-written outputs). Cases that must *succeed* (a folder where a prediction file
belongs, equal scores) check the warning instead.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from facebench.formats.wider import read_eval_gt, write_prediction_file

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``facebench ARGS`` from this source tree in a fresh process (stderr not a terminal)."""
    full_env = {k: v for k, v in os.environ.items() if k != "FACEBENCH_MAX_IMAGE_PIXELS"}
    full_env.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``root`` (hidden ones too)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def assert_refused(result: subprocess.CompletedProcess, pattern: str, logged: int = 0) -> str:
    """Exit 2 and exactly one stderr line ``error: ...`` matching ``pattern``.

    ``logged``: progress lines the command may print before (errors found during work).
    """
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert 1 <= len(lines) <= 1 + logged, result.stderr[-3000:]
    line = lines[-1]
    assert not any(x.startswith("error") for x in lines[:-1]), result.stderr[-3000:]
    assert line.startswith("error: "), line
    assert re.search(pattern, line), line
    assert "Traceback" not in result.stderr and ".tmp" not in line
    return line


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (one tiny, wrong-sized IDAT)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A small synthetic data set (WIDER + FDDB layouts), generated once."""
    from facebench.synth.generate import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, num_images=12, seed=3, max_side=128, workers=1)
    return root


@pytest.fixture(scope="module")
def preds(synth, tmp_path_factory) -> Path:
    """A WIDER prediction folder: the ground-truth boxes with varied scores."""
    gt = read_eval_gt(synth / "widerface" / "ground_truth")
    root = tmp_path_factory.mktemp("preds") / "mine"
    rng = np.random.default_rng(0)
    for (event, stem), boxes in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
        write_prediction_file(root, event, stem, boxes.astype(float), rng.random(len(boxes)))
    return root


def _case(tmp_path: Path) -> Path:
    case = tmp_path / "case"
    case.mkdir()
    (case / "keep.txt").write_text("existing output\n")
    return case


# ------------------------------------------------------------------ 1. OS errors on outputs


@pytest.mark.parametrize(
    "target, pattern",
    [
        ("folder", r"case: cannot write: is a folder"),
        ("keep.txt/x.json", r"keep\.txt/x\.json: cannot write: .*not a folder"),
        ("/sys/facebench.json", r"/sys/facebench\.json: cannot write"),
    ],
)
def test_eval_wider_json_unwritable(synth, preds, tmp_path, target, pattern):
    case = _case(tmp_path)
    path = case if target == "folder" else case / target  # an absolute target stays as is
    before = snapshot(case)
    result = run_cli("eval", "wider", preds, "--gt", synth / "widerface" / "ground_truth",
                     "--json", path)  # fmt: skip
    assert_refused(result, pattern)
    assert snapshot(case) == before


def test_eval_fddb_out_under_sys(synth, tmp_path):
    fddb = synth / "fddb"
    result = run_cli("eval", "fddb", fddb / "FDDB-folds" / "FDDB-fold-01-ellipseList.txt",
                     "--folds", fddb / "FDDB-folds", "--image-sizes", fddb / "image_sizes.csv",
                     "--out", "/sys/facebench-roc")  # fmt: skip
    assert_refused(result, r"/sys/facebench-roc: cannot write")


def test_image_sizes_folder_refused(synth):
    fddb = synth / "fddb"
    result = run_cli("eval", "fddb", fddb / "FDDB-folds" / "FDDB-fold-01-ellipseList.txt",
                     "--folds", fddb / "FDDB-folds", "--image-sizes", fddb)  # fmt: skip
    assert_refused(result, r"--image-sizes.*is a directory")


def test_folder_instead_of_prediction_file_is_skipped(synth, preds, tmp_path):
    """Without --strict one unreadable prediction file is reported, not fatal."""
    import shutil

    mine = tmp_path / "mine"
    shutil.copytree(preds, mine)
    victim = sorted(mine.rglob("*.txt"))[0]
    victim.unlink()
    victim.mkdir()
    gt = synth / "widerface" / "ground_truth"
    result = run_cli("eval", "wider", mine, "--gt", gt)
    assert result.returncode == 0, result.stderr
    assert f"{victim}: is a folder, expected a file (file ignored)" in result.stderr
    strict = run_cli("eval", "wider", mine, "--gt", gt, "--strict")
    assert_refused(strict, re.escape(f"{victim}: is a folder"), logged=1)


def test_table_printed_before_a_failed_write(synth, preds, tmp_path, monkeypatch):
    """The AP table reaches stdout even when the JSON write fails (a file became a folder)."""
    from click.testing import CliRunner

    import facebench.atomic as atomic
    from cli.app import main

    def refuse(path, obj):
        raise atomic.output_error(PermissionError(13, "denied"), path)

    monkeypatch.setattr(atomic, "write_json", refuse)
    out = tmp_path / "r.json"
    gt = synth / "widerface" / "ground_truth"
    result = CliRunner().invoke(main, ["eval", "wider", str(preds), "--gt", str(gt),
                                       "--json", str(out)])  # fmt: skip
    assert result.exit_code == 2
    assert "WIDER FACE AP (%)" in result.stdout and "mine" in result.stdout
    assert f"error: {out}: cannot write: permission denied" in result.stderr
    assert not out.exists()


# ------------------------------------------------------------------------- 5. option values


@pytest.mark.parametrize(
    "option, value, pattern",
    [
        ("--lr", "nan", r"--lr.*'nan' is not a finite number"),
        ("--base-lr", "-0.01", r"--base-lr.*must be > 0"),
        ("--momentum", "1.5", r"--momentum.*must be < 1"),
        ("--weight-decay", "-1", r"--weight-decay.*must be >= 0"),
        ("--scales", "0.5,0", r"--scales.*'0' must be a finite number > 0"),
        ("--scales", "1,inf", r"--scales.*'inf' must be a finite number > 0"),
        ("--max-side", "0", r"--max-side.*must be >= 1"),
        ("--workers", "-2", r"--workers.*must be >= 0"),
        ("--iterations", "0", r"--iterations.*must be >= 1"),
        ("--device", "gpu7", r"--device.*'gpu7' is not a device"),
    ],
)
def test_train_option_values(synth, tmp_path, option, value, pattern):
    out = tmp_path / "run"
    result = run_cli("train", "--data", synth, "--out", out, "--backbone", "tiny",
                     "--iterations", "2", option, value)  # fmt: skip
    assert_refused(result, pattern)
    assert not out.exists()


@pytest.mark.parametrize(
    "option, value, pattern",
    [
        ("--score-thresh", "1.5", r"--score-thresh.*must be <= 1"),
        ("--score-thresh", "nan", r"--score-thresh.*not a finite number"),
        ("--threads", "0", r"--threads.*must be >= 1"),
        ("--device", "tpu", r"--device.*'tpu' is not a device"),
        ("--nms-iou", "0", r"--nms-iou.*must be > 0"),
    ],
)
def test_detect_option_values(synth, tmp_path, option, value, pattern):
    out = tmp_path / "dets"
    images = synth / "widerface" / "WIDER_val" / "images"
    result = run_cli("detect", "--checkpoint", tmp_path / "none.pt", "--images", images,
                     "--out", out, option, value)  # fmt: skip
    assert_refused(result, pattern)
    assert not out.exists()


def test_detect_missing_gpu(synth, tiny_checkpoint, tmp_path):
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = f"cuda:{count}"  # one past the last GPU (cuda:0 on a CPU-only machine)
    out = tmp_path / "dets"
    result = run_cli("detect", "--checkpoint", tiny_checkpoint, "--images",
                     synth / "widerface" / "WIDER_val" / "images", "--out", out,
                     "--device", device)  # fmt: skip
    assert_refused(result, rf"--device '{device}'.*(not available|no such GPU)")


# ----------------------------------------------------------------------------- 6. images


def test_detect_refuses_pixel_bomb_before_loading(tiny_checkpoint, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "bomb.png").write_bytes(png_header(40000, 40000))
    case = _case(tmp_path)
    before = snapshot(case)
    out = case / "dets"
    result = run_cli("detect", "--checkpoint", tiny_checkpoint, "--images", images, "--out", out)
    assert_refused(result, r"bomb\.png: image is 40000x40000 = 1600 megapixels, above the limit "
                           r"of 150 megapixels \(raise it with --max-image-pixels")  # fmt: skip
    assert snapshot(case) == before
    # The limit is an option: a lower one refuses an ordinary image the same way.
    small = images / "bomb.png"
    small.write_bytes(png_header(64, 64))
    lowered = run_cli("detect", "--checkpoint", tiny_checkpoint, "--images", images, "--out", out,
                      "--max-image-pixels", "1000")  # fmt: skip
    assert_refused(lowered, r"64x64 .* limit of 0\.001 megapixels")


def test_eval_fddb_images_pixel_bomb(synth, tmp_path):
    import shutil

    fddb = synth / "fddb"
    pics = tmp_path / "pics"
    shutil.copytree(fddb / "originalPics", pics)
    first = (fddb / "FDDB-folds" / "FDDB-fold-01.txt").read_text().split()[0]
    (pics / f"{first}.jpg").write_bytes(png_header(40000, 40000))
    result = run_cli("eval", "fddb", fddb / "FDDB-folds" / "FDDB-fold-01-ellipseList.txt",
                     "--folds", fddb / "FDDB-folds", "--images", pics)  # fmt: skip
    assert_refused(result, r"1600 megapixels, above the limit")
    env = {"FACEBENCH_MAX_IMAGE_PIXELS": "2000000000"}
    raised = run_cli("eval", "fddb", fddb / "FDDB-folds" / "FDDB-fold-01-ellipseList.txt",
                     "--folds", fddb / "FDDB-folds", "--images", pics, env=env)  # fmt: skip
    assert raised.returncode == 0, raised.stderr


def test_exif_orientation_ignored_everywhere(tmp_path):
    """Header size, decoded pixels and training decode agree for an EXIF-rotated JPEG."""
    from PIL import Image

    from detector.data import read_image_rgb
    from facebench.formats.imagesize import image_size as size_for_eval
    from facebench.images import decode_image_rgb, header_size

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white: a rotation would move it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    assert header_size(path) == (40, 20) and size_for_eval(path) == (40, 20)
    for image in (decode_image_rgb(path), read_image_rgb(path)):
        assert image.shape == (20, 40, 3)
        assert image[:, :18].mean() > 200 and image[:, 22:].mean() < 50
    assert read_image_rgb(path, reduce=2).shape == (10, 20, 3)


# ------------------------------------------------------------------------- 7. evaluation


def test_equal_scores_warn_with_cause(synth, tmp_path):
    gt = read_eval_gt(synth / "widerface" / "ground_truth")
    root = tmp_path / "flat"
    for (event, stem), boxes in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
        write_prediction_file(root, event, stem, boxes.astype(float), np.full(len(boxes), 0.9))
    result = run_cli("eval", "wider", root, "--gt", synth / "widerface" / "ground_truth")
    assert result.returncode == 0, result.stderr
    assert re.search(r"warning: flat: all \d+ scores are equal \(0\.9\).*divides by zero",
                     result.stderr)  # fmt: skip


def test_mat_box_outside_int32(synth, preds, tmp_path):
    import shutil

    from scipy.io import loadmat, savemat

    gt = tmp_path / "gt"
    shutil.copytree(synth / "widerface" / "ground_truth", gt)
    mat = loadmat(gt / "wider_face_val.mat")
    first = mat["face_bbx_list"][0, 0][0, 0]
    big = np.array(first, dtype=np.float64)
    big[0, 2] = 1e20
    mat["face_bbx_list"][0, 0][0, 0] = big
    savemat(gt / "wider_face_val.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    result = run_cli("eval", "wider", preds, "--gt", gt)
    assert_refused(result, r"wider_face_val\.mat: .*1e\+20, outside the int32 box range")


# ---------------------------------------------------------------------------- 8. readers


def test_bom_is_stripped(synth, tmp_path):
    """A size CSV and a fold list saved with a byte-order mark read like the plain files."""
    from facebench.formats.fddb import read_folds
    from facebench.formats.imagesize import read_sizes_csv

    fddb = synth / "fddb"
    folds = tmp_path / "folds"
    folds.mkdir()
    for f in (fddb / "FDDB-folds").iterdir():
        (folds / f.name).write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    marked, plain = read_folds(folds), read_folds(fddb / "FDDB-folds")
    assert [i.name for i in marked] == [i.name for i in plain]
    assert all(np.array_equal(a.ellipses, b.ellipses) for a, b in zip(marked, plain, strict=True))
    csv = tmp_path / "sizes.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + (fddb / "image_sizes.csv").read_bytes())
    assert read_sizes_csv(csv) == read_sizes_csv(fddb / "image_sizes.csv")


def test_bom_in_wider_files(synth, preds, tmp_path):
    import shutil

    from facebench.formats.wider import read_split_txt, read_wider_predictions

    split = synth / "widerface" / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    bom = tmp_path / "split.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + split.read_bytes())
    assert [i.name for i in read_split_txt(bom)] == [i.name for i in read_split_txt(split)]
    gt = read_eval_gt(synth / "widerface" / "ground_truth")
    mine = tmp_path / "mine"
    shutil.copytree(preds, mine)
    for f in mine.rglob("*.txt"):
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    plain, marked = read_wider_predictions(preds, gt), read_wider_predictions(mine, gt)
    assert np.array_equal(plain.rows, marked.rows) and not marked.invalid


def test_long_line_is_not_echoed_whole(synth, tmp_path):
    fddb = synth / "fddb"
    dets = tmp_path / "dets.txt"
    first = (fddb / "FDDB-folds" / "FDDB-fold-01.txt").read_text().split()[0]
    dets.write_text(f"{first}\n1\n" + "1 " * 1_000_000 + "\n")  # a 2 MB region line
    result = run_cli("eval", "fddb", dets, "--folds", fddb / "FDDB-folds",
                     "--image-sizes", fddb / "image_sizes.csv")  # fmt: skip
    line = assert_refused(result, r"dets\.txt:3: .*\.\.\. \(\d+ characters\)", logged=1)
    assert len(line) < 1000


@pytest.mark.parametrize(
    "width, pattern",
    [
        ("9" * 3_000_000, r"sizes\.csv:2: not a valid CSV row \(field larger"),
        ("1e300", r"sizes\.csv:2: width '1e300' is above 2147483647 pixels"),
        ("-4", r"sizes\.csv:2: width must be positive"),
    ],
    ids=["3MB-field", "1e300", "negative"],
)
def test_size_csv_values(synth, tmp_path, width, pattern):
    fddb = synth / "fddb"
    csv = tmp_path / "sizes.csv"
    csv.write_text(f"image,width,height\nx,{width},5\n")
    result = run_cli("eval", "fddb", fddb / "FDDB-folds" / "FDDB-fold-01-ellipseList.txt",
                     "--folds", fddb / "FDDB-folds", "--image-sizes", csv)  # fmt: skip
    line = assert_refused(result, pattern)
    assert len(line) < 1000


def test_name_too_long_for_the_file_system(synth, tmp_path):
    import shutil

    fddb = synth / "fddb"
    folds = tmp_path / "folds"
    shutil.copytree(fddb / "FDDB-folds", folds)
    name = "a" * 300
    (folds / "FDDB-fold-01.txt").write_text(name + "\n")
    (folds / "FDDB-fold-01-ellipseList.txt").write_text(f"{name}\n1\n10 5 0 20 20 1\n")
    result = run_cli("eval", "fddb", folds / "FDDB-fold-01-ellipseList.txt", "--folds", folds,
                     "--images", fddb / "originalPics", "--fold", "1")  # fmt: skip
    assert_refused(result, r"aaaa.*: file name too long")


# --------------------------------------------------- 2, 3, 9. training runs and checkpoints

TRAIN = ("--backbone", "tiny", "--workers", "0", "--threads", "1", "--max-side", "128")


def run_snapshot(run: Path) -> dict[str, tuple[int, int]]:
    """Like :func:`snapshot`, without the lock file (the one file a refused run touches)."""
    from detector.run_folder import LOCK_NAME

    return {k: v for k, v in snapshot(run).items() if k != LOCK_NAME}


@pytest.fixture(scope="module")
def finished_run(synth, tmp_path_factory) -> Path:
    """A finished 4-iteration run (checkpoints at 2 and 4, model_final.pt)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    result = run_cli("train", "--data", synth, "--out", run, "--iterations", "4",
                     "--checkpoint-every", "2", *TRAIN)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return run


def _copy_run(finished_run: Path, tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (("--iterations", "2"), r"ckpt_00000004\.pt: the run already reached iteration 4, but "
                                r"this schedule has 2 iterations; to extend a run pass "
                                r"--iterations larger than 4"),
        (("--iterations", "4", "--optimizer", "adamw"),
         r"--resume with a different recipe: --optimizer 'adamw' \(run: 'sgd'\)"),
        (("--iterations", "4", "--weight-decay", "0.001", "--no-flip"),
         r"--flip False \(run: True\); --weight-decay 0\.001 \(run: 5e-05\)"),
    ],
    ids=["shorter", "optimizer", "two-options"],
)
def test_resume_refuses_another_recipe(synth, finished_run, tmp_path, extra, pattern):
    run = _copy_run(finished_run, tmp_path)
    before = run_snapshot(run)
    result = run_cli("train", "--data", synth, "--out", run, "--resume", *TRAIN, *extra)
    assert_refused(result, pattern)
    assert run_snapshot(run) == before  # config.json, metrics and checkpoints untouched


def test_new_run_refuses_a_finished_folder(synth, finished_run, tmp_path):
    """A folder holding only model_final.pt and metrics.jsonl is a run too."""
    run = _copy_run(finished_run, tmp_path)
    for path in run.iterdir():
        if path.name not in ("model_final.pt", "metrics.jsonl"):
            path.unlink()
    before = run_snapshot(run)
    result = run_cli("train", "--data", synth, "--out", run, "--iterations", "2", *TRAIN)
    assert_refused(result, r"run: already holds a training run \(metrics\.jsonl, "
                           r"model_final\.pt\); pass --resume")  # fmt: skip
    assert run_snapshot(run) == before


def test_second_run_in_a_locked_folder(synth, tmp_path):
    from detector.run_folder import RunLock

    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):  # what a live `facebench train` holds
        result = run_cli("train", "--data", synth, "--out", run, "--iterations", "2", *TRAIN)
    assert_refused(result, rf"run: another training run \(pid {os.getpid()}\) is using this "
                           r"folder")  # fmt: skip
    assert run_snapshot(run) == {}


def test_resume_removes_own_orphan_temp_files(synth, finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    orphans = [".ckpt_00000006.pt.k2j4h1.tmp", ".model_final.pt.x8y7.tmp", ".metrics.jsonl.a.tmp"]
    for name in orphans:
        (run / name).write_bytes(b"half a checkpoint")
    (run / ".notes.txt.tmp").write_text("not ours")
    result = run_cli("train", "--data", synth, "--out", run, "--resume", "--iterations", "6",
                     "--checkpoint-every", "2", *TRAIN)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not any((run / name).exists() for name in orphans)
    assert (run / ".notes.txt.tmp").exists()
    assert "trained 6 iterations" in result.stderr and "images/s" in result.stderr


def test_nan_weights_warn(synth, finished_run, tmp_path):
    import torch

    from detector.checkpoint import load_checkpoint, save_checkpoint

    run = _copy_run(finished_run, tmp_path)
    state = load_checkpoint(run / "model_final.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", state)
    out = tmp_path / "dets"
    images = synth / "widerface" / "WIDER_val" / "images"
    result = run_cli("detect", "--checkpoint", tmp_path / "nan.pt", "--images", images,
                     "--out", out, "--limit", "1")  # fmt: skip
    expected = rf"warning: .*nan\.pt: weights hold NaN or infinite values \({re.escape(name)}"
    assert re.search(expected, result.stderr), result.stderr


def test_unsafe_pickle_is_called_unsafe(synth, tmp_path):
    import torch

    evil = tmp_path / "evil.pt"
    torch.save({"format": "facebench-checkpoint", "hook": print}, evil)
    images = synth / "widerface" / "WIDER_val" / "images"
    result = run_cli("detect", "--checkpoint", evil, "--images", images, "--out", tmp_path / "d")
    line = assert_refused(result, r"evil\.pt: refused: .*unsafe to load")
    assert "corrupt" not in line


# ---------------------------------------------------------------- 4. training data up front


def _broken_data(synth: Path, tmp_path: Path, content: bytes | None) -> tuple[Path, Path]:
    """A copy of the data set whose first training image is replaced (None: deleted)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth, data)
    first = sorted((data / "widerface" / "WIDER_train" / "images").rglob("*.jpg"))[0]
    if content is None:
        first.unlink()
    else:
        first.write_bytes(content)
    return data, first


@pytest.mark.parametrize(
    "content, pattern",
    [
        (None, r": image file not found"),
        (b"\xff\xd8 not really a jpeg", r": not a readable image: cannot decode the header"),
        (png_header(40000, 40000), r": image is 40000x40000 .* above the limit"),
    ],
    ids=["missing", "corrupt-header", "pixel-bomb"],
)
def test_training_data_checked_up_front(synth, tmp_path, content, pattern):
    data, first = _broken_data(synth, tmp_path, content)
    run = tmp_path / "run"
    result = run_cli("train", "--data", data, "--out", run, "--iterations", "2", *TRAIN)
    assert_refused(result, re.escape(str(first)) + pattern)
    assert not run.exists()


def test_worker_error_is_one_line(synth, tmp_path):
    """A file whose header is fine but whose pixels are not fails in a data-loading worker:
    the user sees that worker's one-line error, not its traceback."""
    data, first = _broken_data(synth, tmp_path, png_header(96, 128))
    run = tmp_path / "run"
    result = run_cli("train", "--data", data, "--out", run, "--iterations", "40",
                     "--backbone", "tiny", "--workers", "1", "--threads", "1",
                     "--max-side", "128", "--log-every", "1000")  # fmt: skip
    # Progress lines and libpng's own C-level "libpng error: ..." messages (one per decode
    # attempt, written by the worker process unsynchronised with ours, so one can end up on
    # the same line as our message) may surround the one error message.
    assert result.returncode == 2, result.stderr[-3000:]
    errors = re.findall(r"(?<!libpng )error: .*", result.stderr)
    assert len(errors) == 1, result.stderr[-3000:]
    assert re.search(re.escape(str(first)) + r": cannot decode image", errors[0]), errors[0]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


# ------------------------------------------------------------------------- 5. devices


@pytest.mark.parametrize("gpus", [0, 1, 2])
def test_resolve_device_honours_the_index(monkeypatch, gpus):
    """cuda:N is used as given, a missing GPU is an error, never a silent CPU fallback."""
    import torch

    from detector.devices import resolve_device
    from facebench.errors import FacebenchError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if gpus else torch.device("cpu"))
    for name in ("cuda", "cuda:0", "cuda:1"):
        index = int(name.partition(":")[2] or 0)
        if index < gpus:
            assert resolve_device(name) == torch.device("cuda", index)
        else:
            expected = "not available" if gpus == 0 else "no such GPU"
            with pytest.raises(FacebenchError, match=rf"--device '{name}'.*{expected}"):
                resolve_device(name)
    if gpus == 2:  # torchrun: a bare cuda (or auto) picks the process's local rank
        assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
        assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    for bad in ("gpu", "cuda:x", "tpu:0"):
        with pytest.raises(FacebenchError, match="not a device"):
            resolve_device(bad)

"""``facebench train``: train a detector design on WIDER FACE or the synthetic data set.

One process: ``facebench train --data DIR --out RUN``. Several GPUs (one node):
``torchrun --nproc_per_node 8 --no-python facebench train --data DIR --out RUN``. Several
nodes: the same on every node with ``--nnodes N --node_rank R --rdzv_backend c10d
--rdzv_endpoint HOST:PORT`` (the run folder must be on storage all nodes share, since rank 0
writes the checkpoints that ``--resume`` reads on every rank).
"""

from __future__ import annotations

from dataclasses import asdict

import click

from cli.app import main
from cli.console import ProgressCallback, check_progress, interactive, log, warn
from cli.options import (
    MOMENTUM,
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    Device,
    OutputDir,
    OutputFile,
    max_image_pixels_option,
    positive_floats,
)


def _overrides(items: tuple[str, ...]) -> dict:
    """``key=value`` pairs for build_detector; values parsed as JSON where they can be."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


class TrainProgress:
    """A rich bar on a terminal; otherwise a plain line about every tenth of the run."""

    def __init__(self) -> None:
        self.bar = ProgressCallback("training") if interactive() else None
        self.last_decile = -1

    def __call__(self, done: int, total: int, record: dict) -> None:
        if self.bar is not None:
            self.bar(done, total)
            return
        decile = (10 * done) // max(total, 1)
        if decile != self.last_decile and record:
            self.last_decile = decile
            log(
                f"iteration {done}/{total}: loss {record.get('loss', float('nan')):.4f}, "
                f"lr {record.get('lr', 0):.5f}, {record.get('images_per_s', 0):.1f} images/s"
            )


def set_threads(threads: int) -> None:
    """Set torch's intra-op threads (0 keeps torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def check_data(data: str, split: str) -> None:
    """Every training image's header, up front (seconds), not when a worker reaches it."""
    from detector.data import training_image_paths
    from facebench.images import check_image_files

    paths = training_image_paths(data, split)
    progress = check_progress("checking training images", len(paths))
    try:
        check_image_files(paths, progress)
    finally:
        if progress is not None:
            progress.close()


@main.command("train")
@max_image_pixels_option
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="WIDER FACE root (WIDER_train/, wider_face_split/) or a synthetic data folder.",
)
@click.option(
    "--out",
    "out",
    type=OutputDir(),
    required=True,
    help="Run folder: checkpoints, metrics.jsonl, config.json.",
)
@click.option(
    "--design",
    default="fpn-finest-sampling",
    show_default=True,
    help="Detector design (see detector.designs).",
)
@click.option(
    "--backbone",
    default="resnet50",
    show_default=True,
    type=click.Choice(["resnet50", "resnet18", "tiny"]),
)
@click.option(
    "--backbone-weights",
    type=click.Path(dir_okay=False),
    help="torchvision ResNet state dict to start from (nothing is downloaded).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Design/model override passed to build_detector (repeatable).",
)
@click.option("--split", default="train", show_default=True, help="WIDER split to train on.")
@click.option(
    "--epochs",
    type=POSITIVE_INT,
    help="Schedule length in epochs (paper: 100).",
)
@click.option(
    "--iterations",
    type=POSITIVE_INT,
    help="Schedule length in iterations (instead of epochs).",
)
@click.option(
    "--batch-size",
    type=POSITIVE_INT,
    default=1,
    show_default=True,
    help="Images per process per iteration (paper: 1 per GPU, 8 GPUs).",
)
@click.option(
    "--micro-batch",
    type=POSITIVE_INT,
    default=1,
    show_default=True,
    help="Images per forward pass; gradients are averaged over the batch.",
)
@click.option(
    "--base-lr",
    type=POSITIVE_FLOAT,
    default=0.01,
    show_default=True,
    help="Learning rate for a total batch of 8, scaled linearly with the total batch.",
)
@click.option(
    "--lr",
    type=POSITIVE_FLOAT,
    help="Absolute learning rate (overrides --base-lr scaling).",
)
@click.option(
    "--warmup-iters",
    type=NON_NEGATIVE_INT,
    help="Linear warm-up length (default min(500, 5%)).",
)
@click.option(
    "--optimizer",
    default="sgd",
    show_default=True,
    type=click.Choice(["sgd", "adamw"]),
    help="sgd: the paper (momentum 0.9); adamw: faster from a random init.",
)
@click.option(
    "--momentum",
    type=MOMENTUM,
    default=0.9,
    show_default=True,
)
@click.option(
    "--weight-decay",
    type=NON_NEGATIVE_FLOAT,
    default=5e-5,
    show_default=True,
)
@click.option(
    "--clip-grad-norm",
    type=POSITIVE_FLOAT,
    help="Clip the gradient norm (off by default).",
)
@click.option(
    "--max-side",
    type=POSITIVE_INT,
    default=1200,
    show_default=True,
    help="Random crop so that no training image side exceeds this.",
)
@click.option(
    "--scales",
    "scale_choices",
    default="0.25,0.5,0.75,1,1.25,1.5,1.75,2",
    show_default=True,
    help="Scale-jitter factors (comma separated).",
)
@click.option("--no-flip", is_flag=True, help="Disable the random horizontal flip.")
@click.option(
    "--workers",
    type=NON_NEGATIVE_INT,
    default=2,
    show_default=True,
    help="Data-loading processes.",
)
@click.option(
    "--threads",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="torch intra-op threads per process (0: torch's default). On a small, "
    "shared CPU 1 avoids oversubscription, which can slow training 10x.",
)
@click.option(
    "--seed",
    type=NON_NEGATIVE_INT,
    default=0,
    show_default=True,
)
@click.option("--amp", is_flag=True, help="Mixed precision on CUDA (losses stay float32).")
@click.option("--sync-bn", is_flag=True, help="SyncBatchNorm across GPUs (distributed CUDA).")
@click.option(
    "--device",
    type=Device(),
    default="auto",
    show_default=True,
    help="auto, cpu, cuda or cuda:N (never a silent fallback to the CPU).",
)
@click.option(
    "--checkpoint-every",
    type=POSITIVE_INT,
    default=1000,
    show_default=True,
    help="Iterations.",
)
@click.option(
    "--keep-checkpoints",
    type=NON_NEGATIVE_INT,
    default=2,
    show_default=True,
    help="Numbered checkpoints kept (0 keeps all).",
)
@click.option(
    "--log-every",
    type=POSITIVE_INT,
    default=20,
    show_default=True,
    help="Iterations per metrics line.",
)
@click.option("--resume", is_flag=True, help="Continue from the newest complete checkpoint.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard events (if installed).")
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    help="Write the run summary as JSON ('-' for stdout).",
)
def train_command(**opts) -> None:
    """Train a Group Sampling face detector (paper section 5 recipe).

    SGD (momentum 0.9, weight decay 5e-5), lr 0.01 per 8 images scaled with the total batch,
    warm-up, x0.1 at 60% and 80% of the schedule; scale jitter 0.25..2, random crop to
    --max-side, horizontal flip. Runs unchanged under torchrun (DDP).
    """
    from detector.train import TrainConfig, train
    from facebench.atomic import write_json

    if opts["epochs"] is None and opts["iterations"] is None:
        opts["epochs"] = 100  # the paper's schedule
    set_threads(opts.pop("threads"))
    cfg = TrainConfig(
        data=opts["data"],
        out=opts["out"],
        design=opts["design"],
        backbone=opts["backbone"],
        backbone_weights=opts["backbone_weights"],
        overrides=_overrides(opts["overrides"]),
        split=opts["split"],
        epochs=opts["epochs"],
        iterations=opts["iterations"],
        batch_size=opts["batch_size"],
        micro_batch=opts["micro_batch"],
        base_lr=opts["base_lr"],
        lr=opts["lr"],
        optimizer=opts["optimizer"],
        momentum=opts["momentum"],
        weight_decay=opts["weight_decay"],
        warmup_iters=opts["warmup_iters"],
        clip_grad_norm=opts["clip_grad_norm"],
        max_side=opts["max_side"],
        scale_choices=positive_floats(opts["scale_choices"], "--scales"),
        flip=not opts["no_flip"],
        workers=opts["workers"],
        seed=opts["seed"],
        amp=opts["amp"],
        sync_bn=opts["sync_bn"],
        device=opts["device"],
        checkpoint_every=opts["checkpoint_every"],
        keep_checkpoints=opts["keep_checkpoints"],
        log_every=opts["log_every"],
        resume=opts["resume"],
        tensorboard=opts["tensorboard"],
    )
    check_data(cfg.data, cfg.split)
    result = train(cfg, progress=TrainProgress(), warn=warn)
    if result.images == 0:
        log(f"nothing to do: {cfg.out} already finished {result.iterations} iterations")
    else:
        log(
            f"trained {result.iterations} iterations in {result.seconds:.1f}s "
            f"({result.images_per_s:.2f} images/s); final checkpoint {result.final_checkpoint}"
        )
    if opts["json_path"]:
        write_json(opts["json_path"], {**asdict(result), "config": cfg.plain()})

"""The training loop (paper section 5): SGD, warm-up then step decay, DDP, AMP, checkpoints.

Recipe: SGD with momentum 0.9 and weight decay 5e-5; learning rate 0.01 for a total batch of
8 images (one per GPU), scaled linearly with the total batch; a linear warm-up from 1/3 of it;
x0.1 at 60% and 80% of the schedule. The schedule counts iterations (``iterations``) or epochs
(``epochs``; an epoch is one pass of the sampler with the last incomplete batch dropped).

One code path serves one process and ``torchrun`` (DistributedDataParallel; NCCL on CUDA,
gloo on CPU; a DistributedSampler whose ``set_epoch`` is called every epoch). Each process
runs its batch as micro-batches (``micro_batch`` images per forward, default 1 as in the
paper) and averages gradients, so the update depends only on the total batch: 2 processes x 1
image equal 1 process x 2 images. The model's random anchor sampling is seeded per image from
``(seed, epoch, index)``, which with the data's own per-sample seeds makes a run a pure
function of its seed: a resumed run reproduces the uninterrupted one exactly on CPU.

Outputs in ``out``: ``config.json``, ``metrics.jsonl`` (one JSON object per logged
iteration: losses, lr, sampled positives/negatives per scale from ``model.last_stats``,
images/s), ``ckpt_<iteration>.pt`` every ``checkpoint_every`` iterations (newest
``keep_checkpoints`` kept) and ``model_final.pt``; TensorBoard events when asked and installed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from detector.augment import PAPER_SCALES, TrainAugment
from detector.checkpoint import (
    capture_rng_state,
    checkpoint_name,
    describe_nonfinite,
    load_checkpoint,
    newest_checkpoint,
    nonfinite_tensors,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
)
from detector.data import FaceDataset, collate_list, pad_batch, training_set
from detector.devices import resolve_device
from detector.run_folder import (
    RunLock,
    check_resume_recipe,
    check_resume_schedule,
    refuse_existing_run,
    remove_orphan_temp_files,
)
from facebench.atomic import atomic_open, write_json
from facebench.errors import FacebenchError

PAPER_BATCH = 8  # images per iteration for which the paper's lr of 0.01 is set


@dataclass
class TrainConfig:
    """Options of one training run (all plain values; saved in every checkpoint)."""

    data: str
    out: str
    design: str = "fpn-finest-sampling"
    backbone: str = "resnet50"
    backbone_weights: str | None = None
    overrides: dict = field(default_factory=dict)
    split: str = "train"
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int = 1
    micro_batch: int = 1
    base_lr: float = 0.01
    lr: float | None = None
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_iters: int | None = None
    warmup_factor: float = 1.0 / 3.0
    milestones: Sequence[float] = (0.6, 0.8)
    gamma: float = 0.1
    clip_grad_norm: float | None = None
    max_side: int = 1200
    scale_choices: Sequence[float] = PAPER_SCALES
    flip: bool = True
    workers: int = 2
    seed: int = 0
    amp: bool = False
    sync_bn: bool = False
    device: str = "auto"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 20
    resume: bool = False
    tensorboard: bool = False

    def plain(self) -> dict:
        """JSON-ready copy (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


# -- learning-rate schedule ---------------------------------------------------------------


class WarmupStepSchedule:
    """Linear warm-up from ``warmup_factor * lr``, then x``gamma`` at each milestone fraction
    of ``total_iters``. ``step(it)`` sets the optimizer's lr for iteration ``it`` (0-based)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr: float,
        total_iters: int,
        warmup_iters: int,
        warmup_factor: float = 1.0 / 3.0,
        milestones: Sequence[float] = (0.6, 0.8),
        gamma: float = 0.1,
    ) -> None:
        self.optimizer = optimizer
        self.lr = float(lr)
        self.total_iters = int(total_iters)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.milestones = [round(m * total_iters) for m in milestones]
        self.gamma = float(gamma)
        self.last_iter = -1

    def lr_at(self, it: int) -> float:
        decay = self.gamma ** sum(it >= m for m in self.milestones)
        if it < self.warmup_iters:
            alpha = it / self.warmup_iters
            decay *= self.warmup_factor * (1.0 - alpha) + alpha
        return self.lr * decay

    def step(self, it: int) -> float:
        lr = self.lr_at(it)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_iter = it
        return lr

    def state_dict(self) -> dict:
        return {
            "lr": self.lr,
            "total_iters": self.total_iters,
            "warmup_iters": self.warmup_iters,
            "warmup_factor": self.warmup_factor,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "last_iter": self.last_iter,
        }

    def load_state_dict(self, state: dict) -> None:
        self.lr = float(state["lr"])
        self.total_iters = int(state["total_iters"])
        self.warmup_iters = int(state["warmup_iters"])
        self.warmup_factor = float(state["warmup_factor"])
        self.milestones = [int(m) for m in state["milestones"]]
        self.gamma = float(state["gamma"])
        self.last_iter = int(state["last_iter"])


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper), or AdamW (``optimizer="adamw"``: much faster from a
    random init, used by the CPU quickstart); no weight decay on biases and norm weights."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.base_lr)
    return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum)


# -- distributed context ------------------------------------------------------------------


@dataclass
class DistContext:
    """Rank, world size and device of this process (one process: rank 0 of 1)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialised_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "auto") -> DistContext:
    """Set up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), if present."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    # No silent CPU fallback; cuda:N is honoured (a bare cuda/auto uses the local rank).
    dev = resolve_device(device, local_rank)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(dev)
    here = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        here = True
    return DistContext(rank, world_size, local_rank, dev, here)


# -- data stream --------------------------------------------------------------------------


class EpochStream(torch.utils.data.Sampler):
    """Endless ``(epoch, index)`` stream: a DistributedSampler pass per epoch (``set_epoch``
    called each time), starting at ``start_epoch`` after skipping ``skip`` samples."""

    def __init__(self, sampler: DistributedSampler, start_epoch: int, skip: int) -> None:
        self.sampler = sampler
        self.start_epoch = start_epoch
        self.skip = skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.start_epoch, self.skip
        while True:
            self.sampler.set_epoch(epoch)
            for k, index in enumerate(self.sampler):
                if k >= skip:
                    yield (epoch, index)
            epoch, skip = epoch + 1, 0


class _EpochIndexed(torch.utils.data.Dataset):
    """Adapts a FaceDataset to ``(epoch, index)`` keys so one loader spans all epochs."""

    def __init__(self, dataset: FaceDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return {**self.dataset[index], "epoch": epoch}


# -- metrics ------------------------------------------------------------------------------


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (rank 0 only)."""

    def __init__(self, path: Path, resume_from: int | None) -> None:
        self.path = path
        if resume_from is None:
            path.write_text("")
        else:
            self._truncate_after(resume_from)
        self._file = path.open("a", encoding="utf-8")

    def _truncate_after(self, iteration: int) -> None:
        # Lines logged after the checkpoint we resume from are redone; drop them (and a
        # line cut short by the kill) so the log reads like one uninterrupted run.
        kept = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if int(record.get("iteration", 0)) <= iteration:
                    kept.append(line)
        with atomic_open(self.path, "w", encoding="utf-8") as f:
            f.write("".join(k + "\n" for k in kept))

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _flatten(stats: Any, prefix: str = "") -> dict[str, float]:
    """Numbers from a nested dict/list of plain numbers, keyed ``a.b.0``."""
    out: dict[str, float] = {}
    if isinstance(stats, dict):
        for key, value in stats.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(stats, (list, tuple)):
        for i, value in enumerate(stats):
            out.update(_flatten(value, f"{prefix}{i}."))
    elif isinstance(stats, (int, float)) and not isinstance(stats, bool):
        out[prefix[:-1]] = float(stats)
    elif isinstance(stats, torch.Tensor) and stats.numel() == 1:
        out[prefix[:-1]] = float(stats)
    return out


class _Window:
    """Sums of logged values over the iterations since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.iters = 0
        self.images = 0
        self.start = time.perf_counter()

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def means(self) -> dict[str, float]:
        return {k: v / max(self.iters, 1) for k, v in self.sums.items()}


# -- the run ------------------------------------------------------------------------------


@dataclass
class TrainResult:
    iterations: int
    seconds: float
    images: int
    images_per_s: float
    final_checkpoint: str
    metrics: str
    first_loss: float | None
    last_loss: float | None
    resumed_from: int


def train(
    cfg: TrainConfig,
    progress: Callable[[int, int, dict], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> TrainResult:
    """Run (or continue) a training run; returns a summary. ``progress(done, total, record)``
    is called on rank 0 after every iteration (``record`` is the latest logged metrics).

    Three steps: :func:`_setup` builds data, model, optimizer and schedule from the seed;
    :func:`_restore` loads a checkpoint's state into them (``--resume``); :func:`_loop` trains
    to the end of the schedule, logging and checkpointing."""
    warn = warn or (lambda msg: None)
    _validate(cfg)
    ctx = init_distributed(cfg.device)
    out = Path(cfg.out)
    run = None
    lock = RunLock(out)
    try:
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            lock.acquire()  # one run per folder; held until this function returns
            remove_orphan_temp_files(out)
        resume_state = _find_resume_state(cfg, out, warn)
        run = _setup(cfg, ctx, out, warn)
        if resume_state is not None:
            # Before anything is written: a shorter schedule would rewrite older checkpoints.
            reached = int(resume_state["iteration"])
            check_resume_schedule(resume_state["_path"], reached, run.total_iters)
            _restore(run, resume_state)
            del resume_state
        return _loop(run, progress, warn)
    finally:
        if run is not None and run.writer is not None:
            run.writer.close()
        lock.release()
        ctx.close()


@dataclass
class _Run:
    """A training run's state between the steps of :func:`train`."""

    cfg: TrainConfig
    ctx: DistContext
    out: Path
    dataset: FaceDataset
    sampler: DistributedSampler
    iters_per_epoch: int
    total_iters: int
    total_batch: int
    model: torch.nn.Module  # the (possibly SyncBN-converted) model, before any DDP wrap
    amp: bool
    optimizer: torch.optim.Optimizer
    lr: float
    warmup: int
    schedule: WarmupStepSchedule
    scaler: torch.amp.GradScaler
    start_iter: int = 0
    writer: Any = None


def _setup(cfg: TrainConfig, ctx: DistContext, out: Path, warn) -> _Run:
    """Data, sampler and schedule length; the model built from ``cfg.seed``; optimizer,
    learning-rate schedule and gradient scaler, all in their initial state."""
    from detector.model import build_detector

    augment = TrainAugment(cfg.max_side, cfg.scale_choices, cfg.flip)
    dataset = training_set(cfg.data, cfg.split, augment, cfg.seed)
    total_batch = cfg.batch_size * ctx.world_size
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
        seed=cfg.seed, drop_last=True,
    )
    iters_per_epoch = len(sampler) // cfg.batch_size
    if iters_per_epoch < 1:
        raise FacebenchError(
            f"{cfg.data}: {len(dataset)} training images cannot fill one iteration of "
            f"{total_batch} images (batch {cfg.batch_size} x {ctx.world_size} processes)"
        )
    total_iters = cfg.iterations or cfg.epochs * iters_per_epoch  # type: ignore[operator]

    torch.manual_seed(cfg.seed)
    if cfg.backbone_weights is not None and not Path(cfg.backbone_weights).is_file():
        raise FacebenchError(f"{cfg.backbone_weights}: backbone weights file not found")
    model = build_detector(
        design=cfg.design, backbone=cfg.backbone,
        backbone_weights=cfg.backbone_weights, **cfg.overrides,
    )
    model.to(ctx.device)
    if cfg.sync_bn and ctx.distributed:
        if ctx.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            warn("--sync-bn needs CUDA; keeping per-process BatchNorm on CPU")
    amp = cfg.amp and ctx.device.type == "cuda"
    if cfg.amp and not amp:
        warn("--amp needs CUDA; training in float32")

    optimizer = build_optimizer(model, cfg)
    lr = cfg.lr if cfg.lr is not None else cfg.base_lr * total_batch / PAPER_BATCH
    warmup = cfg.warmup_iters
    if warmup is None:
        warmup = min(500, max(1, total_iters // 20))
    schedule = WarmupStepSchedule(
        optimizer, lr, total_iters, warmup, cfg.warmup_factor, cfg.milestones, cfg.gamma
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    return _Run(
        cfg=cfg, ctx=ctx, out=out, dataset=dataset, sampler=sampler,
        iters_per_epoch=iters_per_epoch, total_iters=total_iters, total_batch=total_batch,
        model=model, amp=amp, optimizer=optimizer, lr=lr, warmup=warmup, schedule=schedule,
        scaler=scaler,
    )  # fmt: skip


def _restore(run: _Run, state: dict) -> None:
    """Continue from a checkpoint ``state``: model, optimizer, schedule and scaler states, the
    iteration reached and this process's RNG state (when the process count matches)."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.start_iter = int(state["iteration"])
    states = state.get("rng") or []
    if len(states) == run.ctx.world_size:
        restore_rng_state(states[run.ctx.rank])


def _loop(
    run: _Run, progress: Callable[[int, int, dict], None] | None, warn: Callable[[str], None]
) -> TrainResult:
    """Train from ``run.start_iter`` to ``run.total_iters``: metrics every ``log_every``
    iterations, checkpoints every ``checkpoint_every``, then the final checkpoint."""
    cfg, ctx, out, core = run.cfg, run.ctx, run.out, run.model
    start_iter, total_iters, iters_per_epoch = run.start_iter, run.total_iters, run.iters_per_epoch
    model = core
    if ctx.distributed:
        ddp_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(
            core, device_ids=ddp_ids, find_unused_parameters=True
        )
    loader = _loader(run)
    metrics = _open_outputs(run, warn)
    writer = run.writer

    base = {
        "design": cfg.design, "backbone": cfg.backbone, "overrides": dict(cfg.overrides),
        "config": cfg.plain(),
    }
    optimizer, schedule, scaler = run.optimizer, run.schedule, run.scaler
    step = _Stepper(model, core, optimizer, scaler, ctx, cfg, run.amp)
    window = _Window()
    first_loss = last_loss = None
    last_record: dict = {}
    start_time = time.perf_counter()
    it = start_iter
    data_iter = iter(loader)
    while it < total_iters:
        samples = next(data_iter)
        epoch = samples[0]["epoch"]
        lr_now = schedule.step(it)
        values = step(samples)
        it += 1
        window.iters += 1
        window.images += run.total_batch
        window.add(values)
        if it % cfg.log_every == 0 or it == total_iters or it == start_iter + 1:
            elapsed = time.perf_counter() - window.start
            record = {
                "iteration": it, "epoch": epoch, "lr": lr_now,
                **{k: round(v, 6) for k, v in window.means().items()},
                "images_per_s": window.images / max(elapsed, 1e-9),
                "time": time.perf_counter() - start_time,
            }
            last_record = record
            if first_loss is None:
                first_loss = record["loss"]
            last_loss = record["loss"]
            if metrics is not None:
                metrics.write(record)
            if writer is not None:
                for k, v in record.items():
                    if k not in ("iteration", "epoch"):
                        writer.add_scalar(k, v, it)
            window.reset()
        if it % cfg.checkpoint_every == 0 and it < total_iters:
            _save(out, [checkpoint_name(it)], base, core, optimizer, schedule, scaler, it,
                  it // iters_per_epoch, ctx)
            if ctx.is_main:
                prune_checkpoints(out, cfg.keep_checkpoints)
        if progress is not None and ctx.is_main:
            progress(it, total_iters, last_record)
    seconds = time.perf_counter() - start_time
    final = out / "model_final.pt"
    # model_final.pt is the same complete state under a stable name.
    _save(out, [checkpoint_name(total_iters), final.name], base, core, optimizer, schedule,
          scaler, total_iters, total_iters // iters_per_epoch, ctx)
    if ctx.is_main:
        prune_checkpoints(out, cfg.keep_checkpoints)
    done = total_iters - start_iter
    if metrics is not None:
        metrics.close()
    return TrainResult(
        iterations=total_iters,
        seconds=seconds,
        images=done * run.total_batch,
        images_per_s=done * run.total_batch / max(seconds, 1e-9),
        final_checkpoint=str(final),
        metrics=str(out / "metrics.jsonl"),
        first_loss=first_loss,
        last_loss=last_loss,
        resumed_from=start_iter,
    )


def _loader(run: _Run) -> DataLoader:
    """The training batches from ``run.start_iter`` on (epoch order fixed by the seed)."""
    cfg = run.cfg
    stream = EpochStream(
        run.sampler, run.start_iter // run.iters_per_epoch,
        (run.start_iter % run.iters_per_epoch) * cfg.batch_size,
    )  # fmt: skip
    return DataLoader(
        _EpochIndexed(run.dataset),
        sampler=stream,
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        collate_fn=collate_list,
        pin_memory=run.ctx.device.type == "cuda",
        # A private generator keeps the loader from drawing on the global torch RNG,
        # which would make the run depend on when the loader was created.
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=False,
        prefetch_factor=4 if cfg.workers > 0 else None,
    )


def _open_outputs(run: _Run, warn: Callable[[str], None]) -> MetricsLog | None:
    """On rank 0: ``config.json``, the metrics log (cut back to the resumed iteration) and the
    TensorBoard writer when asked (``run.writer``). None on other ranks."""
    cfg, out = run.cfg, run.out
    if not run.ctx.is_main:
        return None
    write_json(out / "config.json", {
        **cfg.plain(), "world_size": run.ctx.world_size, "total_batch": run.total_batch,
        "lr_effective": run.lr, "warmup_iters_effective": run.warmup,
        "total_iters": run.total_iters, "iters_per_epoch": run.iters_per_epoch,
        "num_images": len(run.dataset),
    })  # fmt: skip
    if cfg.tensorboard:
        run.writer = _tensorboard(out, warn)
    return MetricsLog(out / "metrics.jsonl", run.start_iter if run.start_iter else None)


class _Stepper:
    """One optimisation step over a process's batch, as micro-batches."""

    def __init__(self, model, core, optimizer, scaler, ctx: DistContext, cfg: TrainConfig,
                 amp: bool) -> None:
        self.model, self.core, self.optimizer, self.scaler = model, core, optimizer, scaler
        self.ctx, self.cfg, self.amp = ctx, cfg, amp

    def __call__(self, samples: list[dict]) -> dict[str, float]:
        cfg, ctx = self.cfg, self.ctx
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        chunks = [samples[i : i + cfg.micro_batch] for i in range(0, len(samples), cfg.micro_batch)]
        padded = []
        for chunk in chunks:
            images, targets = pad_batch(chunk)
            targets = [
                {"boxes": t["boxes"].to(ctx.device), "ignore": t["ignore"].to(ctx.device)}
                for t in targets
            ]
            padded.append((images, targets))
        batch_positives = self._batch_positives(padded)
        values: dict[str, float] = {}
        for j, (chunk, (images, targets)) in enumerate(zip(chunks, padded, strict=True)):
            last = j == len(chunks) - 1
            defer = ctx.distributed and not last
            sync = self.model.no_sync() if defer else contextlib.nullcontext()
            with sync:
                # Per-image seed: the model's random sampling does not depend on the
                # process layout or on where a resumed run started.
                torch.manual_seed(chunk[0]["seed"])
                images = images.to(ctx.device, non_blocking=True).float().div_(255.0)
                # The batch rule: each micro-batch's focal sum over the batch's positives,
                # scaled up by 1/share because the micro-batch losses are averaged below.
                normaliser = None if batch_positives is None else (
                    max(batch_positives, 1) * len(chunk) / len(samples)
                )
                with torch.autocast(ctx.device.type, dtype=torch.float16, enabled=self.amp):
                    losses = self.model(images, targets, cls_normaliser=normaliser)
                # Losses are summed in float32 whatever autocast did inside the model.
                losses = {k: v.float() for k, v in losses.items()}
                loss = sum(losses.values())
                if not torch.isfinite(loss):
                    raise FacebenchError(
                        f"training diverged: loss is {float(loss)} (lower --lr or check data)"
                    )
                self.scaler.scale(loss * (len(chunk) / len(samples))).backward()
            weight = len(chunk) / len(samples)
            for k, v in losses.items():
                values[k] = values.get(k, 0.0) + float(v.detach()) * weight
            values["loss"] = values.get("loss", 0.0) + float(loss.detach()) * weight
            stats = getattr(self.core, "last_stats", None) or {}
            for k, v in _flatten(stats).items():
                values[f"stats.{k}"] = values.get(f"stats.{k}", 0.0) + v
        if cfg.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.core.parameters(), cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return values

    def _batch_positives(self, padded: list) -> int | None:
        """The step's positive-anchor count when the design's focal loss uses the batch rule
        over several micro-batches (None otherwise: one forward sees the whole batch)."""
        design = self.core.design
        if len(padded) < 2 or design.classification_loss != "focal" or (
            design.focal_normaliser != "batch"
        ):
            return None
        return sum(
            self.core.count_positives(images.shape[-2], images.shape[-1], targets)
            for images, targets in padded
        )


def _save(out: Path, names: list[str], base: dict, core, optimizer, schedule, scaler, it: int,
          epoch: int, ctx: DistContext) -> None:
    rng = [capture_rng_state()]
    if ctx.distributed:
        # Every rank must take part in the gather; only rank 0 writes.
        gathered: list = [None] * ctx.world_size
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
    if not ctx.is_main:
        return
    state = {
        "format": "facebench-checkpoint", "version": 1, **base,
        "model": core.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(), "scaler": scaler.state_dict(),
        "iteration": it, "epoch": epoch, "rng": rng,
    }
    for name in names:
        save_checkpoint(out / name, state)


def _find_resume_state(cfg: TrainConfig, out: Path, warn) -> dict | None:
    """The checkpoint state to continue from (``None``: a new run), after checking that a
    new run would overwrite nothing and that a resumed one keeps its recipe. Reads only."""
    if not cfg.resume:
        refuse_existing_run(out)
        return None
    found = newest_checkpoint(out, warn)
    if found is None and (out / "model_final.pt").is_file():
        final = out / "model_final.pt"
        found = final, load_checkpoint(final)
    if found is None:
        warn(f"{out}: no complete checkpoint to resume from; starting from scratch")
        return None
    path, state = found
    for key in ("design", "backbone"):
        if state[key] != getattr(cfg, key):
            raise FacebenchError(
                f"{path}: checkpoint was trained with {key} {state[key]!r}, not "
                f"{getattr(cfg, key)!r}"
            )
    check_resume_recipe(path, dict(state.get("config") or {}), cfg.plain())
    bad = nonfinite_tensors(state["model"])
    if bad:
        warn(describe_nonfinite(path, bad))
    state["_path"] = path
    return state


def _validate(cfg: TrainConfig) -> None:
    if (cfg.epochs is None) == (cfg.iterations is None):
        raise FacebenchError("give exactly one of epochs or iterations")
    for name in ("epochs", "iterations"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise FacebenchError(f"{name} must be >= 1, got {value}")
    if cfg.batch_size < 1 or cfg.micro_batch < 1:
        raise FacebenchError("batch size and micro-batch must be >= 1")
    if cfg.checkpoint_every < 1 or cfg.log_every < 1:
        raise FacebenchError("checkpoint and log intervals must be >= 1")
    if cfg.optimizer not in ("sgd", "adamw"):
        raise FacebenchError(f"optimizer must be sgd or adamw, got {cfg.optimizer!r}")
    if cfg.lr is not None and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise FacebenchError(f"learning rate must be positive, got {cfg.lr}")


def _tensorboard(out: Path, warn):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warn("TensorBoard is not installed (pip install tensorboard); metrics.jsonl only")
        return None
    return SummaryWriter(str(out / "tensorboard"))

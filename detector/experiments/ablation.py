"""The ablation driver: data, anchor statistics, every (design, seed) run, the report.

:func:`run_ablation` trains every design with the same protocol, data, augmentation and
seeds, seed-major (all designs for seed 0, then seed 1, ...) so that a run cut short still
covers every design. Finished runs are reused (keyed by their configuration hash), so the
same call after a kill continues where it stopped and, once everything is finished, only
rewrites the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detector.experiments.protocol import AblationProtocol, data_fingerprint
from detector.experiments.runs import (
    DataSet,
    RunSpec,
    execute_run,
    finished_result,
    older_code_result,
)
from facebench.errors import FacebenchError

ANCHOR_STATS_FILE = "anchor_stats.json"


@dataclass
class AblationState:
    """What an ablation call found and did."""

    protocol: AblationProtocol
    data: DataSet
    designs: list[str]
    seeds: list[int]
    results: list[dict] = field(default_factory=list)
    reused: int = 0
    trained: int = 0
    skipped: int = 0
    anchor_stats: dict | None = None
    data_info: dict = field(default_factory=dict)
    seconds: float = 0.0
    budgets: list[int] = field(default_factory=list)
    #: Figure 2 counts per budget N (``anchor_stats`` is the first budget's).
    anchor_stats_by_budget: dict[int, dict] = field(default_factory=dict)

    def at_budget(self, n: int) -> AblationState:
        """This state restricted to budget ``n``: its runs (records carry ``budget``), the
        protocol at ``n`` and that budget's anchor statistics; a one-budget state."""
        return AblationState(
            self.protocol.with_budget(n), self.data, self.designs, self.seeds,
            results=[r for r in self.results if r.get("budget", n) == n],
            anchor_stats=self.anchor_stats_by_budget.get(n), data_info=self.data_info,
            budgets=[n], anchor_stats_by_budget={n: self.anchor_stats_by_budget.get(n) or {}},
        )


def prepare_data(data: Path | None, out: Path, protocol: AblationProtocol,
                 log: Callable[[str], None]) -> tuple[DataSet, dict]:
    """The data set to use: ``data`` (synthetic folder or WIDER root), or the protocol's
    synthetic set generated into ``out/data`` (reused when its parameters match)."""
    import json

    from detector.data import resolve_wider_root

    info: dict = {}
    if data is None:
        data = out / "data"
        spec = protocol.synth
        manifest = data / "synth.json"
        wanted = {"num_images": spec.images, "seed": spec.seed,
                  "val_fraction": spec.val_fraction, "max_side": spec.max_side}
        current = None
        if manifest.is_file():
            current = json.loads(manifest.read_text(encoding="utf-8")).get("parameters")
        if current != wanted:
            from facebench.synth import generate

            log(f"generating the synthetic data set ({spec.images} images, seed {spec.seed})"
                f" -> {data}")
            # The set is a function of its parameters only, whatever the worker count.
            generate(data, num_images=spec.images, seed=spec.seed,
                     val_fraction=spec.val_fraction, max_side=spec.max_side,
                     workers=min(8, os.cpu_count() or 1))
        info["generated"] = wanted
    data = Path(data)
    if not data.is_dir():
        raise FacebenchError(f"{data}: data folder not found")
    root = resolve_wider_root(data)
    for needed in ("WIDER_val", "wider_face_split", "ground_truth"):
        if not (root / needed).exists():
            raise FacebenchError(
                f"{root}: no {needed}/ (need a WIDER layout with WIDER_train/, WIDER_val/, "
                "wider_face_split/ and the evaluation ground_truth/, or a synthetic folder)"
            )
    train_split = root / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    if not train_split.is_file():
        raise FacebenchError(f"{train_split}: training split not found (the ablation trains "
                             "on the train split and evaluates on val)")
    manifest = data / "synth.json"
    if manifest.is_file():
        synth = json.loads(manifest.read_text(encoding="utf-8"))
        info["synthetic"] = {
            "parameters": synth.get("parameters"),
            "counts": synth.get("counts", {}),
            "face_height": synth.get("size_distribution", {}).get("measured_box_height"),
            "height_histogram": synth.get("size_distribution", {}).get("height_histogram"),
        }
    info["path"] = str(data.resolve())
    return DataSet(root=root, data_arg=data, fingerprint=data_fingerprint(root)), info


def run_ablation(
    out: Path,
    protocol: AblationProtocol,
    designs: Sequence[str],
    seeds: Sequence[int],
    data: Path | None = None,
    workers: int = 1,
    train: bool = True,
    log: Callable[[str], None] = lambda msg: None,
    train_progress: Callable[[int, int, dict], None] | None = None,
    deadline: float | None = None,
    threads: int | None = None,
) -> AblationState:
    """Run (or reuse) every (design, seed) and count the anchor statistics; ``train=False``
    only collects finished runs (the report of a run in progress elsewhere). ``deadline``
    (a ``time.monotonic()`` value): start no new run after it; the rest stays missing and a
    later call continues. ``threads``: torch intra-op threads for this process (1 is much
    faster than the default on cores shared with other jobs; results do not depend on it)."""
    from detector.designs import get_design

    start = time.perf_counter()
    if threads:
        import torch

        torch.set_num_threads(threads)
    for name in designs:
        get_design(name, **protocol.design_overrides())  # unknown names fail before any work
    if not designs or not seeds:
        raise FacebenchError("need at least one design and one seed")
    out.mkdir(parents=True, exist_ok=True)
    dataset, info = prepare_data(data, out, protocol, log)
    budgets = list(protocol.sweep)
    state = AblationState(protocol, dataset, list(designs), list(seeds), data_info=info,
                          budgets=budgets)
    runs_root = out / "runs"
    total = len(designs) * len(seeds) * len(budgets)
    k = 0
    # Seed-major, then budget: a sweep cut short covers every design at every N.
    for seed, n, design in ((s, n, d) for s in seeds for n in budgets for d in designs):
        k += 1
        spec = RunSpec(design, seed, protocol.for_run(design, n), dataset)
        where = f"N={n} {design} seed {seed}"
        record = finished_result(spec, runs_root)
        if record is not None:
            state.reused += 1
        elif train and (deadline is None or time.monotonic() < deadline):
            log(f"[{k}/{total}] {where}: training {protocol.iterations} "
                f"iterations ({protocol.backbone})")
            record = execute_run(spec, runs_root, workers, log, train_progress)
            if record is None:
                state.skipped += 1
            else:
                state.trained += 1
                ap = record["ap"]
                log(f"[{k}/{total}] {where}: All {ap['all']:.3f} "
                    f"(train {record['seconds']['train']:.0f}s, "
                    f"detect {record['seconds']['detect']:.0f}s)")
        else:
            # Report only: results of an older code version count, flagged as such.
            record = older_code_result(spec, runs_root)
            if record is None:
                state.skipped += 1
            else:
                state.reused += 1
        if record is not None:
            state.results.append({**record, "budget": n})
    for n in budgets:
        single = len(budgets) == 1 and not protocol.budgets
        state.anchor_stats_by_budget[n] = anchor_statistics(
            out, dataset, protocol if single else protocol.with_budget(n), designs, log,
            filename=ANCHOR_STATS_FILE if single else f"anchor_stats-N{n}.json",
        )
    state.anchor_stats = state.anchor_stats_by_budget[budgets[0]]
    state.seconds = time.perf_counter() - start
    return state


def anchor_statistics(out: Path, dataset: DataSet, protocol: AblationProtocol,
                      designs: Sequence[str], log: Callable[[str], None],
                      filename: str = ANCHOR_STATS_FILE) -> dict:
    """Figure 2 counts for ``designs`` on the training split with the protocol's augmentation
    and sample budgets (one epoch, seed 0); cached in ``out/anchor_stats.json``."""
    import hashlib
    import json

    from detector.anchor_stats import count_anchor_stats, open_training_set
    from detector.augment import TrainAugment
    from detector.designs import get_design
    from detector.targets import check_countable
    from facebench.atomic import write_json

    key = hashlib.sha256(json.dumps(
        {"data": dataset.fingerprint, "train": protocol.train_recipe(), "designs": list(designs)},
        sort_keys=True,
    ).encode()).hexdigest()
    path = out / filename
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached
    log(f"counting anchor statistics (Figure 2) on the training split, N = "
        f"{protocol.n_per_group}")
    training = open_training_set(dataset.data_arg, split="train")
    augment = TrainAugment(protocol.train_max_side, protocol.scale_choices, protocol.flip)
    resolved, not_counted = [], {}
    for name in designs:
        design = get_design(name, **protocol.design_overrides())
        try:
            check_countable(design)
        except FacebenchError as exc:
            # OHEM picks samples by a trained model's loss: no model-free statistics.
            not_counted[name] = str(exc)
            continue
        resolved.append(design)
    stats = count_anchor_stats(training, resolved, epochs=1, seed=0, augment=augment)
    record = {"key": key, **stats.to_dict(), "not_counted": not_counted}
    write_json(path, record)
    return record

"""``facebench experiment ablation``: the paper's ablations (Tables 1, 3, 4) at CPU scale.

Trains every design with one protocol (same data, budget, augmentation and seeds), evaluates
Easy/Medium/Hard/All and the @16..@128 sub-detectors, counts the anchor statistics and writes
one report folder. The work lives in :mod:`detector.experiments`; this module parses options.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.app import FacebenchGroup, main
from cli.console import log
from cli.options import (
    NON_NEGATIVE_INT,
    OutputDir,
    OutputFile,
)
from facebench.errors import FacebenchError


@main.group(name="experiment", cls=FacebenchGroup)
def experiment_group() -> None:
    """Experiments: reproduce the paper's ablations with several seeds."""


def _designs(text: str) -> list[str]:
    from detector.experiments.protocol import DESIGN_PRESETS

    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        for name in DESIGN_PRESETS.get(part, (part,)):
            if name not in names:
                names.append(name)
    if not names:
        raise FacebenchError("--designs: give at least one design name or preset")
    return names


def _budgets(text: str) -> tuple[int, ...]:
    values: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 2:
            raise FacebenchError(f"--budgets: {part!r} is not an integer N >= 2")
        if int(part) not in values:
            values.append(int(part))
    if not values:
        raise FacebenchError("--budgets: give at least one N, e.g. 64,128,512")
    return tuple(values)


@experiment_group.command("ablation")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    help="Synthetic data folder or WIDER root (WIDER_train/, WIDER_val/, "
    "wider_face_split/, ground_truth/). Absent: the protocol's synthetic set is "
    "generated into OUT/data.",
)
@click.option(
    "--designs",
    default="table1",
    show_default=True,
    help="Comma-separated design names or presets: table1 (the paper's 5 designs), "
    "all (table1 + smooth-L1, OHEM, focal loss), sweep (table1 + OHEM + both "
    "focal-loss normalisations), quick.",
)
@click.option(
    "--seeds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Seeds 0..K-1 per design (spread over seeds decides 'no difference').",
)
@click.option(
    "--budget",
    type=click.IntRange(1),
    default=None,
    help="Training iterations per run (default: the protocol's).",
)
@click.option(
    "--budgets",
    default=None,
    help="Comma-separated sample budgets N to sweep, e.g. 64,128,512 (default: the "
    "protocol's; cpu-full-v2 sweeps 64,128,512).",
)
@click.option(
    "--protocol",
    "protocol_name",
    default="cpu-full",
    show_default=True,
    type=click.Choice(["cpu-full", "cpu-full-v2", "gpu-resnet50"]),
    help="Preset protocol (see detector.experiments.protocol).",
)
@click.option(
    "--backbone",
    type=click.Choice(["tiny", "resnet18", "resnet50"]),
    default=None,
    help="Override the protocol's backbone.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="CI pipeline check: tiny data, 2 designs, a few iterations (numbers meaningless).",
)
@click.option(
    "--workers",
    type=NON_NEGATIVE_INT,
    default=1,
    show_default=True,
    help="Data-loading processes per run.",
)
@click.option(
    "--threads",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="torch threads for training/detection (0: torch's default; 1 is faster "
    "on cores shared with other jobs).",
)
@click.option(
    "--report-only",
    is_flag=True,
    help="Train nothing: write the report from the runs finished so far.",
)
@click.option(
    "--out",
    type=OutputDir(path_type=Path),
    required=True,
    help="Report folder (runs/ and data/ live inside it; re-running resumes).",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    default=None,
    help="Also write report.json here ('-' for stdout).",
)
def ablation_command(
    data: Path | None,
    designs: str,
    seeds: int,
    budget: int | None,
    budgets: str | None,
    protocol_name: str,
    backbone: str | None,
    quick: bool,
    workers: int,
    threads: int,
    report_only: bool,
    out: Path,
    json_path: str | None,
) -> None:
    """Train each design with identical budget, data, augmentation and seeds; report the
    paper's Table 1 layout (mean +- spread over seeds, paper numbers beside), Figure 2,
    the protocol and a computed verdict for each of the paper's claims (1)-(5).
    """
    from cli.train import TrainProgress
    from detector.experiments.ablation import run_ablation
    from detector.experiments.protocol import DESIGN_PRESETS, PRESETS, QUICK
    from facebench.atomic import write_json

    protocol = QUICK if quick else PRESETS[protocol_name]
    if budget is not None:
        protocol = protocol.with_changes(iterations=budget)
    if backbone is not None:
        protocol = protocol.with_changes(backbone=backbone)
    if budgets is not None:
        protocol = protocol.with_changes(budgets=_budgets(budgets))
    names = list(DESIGN_PRESETS["quick"]) if quick and designs == "table1" else _designs(designs)
    log(
        f"ablation '{protocol.name}': {len(names)} design(s) x {seeds} seed(s) x N in "
        f"{', '.join(map(str, protocol.sweep))}, {protocol.iterations} iterations each "
        f"({protocol.backbone}) -> {out}"
    )
    state = run_ablation(
        out,
        protocol,
        names,
        list(range(seeds)),
        data=data,
        workers=workers,
        train=not report_only,
        log=log,
        train_progress=TrainProgress(),
        threads=threads or None,
    )
    # Imported after the runs: a long ablation picks up the report code as it is at the end.
    from detector.experiments.report import write_report

    report = write_report(out, state)
    for line in report["verdict_lines"]:
        log(line)
    log(
        f"{state.trained} run(s) trained, {state.reused} reused, {state.skipped} missing; "
        f"report: {out / 'report.md'}"
    )
    if json_path:
        write_json(json_path, report)

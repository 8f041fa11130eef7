"""``facebench bench``: run several detectors on labelled data and compare them.

The work is :func:`facebench.bench.run_bench` (see there for what is run and written);
this module parses the options and prints the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.app import main
from cli.console import console, interactive, log, warn
from cli.options import POSITIVE_INT, OutputDir, OutputFile
from facebench.atomic import write_json
from facebench.errors import FacebenchError


def _print_table(results: list[dict[str, Any]]) -> None:
    if not interactive():
        for r in results:
            aps = " ".join(f"{k}={v:.3f}" for k, v in r["ap"].items())
            log(f"{r['set']:<18} {r['detector']:<18} {aps}  {r['latency_ms_median']:.1f} ms")
        return
    from rich.table import Table

    table = Table(title="facebench bench")
    for col in ("set", "detector", "AP", "ms/image", "peak MiB"):
        table.add_column(col)
    for r in results:
        aps = "  ".join(f"{k} {v:.3f}" for k, v in r["ap"].items())
        table.add_row(r["set"], r["detector"], aps, f"{r['latency_ms_median']:.1f}",
                      f"{r['peak_rss_mib']:.0f}")  # fmt: skip
    console.print(table)


# --------------------------------------------------------------------------- command


@main.command("bench")
@click.option(
    "--wider",
    "wider_roots",
    multiple=True,
    type=click.Path(path_type=Path),
    help="WIDER layout with ground_truth/ (e.g. widerface_val_416). Repeatable.",
)
@click.option(
    "--dlib",
    "dlib_xmls",
    multiple=True,
    type=click.Path(path_type=Path),
    help="dlib imglab XML (images beside it); several files form one set.",
)
@click.option(
    "--voc",
    "voc_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of PASCAL VOC XML files, one per image (with --voc-images).",
)
@click.option("--voc-images", type=click.Path(path_type=Path), default=None)
@click.option(
    "--detectors", default=None, help="Comma list of peer detectors (default: every installed one)."
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Also run this facebench checkpoint (as detector 'facebench').",
)
@click.option(
    "--onnx",
    is_flag=True,
    help="Also export --checkpoint to OUT/model.onnx and run it through onnxruntime "
    "('facebench-onnx'); both report CPU ms/image per phase.",
)
@click.option(
    "--out",
    type=OutputDir(path_type=Path),
    required=True,
    help="Folder for predictions, leaderboard.{json,md} and PR plots.",
)
@click.option(
    "--threads",
    type=POSITIVE_INT,
    default=1,
    show_default=True,
    help="CPU threads per detector (latency is measured at this count).",
)
@click.option(
    "--limit", type=POSITIVE_INT, default=None, help="Only the first N images of each set."
)
@click.option(
    "--protocol",
    type=click.Choice(["official", "python-port"]),
    default="official",
    show_default=True,
    help="WIDER evaluation protocol.",
)
@click.option("--json", "json_path", type=OutputFile(), default=None,
              help="Write the results here ('-': stdout).")
def bench_command(
    wider_roots: tuple[Path, ...],
    dlib_xmls: tuple[Path, ...],
    voc_dir: Path | None,
    voc_images: Path | None,
    detectors: str | None,
    checkpoint: Path | None,
    onnx: bool,
    out: Path,
    threads: int,
    limit: int | None,
    protocol: str,
    json_path: str | None,
) -> None:
    """Compare detectors on labelled data: AP table, PR plots, CPU latency, peak memory.

    \b
    facebench bench --wider ../shared/data/widerface_val_416 \\
        --dlib ../shared/data/dlib_faces/examples/faces/training.xml \\
        --dlib ../shared/data/dlib_faces/examples/faces/testing.xml --out bench/
    """
    if threads < 1 or (limit is not None and limit < 1):
        raise FacebenchError("--threads and --limit must be >= 1")
    from facebench.bench import load_sets, run_bench, select_detectors

    sets = load_sets(wider_roots, dlib_xmls, voc_dir, voc_images, limit)
    onnx_path = None
    if onnx:
        if checkpoint is None:
            raise FacebenchError("--onnx exports --checkpoint: give --checkpoint too")
        from detector.onnx_export import export_onnx

        onnx_path = out / "model.onnx"
        export_onnx(checkpoint, onnx_path)
        log(f"bench: exported {checkpoint} to {onnx_path}")
    runs = select_detectors(detectors, checkpoint, warn, onnx_path)
    summary = run_bench(sets, runs, out, threads, protocol, limit, log)
    _print_table(summary["results"])
    for r in summary["results"]:
        phases = r.get("phase_cpu_ms_per_image")
        if phases:
            log(f"{r['set']:<18} {r['detector']:<18} CPU ms/image: " + ", ".join(
                f"{k} {v:.1f}" for k, v in phases.items()))  # fmt: skip
    log(f"bench: wrote {out / 'leaderboard.md'}, {out / 'leaderboard.json'} and PR plots")
    if json_path:
        write_json(json_path, summary)

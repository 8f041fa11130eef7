"""``facebench export onnx``: a trained checkpoint as an ONNX model (network only)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.app import export_group
from cli.console import log
from cli.options import OutputFile
from facebench.atomic import write_json


@export_group.command("onnx")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    required=True,
    help="A `facebench train` checkpoint file or run folder.",
)
@click.option(
    "--out",
    type=OutputFile(allow_stdout=False, path_type=Path),
    required=True,
    help="model.onnx",
)
@click.option("--opset", type=click.IntRange(13), default=17, show_default=True)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    default=None,
    help="Write the model's metadata here.",
)
def export_onnx_command(checkpoint: Path, out: Path, opset: int, json_path: str | None) -> None:
    """Export CHECKPOINT's network to ONNX (dynamic batch, height and width).

    The file runs with `facebench detect --onnx model.onnx` (onnxruntime, CPU), which applies
    the same resizing, post-processing and merge as --checkpoint. Single-stage designs only.

    \b
    facebench export onnx --checkpoint runs/x --out model.onnx
    """
    from detector.onnx_export import export_onnx

    meta = export_onnx(checkpoint, out, opset)
    log(f"export: {meta['design']}/{meta['backbone']} (iteration {meta['iteration']}) -> {out}")
    if json_path:
        write_json(json_path, {"path": str(out), **meta})

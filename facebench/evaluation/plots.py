"""Plots shared by the commands and the experiment reports (matplotlib Agg, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facebench.atomic import atomic_open


def plot_pr(set_name: str, curves: dict[str, Any], path: Path) -> None:
    """One PNG: a precision-recall panel per setting, one line per detector."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(next(iter(curves.values())).curves)
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        for detector, evaluation in curves.items():
            c = evaluation.curves[setting]
            ax.plot(c.recall, c.precision, label=f"{detector} ({c.ap:.3f})")
        ax.set(title=f"{set_name}: {setting}", xlabel="recall", ylabel="precision",
               xlim=(0, 1), ylim=(0, 1.01))  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)

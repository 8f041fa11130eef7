"""The command line's skeleton: help, version, error handling."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

import facebench
from cli.app import main


def test_version_matches_package():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert facebench.__version__ in result.output


def test_help_lists_no_empty_groups():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name, cmd in main.commands.items():
        assert name in result.output
        if hasattr(cmd, "commands"):
            assert cmd.commands, f"group {name} has no commands"


def test_importing_facebench_does_not_import_torch():
    code = (
        "import sys, importlib, pkgutil, facebench\n"
        "for m in pkgutil.walk_packages(facebench.__path__, 'facebench.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'torch' not in sys.modules, 'facebench imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_atomic_open_gives_umask_mode_and_leaves_no_temp_on_error(tmp_path):
    import os

    from facebench.atomic import atomic_open

    target = tmp_path / "out.txt"
    with atomic_open(target) as f:
        f.write("ok")
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)
    try:
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert target.read_text() == "ok"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_cli_start_up_does_not_import_torch():
    # Every command module is imported for --help; torch must wait for the command body.
    code = "import sys, cli.app\nassert 'torch' not in sys.modules, 'cli.app imported torch'\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_method_specs_names_and_duplicates(tmp_path):
    import pytest

    from cli.specs import parse_method_specs
    from facebench.errors import FacebenchError

    folder = tmp_path / "preds"
    folder.mkdir()
    dets = tmp_path / "mine.txt"
    dets.write_text("")
    odd = tmp_path / "a=b"
    odd.mkdir()
    assert parse_method_specs([str(folder), str(dets), f"x={folder}", str(odd)]) == [
        ("preds", folder),
        ("mine", dets),
        ("x", folder),
        ("a=b", odd),
    ]
    with pytest.raises(FacebenchError, match="given twice"):
        parse_method_specs([str(folder), f"preds={dets}"])
    with pytest.raises(FacebenchError, match="NAME=PATH"):
        parse_method_specs([f"={folder}"])

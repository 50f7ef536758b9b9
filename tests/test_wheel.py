"""The built wheel works on its own: installed into a fresh virtual environment, run from outside the
source tree, it lists its shipped models and composes with ``--model bach``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import symusic

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", "demo_out")
"""What a checkout holds besides the sources (copied without these, so building leaves the tree untouched)."""


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{argv[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_and_composes_with_a_shipped_model(tmp_path: Path) -> None:
    # no source tree on the path
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, source,
         cwd=tmp_path, env=clean)
    (wheel,) = wheels.glob("fractalmidi-*.whl")

    env_dir = tmp_path / "env"
    _run(sys.executable, "-m", "venv", env_dir, cwd=tmp_path, env=clean)
    python = env_dir / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path,
                     env=clean).strip())
    # the dependencies (torch, symusic, ...) come from this environment's site-packages, read as plain
    # folders: its .pth files (among them the editable install of the source tree) are not processed
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path, env=clean)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(python, "-c", "import fractalmidi; print(fractalmidi.__file__)", cwd=elsewhere, env=clean)
    assert Path(where.strip()).is_relative_to(site) and not Path(where.strip()).is_relative_to(ROOT)

    fractalmidi = env_dir / "bin" / "fractalmidi"
    assert "bach" in _run(fractalmidi, "models", cwd=elsewhere, env=clean)
    _run(fractalmidi, "generate", "--model", "bach", "--length", "32", "--num-samples", "1", "--out", "out",
         "--device", "cpu", cwd=elsewhere, env=clean)
    assert symusic.Score(str(elsewhere / "out" / "sample_000.mid")).note_num() > 0

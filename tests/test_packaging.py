"""The wheel carries the default pack and templates, and works outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("finops-*.whl")
    return built


@pytest.mark.slow
def test_wheel_ships_defaults_app_and_console_script(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "finops/_defaults/finops.yaml",
        "finops/_defaults/policies/README.md",
        "finops/_defaults/reports/templates/README.md",
        "finops/_defaults/collectors/README.md",
        "finops/app/main.py",
        "finops/py.typed",
    ):
        assert expected in names, expected
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "finops = finops.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_init_from_the_installed_wheel_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import finops, sys; from finops.cli import main; print(finops.__file__, file=sys.stderr); main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "init", "deployment"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert str(site) in result.stderr  # the wheel's copy ran, not the checkout's
    assert (elsewhere / "deployment" / "policies" / "README.md").read_text() == (
        REPO / "policies" / "README.md"
    ).read_text()
    assert (elsewhere / "deployment" / "finops.yaml").read_text() == (
        REPO / "finops.yaml"
    ).read_text()

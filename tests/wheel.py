"""Building coord's wheel from this source tree, the way `pip install .` does, for the tests.

The build runs on a copy of the tree: setuptools writes ``build/`` and ``*.egg-info`` into the
tree it builds, and a stale ``build/lib`` could slip files into the wheel that the source no
longer has.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("coordinator", "agent")
"""The top-level packages of the source tree; everything below them must ship."""
BUILD_FILES = ("pyproject.toml", "README.md")


def source_package_files(root: Path = ROOT) -> list[str]:
    """Every file of the packages as it should appear in the wheel (no caches), sorted."""
    return sorted(
        path.relative_to(root).as_posix()
        for package in PACKAGES
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def build_wheel(destination: Path, root: Path = ROOT) -> Path:
    """Build the wheel of ``root`` into ``destination`` with the running Python's setuptools."""
    tree = destination / "tree"
    tree.mkdir(parents=True)
    for name in BUILD_FILES:
        shutil.copy2(root / name, tree / name)
    for package in PACKAGES:
        shutil.copytree(root / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = destination / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(out), str(tree)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = out.glob("coord-*.whl")
    return wheel


def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return sorted(name for name in archive.namelist() if not name.endswith("/"))

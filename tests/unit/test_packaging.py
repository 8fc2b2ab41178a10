"""The wheel `pip install .` builds holds every package and data file of the source tree.

A listed set of packages once left ``agent.drivers`` out, and every host failed with
``ModuleNotFoundError`` while editable installs (the tests, the demo) worked.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from tests.wheel import PACKAGES, build_wheel, source_package_files, wheel_files


def test_the_wheel_ships_every_package_directory_and_file(tmp_path: Path) -> None:
    shipped = wheel_files(build_wheel(tmp_path))
    source = source_package_files()
    package_dirs = {str(PurePosixPath(name).parent) for name in source}
    shipped_dirs = {str(PurePosixPath(name).parent) for name in shipped}
    assert package_dirs - shipped_dirs == set()
    assert sorted(set(source) - set(shipped)) == []
    assert {f"{package}/py.typed" for package in PACKAGES} <= set(shipped)
    assert not [name for name in shipped
                if name.split("/")[0] not in PACKAGES and ".dist-info/" not in name]

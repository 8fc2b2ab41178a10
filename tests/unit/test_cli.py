"""The `coord` command itself: version, help, and the console script as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from coordinator import __version__
from tests.conftest import RunCoord

ROOT = Path(__file__).parents[2]


def test_version(run_coord: RunCoord) -> None:
    result = run_coord("--version")
    assert result.status == 0
    assert result.stdout.strip() == f"coord, version {__version__}"


def test_help_lists_the_commands(run_coord: RunCoord) -> None:
    result = run_coord("--help")
    assert result.status == 0
    for command in ("inventory", "lab"):
        assert f"  {command} " in result.stdout
    lab = run_coord("lab", "--help")
    for command in ("up", "down", "status"):
        assert f"  {command} " in lab.stdout


def test_inventory_check_summarizes_a_valid_inventory(run_coord: RunCoord) -> None:
    result = run_coord("inventory", "check", str(ROOT / "inventory" / "two-clients.yaml"))
    assert result.status == 0, result.stderr
    assert "client1" in result.stdout
    assert "3 repetition(s)" in result.stdout
    assert "valid" in result.stdout


def test_unknown_command_is_a_usage_error(run_coord: RunCoord) -> None:
    result = run_coord("frobnicate")
    assert result.status == 2
    assert "No such command" in result.stderr


def test_console_script_exits_2_without_traceback_on_junk(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(bytes(range(256)) * 4)
    process = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "inventory", "check", str(junk)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert process.returncode == 2
    assert process.stderr.strip() == f"{junk}: is a binary file, not YAML text"
    assert "Traceback" not in process.stderr


def test_run_options_are_validated_like_the_inventory(run_coord: RunCoord) -> None:
    example = str(ROOT / "inventory" / "two-clients.yaml")
    result = run_coord("run", "-i", example, "--warmup", "5x", "--set",
                       "benchmark.builtin.connections=0")
    assert result.status == 2
    assert result.stderr.splitlines() == [
        "--set benchmark.builtin.connections=0: benchmark.builtin.connections: must be >= 1, "
        "got 0",
        "--warmup 5x: benchmark.warmup: must be a duration like 500ms, 5s, 2m or 1h30m, "
        "got '5x'",
    ]


def test_run_refuses_an_unsupported_driver_before_touching_any_host(run_coord: RunCoord,
                                                                    tmp_path: Path) -> None:
    example = str(ROOT / "inventory" / "two-clients.yaml")
    result = run_coord("run", "-i", example, "--out", str(tmp_path / "r"),
                       "--set", "benchmark.driver=wrk")
    assert result.status == 2
    assert result.stderr.strip().startswith("--set benchmark.driver=wrk: benchmark.driver: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_inventory_check_takes_the_file_as_an_argument_or_with_i(run_coord: RunCoord) -> None:
    example = str(ROOT / "inventory" / "two-clients.yaml")
    for args in ([example], ["-i", example], ["--inventory", example], [example, "-i", example]):
        result = run_coord("inventory", "check", *args)
        assert result.status == 0, (args, result.stderr)
        assert f"{example}: valid" in result.stdout


def test_inventory_check_refuses_two_different_files_or_none(run_coord: RunCoord) -> None:
    example = str(ROOT / "inventory" / "two-clients.yaml")
    other = str(ROOT / "inventory" / "cloud.yaml")
    two = run_coord("inventory", "check", example, "-i", other)
    assert (two.status, two.stderr.strip()) == (
        2, f"two inventories given ({example} and -i {other}): give one")
    none = run_coord("inventory", "check")
    assert (none.status, none.stderr.strip()) == (
        2, "no inventory given: coord inventory check FILE (or -i FILE)")


def test_every_command_that_reads_an_inventory_takes_i(run_coord: RunCoord) -> None:
    commands = [["inventory", "check"], ["deploy"], ["run"], ["agents", "status"],
                ["agents", "stop"], ["agents", "logs"], ["lab", "up"], ["inventory", "export"],
                ["provision"]]
    for command in commands:
        result = run_coord(*command, "--help")
        assert "-i, --inventory" in result.stdout, command


def test_a_thread_blocked_on_a_host_does_not_hold_up_coords_exit() -> None:
    """A fan-out worker still waiting on a dead host must not keep coord from exiting."""
    script = (
        "import threading\n"
        "from coordinator.cli import entry\n"
        "threading.Thread(target=threading.Event().wait).start()\n"
        "import sys; sys.argv = ['coord', '--version']\n"
        "entry()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("coord, version ")


CTRL_C_WHILE_LOADING = """\
import os, signal, sys

def ctrl_c_at_pydantic(event, args):
    if event == "import" and args[0] == "pydantic":
        os.kill(os.getpid(), signal.SIGINT)

sys.addaudithook(ctrl_c_at_pydantic)
sys.argv = ["coord", "--help"]
from coordinator.{module} import entry
entry()
"""
"""Runs `coord --help` through ``module``'s entry with a Ctrl-C as coord's modules load:
when pydantic is first imported, which the inventory schema does."""


def test_a_ctrl_c_while_coord_loads_is_interrupted_not_a_traceback() -> None:
    """The console script (pyproject's `coord`, coordinator.console) catches it; the CLI
    module's own entry, reached only once everything is loaded, cannot."""
    results = {}
    for module in ("console", "cli"):
        results[module] = subprocess.run(
            [sys.executable, "-c", CTRL_C_WHILE_LOADING.format(module=module)],
            capture_output=True, text=True, check=False, cwd=ROOT, timeout=60)
    console = results["console"]
    assert (console.returncode, console.stderr, console.stdout) == (130, "interrupted\n", "")
    assert "KeyboardInterrupt" in results["cli"].stderr  # the case the console script covers

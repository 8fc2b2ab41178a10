"""Hostile or absurd input: every case exits 2 with one line per problem, no traceback, and in
bounded memory and time.

Cases that used to exhaust memory or block run `coord` as a real process under an address-space
limit (``RLIMIT_AS``), so a regression fails the test instead of the machine; the subprocess
deadline is a safety net against a hang, not a measurement.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.inventory.yaml_source import MAX_ALIAS_NODES, MAX_DEPTH
from tests.conftest import RunCoord
from tests.unit.test_inventory_errors import VALID_HEAD

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "inventory" / "two-clients.yaml"
MEMORY_LIMIT = 1024**3
HANG_GUARD_S = 120


def alias_bomb(depth: int) -> str:
    """The classic "billion laughs": each level lists the previous one nine times."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]"
              for level in range(1, depth + 1)]
    return "\n".join(lines) + "\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def coord_process(*args: str) -> subprocess.CompletedProcess[str]:
    """`coord ARGS...` as a process with at most 1 GiB of address space."""
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", *args], capture_output=True, text=True,
        check=False, cwd=ROOT, preexec_fn=_limit_memory, timeout=HANG_GUARD_S,
    )


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- item 2: aliases --------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(8))
    process = coord_process("inventory", "check", str(path))
    assert process.returncode == 2
    assert one_line_error(process.stderr) == (
        f"{path}:6: refused: aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)"
    )


def test_modest_aliases_and_merge_keys_still_work(tmp_path: Path, run_coord: RunCoord) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "defaults: &client\n  roles: [client]\n  python: /usr/bin/python3\n"
        .replace("defaults", "x-defaults") + VALID_HEAD.replace(
            "  - name: client1\n    address: 198.18.0.11\n    roles: [client]\n",
            "  - <<: *client\n    name: client1\n    address: 198.18.0.11\n"
            "  - <<: *client\n    name: client2\n    address: 198.18.0.12\n")
    )
    result = run_coord("inventory", "check", str(path))
    # The anchor's own section is an unknown key; the merges themselves are read.
    assert result.stderr.strip().endswith("x-defaults: unknown key 'x-defaults'; expected one "
                                          "of: version, name, ssh, hosts, servers, benchmark, "
                                          "baseline, agent")
    assert "hosts[" not in result.stderr


def test_a_structure_containing_itself_is_refused(tmp_path: Path, run_coord: RunCoord) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("hosts: &h\n  - *h\n")
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert one_line_error(result.stderr) == (
        f"{path}:2: refused: alias *h is inside its own anchor (a structure that contains itself)"
    )


# --- item 3: depth, long integers, files that are not regular files -----------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_deep_nesting_is_refused(tmp_path: Path, run_coord: RunCoord, depth: int) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("hosts: " + "[" * depth + "]" * depth + "\n")
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    # libyaml stops on its own at 1000 levels, while scanning ahead; coord stops at 64.
    assert one_line_error(result.stderr) in {
        f"{path}:1: refused: nested deeper than {MAX_DEPTH} levels",
        f"{path}:1: not valid YAML: exceeded maximum nesting depth",
    }


def test_nesting_through_aliases_is_bounded_too(tmp_path: Path, run_coord: RunCoord) -> None:
    nest = "[" * 40 + "]" * 40
    path = tmp_path / "deep-alias.yaml"
    path.write_text(f"a: &a {nest}\nb: &b [{'[' * 30}*a{']' * 30}]\n")
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert one_line_error(result.stderr).endswith(
        "refused: nested deeper than 64 levels once aliases are expanded")


def test_an_integer_of_5001_digits_is_refused(tmp_path: Path, run_coord: RunCoord) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(VALID_HEAD + "benchmark:\n  repetitions: " + "9" * 5001 + "\n")
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert one_line_error(result.stderr) == (
        f"{path}:14: benchmark.repetitions: a number of 5001 characters; at most 100 are read"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!python/object:os.system x", "cannot be read: could not determine a constructor for "
                                        "the tag 'tag:yaml.org,2002:python/object:os.system'"),
        ("!!int xyz", "cannot be read: invalid literal for int() with base 10: 'xyz'"),
        ("!!timestamp 2020-13-45", "cannot be read: month must be in 1..12"),
    ],
    ids=["python tag", "bad int", "bad timestamp"],
)
def test_values_the_safe_loader_cannot_build_are_problems(
    tmp_path: Path, run_coord: RunCoord, value: str, message: str
) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text(VALID_HEAD + f"agent:\n  cache_dir: {value}\n")
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert one_line_error(result.stderr) == f"{path}:14: agent.cache_dir: {message}"


def test_dev_zero_is_refused_without_reading_it() -> None:
    process = coord_process("inventory", "check", "/dev/zero")
    assert process.returncode == 2
    assert one_line_error(process.stderr) == (
        "/dev/zero: is not a regular file (a FIFO, device or socket); an inventory must be one"
    )


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "inventory.fifo"
    os.mkfifo(fifo)
    process = coord_process("inventory", "check", str(fifo))
    assert process.returncode == 2
    assert one_line_error(process.stderr) == (
        f"{fifo}: is not a regular file (a FIFO, device or socket); an inventory must be one"
    )


def test_only_the_size_cap_plus_one_byte_is_read(tmp_path: Path, run_coord: RunCoord,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from coordinator.inventory import loader as inventory_loader

    monkeypatch.setattr(inventory_loader, "MAX_INVENTORY_BYTES", 100)
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 20)
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert one_line_error(result.stderr) == (
        f"{path}: is over 100 bytes; an inventory is at most 100 bytes")


# --- item 4: limits the run relies on -----------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("benchmark.interval=0.0000001ms", "must be a whole number of milliseconds"),
        ("benchmark.interval=9ms", "must be at least 10ms"),
        ("benchmark.interval=2h", "must be at most 1h"),
        ("benchmark.warmup=1.5ms", "must be a whole number of milliseconds"),
        ("agent.watchdog=2s", "must be at least 3s (coord heartbeats every 2s)"),
        ("ssh.connect_timeout=5ms", "must be at least 1s"),
        ("baseline.duration=2500ms", "must be whole seconds (netperf -l counts seconds)"),
        ("benchmark.builtin.rate=.inf", "must be a finite number"),
    ],
)
def test_durations_and_numbers_the_run_cannot_honour_are_refused_by_check(
    run_coord: RunCoord, override: str, message: str
) -> None:
    result = run_coord("run", "-i", str(EXAMPLE), "--set", override)
    assert result.status == 2
    line = one_line_error(result.stderr)
    path = override.partition("=")[0]
    assert line.startswith(f"--set {override}: {path}: {message}, got ")


def test_a_sub_millisecond_interval_fails_inventory_check(tmp_path: Path,
                                                          run_coord: RunCoord) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(EXAMPLE.read_text().replace("interval: 1s", "interval: 0.0000001ms"))
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert one_line_error(result.stderr) == (
        f"{path}:38: benchmark.interval: must be a whole number of milliseconds, "
        "got '0.0000001ms'")


def test_a_repetition_of_too_many_intervals_is_refused(run_coord: RunCoord) -> None:
    result = run_coord("run", "-i", str(EXAMPLE), "--set", "benchmark.interval=10ms",
                       "--set", "benchmark.duration=100h")
    assert result.status == 2
    assert one_line_error(result.stderr) == (
        "--set benchmark.duration=100h: benchmark.duration: warm-up and measure make 36000500 "
        "intervals of 10ms; at most 100000 per repetition (agents keep every interval until the "
        "repetition ends): raise benchmark.interval or shorten the repetition")


# --- item 6: messages ---------------------------------------------------------------------------


def test_an_override_that_creates_a_section_is_blamed_not_a_file_line(
    run_coord: RunCoord,
) -> None:
    result = run_coord("run", "-i", str(EXAMPLE), "--set", "a.b.c=1")
    assert result.status == 2
    assert one_line_error(result.stderr) == (
        "--set a.b.c=1: a: unknown key 'a'; expected one of: version, name, ssh, hosts, "
        "servers, benchmark, baseline, agent")


def test_an_override_value_is_held_to_the_same_depth_limit(run_coord: RunCoord) -> None:
    value = "[" * 1000 + "]" * 1000
    result = run_coord("run", "-i", str(EXAMPLE), "--set", f"hosts[0].labels={value}")
    assert result.status == 2
    assert one_line_error(result.stderr).endswith(
        ": the value is not valid YAML: refused: nested deeper than 64 levels")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "-5"])
def test_non_finite_or_negative_durations_get_the_plain_message(
    tmp_path: Path, run_coord: RunCoord, value: str
) -> None:
    path = tmp_path / "nan.yaml"
    path.write_text(VALID_HEAD + f"benchmark:\n  warmup: {value}\n")
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    line = one_line_error(result.stderr)
    assert line.startswith(f"{path}:14: benchmark.warmup: must be a duration like 500ms, 5s, "
                           "2m or 1h30m, got ")
    assert "like nan" not in line and "like inf" not in line


def test_a_file_that_is_not_an_inventory_is_not_echoed(tmp_path: Path,
                                                       run_coord: RunCoord) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:20228:0:99999:7:::\ndaemon:$6$s3cret$hash:20228:0:99999:7:::\n")
    result = run_coord("inventory", "check", str(shadow))
    assert result.status == 2
    line = one_line_error(result.stderr)
    assert line == (f"{shadow}: is not a coord inventory: none of its top-level keys is a "
                    "section (version, name, ssh, hosts, servers, benchmark, baseline, agent)")


def test_unknown_keys_that_are_not_field_names_are_not_echoed(tmp_path: Path,
                                                              run_coord: RunCoord) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(VALID_HEAD + "daemon:$6$s3cret$hash:20228:0:99999:7:::\n")
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert "s3cret" not in result.stderr
    assert one_line_error(result.stderr) == (
        f"{path}:13: unknown key (not shown: it is not a field name); expected one of: "
        "version, name, ssh, hosts, servers, benchmark, baseline, agent")


@pytest.mark.parametrize("content", ["12345", "true", "3.5"])
def test_a_scalar_file_is_not_echoed(tmp_path: Path, run_coord: RunCoord, content: str) -> None:
    path = tmp_path / "scalar.yaml"
    path.write_text(content + "\n")
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert content not in one_line_error(result.stderr)


def test_the_summary_of_a_large_inventory_shows_a_bounded_number_of_rows(
    tmp_path: Path, run_coord: RunCoord
) -> None:
    clients = "".join(f"  - name: c{index}\n    address: 10.1.{index // 256}.{index % 256}\n"
                      "    roles: [client]\n" for index in range(200))
    path = tmp_path / "large.yaml"
    path.write_text(VALID_HEAD.replace("servers:\n", clients + "servers:\n"))
    result = run_coord("inventory", "check", str(path))
    assert result.status == 0, result.stderr
    assert "... and 152 more host(s)" in result.stdout
    assert " c47 " in result.stdout and " c48 " not in result.stdout
    assert "from 201 client(s)" in result.stdout

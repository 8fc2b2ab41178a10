"""Where a server's password comes from: the inventory, a file or the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.inventory.loader import load_inventory
from coordinator.inventory.server_auth import (
    MAX_PASSWORD_FILE_BYTES,
    PasswordUnavailable,
    target_password,
)
from coordinator.results import new_document
from tests.conftest import RunCoord

EXAMPLE = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"
SECRET = "s3cret-pw"


def password_with(*overrides: str, environ: dict[str, str] | None = None) -> str | None:
    return target_password(load_inventory(EXAMPLE, list(overrides)).inventory, environ or {})


def test_no_password_and_a_written_one() -> None:
    assert password_with() is None
    assert password_with(f"servers[0].password={SECRET}") == SECRET


@pytest.mark.parametrize("content", [SECRET, f"{SECRET}\n", f"{SECRET}\r\n"])
def test_a_password_file_loses_only_its_line_ending(tmp_path: Path, content: str) -> None:
    path = tmp_path / "redis.password"
    path.write_bytes(content.encode())
    assert password_with(f"servers[0].password_file={path}") == SECRET


def test_a_password_from_the_environment() -> None:
    assert password_with("servers[0].password_env=REDIS_PW",
                         environ={"REDIS_PW": SECRET}) == SECRET


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing",
         "servers[0].password_file: cannot read the password of server 'redis' from {d}/missing: "
         "No such file or directory"),
        (lambda d: d,
         "servers[0].password_file: cannot read the password of server 'redis' from {d}: "
         "Is a directory"),
        (lambda d: (d / "empty").write_text("\n") and d / "empty",
         "servers[0].password_file: the file {d}/empty holding the password of server 'redis' "
         "is empty"),
        (lambda d: (d / "two").write_text("a\nb\n") and d / "two",
         "servers[0].password_file: the file {d}/two holding the password of server 'redis' "
         "has more than one line"),
        (lambda d: (d / "binary").write_bytes(b"\xff\xfe") and d / "binary",
         "servers[0].password_file: the password file {d}/binary of server 'redis' is not "
         "UTF-8 text"),
    ],
    ids=["missing", "directory", "empty", "two lines", "not UTF-8"],
)
def test_an_unusable_password_file_is_one_line_naming_server_and_field(
    tmp_path: Path, make: object, expected: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(PasswordUnavailable) as caught:
        password_with(f"servers[0].password_file={path}")
    assert caught.value.lines() == [expected.format(d=tmp_path)]
    assert caught.value.exit_status == 2


def test_an_unset_or_empty_variable_is_one_line_naming_server_and_field() -> None:
    with pytest.raises(PasswordUnavailable) as unset:
        password_with("servers[0].password_env=REDIS_PW")
    assert str(unset.value) == ("servers[0].password_env: the environment variable REDIS_PW "
                                "holding the password of server 'redis' is not set")
    with pytest.raises(PasswordUnavailable) as empty:
        password_with("servers[0].password_env=REDIS_PW", environ={"REDIS_PW": ""})
    assert str(empty.value) == ("servers[0].password_env: the environment variable REDIS_PW "
                                "holding the password of server 'redis' is empty")


def test_run_refuses_a_missing_password_file_before_touching_any_host(
    tmp_path: Path, run_coord: RunCoord
) -> None:
    missing = tmp_path / "nope"
    result = run_coord("run", "-i", str(EXAMPLE), "--out", str(tmp_path / "out"),
                       "--set", f"servers[0].password_file={missing}")
    assert result.status == 2
    assert result.stderr.strip().splitlines() == [
        f"servers[0].password_file: cannot read the password of server 'redis' from {missing}: "
        "No such file or directory"
    ]
    assert not (tmp_path / "out").exists()


def test_a_secret_in_the_file_never_shows_in_the_results_inventory(tmp_path: Path) -> None:
    path = tmp_path / "redis.password"
    path.write_text(f"{SECRET}\n")
    inventory = load_inventory(EXAMPLE, [f"servers[0].password_file={path}"]).inventory
    assert target_password(inventory) == SECRET
    document = new_document(inventory, [], marks=[])
    assert SECRET not in document.model_dump_json()


def test_a_device_or_an_oversized_file_is_refused_without_reading_it_whole(
    tmp_path: Path,
) -> None:
    with pytest.raises(PasswordUnavailable) as device:
        password_with("servers[0].password_file=/dev/zero")
    assert device.value.lines() == [
        "servers[0].password_file: cannot read the password of server 'redis' from /dev/zero: "
        "not a regular file (a FIFO, device or socket)"]
    huge = tmp_path / "huge"
    huge.write_text("x" * (MAX_PASSWORD_FILE_BYTES + 10))
    with pytest.raises(PasswordUnavailable) as oversized:
        password_with(f"servers[0].password_file={huge}")
    assert oversized.value.lines() == [
        f"servers[0].password_file: the password file {huge} of server 'redis' is over "
        f"{MAX_PASSWORD_FILE_BYTES} bytes; it holds one line"]

"""A corpus of broken inventories: each must exit 2 with the exact file, line and field path.

Every case is a complete file, so the line numbers asserted are the ones a user would see in
an editor.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RunCoord

VALID_HEAD = """\
version: 1
name: lab
hosts:
  - name: server
    address: 198.18.0.10
    roles: [server]
  - name: client1
    address: 198.18.0.11
    roles: [client]
servers:
  - name: redis
    host: server
"""

CASES: list[tuple[str, str, str]] = [
    (
        "port out of range",
        VALID_HEAD + "  - name: r2\n    host: server\n    port: 70000\n",
        "bad.yaml:15: servers[1].port: must be 1..65535, got 70000",
    ),
    (
        "host port zero",
        VALID_HEAD.replace("    roles: [client]\n", "    port: 0\n    roles: [client]\n"),
        "bad.yaml:9: hosts[1].port: must be 1..65535, got 0",
    ),
    (
        "port as a string",
        VALID_HEAD.replace("    roles: [client]\n", "    port: '22'\n    roles: [client]\n"),
        "bad.yaml:9: hosts[1].port: must be an integer, got '22'",
    ),
    (
        "port as a float",
        VALID_HEAD.replace("    roles: [client]\n", "    port: 22.5\n    roles: [client]\n"),
        "bad.yaml:9: hosts[1].port: must be an integer, got 22.5",
    ),
    (
        "huge port",
        VALID_HEAD.replace("    roles: [client]\n",
                           "    port: 99999999999999999999999999\n    roles: [client]\n"),
        "bad.yaml:9: hosts[1].port: must be 1..65535, got 99999999999999999999999999",
    ),
    (
        "unknown top-level key",
        VALID_HEAD + "benchmrk:\n  repetitions: 3\n",
        "bad.yaml:13: benchmrk: unknown key 'benchmrk' (did you mean 'benchmark'?)",
    ),
    (
        "unknown host key",
        VALID_HEAD.replace("    roles: [client]\n", "    prot: 22\n    roles: [client]\n"),
        "bad.yaml:9: hosts[1].prot: unknown key 'prot' (did you mean 'port'?)",
    ),
    (
        "unknown ssh key without a close match",
        VALID_HEAD + "ssh:\n  zzz: 1\n",
        "bad.yaml:14: ssh.zzz: unknown key 'zzz'; expected one of: user, key_file",
    ),
    (
        "unknown driver parameter",
        VALID_HEAD + "benchmark:\n  builtin:\n    conections: 5\n",
        "bad.yaml:15: benchmark.builtin.conections: unknown key 'conections' "
        "(did you mean 'connections'?)",
    ),
    (
        "misspelt role",
        VALID_HEAD.replace("roles: [client]", "roles: [clinet]"),
        "bad.yaml:9: hosts[1].roles[0]: must be 'client' or 'server', got 'clinet' "
        "(did you mean 'client'?)",
    ),
    (
        "roles not a list",
        VALID_HEAD.replace("roles: [client]", "roles: client"),
        "bad.yaml:9: hosts[1].roles: must be a list, got 'client'",
    ),
    (
        "empty roles",
        VALID_HEAD.replace("roles: [client]", "roles: []"),
        "bad.yaml:9: hosts[1].roles: must have at least 1 item(s)",
    ),
    (
        "no client host",
        VALID_HEAD.replace("roles: [client]", "roles: [server]"),
        "bad.yaml:3: hosts: no host has the client role",
    ),
    (
        "duplicate host names",
        VALID_HEAD.replace("name: client1", "name: server"),
        "bad.yaml:7: hosts[1].name: duplicate host name 'server', already used by hosts[0]",
    ),
    (
        "server on an unknown host",
        VALID_HEAD.replace("    host: server\n", "    host: srever\n"),
        "bad.yaml:12: servers[0].host: no host named 'srever' in hosts (did you mean 'server'?)",
    ),
    (
        "duplicate server names",
        VALID_HEAD + "  - name: redis\n    host: server\n",
        "bad.yaml:13: servers[1].name: duplicate server name 'redis'",
    ),
    (
        "bad IPv4 address",
        VALID_HEAD.replace("198.18.0.11", "999.1.1.1"),
        "bad.yaml:8: hosts[1].address: must be an IP address or a DNS host name, got '999.1.1.1'",
    ),
    (
        "address with a space",
        VALID_HEAD.replace("198.18.0.11", "'my host'"),
        "bad.yaml:8: hosts[1].address: must be an IP address or a DNS host name, got 'my host'",
    ),
    (
        "address as a number",
        VALID_HEAD.replace("198.18.0.11", "12"),
        "bad.yaml:8: hosts[1].address: must be a string",
    ),
    (
        "host name with a shell metacharacter",
        VALID_HEAD.replace("name: client1", "name: 'c1;rm -rf /'"),
        "bad.yaml:7: hosts[1].name: must be 1-63 letters, digits",
    ),
    (
        "duration without a unit",
        VALID_HEAD + "benchmark:\n  duration: 30\n",
        "bad.yaml:14: benchmark.duration: must be a duration with a unit, like 30s, got 30",
    ),
    (
        "duration with a bad unit",
        VALID_HEAD + "benchmark:\n  warmup: 5x\n",
        "bad.yaml:14: benchmark.warmup: must be a duration like 500ms, 5s, 2m or 1h30m, got '5x'",
    ),
    (
        "zero measure duration",
        VALID_HEAD + "benchmark:\n  duration: 0s\n",
        "bad.yaml:14: benchmark.duration: must be greater than 0, got '0s'",
    ),
    (
        "absurd duration",
        VALID_HEAD + "benchmark:\n  duration: 99999h\n",
        "bad.yaml:14: benchmark.duration: must be at most 7 days, got '99999h'",
    ),
    (
        "drain limit too long",
        VALID_HEAD + "benchmark:\n  drain_timeout: 11m\n",
        "bad.yaml:14: benchmark.drain_timeout: must be at most 10m",
    ),
    (
        "drain limit with a bad unit",
        VALID_HEAD + "benchmark:\n  drain_timeout: 10x\n",
        "bad.yaml:14: benchmark.drain_timeout: must be a duration like",
    ),
    (
        "repetitions as a string",
        VALID_HEAD + "benchmark:\n  repetitions: 'three'\n",
        "bad.yaml:14: benchmark.repetitions: must be an integer, got 'three'",
    ),
    (
        "zero repetitions",
        VALID_HEAD + "benchmark:\n  repetitions: 0\n",
        "bad.yaml:14: benchmark.repetitions: must be >= 1, got 0",
    ),
    (
        "unknown driver",
        VALID_HEAD + "benchmark:\n  driver: wrk\n",
        "bad.yaml:14: benchmark.driver: must be 'builtin', 'redis-benchmark', 'memtier' or 'http', "
        "got 'wrk'",
    ),
    (
        "host key policy misspelt",
        VALID_HEAD + "ssh:\n  host_key_policy: accept_new\n",
        "bad.yaml:14: ssh.host_key_policy: must be 'strict' or 'accept-new', got 'accept_new' "
        "(did you mean 'accept-new'?)",
    ),
    (
        "boolean as a string",
        VALID_HEAD + "baseline:\n  enabled: 'yes'\n",
        "bad.yaml:14: baseline.enabled: must be true or false, got 'yes'",
    ),
    (
        "label value not a string",
        VALID_HEAD.replace("    roles: [client]\n",
                           "    roles: [client]\n    labels: {cores: 8}\n"),
        "bad.yaml:10: hosts[1].labels.cores: must be a string",
    ),
    (
        "hosts is a mapping",
        "hosts:\n  server: 198.18.0.10\nservers:\n  - name: redis\n    host: server\n",
        "bad.yaml:1: hosts: must be a list, got a mapping",
    ),
    (
        "host entry is a string",
        "hosts:\n  - server\nservers:\n  - name: redis\n    host: server\n",
        "bad.yaml:2: hosts[0]: must be a mapping, got 'server'",
    ),
    (
        "missing servers",
        "hosts:\n  - name: c\n    address: 198.18.0.11\n    roles: [client]\n",
        "bad.yaml:1: servers: required field is missing",
    ),
    (
        "missing host address",
        VALID_HEAD.replace("    address: 198.18.0.11\n", ""),
        "bad.yaml:7: hosts[1].address: required field is missing",
    ),
    (
        "key given twice",
        VALID_HEAD + "name: other\n",
        "bad.yaml:13: name: key given twice in the same mapping",
    ),
    (
        "unsupported version",
        VALID_HEAD.replace("version: 1", "version: 7"),
        "bad.yaml:1: version: must be 1, got 7",
    ),
    (
        "top level is a list",
        "- hosts\n- servers\n",
        "bad.yaml:1: the top level must be a mapping of sections (hosts, servers, ...), got a list",
    ),
    (
        "top level is a scalar",
        "just some words\n",
        "bad.yaml:1: the top level must be a mapping of sections (hosts, servers, ...), "
        "got a string",
    ),
    (
        "YAML syntax error",
        VALID_HEAD + "benchmark: [unclosed\n",
        "bad.yaml:14: not valid YAML",
    ),
    (
        "tab indentation",
        "hosts:\n\t- name: x\n",
        "bad.yaml:2: not valid YAML",
    ),
    (
        "empty file",
        "",
        "bad.yaml: the file is empty",
    ),
    (
        "only comments",
        "# nothing here\n",
        "bad.yaml: the file is empty",
    ),
    (
        "set ratio out of range",
        VALID_HEAD + "benchmark:\n  builtin:\n    set_ratio: 1.5\n",
        "bad.yaml:15: benchmark.builtin.set_ratio: must be <= 1.0, got 1.5",
    ),
    (
        "busy polling beyond its limit",
        VALID_HEAD + "benchmark:\n  builtin:\n    busy_poll_usec: 20000\n",
        "bad.yaml:15: benchmark.builtin.busy_poll_usec: must be <= 10000, got 20000",
    ),
    (
        "busy polling in an open loop",
        VALID_HEAD + "benchmark:\n  builtin:\n    rate: 1000\n    busy_poll_usec: 200\n",
        "bad.yaml:14: benchmark.builtin: busy_poll_usec applies to the closed loop only, not with "
        "rate",
    ),
    (
        "memtier ratio malformed",
        VALID_HEAD + "benchmark:\n  memtier:\n    ratio: one-to-ten\n",
        "bad.yaml:15: benchmark.memtier.ratio: must match",
    ),
    (
        "tls with an unknown key",
        VALID_HEAD + "    tls: {verfy: false}\n",
        "bad.yaml:13: servers[0].tls.verfy: unknown key 'verfy' (did you mean 'verify'?)",
    ),
    (
        "negative watchdog",
        VALID_HEAD + "agent:\n  watchdog: -5s\n",
        "bad.yaml:14: agent.watchdog: must be a duration like",
    ),
    (
        "password and password_file",
        VALID_HEAD + "    password: hunter2\n    password_file: /etc/coord/redis.password\n",
        "bad.yaml:14: servers[0].password_file: server 'redis' is given password and "
        "password_file; give at most one of password, password_file, password_env",
    ),
    (
        "password_file and password_env",
        VALID_HEAD + "    password_env: REDIS_PASSWORD\n    password_file: /run/redis.pw\n",
        "bad.yaml:13: servers[0].password_env: server 'redis' is given password_file and "
        "password_env; give at most one of password, password_file, password_env",
    ),
    (
        "all three password sources",
        VALID_HEAD + "    password_env: P\n    password_file: /f\n    password: x\n",
        "bad.yaml:14: servers[0].password_file: server 'redis' is given password and "
        "password_file and password_env; give at most one of password, password_file, "
        "password_env",
    ),
    (
        "empty password_env",
        VALID_HEAD + "    password_env: ''\n",
        "bad.yaml:13: servers[0].password_env: string should have at least 1 character, got ''",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES],
                         ids=[name for name, _, _ in CASES])
def test_malformed_inventory_is_one_located_line_per_problem(
    tmp_path: Path, run_coord: RunCoord, text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"{tmp_path}/{expected}") for line in lines), lines


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path,
                                                       run_coord: RunCoord) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        VALID_HEAD.replace("198.18.0.11", "999.1.1.1").replace("roles: [client]", "roles: [x]")
        + "benchmark:\n  warmup: 5x\n  duration: 30\n"
    )
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    paths = [line.split(": ")[1] for line in result.stderr.splitlines()]
    assert paths == ["hosts[1].address", "hosts[1].roles[0]", "benchmark.warmup",
                     "benchmark.duration"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", "is a binary file, not YAML text"),
        (b"hosts: \xff\xfe\xfd\n", "is not UTF-8 text"),
    ],
    ids=["binary with NUL bytes", "invalid UTF-8"],
)
def test_binary_junk_is_refused(tmp_path: Path, run_coord: RunCoord, content: bytes,
                                expected: str) -> None:
    path = tmp_path / "junk.yaml"
    path.write_bytes(content)
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_and_directory(tmp_path: Path, run_coord: RunCoord) -> None:
    missing = run_coord("inventory", "check", str(tmp_path / "nope.yaml"))
    assert (missing.status, missing.stderr.strip()) == (2, f"{tmp_path}/nope.yaml: no such file")
    directory = run_coord("inventory", "check", str(tmp_path))
    assert directory.status == 2
    assert directory.stderr.strip() == f"{tmp_path}: is a directory, not an inventory file"


def test_load_on_the_server_host_is_a_warning(tmp_path: Path, run_coord: RunCoord) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(VALID_HEAD.replace("roles: [server]", "roles: [server, client]"))
    result = run_coord("inventory", "check", str(path))
    assert result.status == 0
    assert f"{path}:6: hosts[0].roles: warning: host 'server' runs both load and a server" \
        in result.stderr


def test_fewer_than_three_repetitions_is_a_warning(tmp_path: Path, run_coord: RunCoord) -> None:
    path = tmp_path / "once.yaml"
    path.write_text(VALID_HEAD + "benchmark:\n  repetitions: 1\n")
    result = run_coord("inventory", "check", str(path))
    assert result.status == 0
    assert "benchmark.repetitions: warning: 1 repetition(s)" in result.stderr

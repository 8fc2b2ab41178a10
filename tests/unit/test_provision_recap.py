"""Reading ansible-playbook's default output: per host, what changed and why it failed.
The fixtures are two real runs of ansible/site.yml against a lab (first run, then the rerun)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.provision import playbook
from coordinator.provision.recap import parse_playbook_output
from tests.conftest import RunCoord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ansible"


def test_a_first_run_names_the_tasks_that_changed_each_host() -> None:
    recap = parse_playbook_output((FIXTURES / "first-run.txt").read_text())
    by_host = {host.host: host for host in recap.hosts}
    assert set(by_host) == {"client1", "server"}
    assert by_host["client1"].changed == 0
    assert by_host["server"].changed == 3
    assert by_host["server"].changed_tasks == (
        "Directory of redis", "Configuration of redis", "Start redis")
    assert recap.changed
    assert not recap.failed
    assert by_host["server"].summary() == (
        "server: 3 changed (Directory of redis, Configuration of redis, Start redis); "
        "15 ok, 5 skipped")


def test_a_rerun_that_changed_nothing_says_so() -> None:
    recap = parse_playbook_output((FIXTURES / "second-run.txt").read_text())
    assert not recap.changed
    assert [host.summary() for host in recap.hosts] == [
        "client1: no change (3 ok, 2 skipped)", "server: no change (15 ok, 5 skipped)"]


FAILED_RUN = """
TASK [coord_server : Start redis] **********************************************
fatal: [server]: FAILED! => {"changed": true, "cmd": ["redis-server"], "msg": "non-zero return code\\nsecond line", "rc": 1}
fatal: [client2]: UNREACHABLE! => {"changed": false, "msg": "Failed to connect to the host via ssh: Host key verification failed.", "unreachable": true}

PLAY RECAP *********************************************************************
client2                    : ok=0    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
server                     : ok=4    changed=1    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0
"""  # noqa: E501


def test_failed_and_unreachable_hosts_are_named_with_one_line_each() -> None:
    recap = parse_playbook_output(FAILED_RUN)
    assert [host.host for host in recap.failed] == ["client2", "server"]
    summaries = [host.summary() for host in recap.failed]
    assert summaries == [
        "client2: FAILED: unreachable: Failed to connect to the host via ssh: "
        "Host key verification failed.",
        "server: FAILED: task 'Start redis' failed: non-zero return code second line",
    ]


def test_a_missing_ansible_playbook_names_the_extra(run_coord: RunCoord,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setattr(playbook.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    inventory = Path(__file__).resolve().parents[2] / "inventory" / "two-clients.yaml"
    result = run_coord("provision", "-i", str(inventory))
    assert result.status == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ansible-playbook not found: install the ansible extra (pip install 'coord[ansible]')")

"""The `coord` command line: parses arguments and calls the library, nothing more.

Every :class:`~coordinator.core.errors.CoordError` becomes its message on stderr (one line per
problem) and the error's exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from coordinator import __version__, interrupts
from coordinator.core.errors import CoordError, UsageError
from coordinator.doctor.probe import gather
from coordinator.doctor.verdicts import diagnose
from coordinator.inventory.loader import LoadedInventory, load_inventory
from coordinator.inventory.overrides import Override
from coordinator.inventory.schema import Host
from coordinator.inventory.summary import inventory_summary, lab_summary
from coordinator.lab import api as lab
from coordinator.provision.ansible_inventory import ansible_inventory_yaml
from coordinator.provision.playbook import ProvisionFailed, ProvisionOptions, provision
from coordinator.remote.deploy import DeployOptions
from coordinator.remote.fanout import FleetResult
from coordinator.remote.fleet import Fleet, select_hosts
from coordinator.remote.operations import (
    agents_status,
    check_clean_target,
    clean_agents,
    fetch_logs,
    held_agents,
    stop_agents,
)
from coordinator.report.compare import RegressionFound, compare
from coordinator.report.compare_view import comparison_html, comparison_text
from coordinator.report.data import report_data, spectra
from coordinator.report.generate import load_directory, write_report
from coordinator.report.text import render_text
from coordinator.results.io import atomic_write, default_directory
from coordinator.results.model import redact_command_line
from coordinator.run.platform import compare_runs, describe_inventory
from coordinator.run.platform_view import differences_table, platform_tables
from coordinator.run.progress import (
    LiveHostTable,
    agents_table,
    failure_table,
    findings_table,
    held_agents_table,
)
from coordinator.run.runner import (
    baseline_only,
    check_repetitions,
    enforce_strict,
    run_benchmark,
)
from coordinator.run.view import RunConsoleView, baseline_table, pair_line, summary_table
from coordinator.sweep.executor import resumed_index, run_sweep
from coordinator.sweep.html import write_sweep_html
from coordinator.sweep.load import load_sweep
from coordinator.sweep.store import read_index
from coordinator.sweep.table import SweepConsoleView, dry_run_table
from coordinator.sweep.table import report as sweep_report
from coordinator.usecases import require_modules

PIPE_WIDTH = 160
"""Columns used when output goes to a file or pipe (rich would assume 80 and fold tables)."""
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)
stderr = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else PIPE_WIDTH)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coord")
def cli() -> None:
    """coord: distributed benchmarks of Redis-like servers, done by the book."""


@cli.group()
def inventory() -> None:
    """Check inventory files."""


@inventory.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--inventory", "-i", "inventory_path", type=click.Path(path_type=Path),
              help="The inventory file (the same as giving FILE).")
def inventory_check(file: Path | None, inventory_path: Path | None) -> None:
    """Validate FILE (or -i FILE) and summarize what a run with it would do."""
    path = _one_inventory(file, inventory_path)
    loaded = _load(path)
    stdout.print(inventory_summary(loaded))
    stdout.print(f"[green]{path}: valid[/green]")


@inventory.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--inventory", "-i", "inventory_path", required=True,
              type=click.Path(path_type=Path), help="The coord inventory to convert.")
@click.option("--format", "output_format", type=click.Choice(["ansible"]), required=True,
              help="ansible: an Ansible inventory (YAML) for the playbooks in ansible/.")
def inventory_export(file: Path, inventory_path: Path, output_format: str) -> None:
    """Write the inventory in another tool's format to FILE (mode 600; `-` for stdout)."""
    loaded = _load(inventory_path)
    text = ansible_inventory_yaml(loaded.inventory, loaded.source)
    if str(file) == "-":
        click.echo(text, nl=False)
        return
    try:
        file.touch(mode=0o600)
        file.chmod(0o600)
        file.write_text(text)
    except OSError as exc:
        raise UsageError(f"{file}: cannot write the {output_format} inventory: "
                         f"{exc.strerror or exc}") from exc
    stderr.print(f"{file}: {output_format} inventory of {len(loaded.inventory.hosts)} host(s)")


def _one_inventory(file: Path | None, option: Path | None) -> Path:
    """The inventory named by FILE or by ``-i``: one of them, or both naming the same file."""
    chosen = file or option
    if chosen is None:
        raise UsageError("no inventory given: coord inventory check FILE (or -i FILE)")
    if file is not None and option is not None and file.absolute() != option.absolute():
        raise UsageError(f"two inventories given ({file} and -i {option}): give one")
    return chosen


@cli.group("lab")
def lab_group() -> None:
    """A throw-away lab of hosts in network namespaces on this machine (root)."""


_name_option = click.option("--name", default="coord", show_default=True,
                            help="Prefix of every object the lab creates.")
_state_option = click.option("--state-dir", type=click.Path(path_type=Path),
                             default=str(lab.DEFAULT_STATE_ROOT), show_default=True,
                             help="Where the lab keeps keys, configs and state.")


@lab_group.command("up")
@click.option("--clients", type=click.IntRange(1, 20), default=2, show_default=True,
              help="Number of client hosts.")
@click.option("--inventory", "-i", "inventory_path", type=click.Path(path_type=Path),
              default="lab.yaml", show_default=True, help="Where to write the lab's inventory.")
@click.option("--client-cpu", type=click.FloatRange(0.01, 64.0), default=None,
              help="CPU quota per client host, in cores (e.g. 0.5).")
@click.option("--server-cpu", type=click.FloatRange(0.01, 64.0), default=None,
              help="CPU quota of the server host (sshd and redis-server), in cores: makes "
              "Redis the bottleneck on purpose.")
@click.option("--subnet", default="198.18.0.0/24", show_default=True,
              help="Lab addresses, inside 198.18.0.0/15.")
@click.option("--tls", is_flag=True, help="redis-server also listens with TLS (port 6380, "
              "a throw-away CA and certificates); the inventory targets it.")
@click.option("--cluster", type=int, default=0, metavar="N",
              help="Also start a Redis Cluster of N primaries (ports 7000..), 3 to 16; the "
              "inventory targets it.")
@click.option("--model-server", is_flag=True, help="Also start the model server (Gunicorn + "
              "Flask, fraud and classification; docs/model-serving.md) on port 8000 of the "
              "server host; needs the model-server extra.")
@click.option("--model-workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="The model server's Gunicorn workers.")
@click.option("--model-threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Threads per Gunicorn worker.")
@click.option("--model-intra-op-threads", type=click.IntRange(1, 64), default=1,
              show_default=True, help="onnxruntime's intra-op threads per model session.")
@_name_option
@_state_option
def lab_up(clients: int, inventory_path: Path, client_cpu: float | None,
           server_cpu: float | None, subnet: str, tls: bool, cluster: int, model_server: bool,
           model_workers: int, model_threads: int, model_intra_op_threads: int, name: str,
           state_dir: Path) -> None:
    """Build the lab and write a ready inventory."""
    spec = lab.LabSpec(name=name, clients=clients, subnet=subnet, client_cpu=client_cpu,
                       state_root=state_dir, server_cpu=server_cpu, tls=tls, cluster=cluster,
                       model_server=model_server, model_workers=model_workers,
                       model_threads=model_threads,
                       model_intra_op_threads=model_intra_op_threads)
    status = lab.lab_up(spec, inventory_path, report=_progress)
    stdout.print(status.inventory_path.read_text(), markup=False, highlight=False)
    stdout.print(f"[green]lab {name!r} is up; inventory written to {status.inventory_path}[/]")


@lab_group.command("down")
@_name_option
@_state_option
def lab_down(name: str, state_dir: Path) -> None:
    """Remove every trace of the lab: namespaces, bridge, users, processes, files."""
    removed = lab.lab_down(name, state_dir, report=_progress)
    if removed:
        stdout.print(f"[green]lab {name!r} is down ({len(removed)} object(s) removed)[/]")
    else:
        stdout.print(f"no lab named {name!r} was up")


@lab_group.command("status")
@_name_option
@_state_option
def lab_status(name: str, state_dir: Path) -> None:
    """Say whether the lab is up, and what it holds."""
    status = lab.lab_status(name, state_dir)
    if status is None:
        stdout.print(f"no lab named {name!r} is up")
        sys.exit(3)
    stdout.print(lab_summary(status))
    if not status.healthy:
        sys.exit(1)


@cli.group("data")
def data_group() -> None:
    """Synthetic use-case data (fraud, image): generated here, nothing downloaded."""


@data_group.command("generate")
@click.argument("use_case", type=click.Choice(["fraud", "image"]))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write the files into (created if missing).")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same bytes.")
@click.option("--rows", type=click.IntRange(1), default=10_000, show_default=True,
              help="fraud: transactions.")
@click.option("--customers", type=click.IntRange(1), default=1_000, show_default=True,
              help="fraud: customer ids (each with its reference data).")
@click.option("--count", type=click.IntRange(1), default=8, show_default=True,
              help="image: images.")
@click.option("--dtype", type=click.Choice(["uint8", "float32"]), default="uint8",
              show_default=True, help="image: pixel type.")
def data_generate(use_case: str, out: Path, seed: int, rows: int, customers: int, count: int,
                  dtype: str) -> None:
    """Write a use case's synthetic data (docs/model-serving.md says what each file holds)."""
    require_modules("coord data generate", "numpy")
    from coordinator.usecases.files import (  # noqa: PLC0415 - numpy: the model-server extra
        Sizes,
        write_use_case,
    )

    sizes = Sizes(rows=rows, customers=customers, images=count,
                  dtype="float32" if dtype == "float32" else "uint8")
    for path in write_use_case("fraud" if use_case == "fraud" else "image", out, seed, sizes):
        stdout.print(f"wrote {path} ({path.stat().st_size} bytes)")


@data_group.command("load")
@click.argument("use_case", type=click.Choice(["fraud"]))
@click.option("--inventory", "-i", "inventory_path", required=True,
              type=click.Path(path_type=Path), help="The inventory naming the Redis server.")
@click.option("--server", "server_name", default=None,
              help="The RESP server to load (default: the inventory's first).")
@click.option("--seed", type=int, default=1, show_default=True,
              help="The seed the data was generated with.")
@click.option("--customers", type=click.IntRange(1), default=1_000, show_default=True,
              help="Customer ids to load.")
def data_load(use_case: str, inventory_path: Path, server_name: str | None, seed: int,
              customers: int) -> None:
    """Load the fraud use case's reference data into a Redis server (reference:{id})."""
    require_modules(f"coord data load {use_case}", "numpy")
    from coordinator.usecases.load import (  # noqa: PLC0415 - numpy: the model-server extra
        load_into_inventory,
    )

    inventory = load_inventory(inventory_path).inventory
    server, loaded = load_into_inventory(inventory, server_name, seed, customers)
    stdout.print(f"loaded the reference data of {loaded} customers into {server.name}")


_inventory_option = click.option(
    "--inventory", "-i", "inventory_path", required=True, type=click.Path(path_type=Path),
    help="The inventory file.")
_hosts_option = click.option(
    "--hosts", "host_names", default=None, metavar="NAMES",
    help="Only these hosts (comma-separated names from the inventory).")
_host_keys_option = click.option(
    "--accept-new-host-keys", is_flag=True,
    help="Record unknown SSH host keys in known_hosts (changed keys are still refused).")


@cli.command()
@_inventory_option
@_hosts_option
@_host_keys_option
@click.option("--wheelhouse", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Build agent bundles from these wheels only (no package registry).")
@click.option("--hold", is_flag=True,
              help="Keep the agents running (heartbeating) until Ctrl-C.")
def deploy(inventory_path: Path, host_names: str | None, accept_new_host_keys: bool,
           wheelhouse: Path | None, hold: bool) -> None:
    """Deploy and start the agent on every host, check it, and stop it (or --hold it)."""
    loaded, hosts, options = _targets(inventory_path, host_names, accept_new_host_keys,
                                      wheelhouse)
    with _fleet(loaded, hosts, options, "deploying agents") as fleet:
        stdout.print(agents_table(agents_status(fleet), "agents"))
        if hold and fleet.sessions:
            stderr.print(f"holding {len(fleet.sessions)} agent(s); Ctrl-C stops them")
            fleet.hold(lambda name, error: stderr.print(
                f"[red]{name}: agent lost: {error.reason}[/red]"))
    _exit_for(fleet.start_result)


@cli.command("run")
@_inventory_option
@click.option("--repetitions", type=click.IntRange(1, 1000), default=None,
              help="Repetitions (default: the inventory's, 3). Fewer than 3 needs this option "
                   "and is marked in the results.")
@click.option("--warmup", metavar="DURATION", default=None, help="Warm-up per repetition.")
@click.option("--duration", metavar="DURATION", default=None, help="Measure phase per repetition.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results directory (default: results/<date>-<time>-<inventory name>/).")
@click.option("--overwrite", is_flag=True,
              help="Reuse a non-empty --out directory (only coord's own files there are "
                   "replaced).")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override one inventory field for this run, e.g. "
                   "--set benchmark.builtin.connections=100 (repeatable).")
@_host_keys_option
@click.option("--wheelhouse", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Build agent bundles from these wheels only (no package registry).")
@click.option("--force", is_flag=True,
              help="Run even on hosts another run holds (the results are marked "
                   "forced-over-run-lock and name the holder).")
@click.option("--strict", is_flag=True,
              help="Exit with status 3 when a repetition is judged client-bound, unstable, "
                   "skewed or above the error threshold (one line per verdict).")
@click.option("--no-baseline", is_flag=True,
              help="Skip the netperf baselines before and after (the results are marked "
                   "no-baseline).")
@click.option("--open", "open_report", is_flag=True,
              help="Open the run's report.html in a web browser at the end.")
def run_command(inventory_path: Path, repetitions: int | None, warmup: str | None,
                duration: str | None, out: Path | None, overwrite: bool,
                overrides: tuple[str, ...],
                accept_new_host_keys: bool, wheelhouse: Path | None, force: bool,
                strict: bool, no_baseline: bool, open_report: bool) -> None:
    """Run the benchmark: synchronized load from every client, repeated, merged, saved."""
    shorthands = {"repetitions": ("benchmark.repetitions", repetitions),
                  "warmup": ("benchmark.warmup", warmup),
                  "duration": ("benchmark.duration", duration)}
    settings: list[Override] = [*overrides]
    settings += [(f"{path}={value}", f"--{option} {value}")
                 for option, (path, value) in shorthands.items() if value is not None]
    if no_baseline:
        settings.append(("baseline.enabled=false", "--no-baseline"))
    loaded = _load(inventory_path, settings)
    check_repetitions(loaded.inventory, explicit=repetitions is not None)
    directory = out or default_directory(loaded.inventory.name)
    options = DeployOptions(wheelhouse=wheelhouse, accept_new_host_keys=accept_new_host_keys)
    with RunConsoleView(stderr, [host.name for host in loaded.inventory.hosts]) as view:
        outcome = run_benchmark(loaded, directory, view, options, overwrite=overwrite,
                                force=force, command_line=_arguments())
    stdout.print(summary_table(outcome.document))
    stdout.print(f"results: {outcome.directory}")
    report = write_report(outcome.directory, _invocation(), outcome.document)
    stdout.print(f"report: {report}")
    if open_report:
        webbrowser.open(report.resolve().as_uri())
    if strict:
        enforce_strict(outcome.document)


@cli.command("sweep")
@click.option("--plan", "plan_path", required=True, type=click.Path(path_type=Path),
              help="The sweep plan (docs/sweeps.md).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The sweep directory (default: results/sweep-<plan name>/); the same "
                   "directory again resumes the sweep.")
@click.option("--dry-run", is_flag=True,
              help="List the cells and the estimated duration; run nothing.")
@click.option("--report", "report_only", is_flag=True,
              help="Print the report of the sweep directory and write its sweep.html; run "
                   "nothing.")
@_host_keys_option
@click.option("--wheelhouse", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Build agent bundles from these wheels only (no package registry).")
@click.option("--force", is_flag=True,
              help="Run even on hosts another run holds (each cell's results are marked).")
def sweep_command(plan_path: Path, out: Path | None, dry_run: bool, report_only: bool,
                  accept_new_host_keys: bool, wheelhouse: Path | None, force: bool) -> None:
    """Run a sweep: every cell of the plan a full run, one fleet per inventory, resumable."""
    loaded = load_sweep(plan_path)
    directory = out or Path("results") / f"sweep-{loaded.plan.name}"
    bound = loaded.plan.report_bound()
    if report_only:
        written = read_index(directory)
        if written is None:
            raise UsageError(f"{directory}: no sweep index here (index.json); run the sweep "
                             "first")
        stdout.print(sweep_report(written, bound))
        stdout.print(f"report: {write_sweep_html(directory, written, bound, _invocation())}")
        return
    if dry_run:
        stdout.print(dry_run_table(loaded.cells, resumed_index(loaded, directory)))
        return
    options = DeployOptions(wheelhouse=wheelhouse, accept_new_host_keys=accept_new_host_keys)
    outcome = run_sweep(loaded, directory, SweepConsoleView(stderr), options, force=force)
    stdout.print(sweep_report(outcome.index, bound))
    stdout.print(f"sweep: {outcome.directory}")
    report = write_sweep_html(outcome.directory, outcome.index, bound, _invocation())
    stdout.print(f"report: {report}")


@cli.command("provision")
@_inventory_option
@click.option("--tags", multiple=True, metavar="TAGS",
              help="Only the tasks with these Ansible tags (repeatable; e.g. redis, client).")
@click.option("--skip-tags", multiple=True, metavar="TAGS",
              help="Not the tasks with these tags (e.g. system: everything that needs root).")
@click.option("--extra-vars", "-e", "extra_vars", multiple=True, metavar="KEY=VALUE",
              help="A playbook variable, as ansible-playbook's -e (repeatable).")
@click.option("--playbooks", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory holding site.yml (default: the playbooks installed with coord).")
@click.option("--log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write ansible-playbook's whole output to this file.")
def provision_command(inventory_path: Path, tags: tuple[str, ...], skip_tags: tuple[str, ...],
                      extra_vars: tuple[str, ...], playbooks: Path | None,
                      log: Path | None) -> None:
    """Prepare the hosts with Ansible (the playbooks in ansible/); say what changed on each."""
    loaded = _load(inventory_path)
    options = ProvisionOptions(tags=tags, skip_tags=skip_tags, extra_vars=extra_vars,
                               playbooks=playbooks, log=log)
    stderr.print(f"provisioning {len(loaded.inventory.hosts)} host(s) with ansible-playbook")
    try:
        outcome = provision(loaded, options)
    except ProvisionFailed as failed:
        for host in failed.recap.hosts:
            stdout.print(host.summary(), markup=False)
        raise
    for host in outcome.recap.hosts:
        stdout.print(host.summary(), markup=False)
    stdout.print("changed" if outcome.recap.changed else "no change")


@cli.command("baseline")
@_inventory_option
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override one inventory field, e.g. --set baseline.pairs=all (repeatable).")
@_host_keys_option
@click.option("--wheelhouse", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Build agent bundles from these wheels only (no package registry).")
def baseline_command(inventory_path: Path, overrides: tuple[str, ...],
                     accept_new_host_keys: bool, wheelhouse: Path | None) -> None:
    """Measure only the netperf baseline (TCP_RR per pair) and print it; exit 1 if a pair
    failed."""
    loaded = _load(inventory_path, list(overrides))
    options = DeployOptions(wheelhouse=wheelhouse, accept_new_host_keys=accept_new_host_keys)
    with _fleet(loaded, loaded.inventory.hosts, options, "starting agents") as fleet:
        rows = baseline_only(fleet, loaded.inventory, lambda pair: stderr.print(
            f"baseline: {pair_line(pair)}", markup=False, highlight=False, soft_wrap=True))
    stdout.print(baseline_table(rows, "netperf baseline (µs; medians across iterations)"))
    if any(row.error for row in rows):
        sys.exit(1)


@cli.command("report")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--text", "as_text", is_flag=True,
              help="Print the report to the terminal instead of only writing report.html.")
@click.option("--open", "open_report", is_flag=True,
              help="Open report.html in a web browser.")
def report_command(directory: Path, as_text: bool, open_report: bool) -> None:
    """Write DIRECTORY/report.html, summary.csv and rep-<n>.hlog from its results.json."""
    report = write_report(directory, _invocation())
    if as_text:
        stdout.print(render_text(report_data(load_directory(directory)), _invocation()))
    stdout.print(f"report: {report}")
    if open_report:
        webbrowser.open(report.resolve().as_uri())


@cli.command("compare")
@click.argument("directories", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--fail-on-regression", "fail_percent", type=click.FloatRange(0.0), default=None,
              metavar="PCT", help="Exit with status 1 when a figure regressed beyond noise "
                                  "and by more than PCT percent (the figure is named).")
@click.option("--html", "html_out", type=click.Path(path_type=Path), default=None,
              metavar="OUT", help="Also write the comparison, spectra overlaid, to OUT.")
def compare_command(directories: tuple[Path, ...], fail_percent: float | None,
                    html_out: Path | None) -> None:
    """Compare results directories, the first as reference: medians, spread, noise."""
    if len(directories) < 2:
        raise UsageError("coord compare needs at least two results directories")
    documents = [load_directory(directory) for directory in directories]
    empty = [str(d) for d, document in zip(directories, documents, strict=True)
             if not document.repetitions]
    if empty:
        raise UsageError(f"{', '.join(empty)}: no finished repetition to compare")
    comparison = compare([str(d) for d in directories], documents)
    stdout.print(comparison_text(comparison))
    if html_out is not None:
        page = comparison_html(comparison, [spectra(document)[0] for document in documents])
        atomic_write(html_out, page.encode("utf-8"))
        stdout.print(f"comparison: {html_out}")
    if fail_percent is not None:
        regressions = comparison.regressions(fail_percent)
        if regressions:
            raise RegressionFound(regressions, fail_percent)


def _arguments() -> list[str]:
    """The command line coord was started with (``main``'s arguments, else the process's)."""
    given = click.get_current_context().find_root().obj
    return ["coord", *(given if isinstance(given, list) else sys.argv[1:])]


def _invocation() -> str:
    """The command line coord was started with, for the report's provenance (secrets
    redacted, as in results.json)."""
    return shlex.join(redact_command_line(_arguments()))


@cli.command("doctor")
@_inventory_option
@_hosts_option
@_host_keys_option
def doctor_command(inventory_path: Path, host_names: str | None,
                   accept_new_host_keys: bool) -> None:
    """Check every host for what a run needs (SSH, forwarding, SFTP, Python, memory, disk,
    tools, the target); one line per problem with its fix; exit 1 if there is any."""
    loaded, hosts, options = _targets(inventory_path, host_names, accept_new_host_keys)
    with LiveHostTable(stderr, [host.name for host in hosts], "checking hosts") as view:
        gathered = gather(loaded.inventory, hosts, options, view)
    findings = diagnose(loaded.inventory, gathered.succeeded)
    if findings:
        stdout.print(findings_table(findings))
    _exit_for(gathered)
    if findings:
        sys.exit(1)
    stdout.print(f"[green]{len(hosts)} host(s) checked: no problems[/green]")


@cli.command("describe")
@click.option("--inventory", "-i", "inventory_path", type=click.Path(path_type=Path),
              default=None, help="Describe the hosts and servers of this inventory.")
@click.option("--diff", "diff_paths", nargs=2, type=click.Path(path_type=Path), default=None,
              metavar="RESULTS_A RESULTS_B",
              help="Instead: what differs between the platforms of two runs (results "
                   "directories or results.json files).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@_hosts_option
@_host_keys_option
def describe_command(inventory_path: Path | None, diff_paths: tuple[Path, Path] | None,
                     as_json: bool, host_names: str | None,
                     accept_new_host_keys: bool) -> None:
    """Describe the platform: every host (CPU, memory, kernel, OS, virtualization, CPU quota,
    interfaces, tool versions) and target server (INFO server, performance settings)."""
    if diff_paths is not None:
        if inventory_path is not None:
            raise UsageError("give --inventory or --diff, not both")
        first, second = diff_paths
        differences = compare_runs(first, second)
        if as_json:
            click.echo(json.dumps([d.model_dump(mode="json") for d in differences], indent=2))
        elif differences:
            stdout.print(differences_table(differences, str(first), str(second)))
        else:
            stdout.print("the two platforms do not differ")
        return
    if inventory_path is None:
        raise UsageError("no inventory given: coord describe --inventory FILE "
                         "(or --diff RESULTS_A RESULTS_B)")
    loaded, hosts, options = _targets(inventory_path, host_names, accept_new_host_keys)
    with _fleet(loaded, hosts, options, "describing hosts") as fleet:
        platform, described = describe_inventory(fleet, loaded.inventory)
    if as_json:
        click.echo(platform.model_dump_json(indent=2))
    else:
        for table in platform_tables(platform):
            stdout.print(table)
    _exit_for(described)
    _exit_for(fleet.start_result)


@cli.group()
def agents() -> None:
    """Inspect and stop agents on the inventory's hosts."""


@agents.command("status")
@_inventory_option
@_hosts_option
@_host_keys_option
def agents_status_command(inventory_path: Path, host_names: str | None,
                          accept_new_host_keys: bool) -> None:
    """Show the agents held by `coord deploy --hold` if there are any; otherwise start an
    agent on every host and show host, Python, bundle, uptime, clock offset, RTT."""
    loaded, hosts, options = _targets(inventory_path, host_names, accept_new_host_keys)
    if _show_held_agents(loaded, hosts, options):
        return
    with _fleet(loaded, hosts, options, "starting agents") as fleet:
        stdout.print(agents_table(agents_status(fleet), f"{len(fleet.sessions)} agent(s)"))
    _exit_for(fleet.start_result)


def _show_held_agents(loaded: LoadedInventory, hosts: Sequence[Host],
                      options: DeployOptions) -> bool:
    """Print the held agents' table and exit for unreachable hosts; False if none is held."""
    with LiveHostTable(stderr, [host.name for host in hosts], "looking for agents") as view:
        found = held_agents(loaded.inventory, hosts, options, view)
    held = {name: agent for name, agent in found.succeeded.items() if agent is not None}
    if not held:
        return False
    stdout.print(held_agents_table(found.succeeded,
                                   f"{len(held)} agent(s) held by another coord process"))
    _exit_for(found)
    return True


@agents.command("stop")
@_inventory_option
@_hosts_option
@_host_keys_option
def agents_stop_command(inventory_path: Path, host_names: str | None,
                        accept_new_host_keys: bool) -> None:
    """Stop agents left running on the hosts (e.g. by `coord deploy --hold` elsewhere)."""
    loaded, hosts, options = _targets(inventory_path, host_names, accept_new_host_keys)
    with LiveHostTable(stderr, [host.name for host in hosts], "stopping agents") as view:
        result = stop_agents(loaded.inventory, hosts, options, view)
    for name, stopped in sorted(result.succeeded.items()):
        if not stopped.found:
            stdout.print(f"{name}: no agent running")
        elif stopped.killed:
            stdout.print(f"{name}: agent pid {stopped.pid} ignored SIGTERM; killed its group")
        else:
            stdout.print(f"{name}: stopped agent pid {stopped.pid} and its processes")
    _exit_for(result)


@agents.command("clean")
@_inventory_option
@_hosts_option
@_host_keys_option
def agents_clean_command(inventory_path: Path, host_names: str | None,
                         accept_new_host_keys: bool) -> None:
    """Stop any agent and remove coord's directory (agent.cache_dir) from the hosts."""
    loaded, hosts, options = _targets(inventory_path, host_names, accept_new_host_keys)
    check_clean_target(loaded.inventory)
    with LiveHostTable(stderr, [host.name for host in hosts], "cleaning hosts") as view:
        result = clean_agents(loaded.inventory, hosts, options, view)
    for name, cleaned in sorted(result.succeeded.items()):
        stopped = f"stopped agent pid {cleaned.stopped.pid}; " if cleaned.stopped.found else ""
        if cleaned.removed:
            stdout.print(f"{name}: {stopped}removed {cleaned.path} ({cleaned.files} file(s), "
                         f"{cleaned.size_bytes / 2**20:.1f} MiB)")
        else:
            stdout.print(f"{name}: {stopped}nothing to remove")
    _exit_for(result)


@agents.command("logs")
@_inventory_option
@_hosts_option
@_host_keys_option
@click.option("--lines", "-n", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="How many of the last lines of each host's log.")
def agents_logs_command(inventory_path: Path, host_names: str | None,
                        accept_new_host_keys: bool, lines: int) -> None:
    """Show the end of each host's agent log."""
    loaded, hosts, options = _targets(inventory_path, host_names, accept_new_host_keys)
    result = fetch_logs(loaded.inventory, hosts, options, lines)
    for name, text in sorted(result.succeeded.items()):
        stdout.rule(name)
        stdout.print(text if text is not None else "(no agent log on this host)",
                     markup=False, highlight=False, end="")
    _exit_for(result)


def _load(path: Path, overrides: Sequence[Override] = ()) -> LoadedInventory:
    loaded = load_inventory(path, overrides)
    for warning in loaded.warnings:
        stderr.print(f"[yellow]{warning}[/yellow]", soft_wrap=True)
    return loaded


def _targets(inventory_path: Path, host_names: str | None, accept_new_host_keys: bool,
             wheelhouse: Path | None = None
             ) -> tuple[LoadedInventory, list[Host], DeployOptions]:
    """The inventory, the hosts selected by ``--hosts``, and the deployment options."""
    loaded = _load(inventory_path)
    names = None
    if host_names is not None:
        names = [name.strip() for name in host_names.split(",") if name.strip()]
    options = DeployOptions(wheelhouse=wheelhouse, accept_new_host_keys=accept_new_host_keys)
    return loaded, select_hosts(loaded.inventory, names), options


class _fleet:  # used like a function: `with _fleet(...) as fleet`
    """Start a fleet under a live progress table; always stop it and say so."""

    def __init__(self, loaded: LoadedInventory, hosts: Sequence[Host], options: DeployOptions,
                 title: str) -> None:
        self.fleet = Fleet(loaded.inventory, hosts, options)
        self.title = title

    def __enter__(self) -> Fleet:
        try:
            names = [host.name for host in self.fleet.hosts]
            with LiveHostTable(stderr, names, self.title) as view:
                self.fleet.view = view
                self.fleet.start()
        except BaseException:
            self._stop()
            raise
        return self.fleet

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def _stop(self) -> None:
        stopped = self.fleet.stop()
        if stopped.succeeded or stopped.failed:
            stderr.print(f"stopped {len(stopped.succeeded)} agent(s)")
        for name, failure in stopped.failed.items():
            stderr.print(f"{name}: could not stop cleanly: {failure.error.reason}")


def _exit_for(result: FleetResult[Any]) -> None:
    """Exit 1 after showing the failed hosts, if any."""
    if result.failed:
        stderr.print(failure_table(result.failed))
        sys.exit(1)


def _progress(line: str) -> None:
    stderr.print(f"[dim]{line}[/dim]")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `coord` console script."""
    interrupts.install()
    try:
        _main(argv)
    finally:
        interrupts.ignore_all()


def _main(argv: list[str] | None) -> None:
    """Run the command; turn its errors into one-line messages and exit statuses."""
    try:
        cli.main(args=argv, prog_name="coord", standalone_mode=False,
                 obj=sys.argv[1:] if argv is None else list(argv))
    except CoordError as exc:
        for line in exc.lines():
            stderr.print(line, markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_status)
    except click.exceptions.Abort:
        stderr.print("interrupted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)


def entry() -> None:
    """The `coord` console script: :func:`main`, then an exit no stray thread can hold up.

    Python joins every non-daemon thread before it exits, among them a worker of a fan-out
    still blocked on a host that stopped answering (its link is closed, but a remote call can
    take its own timeout to notice). Everything coord must do before leaving (stop the agents,
    write the results) is done by then, so such an exit leaves at once instead.
    """
    try:
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            status = exc.code or 0
        else:
            stderr.print(str(exc.code), markup=False, highlight=False)
            status = 1
    else:
        status = 0
    if _stray_threads():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _stray_threads() -> list[threading.Thread]:
    """Threads that would hold up the interpreter's exit."""
    return [thread for thread in threading.enumerate()
            if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()]


if __name__ == "__main__":
    entry()

"""The `coord` command line: parses arguments and calls the library, nothing more.

Every :class:`~coordinator.errors.CoordError` becomes its message on stderr (one line per
problem) and the error's exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from coordinator import __version__, lab
from coordinator.errors import CoordError
from coordinator.inventory_loader import load_inventory
from coordinator.summary import inventory_summary, lab_summary

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coord")
def cli() -> None:
    """coord: distributed benchmarks of Redis-like servers, done by the book."""


@cli.group()
def inventory() -> None:
    """Check inventory files."""


@inventory.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def inventory_check(file: Path) -> None:
    """Validate FILE and summarize what a run with it would do."""
    loaded = load_inventory(file)
    for warning in loaded.warnings:
        stderr.print(f"[yellow]{warning}[/yellow]", markup=True, soft_wrap=True)
    stdout.print(inventory_summary(loaded))
    stdout.print(f"[green]{file}: valid[/green]")


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
@click.option("--inventory", "inventory_path", type=click.Path(path_type=Path),
              default="lab.yaml", show_default=True, help="Where to write the lab's inventory.")
@click.option("--client-cpu", type=click.FloatRange(0.01, 64.0), default=None,
              help="CPU quota per client host, in cores (e.g. 0.5).")
@click.option("--subnet", default="198.18.0.0/24", show_default=True,
              help="Lab addresses, inside 198.18.0.0/15.")
@_name_option
@_state_option
def lab_up(clients: int, inventory_path: Path, client_cpu: float | None, subnet: str,
           name: str, state_dir: Path) -> None:
    """Build the lab and write a ready inventory."""
    spec = lab.LabSpec(name=name, clients=clients, subnet=subnet, client_cpu=client_cpu,
                       state_root=state_dir)
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


def _progress(line: str) -> None:
    stderr.print(f"[dim]{line}[/dim]")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `coord` console script."""
    try:
        cli.main(args=argv, prog_name="coord", standalone_mode=False)
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


if __name__ == "__main__":
    main()

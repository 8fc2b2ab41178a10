"""The lab's model server at 1, 2 and 4 Gunicorn workers: fraud and classification throughput,
p50 and p99 (issue 16), measured by ``coord run`` exactly as a user runs it.

For each worker count (``--workers``), a lab with ``--model-server --model-workers N``
(``mbn16`` on 198.18.242.0/24 unless told otherwise: server + ``--clients`` clients; one thread
per worker, one onnxruntime intra-op thread) is brought up, then two runs of the lab's model
inventory (``lab-model.yaml``) with ``coord run --no-baseline``:

- **fraud**: ``POST /predict`` with a customer id below 1000 and 30 features drawn from a
  pool (``{tensor:float32:30:random}``): each request fetches the customer's reference data
  from the lab's Redis (one MGET) and scores 286 values with the ONNX logistic regression;
- **classify**: ``POST /classify`` with one 224x224x3 uint8 image as a binary body (150,528
  bytes), scored by the MobileNet V1-shaped network (random weights: docs/model-serving.md).

Closed loop, ``--connections`` keep-alive connections per client host, ``--repetitions`` of
``--duration`` after ``--warmup``. Figures: throughput (the repetitions' median, all clients
merged), p50 and p99 (medians of the repetitions' merged percentiles), errors, and which
host verdict each run drew (client-bound / server-bound: every lab host shares this machine's
CPUs, so on a busy machine the clients can be flagged too). The lab is removed after each worker
count, whatever happens.

    .venv/bin/python bench/bench_model_server.py [--workers 1 2 4] [--duration 5s]

Needs root (the lab) and the model-server extra. Results on stdout, progress (``#``) on stderr.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import header, note, parser, run_main, table, uninterruptible

from coordinator.core import marks
from coordinator.core.errors import LabError
from coordinator.lab.api import LabSpec, LabStatus, lab_down, lab_up
from coordinator.lab.config_files import model_inventory_path
from coordinator.results import ResultsDocument, load_results

LAB_NAME = "mbn16"
LAB_SUBNET = "198.18.242.0/24"
COORD = Path(sys.executable).with_name("coord")

USE_CASES: dict[str, dict[str, Any]] = {
    "fraud": {"name": "fraud", "method": "POST", "path": "/predict",
              "body": {"json": {"customer_id": "{rand_int}",
                                "transaction": "{tensor:float32:30:random}"}},
              "expect_status": 200, "json_path": "score"},
    "classify": {"name": "classify", "method": "POST", "path": "/classify",
                 "headers": {"Content-Type": "application/octet-stream"},
                 "body": {"tensor": "uint8:224x224x3"}, "expect_status": 200,
                 "json_path": "scores.1000"},
}


@dataclass(frozen=True)
class Row:
    workers: int
    use_case: str
    ops_per_sec: float
    p50_usec: float
    p99_usec: float
    errors: int
    flagged: str


@contextmanager
def model_lab(name: str, subnet: str, clients: int, workers: int) -> Iterator[LabStatus]:
    """The lab with its model server at ``workers`` Gunicorn workers; always removed."""
    workdir = Path(tempfile.mkdtemp(prefix="coord-bench-model-"))
    spec = LabSpec(name=name, clients=clients, subnet=subnet, model_server=True,
                   model_workers=workers)
    note(f"lab {name}: server + {clients} clients, model server with {workers} worker(s) ...")
    started = time.monotonic()
    try:
        status = lab_up(spec, workdir / "hosts.yaml")
        note(f"lab up in {time.monotonic() - started:.1f} s")
        yield status
    finally:
        with uninterruptible():
            try:
                lab_down(name)
            except LabError as exc:
                print(f"could not remove the whole lab: {exc}; run `coord lab down --name "
                      f"{name}`", file=sys.stderr)
            shutil.rmtree(workdir, ignore_errors=True)


def run_use_case(status: LabStatus, use_case: str, args: Any, workdir: Path) -> ResultsDocument:
    """``coord run`` of the lab's model inventory with ``use_case``'s request template."""
    document = yaml.safe_load(model_inventory_path(status.inventory_path).read_text())
    document["benchmark"]["http"] = {
        "processes": 1, "connections": args.connections, "keyspace": 1000,
        "requests": [USE_CASES[use_case]]}
    inventory = workdir / f"{use_case}.yaml"
    inventory.write_text(yaml.safe_dump(document))
    out = workdir / use_case
    command = [str(COORD), "run", "-i", str(inventory), "--out", str(out), "--no-baseline",
               "--repetitions", str(args.repetitions), "--warmup", args.warmup,
               "--duration", args.duration]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"coord run ({use_case}) failed: {done.stderr.strip()[-400:]}")
    return load_results(out)


def row_of(workers: int, use_case: str, document: ResultsDocument) -> Row:
    summary = document.summary
    if summary is None:
        raise RuntimeError(f"{use_case}: no summary in the results")
    flagged = sorted({f"{v.name} {','.join(v.hosts)}" for r in document.repetitions
                      for v in r.verdicts if v.state == "flagged"
                      and v.name in (marks.CLIENT_BOUND.name, marks.SERVER_BOUND.name)})
    return Row(workers, use_case, summary.ops_per_sec.median,
               summary.latency_usec.p50.median, summary.latency_usec.p99.median,
               sum(sum(r.errors.values()) for r in document.repetitions),
               "; ".join(flagged) or "-")


def main() -> None:
    options = parser(__doc__.splitlines()[0])
    options.set_defaults(lab_name=LAB_NAME, subnet=LAB_SUBNET)
    options.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    options.add_argument("--clients", type=int, default=2)
    options.add_argument("--connections", type=int, default=8, help="per client host")
    options.add_argument("--repetitions", type=int, default=3)
    options.add_argument("--warmup", default="2s")
    options.add_argument("--duration", default="5s")
    args = options.parse_args()

    def body() -> None:
        header("the lab's model server (Gunicorn + Flask + onnxruntime) by worker count")
        rows: list[Row] = []
        for workers in args.workers:
            with model_lab(args.lab_name, args.subnet, args.clients, workers) as status, \
                    tempfile.TemporaryDirectory(prefix="coord-bench-model-") as tmp:
                for use_case in USE_CASES:
                    note(f"{workers} worker(s): {use_case} ...")
                    document = run_use_case(status, use_case, args, Path(tmp))
                    rows.append(row_of(workers, use_case, document))
        print(f"{args.clients} clients x {args.connections} connections, closed loop, "
              f"{args.repetitions} x {args.duration} after {args.warmup}; medians over "
              "repetitions")
        table(["use case", "workers", "requests/s", "p50", "p99", "errors", "flagged"],
              [[r.use_case, r.workers, f"{r.ops_per_sec:,.0f}", f"{r.p50_usec / 1e3:.1f} ms",
                f"{r.p99_usec / 1e3:.1f} ms", r.errors, r.flagged]
               for r in sorted(rows, key=lambda r: (r.use_case != "fraud", r.workers))])

    sys.exit(run_main(body))


if __name__ == "__main__":
    main()

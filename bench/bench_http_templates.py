"""What the seed model servers' request templates cost the client (inventory/model-serving-*.yaml,
agent/drivers/http_tensors.py): per template, the one-time compile (fixed tensors drawn, the
pool of ``:random`` ones), the request's size and the render cost per request, as the http
driver's load process renders it.

    .venv/bin/python bench/bench_http_templates.py [--requests 50000]

No lab, no root.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from agent.drivers.http_params import parse_params
from agent.drivers.http_request import compile_request
from coordinator.inventory.loader import load_inventory
from coordinator.run.loadspec import http_params

INVENTORY = Path(__file__).resolve().parents[1] / "inventory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    for path in sorted(INVENTORY.glob("model-serving-*.yaml")):
        inventory = load_inventory(path).inventory
        if inventory.benchmark.driver != "http":
            continue
        params = parse_params({**http_params(inventory, True), "seed": None})
        for template in params.requests:
            started = time.perf_counter()
            compiled = compile_request(template, "server:8000", params.headers,
                                       params.base_path, random=random.Random(1),  # noqa: S311
                                       read_file=lambda _path: b"\xff\xd8" * 20_000)
            compiled_s = time.perf_counter() - started
            count = args.requests if compiled.static is None else 1
            started = time.perf_counter()
            for index in range(count):
                request = compiled.render(index, index)
            render_s = (time.perf_counter() - started) / count
            kind = "fixed: sent as is" if compiled.static is not None else "per request"
            print(f"{path.stem:26} {template.name:9} compile {compiled_s * 1e3:7.1f} ms  "
                  f"request {len(request):>9,} B  render {render_s * 1e6:6.2f} µs ({kind})")


if __name__ == "__main__":
    main()

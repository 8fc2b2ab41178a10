"""``coord data load fraud``: the fraud use case's reference data into a Redis server.

One string per customer id, key ``reference:{id}``, value the customer's 256 float32 values
as little-endian bytes (aibench keeps them as a tensor per id; a string is what a REST service
fetches with one GET). The lab's model server reads them so; ``coord lab up --model-server``
loads them itself, with the same seed and customer count.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import redis

from coordinator.core.errors import HostError, UsageError
from coordinator.inventory.schema import Inventory, Server
from coordinator.inventory.server_auth import server_password
from coordinator.usecases import fraud

BATCH = 500
"""Customers written per pipeline round trip."""


def load_reference(client: redis.Redis, reference: npt.NDArray[np.float32]) -> int:
    """SET every customer's reference data through ``client`` (a redis-py client); how many."""
    pipeline = client.pipeline(transaction=False)
    for customer, values in enumerate(reference):
        pipeline.set(fraud.reference_key(customer), fraud.reference_blob(values))
        if (customer + 1) % BATCH == 0:
            pipeline.execute()
    pipeline.execute()
    return len(reference)


def resp_server(inventory: Inventory, name: str | None) -> tuple[Server, int]:
    """The inventory's RESP server named ``name`` (default: the first one), and its index."""
    for index, server in enumerate(inventory.servers):
        if server.kind == "resp" and (name is None or server.name == name):
            return server, index
    wanted = f"RESP server named {name!r}" if name else "RESP server (kind: resp)"
    raise UsageError(f"servers: the inventory has no {wanted} to load the reference data into")


def load_into_inventory(inventory: Inventory, server_name: str | None, seed: int,
                        customers: int) -> tuple[Server, int]:
    """``coord data load fraud``: the reference data into the inventory's RESP server."""
    server, index = resp_server(inventory, server_name)
    if server.tls is not None or server.cluster:
        raise UsageError(f"servers[{index}]: loading reference data over TLS or into a cluster "
                         "is not supported; load a plain server")
    host = next(host for host in inventory.hosts if host.name == server.host)
    address = server.address or host.address
    client = redis.Redis(host=str(address), port=server.port, username=server.username,
                         password=server_password(server, index), db=server.db,
                         socket_timeout=30)
    try:
        loaded = load_reference(client, fraud.reference_data(customers, seed))
    except redis.RedisError as exc:
        raise HostError(server.host, f"server {server.name} ({address}:{server.port}): cannot "
                        f"load the reference data: {exc}") from None
    finally:
        client.close()
    return server, loaded

"""The model server's settings, read from its environment (pure: the mapping is passed in).

Gunicorn's workers and threads are on its command line (``coord lab up --model-workers``,
``--model-threads``); what the application itself needs comes through these variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MODEL_DIR = "COORD_MODEL_DIR"
REDIS_ADDRESS = "COORD_MODEL_REDIS"
"""host:port of the Redis the fraud endpoint fetches reference data from."""
REDIS_PASSWORD_FILE = "COORD_MODEL_REDIS_PASSWORD_FILE"  # noqa: S105 - a variable's name
INTRA_OP_THREADS = "COORD_MODEL_INTRA_OP_THREADS"
"""onnxruntime's intra-op threads per session (each worker has one session per model)."""


@dataclass(frozen=True)
class ServerSettings:
    model_dir: Path
    redis_host: str
    redis_port: int
    redis_password_file: Path | None = None
    intra_op_threads: int = 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ServerSettings:
        """The settings; ValueError naming the variable that is missing or malformed."""
        for name in (MODEL_DIR, REDIS_ADDRESS):
            if not environ.get(name):
                raise ValueError(f"{name} is not set")
        host, _, port = environ[REDIS_ADDRESS].rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{REDIS_ADDRESS} must be host:port, not {environ[REDIS_ADDRESS]!r}")
        threads = environ.get(INTRA_OP_THREADS, "1")
        if not threads.isdigit() or not 1 <= int(threads) <= 256:
            raise ValueError(f"{INTRA_OP_THREADS} must be a count of threads, not {threads!r}")
        password = environ.get(REDIS_PASSWORD_FILE)
        return cls(model_dir=Path(environ[MODEL_DIR]), redis_host=host, redis_port=int(port),
                   redis_password_file=Path(password) if password else None,
                   intra_op_threads=int(threads))

    def environ(self) -> dict[str, str]:
        """The variables that give these settings (what the lab passes to Gunicorn)."""
        variables = {MODEL_DIR: str(self.model_dir),
                     REDIS_ADDRESS: f"{self.redis_host}:{self.redis_port}",
                     INTRA_OP_THREADS: str(self.intra_op_threads)}
        if self.redis_password_file is not None:
            variables[REDIS_PASSWORD_FILE] = str(self.redis_password_file)
        return variables

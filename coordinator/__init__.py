"""coord: a distributed benchmark coordinator for Redis-like servers."""

__version__ = "0.1.0"

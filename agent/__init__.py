"""The coord agent: runs on every benchmarked host, started and reached by the coordinator.

This package never imports ``coordinator``: it is shipped alone, in a bundle, to hosts that
have nothing but SSH and a Python interpreter.
"""

__version__ = "0.1.0"

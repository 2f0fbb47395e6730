"""Registry of subcommands contributed by other modules (train, score, ...)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from models.cli import register as register_models

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

REGISTRY: list[Register] = [register_models]

"""instructforge: instruction-tuning dataset generation against vLLM.

`from generator import load_config, generate` is the Python API; both are imported on first use,
so that `filters/` (which imports `generator.core`) does not pull in the whole run.
"""

from __future__ import annotations

from typing import Any

from generator.core.errors import ConfigError, InstructforgeError, ServerError
from generator.core.records import Record

__all__ = ["ConfigError", "InstructforgeError", "Record", "ServerError", "generate", "load_config"]
__version__ = "0.1.0"

_LAZY = {"generate": "generator.run.pipeline", "load_config": "generator.config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'generator' has no attribute {name!r}")

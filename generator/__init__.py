"""instructforge: instruction-tuning dataset generation against vLLM."""

from __future__ import annotations

from generator.errors import ConfigError, InstructforgeError, ServerError
from generator.records import Record

__all__ = ["ConfigError", "InstructforgeError", "Record", "ServerError"]
__version__ = "0.1.0"

"""Everything that decides keep or drop."""

from __future__ import annotations

from filters.base import Chain, Filter, Funnel, Verdict

__all__ = ["Chain", "Filter", "Funnel", "Verdict"]

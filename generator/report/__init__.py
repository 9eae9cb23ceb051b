"""Measures of a dataset (diversity, lengths, verb-noun structure) for the run report and the card."""

from generator.report.metrics import DatasetMetrics, measure, measure_embeddings

__all__ = ["DatasetMetrics", "measure", "measure_embeddings"]

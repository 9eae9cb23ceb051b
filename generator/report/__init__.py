"""The run report: a dataset's measures (diversity, lengths, verb-noun structure) and one
self-contained HTML file."""

from generator.report.build import (
    Hardware,
    Measured,
    ReportResult,
    card_quality,
    hardware_of,
    measure_records,
    measure_rows,
    write_dataset_report,
    write_folder_report,
)
from generator.report.metrics import DatasetMetrics, measure, measure_embeddings

__all__ = [
    "DatasetMetrics",
    "Hardware",
    "Measured",
    "ReportResult",
    "card_quality",
    "hardware_of",
    "measure",
    "measure_embeddings",
    "measure_records",
    "measure_rows",
    "write_dataset_report",
    "write_folder_report",
]

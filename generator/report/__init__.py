"""The run report: quality and diversity measures and one self-contained HTML file."""

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

__all__ = [
    "Hardware",
    "Measured",
    "ReportResult",
    "card_quality",
    "hardware_of",
    "measure_records",
    "measure_rows",
    "write_dataset_report",
    "write_folder_report",
]

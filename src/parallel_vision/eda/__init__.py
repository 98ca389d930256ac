"""Exploratory data analysis (the paper's Section IV.A) as one command and one report.

Each analysis family lives in its own module and is a plain function of numpy arrays
returning an `AnalysisResult` (numbers, caption, figures); `page.run_eda` only runs
them in order and assembles `eda.html`, `eda.json` and the PNG figures.

Needs the `eda` extra (scikit-image, scipy); importing this package does not import them.
"""

from __future__ import annotations

from parallel_vision.eda.base import AnalysisResult, Table
from parallel_vision.eda.page import SECTIONS, EdaOptions, EdaReport, run_eda

__all__ = ["SECTIONS", "AnalysisResult", "EdaOptions", "EdaReport", "Table", "run_eda"]

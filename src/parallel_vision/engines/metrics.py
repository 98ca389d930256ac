"""Framework-free evaluation outputs, shared by both engines so they are computed identically."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_outputs(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """scikit-learn's per-class precision/recall/F1/support and the confusion matrix.

    Every class is listed even when absent from a small test subset, so reports
    from different runs always have the same rows.
    """
    from sklearn.metrics import classification_report, confusion_matrix

    labels = list(range(len(class_names)))
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=list(class_names), output_dict=True, zero_division=0
    )
    text = classification_report(
        y_true, y_pred, labels=labels, target_names=list(class_names), digits=4, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "classification_report": report,
        "classification_report_text": text,
        "confusion_matrix": matrix.tolist(),
    }

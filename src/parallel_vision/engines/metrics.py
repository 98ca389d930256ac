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


def metrics_from_logits(logits: np.ndarray, y_true: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of logits over every test image (float64, stable).

    Used for the final numbers so that a run's reported accuracy is, by construction, the accuracy
    of the predictions it saves (argmax ties go to the lower class, as numpy's argmax does).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    loss = float(np.mean(log_norm - z[np.arange(len(y)), y]))
    accuracy = float(np.mean(np.argmax(z, axis=1) == y))
    return loss, accuracy

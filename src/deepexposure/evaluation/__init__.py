"""Evaluation: exact metrics, baselines by name, paired/unpaired runs and reports (see docs/evaluation.md)."""

from __future__ import annotations

from deepexposure.evaluation.baselines import Method, get_method, method_names
from deepexposure.evaluation.metrics import (
    DEFAULT_LONG_EDGE,
    METRICS,
    compute_metrics,
    delta_e76,
    delta_e2000,
    mse,
    prepare,
    psnr,
    ssim,
)
from deepexposure.evaluation.report import summarize, write_report
from deepexposure.evaluation.runner import evaluate_pairs
from deepexposure.evaluation.unpaired import evaluate_unpaired, write_unpaired_report

__all__ = [
    "DEFAULT_LONG_EDGE",
    "METRICS",
    "Method",
    "compute_metrics",
    "delta_e76",
    "delta_e2000",
    "evaluate_pairs",
    "evaluate_unpaired",
    "get_method",
    "method_names",
    "mse",
    "prepare",
    "psnr",
    "ssim",
    "summarize",
    "write_report",
    "write_unpaired_report",
]

"""Experimental orders of convergence: per-level rates and the least-squares slope."""

from __future__ import annotations

import numpy as np


def rates(params: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """EOC between consecutive levels: log(e_k/e_{k-1}) / log(p_k/p_{k-1}); NaN first."""
    out = np.full(len(errors), np.nan)
    out[1:] = np.log(errors[1:] / errors[:-1]) / np.log(params[1:] / params[:-1])
    return out


def fitted_order(params: np.ndarray, errors: np.ndarray) -> float:
    """Slope of the least-squares line through (log p, log e) (``np.polyfit``)."""
    return float(np.polyfit(np.log(params), np.log(errors), 1)[0])


def parse_expectation(text: str) -> tuple[float, float]:
    """Parse ``P+-TOL`` (or ``P±TOL``) into (P, TOL)."""
    for sep in ("+-", "±"):
        if sep in text:
            order, tol = text.split(sep, 1)
            return float(order), float(tol)
    raise ValueError(f"expected P+-TOL, got {text!r}")

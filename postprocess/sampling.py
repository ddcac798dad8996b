"""How good are generated samples? Distances to data samples, the exact 1-D map, mode masses.

* W2 between the generated and the data cloud (:func:`wgf.postprocess.w2.w2`, exact), to be
  read against the *floor*: the W2 of two independent data samples of the same size,
  which is what a perfect sampler scores (Monte-Carlo error, not sampler error).
* The energy distance E = 2E|X-Y| - E|X-X'| - E|Y-Y'| (Székely–Rizzo), ≥ 0 and 0 only for
  equal laws; the V-statistic over all pairs, the same floor applies.
* In 1-D the probability-flow map is the monotone rearrangement x ↦ F₀⁻¹(F_T(x))
  (:func:`map_error_1d`): the sampler is checked point by point, not only in law.
* Mode masses: each sample is given to the component of largest responsibility; a sampler
  that collapses modes gets the weights wrong.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from wgf.cases import closed_forms as cf
from wgf.postprocess.w2 import w2

#: Rows of the distance matrix formed at once by :func:`energy_distance`.
ROWS = 1024


def w2_samples(x: np.ndarray, y: np.ndarray) -> float:
    """W2 between two equally weighted clouds (N, d) and (M, d)."""
    value, _ = w2(x, np.full(len(x), 1.0 / len(x)), y, np.full(len(y), 1.0 / len(y)))
    return value


def _mean_distance(x: np.ndarray, y: np.ndarray) -> float:
    """E|X - Y| over all pairs of the two clouds, formed ROWS rows at a time."""
    total = sum(float(cdist(x[i : i + ROWS], y).sum()) for i in range(0, len(x), ROWS))
    return total / (len(x) * len(y))


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """The energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| of two clouds (V-statistic)."""
    return 2.0 * _mean_distance(x, y) - _mean_distance(x, x) - _mean_distance(y, y)


def monotone_map_1d(
    x: np.ndarray, mixture_from: tuple[np.ndarray, ...], mixture_to: tuple[np.ndarray, ...]
) -> np.ndarray:
    """F_to⁻¹(F_from(x)): the monotone map between two 1-D mixtures (weights, means, covs)."""
    return cf.mixture_quantile_1d(cf.mixture_cdf_1d(x, *mixture_from), *mixture_to)


def map_error_1d(
    x_end: np.ndarray,
    x_0: np.ndarray,
    mixture_end: tuple[np.ndarray, ...],
    mixture_0: tuple[np.ndarray, ...],
) -> float:
    """max_i |x_0,i - F₀⁻¹(F_T(x_T,i))|: the sampler's map against the exact one (1-D)."""
    exact = monotone_map_1d(np.ravel(x_end), mixture_end, mixture_0)
    return float(np.max(np.abs(np.ravel(x_0) - exact)))


def mode_masses(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray
) -> np.ndarray:
    """The share of the samples whose most responsible component is k, for each k."""
    labels = np.argmax(cf.mixture_responsibilities(x, weights, means, covs), axis=1)
    return np.bincount(labels, minlength=len(weights)) / len(x)

"""How close a population is to the private records in embedding space: the Frechet distance of
the two sets' Gaussians (as FID does with image features) and the precision and recall of their
k-nearest-neighbour balls (Kynkaanniemi et al., 2019): precision, the share of synthetic samples
inside some private record's ball (are they realistic?); recall, the share of private records
inside some synthetic sample's ball (is the private set covered?).

These figures read the private records without noise: they are not covered by the privacy
guarantee, and belong to the run directory and its report, not to a published card."""

from __future__ import annotations

import numpy as np

K = 3  # neighbours that make a ball's radius


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) of the rows of `a` and `b`."""
    from scipy import linalg  # here, not with the method's module: every command would load SciPy

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(ca @ cb)
    root = np.real(root)
    return float(max(0.0, np.sum((mu_a - mu_b) ** 2) + np.trace(ca + cb - 2.0 * root)))


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's distance to its k-th nearest other row."""
    d = np.sqrt(np.maximum(_sq(x, x), 0.0))
    k = min(k, len(x) - 1)
    return np.sort(d, axis=1)[:, k] if k > 0 else np.full(len(x), np.inf)


def _sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T


def _covered(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    d = np.sqrt(np.maximum(_sq(points, centres), 0.0))
    return float((d <= radii[None, :]).any(axis=1).mean())


def precision_recall(private: np.ndarray, synthetic: np.ndarray, k: int = K) -> tuple[float, float]:
    """(precision, recall) of `synthetic` against `private` with k-NN balls."""
    precision = _covered(synthetic, private, _radii(private, k))
    recall = _covered(private, synthetic, _radii(synthetic, k))
    return precision, recall


def utility(private: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    """The three figures, rounded for privacy.json and the report."""
    p, r = precision_recall(private, synthetic)
    return {"frechet": round(frechet(private, synthetic), 5), "precision": round(p, 4), "recall": round(r, 4)}

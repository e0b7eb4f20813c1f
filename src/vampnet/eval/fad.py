"""Fréchet distance between two sets of embeddings (the statistic behind FAD), computed by us.

d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1^½ S2 S1^½)^½), with the matrix square roots taken through
symmetric eigendecompositions in float64 (S1^½ S2 S1^½ is symmetric positive semi-definite, so this is stable
where a general sqrtm of S1 S2 can turn complex). Embedding models plug in separately (eval experiments)."""
from __future__ import annotations

import numpy as np

from ..errors import OptionError

# below this many excerpts a Fréchet distance mostly says which excerpts were drawn (the FAD paper used thousands)
MIN_FRECHET_EXCERPTS = 25


def gaussian_stats(embeddings) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of an (N, D) array of embeddings, N >= 2 (covariance with N - 1 in the denominator)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise OptionError(f"need an (N >= 2, D) array of embeddings, got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet (2-Wasserstein) distance squared between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise OptionError(f"mismatched statistics: means {mu1.shape}/{mu2.shape}, covariances {s1.shape}/{s2.shape}")
    r1 = _psd_sqrt(s1)
    cross = _psd_sqrt(r1 @ s2 @ r1)
    d2 = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))
    return max(d2, 0.0)


def embedding_distance(a, b) -> float:
    """Fréchet distance between two (N, D) embedding sets."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def frechet_caveat(n_excerpts: int, n_vectors: int, dim: int) -> str | None:
    """Why a Fréchet distance over `n_vectors` embeddings of `dim` dimensions from `n_excerpts` excerpts is not to
    be trusted, or None: fewer vectors than dimensions (the covariance is singular: part of the distance is
    arbitrary), or fewer excerpts than MIN_FRECHET_EXCERPTS (excerpt to excerpt variation dominates)."""
    reasons = []
    if n_vectors <= dim:
        reasons.append(f"{n_vectors} embedding vectors for {dim} dimensions (a singular covariance)")
    if n_excerpts < MIN_FRECHET_EXCERPTS:
        reasons.append(f"{n_excerpts} excerpt{'s' if n_excerpts != 1 else ''} (fewer than {MIN_FRECHET_EXCERPTS})")
    return f"Fréchet distances rest on {' and '.join(reasons)}: treat them as rough" if reasons else None

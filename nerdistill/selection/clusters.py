"""k-means over sentence embeddings, seeded: which sentences are alike, for spreading picks."""

from __future__ import annotations

import numpy as np


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 50) -> np.ndarray:
    """Each row's cluster in ``[0, k)``: k-means++ seeding from ``seed``, then Lloyd's iterations
    (squared Euclidean distance; on unit rows, a cosine ordering) until no assignment changes or
    ``iterations`` pass. A cluster left empty takes the point farthest from its centre. ``k`` is
    cut to the number of distinct rows."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if k < 1:
        raise ValueError(f"k-means needs k >= 1, got {k}")
    k = min(k, len(np.unique(points, axis=0))) if n else 0
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    norms = (points**2).sum(axis=1)
    centres = [points[rng.integers(n)]]
    closest = norms - 2 * points @ centres[0] + centres[0] @ centres[0]
    for _ in range(1, k):
        weights = np.clip(closest, 0.0, None)
        chosen = rng.choice(n, p=weights / weights.sum()) if weights.sum() > 0 else rng.integers(n)
        centres.append(points[chosen])
        closest = np.minimum(closest, norms - 2 * points @ points[chosen] + points[chosen] @ points[chosen])
    centres = np.array(centres)
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(max(1, iterations)):
        distances = norms[:, None] - 2 * points @ centres.T + (centres**2).sum(axis=1)[None, :]
        new = distances.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = labels == c
            if members.any():
                centres[c] = points[members].mean(axis=0)
            else:  # the point worst served by its own centre starts this cluster again
                worst = int(distances[np.arange(n), labels].argmax())
                centres[c], labels[worst] = points[worst], c
    return labels

"""Quality and diversity measures of a set of rows (STAND-IN: replaced by the metrics branch).

Self-contained, numpy only: hashed bag-of-words vectors instead of an encoder, the first word as
the root verb, two principal components as the map, k-means on the sample as the clusters.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

_WORD = re.compile(r"[a-z']+")
_STOP = {"the", "a", "an", "of", "to", "in", "for", "on", "and", "me", "this", "that", "some", "your", "my", "it"}


@dataclass
class DatasetMetrics:
    rows: int
    sampled: int
    vendi: float
    mean_pairwise_distance: float
    distinct_1: float
    distinct_2: float
    self_bleu: float
    verbs: list[tuple[str, str, int]]
    verb_coverage: float
    nearest_seed: list[float]
    nearest_seed_median: float | None
    lengths: dict[str, list[int]]
    share_with_input: float
    task_types: dict[str, int]
    clusters: list[int]
    projection: list[tuple[float, float]]
    sample_index: list[int]
    seconds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _field(row: Any, name: str) -> str:
    value = row.get(name) if isinstance(row, Mapping) else getattr(row, name, "")
    return str(value or "")


def _vectors(texts: list[str], dim: int = 256) -> Any:
    import numpy as np

    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            out[i, hash(word) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


def _kmeans(x: Any, k: int, seed: int) -> list[int]:
    import numpy as np

    if len(x) == 0:
        return []
    k = max(1, min(k, len(x)))
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), k, replace=False)]
    labels = np.zeros(len(x), dtype=int)
    for _ in range(8):
        labels = np.argmax(x @ centres.T, axis=1)
        for j in range(k):
            if (labels == j).any():
                centres[j] = x[labels == j].mean(axis=0)
    return [int(v) for v in labels]


def _verb_object(text: str) -> tuple[str, str] | None:
    words = _WORD.findall(text.lower())
    if not words:
        return None
    rest = [w for w in words[1:] if w not in _STOP]
    return words[0], rest[0] if rest else ""


def measure(
    rows: Iterable[Any], seeds: Iterable[Any] = (), *, encoder: str = "minilm", sample: int = 5000, seed: int = 0
) -> DatasetMetrics:
    import numpy as np

    started = time.perf_counter()
    rows = list(rows)
    n = len(rows)
    rng = np.random.default_rng(seed)
    index = sorted(rng.choice(n, sample, replace=False).tolist()) if n > sample else list(range(n))
    texts = [_field(rows[i], "instruction") for i in index]
    x = _vectors(texts)
    sims = x @ x.T if len(x) else np.zeros((0, 0))
    eig = np.clip(np.linalg.eigvalsh(sims / max(len(x), 1)), 0, None) if len(x) else np.array([1.0])
    eig = eig[eig > 1e-12]
    vendi = float(math.exp(-(eig * np.log(eig)).sum())) if len(eig) else 1.0
    mpd = float(1 - sims[np.triu_indices(len(x), 1)].mean()) if len(x) > 1 else 0.0
    words = [_WORD.findall(t.lower()) for t in texts]
    uni = [w for ws in words for w in ws]
    bi = [tuple(ws[i : i + 2]) for ws in words for i in range(len(ws) - 1)]
    pairs = Counter(vo for t in (_field(r, "instruction") for r in rows) if (vo := _verb_object(t)))
    seed_texts = [_field(s, "instruction") if not isinstance(s, str) else s for s in seeds]
    nearest: list[float] = []
    if seed_texts and len(x):
        nearest = [float(v) for v in (x @ _vectors(seed_texts).T).max(axis=1)]
    centred = x - x.mean(axis=0) if len(x) else x
    proj = np.linalg.svd(centred, full_matrices=False)[2][:2] if len(x) > 2 else np.eye(2, x.shape[1])
    points = centred @ proj.T if len(x) else np.zeros((0, 2))
    lengths = {k: [len(_field(r, k).split()) for r in rows] for k in ("instruction", "input", "output")}
    tasks = Counter(_task(r) for r in rows)
    return DatasetMetrics(
        rows=n,
        sampled=len(index),
        vendi=round(vendi, 3),
        mean_pairwise_distance=round(mpd, 4),
        distinct_1=round(len(set(uni)) / max(len(uni), 1), 4),
        distinct_2=round(len(set(bi)) / max(len(bi), 1), 4),
        self_bleu=round(float(np.mean(np.sort(sims, axis=1)[:, -2])) if len(x) > 1 else 0.0, 4),
        verbs=[(v, o, c) for (v, o), c in pairs.most_common(200)],
        verb_coverage=round(sum(c for _, c in pairs.most_common(200)) / max(n, 1), 4),
        nearest_seed=nearest,
        nearest_seed_median=float(np.median(nearest)) if nearest else None,
        lengths=lengths,
        share_with_input=round(sum(1 for v in lengths["input"] if v) / max(n, 1), 4),
        task_types=dict(tasks.most_common()),
        clusters=_kmeans(x, 8, seed),
        projection=[(float(a), float(b)) for a, b in points],
        sample_index=index,
        seconds={"total": round(time.perf_counter() - started, 3)},
    )


def _task(row: Any) -> str:
    meta = row.get("meta") if isinstance(row, Mapping) else getattr(row, "meta", None)
    return str((meta or {}).get("task_type") or "unspecified") if isinstance(meta, Mapping) else "unspecified"

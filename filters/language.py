"""Language identification with lingua (`lingua-language-detector`), which ships its models: no
download at run time. The slowest of the rule-based filters; see scripts/bench_filters.py."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from filters.base import KEEP, Filter, FilterContext, Verdict, drop
from generator.core.files import write_json
from generator.core.records import Record


@lru_cache(maxsize=4)
def _detector(codes: tuple[str, ...] | None, high_accuracy: bool) -> Any:
    """One detector per setting and process: its models take seconds to load and hundreds of MB."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    builder = (
        LanguageDetectorBuilder.from_iso_codes_639_1(*(getattr(IsoCode639_1, c) for c in codes))
        if codes is not None
        else LanguageDetectorBuilder.from_all_languages()
    )
    if not high_accuracy:
        builder = builder.with_low_accuracy_mode()
    # Models load lazily, on the first text that needs them.
    return builder.build()


# The languages a detector chooses among by default: the most used on the web and in instruction
# data. Fewer candidates make lingua faster and lighter (about 300 MB of models for these, 1 GB for
# all 75); a text in a language outside the list is assigned the nearest one, which is still not
# one of `languages` unless they are close relatives.
DEFAULT_CANDIDATES = (
    "en",
    "fr",
    "de",
    "es",
    "it",
    "pt",
    "nl",
    "ru",
    "zh",
    "ja",
    "ko",
    "ar",
    "hi",
    "tr",
    "pl",
    "sv",
    "uk",
    "vi",
    "id",
    "fa",
)


class LanguageFilter(Filter):
    """Keeps records whose most likely language (ISO 639-1) is one of `languages`.

    The text judged is the chosen fields joined, cut at `max_chars`; texts with fewer than
    `min_chars` letters (numbers, code) are kept, since no detector can tell. The detector chooses
    among `candidates` (default DEFAULT_CANDIDATES, plus `languages`; `["all"]` for every language
    lingua knows). `high_accuracy: false` uses lingua's trigram-only mode: about 40 MB instead of
    300, but unreliable on short texts (it calls "To convert Celsius to Fahrenheit, multiply by nine
    fifths and add thirty-two." German).
    """

    name = "language"

    def __init__(
        self,
        languages: list[str] | None = None,
        fields: list[str] | None = None,
        min_chars: int = 20,
        max_chars: int = 1000,
        high_accuracy: bool = True,
        candidates: list[str] | None = None,
    ):
        from lingua import IsoCode639_1

        self.languages = [IsoCode639_1.from_str(c.lower()) for c in languages or ["en"]]
        if candidates == ["all"]:
            self.candidates = None
        else:
            chosen = [IsoCode639_1.from_str(c.lower()) for c in candidates or DEFAULT_CANDIDATES]
            self.candidates = chosen + [lang for lang in self.languages if lang not in chosen]
        self.fields = tuple(fields or ("instruction", "output"))
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.high_accuracy = high_accuracy
        self._detector: Any = None
        # What the detector said of each text judged (its hash -> [language or None, confidence]),
        # kept in the run's state: a resumed or finished run's replay then loads no models (seconds).
        self._seen: dict[str, list[Any]] = {}
        self._memo: Path | None = None
        self._new = False

    def _build(self) -> Any:
        codes = self._codes()
        return _detector(codes, self.high_accuracy)

    def _codes(self) -> tuple[str, ...] | None:
        return tuple(c.name for c in self.candidates) if self.candidates is not None else None

    def setup(self, ctx: FilterContext) -> None:
        if ctx.state_dir is None:
            return
        # One file per detector setting: another setting may detect otherwise.
        setting = hashlib.sha256(json.dumps([self._codes(), self.high_accuracy]).encode()).hexdigest()[:12]
        self._memo = Path(ctx.state_dir) / f"language-{setting}.json"
        try:
            self._seen = json.loads(self._memo.read_text())
        except (OSError, ValueError):
            self._seen = {}

    def close(self) -> None:
        if self._memo is not None and self._new:
            self._memo.parent.mkdir(parents=True, exist_ok=True)
            write_json(self._memo, self._seen)
            self._new = False

    def _detect(self, text: str) -> list[Any]:
        """[ISO 639-1 code or None, confidence] of `text`."""
        key = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
        found = self._seen.get(key)
        if found is None:
            if self._detector is None:
                self._detector = self._build()
            lang = self._detector.detect_language_of(text)
            # How sure the detector is (0-1): about 0.2 ms more a text, a fifth of the detection.
            confidence = self._detector.compute_language_confidence(text, lang) if lang is not None else 0.0
            found = self._seen[key] = [lang.iso_code_639_1.name if lang is not None else None, round(confidence, 4)]
            self._new = True
        return found

    def judge(self, records: list[Record]) -> list[Verdict]:
        keep = {lang.name for lang in self.languages}
        out = []
        for r in records:
            text = " ".join(t for t in (getattr(r, f) for f in self.fields) if t)[: self.max_chars]
            if sum(c.isalpha() for c in text) < self.min_chars:
                out.append(KEEP)
                continue
            code, confidence = self._detect(text)
            if code is None:
                out.append(KEEP)
            elif code in keep:
                out.append(Verdict(keep=True, scores={"language_confidence": confidence}))
            else:
                out.append(drop("wrong_language", language=code.lower()))
        return out

"""A corpus: the documents that `documents.paths` names (files, folders, globs, or any reader source
with a text column, `hf:` included), read in a stable order, with the files that could not be read
when `on_bad_file: skip`."""

from __future__ import annotations

import glob
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from generator.core.errors import ConfigError
from generator.core.readers import open_tables
from generator.documents.read import SUFFIXES, Document, DocumentError, TextBuilder, read_document

# Sources read as tables of rows, one document per row (its `text_column`).
TABLE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")


@dataclass
class Corpus:
    documents: list[Document] = field(default_factory=list)
    skipped: list[DocumentError] = field(default_factory=list)

    @property
    def digest(self) -> list[str]:
        """The documents' content hashes, sorted: what the run's fingerprint holds (a renamed or
        moved document changes nothing, an edited one does)."""
        return sorted({d.sha256 for d in self.documents})


def read_corpus(
    paths: list[str], base_dir: Path = Path("."), *, skip_bad: bool = False, text_column: str = "text"
) -> Corpus:
    """Every document `paths` names, in the order given (a folder's or a glob's files sorted)."""
    corpus = Corpus()
    seen: set[str] = set()
    for given in paths:
        for path, label in _expand(given, base_dir):
            if label in seen:
                continue
            seen.add(label)
            try:
                if given.startswith("hf:") or path.suffix.lower() in TABLE_SUFFIXES:
                    corpus.documents.extend(_table_documents(given, base_dir, text_column))
                else:
                    corpus.documents.append(read_document(path, label))
            except DocumentError as err:
                if not skip_bad:
                    raise
                corpus.skipped.append(err)
    if not corpus.documents:
        raise ConfigError(
            f"documents.paths: no readable document in {paths}"
            + (f" ({len(corpus.skipped)} skipped: {corpus.skipped[0]})" if corpus.skipped else "")
            + f"; give files ({', '.join(SUFFIXES + TABLE_SUFFIXES)}), folders or globs"
        )
    return corpus


def _expand(given: str, base_dir: Path) -> list[tuple[Path, str]]:
    """(path, label) of each file `given` names; the label is the path as given, or for a folder's
    and a glob's files the given part joined with the rest."""
    if given.startswith("hf:"):
        return [(Path(given), given)]
    path = Path(given).expanduser()
    full = path if path.is_absolute() else base_dir / path
    if any(ch in given for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(full), recursive=True))
        files = [p for p in found if p.is_file()]
        if not files:
            raise ConfigError(f"documents.paths: {given!r} matches no file (looked for {full})")
        return [(p, _label(given, base_dir, p)) for p in files]
    if full.is_dir():
        files = sorted(p for p in full.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise ConfigError(f"documents.paths: folder {given!r} holds no document ({', '.join(SUFFIXES)})")
        return [(p, str(Path(given) / p.relative_to(full))) for p in files]
    if not full.exists():
        raise ConfigError(f"documents.paths: {given!r} not found (looked at {full}); fix the path or leave it out")
    return [(full, given)]


def _label(given: str, base_dir: Path, found: Path) -> str:
    """A glob's file named from the glob's fixed leading folders, as given."""
    lead = list(itertools.takewhile(lambda part: not any(ch in part for ch in "*?["), Path(given).parts))
    root = Path(*lead) if lead else Path(".")
    full_root = root.expanduser() if root.expanduser().is_absolute() else base_dir / root
    return str(root / found.relative_to(full_root)) if found.is_relative_to(full_root) else str(found)


def _table_documents(given: str, base_dir: Path, text_column: str) -> list[Document]:
    out = []
    for table in open_tables(given, base_dir=base_dir, what="documents.paths"):
        for where, row in table.rows:
            if text_column not in row:
                raise ConfigError(
                    f"{where}: no {text_column!r} column (has {', '.join(map(str, row))}); "
                    "set documents.text_column to the column that holds the text"
                )
            text = str(row[text_column] or "")
            if not text.strip():
                continue
            build = TextBuilder()
            for para in text.replace("\r\n", "\n").split("\n\n"):
                build.add(para)
            data = text.encode()
            out.append(
                Document(where, hashlib.sha256(data).hexdigest(), "row", build.text(), build.blocks, None, len(data))
            )
    return out

"""Who a text is about, by a declared lexicon: mentions of demographic groups (gender, age,
nationality or region, ethnicity, religion, disability), occupations, gendered pronouns and
sentiment words. The lexicon (`data/representation.json`) is built by scripts/build_representation_lexicon.py
from HolisticBias, WinoBias and VADER (MIT, each named with its commit in the file).

A descriptor counts as a mention of people only where it describes people: right before a person
noun ("Black women", "an elderly neighbour", "deaf students"), possibly after other descriptors
("young Black women"), or as a noun ("Muslims", "a Muslim who ..."). So "black coffee", "American
history", "old code" and "Chinese food" are not mentions: precision over recall. Implicit
mentions ("she prays five times a day") and descriptors outside the lexicon are missed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "representation.json"
TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’\-][A-Za-z0-9]+)*|[.!?;:,()\"\n]")
SENTENCE_END = {".", "!", "?", "\n"}
PRONOUNS = {
    "he": "male", "him": "male", "his": "male", "himself": "male",
    "she": "female", "her": "female", "hers": "female", "herself": "female",
}  # fmt: skip
# After "a Muslim" / "an atheist": a word that ends the noun phrase, so the descriptor is the noun.
PHRASE_END = {
    "and", "or", "but", "who", "whom", "whose", "that", "which", "is", "was", "are", "were", "in", "at",
    "on", "from", "with", "to", "for", "of", "by", "living", "working", "can", "could", "should", "would",
    "will", "has", "had", "have", "does", "did", "do", "might", "may", "must",
}  # fmt: skip
ARTICLES = {"a", "an"}
NOUN_DESCRIPTORS = {"atheist", "agnostic", "humanist"}  # lowercase descriptors that are nouns too
# Before an occupation word: the word names software or a device, not a person ("printer driver",
# "text editor", "package manager", "AI assistant").
NOT_A_PERSON_BEFORE = {
    "device", "printer", "graphics", "gpu", "usb", "disk", "network", "audio", "video", "display", "database",
    "package", "dependency", "file", "text", "code", "image", "photo", "ai", "virtual", "voice", "coding",
    "task", "window", "process", "memory", "password", "query", "log", "screen", "data", "download", "test",
    "version", "plugin", "installed", "pre-installed", "kernel", "hardware", "software", "bluetooth", "wifi",
    "camera", "sound",
}  # fmt: skip
# After a person noun: the noun names a part of a program or document, not a person ("man page",
# "a child element", "child processes").
NOT_A_PERSON_AFTER = {
    "page", "pages", "element", "elements", "node", "nodes", "process", "processes", "thread", "threads",
    "class", "classes", "component", "components", "widget", "widgets", "window", "windows", "directory",
    "directories", "folder", "folders", "object", "objects", "table", "tables", "selector", "selectors",
    "record", "records", "row", "rows", "task", "tasks", "theme", "themes", "key", "keys", "div",
}  # fmt: skip
# Occupations that also name software: after one of these words, or after a determiner and before a
# word that a program's description takes ("the assistant should"), they are not people.
SOFTWARE_OCCUPATIONS = {"driver", "editor", "writer", "assistant", "manager", "cleaner", "designer", "supervisor"}
OCCUPATION_PLURALS = {"salesperson": "salespeople", "secretary": "secretaries", "CEO": "CEOs"}
DETERMINERS = {"the", "this", "that", "our", "a", "an", "your", "my"}
KINDS = {"descriptors": "descriptor", "nouns": "noun"}  # the lexicon file's sections -> a mention's kind


@dataclass(frozen=True)
class Mention:
    attribute: str  # gender, age, nationality_or_region, ethnicity, religion, disability, occupation, sentiment
    group: str  # female, old, mexico, ...; an occupation's name; `positive` or `negative`
    term: str  # the words as written
    token: int  # index of its first token in the text
    sentence: int  # index of its sentence
    kind: str  # descriptor, noun, pronoun, occupation, sentiment


@dataclass(frozen=True)
class _Entry:
    kind: str
    attribute: str
    group: str
    cased: bool  # the text must be capitalised as the lexicon writes it ("Blacks", not "blacks")


@dataclass
class Lexicon:
    entries: dict[tuple[str, ...], list[_Entry]]
    person_nouns: frozenset[str]
    occupations: dict[str, str]  # occupation -> the gender holding most of those jobs (US BLS)
    sources: list[dict[str, Any]]
    attributes: dict[str, list[str]]  # attribute -> its groups, in the lexicon's order
    longest: int
    first: frozenset[str] = frozenset()  # the first word of every entry: most words start none

    def mentions(self, text: str) -> list[Mention]:
        """Every mention in `text`, in order; a token is part of one mention at most (the longest)."""
        tokens = TOKEN.findall(text or "")
        lower = [t.lower() for t in tokens]
        sentence, sentences = 0, []
        for t in tokens:
            sentences.append(sentence)
            sentence += t in SENTENCE_END
        out: list[Mention] = []
        i = 0
        while i < len(tokens):
            found = self._match(tokens, lower, i)
            if found is None:
                i += 1
                continue
            size, entries = found
            term = " ".join(tokens[i : i + size])
            for e in entries:
                if self._counts(e, tokens, lower, i, size):
                    out.append(Mention(e.attribute, e.group, term, i, sentences[i], e.kind))
            i += size
        return out

    def _match(self, tokens: list[str], lower: list[str], i: int) -> tuple[int, list[_Entry]] | None:
        if lower[i] not in self.first:
            return None
        for size in range(min(self.longest, len(tokens) - i), 0, -1):
            entries = self.entries.get(tuple(lower[i : i + size]))
            if entries:
                return size, entries
        return None

    def _counts(self, e: _Entry, tokens: list[str], lower: list[str], i: int, size: int) -> bool:
        if e.cased and not tokens[i][:1].isupper():
            return False
        if e.kind in ("noun", "pronoun", "sentiment"):
            return not (e.kind == "noun" and i + size < len(lower) and lower[i + size] in NOT_A_PERSON_AFTER)
        if e.kind == "occupation":
            return not (e.group in SOFTWARE_OCCUPATIONS and i > 0 and _software_before(lower, i))
        return self._describes_people(lower, i + size) or self._is_noun(tokens, lower, i, size)

    def _describes_people(self, lower: list[str], j: int) -> bool:
        """A person noun follows, after at most two other descriptors ("young Black women")."""
        for _ in range(3):
            if j >= len(lower):
                return False
            if lower[j] in self.person_nouns:
                return True
            found = self._match(lower, lower, j)
            if found is None or not any(e.kind == "descriptor" for e in found[1]):
                return False
            j += found[0]
        return False

    def _is_noun(self, tokens: list[str], lower: list[str], i: int, size: int) -> bool:
        """ "a Muslim who ...", "an atheist, ...": a capitalised (or non-religious) descriptor used as a noun."""
        if i == 0 or lower[i - 1] not in ARTICLES or not (tokens[i][:1].isupper() or lower[i] in NOUN_DESCRIPTORS):
            return False
        j = i + size
        return j >= len(tokens) or not tokens[j][0].isalnum() or lower[j] in PHRASE_END

    def groups(self, text: str, attribute: str) -> set[str]:
        """The groups of `attribute` that `text` mentions."""
        return {m.group for m in self.mentions(text) if m.attribute == attribute}


def _software_before(lower: list[str], i: int) -> bool:
    before = lower[i - 1]
    if before in DETERMINERS:  # "the assistant should", "a writer that ...": software if nothing else says so
        return i + 1 < len(lower) and lower[i + 1] in {"should", "must", "will", "that", "which", "can"}
    return before in NOT_A_PERSON_BEFORE


def _key(term: str) -> tuple[str, ...]:
    return tuple(t.lower() for t in TOKEN.findall(term))


def _add(entries: dict[tuple[str, ...], list[_Entry]], term: str, entry: _Entry) -> None:
    # "Asian-American" is often written "Asian American", "middle-aged" "middle aged".
    for form in {term, term.replace("-", " ")}:
        key = _key(form)
        if key and entry not in entries.setdefault(key, []):
            entries[key].append(entry)


def _cased(term: str) -> bool:
    return term[:1].isupper() and not term.isupper()


def _groups(entries: dict[tuple[str, ...], list[_Entry]], data: dict[str, Any]) -> dict[str, list[str]]:
    """Descriptors and nouns into `entries`; attribute -> its groups."""
    attributes: dict[str, list[str]] = {}
    for kind in ("descriptors", "nouns"):
        for attribute, groups in data[kind].items():
            listed = attributes.setdefault(attribute, [])
            for group, terms in groups.items():
                listed += [] if group in listed else [group]
                for term in terms:
                    cased = kind == "nouns" and _cased(term)
                    _add(entries, term, _Entry(KINDS[kind], attribute, group, cased))
    return attributes


@cache
def load_lexicon(path: Path = DATA) -> Lexicon:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    entries: dict[tuple[str, ...], list[_Entry]] = {}
    attributes = _groups(entries, data)
    for word, gender in PRONOUNS.items():
        _add(entries, word, _Entry("pronoun", "gender", gender, False))
    occupations = data["occupations"]
    person = {p.lower() for p in data["person_nouns"]}
    person |= {
        t.lower() for groups in data["nouns"].values() for terms in groups.values() for t in terms if " " not in t
    }
    for job in occupations:
        for form in (job, OCCUPATION_PLURALS.get(job) or job + "s"):
            _add(entries, form, _Entry("occupation", "occupation", job, False))
            person.add(form.lower())
    attributes["occupation"] = list(occupations)
    for polarity, words in data["sentiment"].items():
        for word in words:
            if _key(word) not in entries:  # a group's word is never a sentiment word too
                _add(entries, word, _Entry("sentiment", "sentiment", polarity, False))
    return Lexicon(
        entries=entries,
        person_nouns=frozenset(person),
        occupations=occupations,
        sources=data["sources"],
        attributes=attributes,
        longest=max(len(k) for k in entries),
        first=frozenset(k[0] for k in entries),
    )


def iter_sentences(text: str) -> Iterator[str]:
    """The text cut at sentence ends (for the report's examples)."""
    for part in re.split(r"(?<=[.!?])\s+|\n+", text or ""):
        if part.strip():
            yield part.strip()


def check_groups(shares: dict[str, dict[str, float]], what: str, others_allowed: bool = False) -> None:
    """Raise ValueError unless every attribute and group of `shares` is the lexicon's and every
    share is from 0 to 1; with `others_allowed`, an attribute the lexicon does not know passes
    (a `meta` field)."""
    if not shares:
        return
    attributes = load_lexicon().attributes
    for attribute, groups in shares.items():
        known = attributes.get(attribute)
        if known is None:
            if others_allowed:
                continue
            raise ValueError(f"unknown attribute {attribute!r}; expected one of: {', '.join(attributes)}")
        unknown = [g for g in groups if g not in known]
        if unknown:
            raise ValueError(f"{attribute}: unknown group {unknown[0]!r}; expected one of: {', '.join(known)}")
        wrong = {g: v for g, v in groups.items() if not 0 <= v <= 1}
        if wrong:
            raise ValueError(f"{attribute}: {what} is a number from 0 to 1, got {wrong}")

"""Pair check: is a near neighbour the same task, or a different task worded alike?

Cosine over sentence embeddings cannot tell "Sort the list in ascending order" from "... descending
order" (0.96), while a heavy rewording of the same task can sit at 0.7. What separates them is what
changed between the two texts: a paraphrase changes many words and keeps the meaning (the cosine stays
high for how much changed), a different task changes one or two words that matter (an opposite, a
number, a swapped entity) and keeps the rest. The check scores a pair from these features:

- `cosine`: the encoder's similarity;
- `antonym`: a word that only one text has is the opposite of one only the other has (WordNet antonyms,
  direct or through an adjective's head, and un-/in-/dis-/non- prefixes);
- `numbers_differ`: the numbers differ (digits and number words);
- `overlap`: Jaccard overlap of the content words (lemmas, framing verbs such as "write" or "list"
  left out);
- `changed`: the share of each text's words that the other lacks;
- `cosine_x_changed`: their product (a high cosine despite many changed words marks a paraphrase);
- `reordered`: the shared content words stand in another order and some word changed too ("In two
  sentences, describe the story's protagonist"); a pure permutation ("Celsius to Fahrenheit" against
  "Fahrenheit to Celsius") is a direction swap and does not count;
- `words_changed`: how many words one text has and the other lacks, on a log scale (1.0 at 40): a
  long templated prompt reworded around the same passage changes a few words out of many (`changed`
  is low, as for a one-word swap), while the same template filled with another passage changes dozens.

Some pairs need no regression (`structural`): arithmetic expressions that differ, phrases swapped
around a directional word (a role swap), and coordinated phrases reordered.

A logistic regression over them, fitted per encoder by `scripts/fit_pair_check.py` on
`tests/data/paraphrase_groups_train.jsonl` and `paraphrase_groups.jsonl` (never on the blind
`paraphrase_groups_heldout.jsonl`), with ordinary neighbours as extra negatives, gives
the probability that the pair is the same task; at or above the fitted threshold it is. Two texts
with the same words in the same order and the same numbers (they differ only in stop words, case,
punctuation or inflection) are the same task without asking the regression. Only pairs at
cosine 0.76 or more are checked (`semantic_dedup`'s `candidates`): below it, unrelated instructions that
share no words would look like heavy rewordings.

The word relations come from WordNet 3.1 (`filters/data/wordnet.json.gz`, built by
`scripts/build_lexicon.py`; license in `filters/data/WORDNET_LICENSE`).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
LEXICON = DATA / "wordnet.json.gz"
WEIGHTS = DATA / "pair_check.json"
FEATURES = (
    "cosine",
    "antonym",
    "numbers_differ",
    "overlap",
    "changed",
    "cosine_x_changed",
    "reordered",
    "words_changed",
)

# Operators and symbols are words: "3x + 7 = 22" and "3x - 7 = 22" are different tasks. A hyphen
# inside a word ("well-known") joins, it is not a minus.
_TOKEN = re.compile(r"[a-z]+|\d+(?:[.,]\d+)*|[+*/<>=^]|(?<![a-z])-|-(?![a-z])")
OPERATORS = frozenset("+ - * / < > = ^".split())
# Words that give the phrases around them roles: swapping them ("Celsius to Fahrenheit") changes the task.
DIRECTIONAL = frozenset("to from into than over versus vs before after onto toward towards per".split())
# Words that join phrases whose order does not matter ("sort the list and remove duplicates").
COORDINATORS = frozenset(["and", "or", ",", ";", "&"])
_RAW = re.compile(r"[a-z]+|\d+(?:[.,]\d+)*|[+*/<>=^,;&]|(?<![a-z])-|-(?![a-z])")
STOP = frozenset(
    "a an the of to in on for with and or by from at as is are was were be been this that these those it its "
    "into about below above following given your my me i you we us our their them they what which how do does "
    "did can could would will should please some any all every each than then there here so such just also very "
    "using use used one".split()
)
# Framing words: how an instruction asks, not what it asks for ("Write ..." vs "Compose ...").
FRAMING = frozenset(
    "write compose draft create generate make produce give provide share offer name list tell state show "
    "describe explain find determine identify calculate compute return suggest recommend come up help need "
    "want brief short quick sentence text".split()
)
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS.update(
    {
        "thirty": "30",
        "forty": "40",
        "fifty": "50",
        "sixty": "60",
        "seventy": "70",
        "eighty": "80",
        "ninety": "90",
        "hundred": "100",
        "thousand": "1000",
        "million": "1000000",
    }
)
# WordNet's detachment rules (morphy), most specific first.
_SUFFIXES = (
    ("ies", "y"),
    ("es", ""),
    ("s", ""),
    ("ed", ""),
    ("ed", "e"),
    ("ing", ""),
    ("ing", "e"),
    ("er", ""),
    ("est", ""),
    ("er", "e"),
    ("est", "e"),
    ("ly", ""),
)
_PREFIXES = ("un", "in", "im", "dis", "non")


class Lexicon:
    """WordNet lemmas (for the lemmatizer) and antonym pairs, loaded once."""

    def __init__(self, path: Path = LEXICON):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
        self.words = frozenset(data["words"])
        self.antonyms = frozenset((a, b) for a, b in data["antonyms"])

    def lemma(self, word: str) -> str:
        """The word itself when WordNet has it ("numbers" is a lemma too), else its base form where an
        inflection rule leads to a lemma ("countries" -> "country"), else the word. Trying the rules
        first even for known words measured worse (scripts/fit_pair_check.py cross-validation)."""
        if word in self.words:
            return word
        for suffix, repl in _SUFFIXES:
            if word.endswith(suffix) and len(word) > len(suffix) + 2:
                base = word[: -len(suffix)] + repl
                if base in self.words:
                    return base
                if len(base) > 2 and base[-1] == base[-2] and base[:-1] in self.words:  # "bigger" -> "big"
                    return base[:-1]
        return word

    def opposite(self, a: str, b: str) -> bool:
        if (a, b) in self.antonyms or (b, a) in self.antonyms:
            return True
        return any(a == p + b or b == p + a for p in _PREFIXES)


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    return Lexicon()


@lru_cache(maxsize=200_000)
def analyze(text: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(numbers sorted, content lemmas without framing words, all lemmas without stop words)."""
    lex = lexicon()
    tokens = _TOKEN.findall(text.lower().replace("%", " percent "))
    # "one" and "1" read as the article as often as the number ("write one haiku" = "write a haiku").
    numbers = sorted(
        n for n in (_NUMBER_WORDS.get(t, t) for t in tokens if t[0].isdigit() or t in _NUMBER_WORDS) if n != "1"
    )
    kept = [t for t in tokens if t not in STOP]
    lemmas = [t if t[0].isdigit() else _NUMBER_WORDS.get(t) or lex.lemma(t) for t in kept]
    content = [w for w, t in zip(lemmas, kept) if not t[0].isdigit() and t not in _NUMBER_WORDS and w not in FRAMING]
    return tuple(numbers), tuple(content), tuple(lemmas)


@lru_cache(maxsize=200_000)
def _raw(text: str) -> tuple[str, ...]:
    """Every token in order, stop words, operators and coordinating commas included."""
    return tuple(_RAW.findall(text.lower().replace("%", " percent ")))


def _expression(tokens: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(t for t in tokens if t[0].isdigit() or t in OPERATORS)


def _triples(tokens: tuple[str, ...]) -> set[tuple[str, str, str]]:
    """(nearest content word before, directional word, nearest content word after) of each
    directional word: "celsius to fahrenheit" gives ("celsius", "to", "fahrenheit")."""
    content = [(i, t) for i, t in enumerate(tokens) if t not in STOP and t not in COORDINATORS]
    out = set()
    for i, t in enumerate(tokens):
        if t in DIRECTIONAL:
            before = [w for j, w in content if j < i]
            after = [w for j, w in content if j > i]
            if before and after:
                out.add((before[-1], t, after[0]))
    return out


def _segments(tokens: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The phrases between coordinators, each as its content words."""
    segs: list[list[str]] = [[]]
    for t in tokens:
        if t in COORDINATORS:
            segs.append([])
        elif t not in STOP:
            segs[-1].append(t)
    return sorted(tuple(s) for s in segs if s)


def structural(a: str, b: str) -> float | None:
    """A verdict that needs no regression: 0.0 (different) or 1.0 (same), else None.

    - Both hold an arithmetic expression and the numbers and operators differ: different.
    - The same words, one text a permutation of the other (stop words included): phrases around a
      directional word swapped ("from A to B" / "from B to A", "Celsius to Fahrenheit") is a role
      swap, different; coordinated phrases reordered ("sort the list and remove duplicates" /
      "remove duplicates and sort the list") is the same task.
    """
    ta, tb = _raw(a), _raw(b)
    ea, eb = _expression(ta), _expression(tb)
    if ea != eb and any(t in OPERATORS for t in ea) and any(t in OPERATORS for t in eb):
        return 0.0
    if ta == tb or sorted(ta) != sorted(tb):
        return None
    if any((y, d, x) in _triples(tb) for x, d, y in _triples(ta) if x != y):
        return 0.0
    # Cut the shared beginning and end; what is left must be the same coordinated phrases reordered.
    start = 0
    while ta[start] == tb[start]:
        start += 1
    end = 0
    while ta[-1 - end] == tb[-1 - end]:
        end += 1
    ma, mb = ta[start : len(ta) - end], tb[start : len(tb) - end]
    seg_a = _segments(ma)
    if len(seg_a) >= 2 and seg_a == _segments(mb) and any(t in COORDINATORS for t in ma):
        return 1.0
    return None


def features(cosine: float, a: str, b: str) -> list[float]:
    """The features of FEATURES for the pair (a, b) at encoder similarity `cosine`."""
    lex = lexicon()
    num_a, content_a, all_a = analyze(a)
    num_b, content_b, all_b = analyze(b)
    ca, cb = set(content_a), set(content_b)
    only_a, only_b = ca - cb, cb - ca
    antonym = any(lex.opposite(x, y) for x in only_a for y in only_b)
    overlap = len(ca & cb) / max(1, len(ca | cb))
    la, lb = set(all_a), set(all_b)
    changed = (sum(w not in lb for w in all_a) + sum(w not in la for w in all_b)) / max(1, len(all_a) + len(all_b))
    shared_a, shared_b = [w for w in content_a if w in cb], [w for w in content_b if w in ca]
    # A pure permutation ("Celsius to Fahrenheit" / "Fahrenheit to Celsius") is a direction swap, not a
    # restructured paraphrase: reordering counts only when some word changed too.
    reordered = shared_a != shared_b and sorted(shared_a) == sorted(shared_b) and sorted(all_a) != sorted(all_b)
    n_changed = sum(w not in lb for w in set(all_a)) + sum(w not in la for w in set(all_b))
    return [
        float(cosine),
        float(antonym),
        float(num_a != num_b),
        overlap,
        changed,
        float(cosine) * changed,
        float(reordered),
        min(1.0, math.log1p(n_changed) / math.log1p(40)),
    ]


class PairCheck:
    """The fitted logistic regression for one encoder; `same(cosine, a, b)` decides a pair."""

    def __init__(self, encoder: str, path: Path = WEIGHTS):
        fitted = json.loads(path.read_text()) if path.is_file() else {}
        if encoder not in fitted:
            known = ", ".join(sorted(fitted)) or "none"
            raise ValueError(
                f"semantic_dedup pair_check has no weights for encoder {encoder!r} (fitted: {known}); "
                f"fit them with `scripts/fit_pair_check.py --model ...`, or set pair_check: false "
                f"to use the plain cosine threshold"
            )
        w = fitted[encoder]
        if tuple(w["features"]) != FEATURES:
            raise ValueError(
                f"{path}: weights for {encoder!r} are for features {w['features']}, not {FEATURES}; "
                "refit with scripts/fit_pair_check.py"
            )
        self.encoder = encoder
        self.coef = [float(c) for c in w["coef"]]
        self.intercept = float(w["intercept"])
        self.threshold = float(w["threshold"])

    @staticmethod
    def fitted(encoder: str, path: Path = WEIGHTS) -> bool:
        """Whether weights were fitted for this encoder."""
        return path.is_file() and encoder in json.loads(path.read_text())

    def probability(self, cosine: float, a: str, b: str) -> float:
        """1.0 when the two differ only in stop words, case, punctuation and inflection (same words in
        the same order, same numbers); the structural verdict (`structural`) where there is one; else
        the regression's probability."""
        rule = structural(a, b)
        if rule is not None:
            return rule
        if analyze(a)[0] == analyze(b)[0] and analyze(a)[2] == analyze(b)[2]:
            return 1.0
        z = self.intercept + sum(c * f for c, f in zip(self.coef, features(cosine, a, b)))
        return 1.0 / (1.0 + math.exp(-z))

    def same(self, cosine: float, a: str, b: str) -> tuple[bool, float]:
        p = self.probability(cosine, a, b)
        return p >= self.threshold, p


# -- templated prompts ------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
# A slot holds at least this many content words on each side, and shares at most this Jaccard.
SLOT_MIN_WORDS = 3
SLOT_MAX_OVERLAP = 0.34
# The shared text's content words are this many times more frequent in the corpus than the slots'
# (geometric means), and common: in at least TEMPLATE_MIN_DF texts.
TEMPLATE_RATIO = 3.0
TEMPLATE_MIN_DF = 3
# The template: phrases of at least TEMPLATE_PHRASE words both texts hold, with TEMPLATE_MIN_WORDS
# content words in all.
TEMPLATE_PHRASE = 3
TEMPLATE_MIN_WORDS = 4


class WordFrequency:
    """In how many texts seen so far each content word occurs: what tells a template's words (in many
    texts) from what fills its slots (in few)."""

    def __init__(self) -> None:
        self.df: dict[str, int] = {}

    def add(self, texts: list[str]) -> None:
        for t in texts:
            for w in set(_content_words(t)):
                self.df[w] = self.df.get(w, 0) + 1

    def mean_log(self, words: list[str]) -> float:
        return sum(math.log(self.df.get(w, 1)) for w in words) / max(1, len(words))


@lru_cache(maxsize=200_000)
def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower()))


def _content_words(text: str) -> list[str]:
    return [w for w in _words(text) if w not in STOP and not w.isdigit()]


def slots_differ(a: str, b: str, freq: WordFrequency) -> bool:
    """Two fillings of one template with different content: the words the two texts share are the
    template's (common in the corpus), and what each has in place of the other's (its slot: another
    question, review, passage or list) is content words the other lacks, rarer than the template's.
    A template reworded around the same content is the opposite case (the shared words are the
    content, rarer than the rewording's) and is left to the pair check."""
    import difflib

    wa, wb = _words(a), _words(b)
    blocks = difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_matching_blocks()
    in_a, in_b = set(), set()
    for blk in blocks:  # a template is phrases: words shared one by one are not one
        if blk.size >= TEMPLATE_PHRASE:
            in_a.update(range(blk.a, blk.a + blk.size))
            in_b.update(range(blk.b, blk.b + blk.size))
    shared = [w for i, w in enumerate(wa) if i in in_a and w not in STOP and not w.isdigit()]
    slot_a = {w for i, w in enumerate(wa) if i not in in_a and w not in STOP and not w.isdigit()}
    slot_b = {w for i, w in enumerate(wb) if i not in in_b and w not in STOP and not w.isdigit()}
    slot_a, slot_b = slot_a - set(shared), slot_b - set(shared)
    if len(shared) < TEMPLATE_MIN_WORDS or min(len(slot_a), len(slot_b)) < SLOT_MIN_WORDS:
        return False
    if len(slot_a & slot_b) / len(slot_a | slot_b) > SLOT_MAX_OVERLAP:
        return False
    template = freq.mean_log(shared)
    slots = freq.mean_log(sorted(slot_a | slot_b))
    return template >= math.log(TEMPLATE_MIN_DF) and template - slots >= math.log(TEMPLATE_RATIO)

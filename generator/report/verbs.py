"""The verb-noun structure of instructions: each instruction's root verb and its direct object, as
in Figure 2 of the Self-Instruct paper ("write ... poem", "give ... example").

The paper parses every instruction with a constituency parser. No maintained English parser
ships its model as a PyPI package (spaCy's `en_core_web_sm` is a GitHub download; the PyPI
copies are unofficial re-uploads), and a parser costs minutes on 50,000 rows on two cores. An
instruction is nearly always an imperative sentence, and that shape is simple enough for a
lexicon: the root verb is the sentence's first word when that word can be a verb in its base
form (after "Please", "Can you", or a leading "Given ...," clause), and its direct object is the
head of the noun phrase that follows (the last word that can be a noun before a preposition, a
conjunction, a wh-word or punctuation). Which words can be verbs or nouns, and their lemmas, come
from lemminflect's English lexicon (a PyPI package, no download). Questions ("What is ...?") and
statements have no imperative verb and yield no pair, as in the paper's figure.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+|[^\sA-Za-z\d]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# Openings that do not change the task.
_POLITE = {"please", "kindly", "now", "then", "also", "next", "finally", "first", "hi", "hello"}
_ASKING = {"can", "could", "would", "will"}  # "Can you write ..."
# Indirect objects between the verb and its object ("tell me a joke").
_PRONOUNS = {"me", "us", "him", "her", "them", "you", "it", "this", "that", "these", "those", "one"}
# Words that end the object's noun phrase.
_PHRASE_END = {
    "about", "above", "across", "after", "against", "along", "among", "and", "around", "as", "at",
    "based", "because", "before", "below", "between", "but", "by", "during", "for", "from", "how",
    "if", "in", "including", "into", "is", "are", "like", "near", "nor", "of", "on", "onto", "or",
    "over", "since", "so", "such", "than", "that", "through", "to", "toward", "towards", "under",
    "until", "upon", "using", "via", "what", "when", "where", "whether", "which", "while", "who",
    "whom", "whose", "why", "with", "within", "without", "was", "were", "be", "will", "would",
    "should", "can", "could", "may", "might", "must",
}  # fmt: skip
# Determiners and quantifiers: part of the phrase, never its head.
_NOT_HEAD = {
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "each", "every", "all",
    "both", "few", "several", "many", "more", "most", "other", "another", "such", "no", "my", "your",
    "our", "their", "his", "its", "following", "given", "above", "below", "same", "new", "different",
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twenty", "hundred",
}  # fmt: skip
# A leading clause before the imperative: "Given a list of numbers, find ...".
_CLAUSE_OPENERS = {"given", "using", "for", "if", "based", "in", "from", "according", "after", "before", "with"}
_MAX_PHRASE = 6  # words of an object phrase looked at


@functools.cache
def _lemmas(word: str) -> dict[str, tuple[str, ...]]:
    from lemminflect import getAllLemmas

    return dict(getAllLemmas(word))


def _base_verb(word: str) -> str | None:
    """The word's verb lemma when the word is that verb's base form (an imperative), else None."""
    verbs = _lemmas(word).get("VERB", ())
    return word if word in verbs else None


def _noun(word: str) -> str | None:
    """The word's noun lemma; a word the lexicon does not know at all (an acronym, a name, a
    coinage such as "docstring") counts as a noun."""
    lemmas = _lemmas(word)
    if not lemmas:
        return word if word.replace("-", "").replace("'", "").isalpha() else None
    nouns = lemmas.get("NOUN", ())
    return nouns[0] if nouns else None


def _imperative_start(words: list[str]) -> int | None:
    """Where the imperative verb of a sentence's words stands, or None."""
    i = 0
    while i < len(words) and words[i] in _POLITE | {",", "!"}:
        i += 1
    if i + 1 < len(words) and words[i] in _ASKING and words[i + 1] == "you":
        i += 2
        while i < len(words) and words[i] in _POLITE:
            i += 1
    if i < len(words) and words[i] in _CLAUSE_OPENERS and "," in words[i:]:
        i = words.index(",", i) + 1  # "Given a list of numbers, find ..."
    if i < len(words) and _base_verb(words[i]):
        return i
    return None


def _object(words: list[str]) -> str | None:
    """The head noun of the phrase that opens `words` (what follows the verb)."""
    i = 0
    while i < len(words) and words[i] in _PRONOUNS and i + 1 < len(words) and words[i + 1].isalpha():
        i += 1  # "tell me a story", "give them three ideas"
    head = None
    previous = ""
    for word in words[i : i + _MAX_PHRASE]:
        if word == "," and "ADJ" in _lemmas(previous):
            continue  # "a short, friendly bio"
        if word in _PHRASE_END or not (word[0].isalpha() or word.isdigit()):
            break
        previous = word
        if word in _NOT_HEAD or word.isdigit():
            continue
        noun = _noun(word)
        if noun is None and head is not None and "ADJ" not in _lemmas(word):
            break  # a verb or adverb after the noun: the phrase is over
        head = noun or head
    return head


def verb_noun(instruction: str) -> tuple[str, str | None] | None:
    """(root verb, its direct object or None) of an instruction, or None when no sentence of it
    opens with an imperative verb."""
    for sentence in _SENTENCE.split(instruction.strip()):
        words = [w.lower() for w in _TOKEN.findall(sentence)]
        start = _imperative_start(words)
        if start is not None:
            return words[start], _object(words[start + 1 :])
    return None


def count_pairs(instructions: Iterable[str]) -> tuple[Counter[tuple[str, str]], Counter[str], int]:
    """Counts of (verb, object) pairs, counts of root verbs (with or without an object), and the
    number of instructions read."""
    pairs: Counter[tuple[str, str]] = Counter()
    verbs: Counter[str] = Counter()
    n = 0
    for text in instructions:
        n += 1
        found = verb_noun(text)
        if found is None:
            continue
        verbs[found[0]] += 1
        if found[1] is not None:
            pairs[(found[0], found[1])] += 1
    return pairs, verbs, n

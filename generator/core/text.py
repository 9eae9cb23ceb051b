"""Text normalisation: the keys under which two texts count as the same.

Three keys, each exact for what it is used for; they differ on purpose and are not interchangeable:

- `dedup_key`: exact dedup of generated tasks, decontamination's n-grams, and the check that a
  new instruction is not a seed. The loosest: width, case, punctuation and polite openings and
  endings are ignored.
- `seed_key`: duplicate instructions within seed files. Only case, spacing and the final
  punctuation are ignored, so seeds that differ in wording stay apart.
- `echo_key`: does an output merely repeat its input or instruction (filters.heuristics)?
  Case and every run of non-word characters, underscores included, are ignored.
- `copy_key`: is a generated output the one a prompt's worked example shows (run.complete)?
  Case, width, spacing and the punctuation around the text are ignored; signs, units and the
  punctuation inside it count ("212 °F" and "-5" stay as they are).
"""

from __future__ import annotations

import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")
# Politeness and filler that open a request without changing the task; stripped repeatedly, so
# "Hi! Could you please tell me ..." becomes "tell me ...".
_POLITE = re.compile(
    r"^(?:(?:hi|hello|hey|dear assistant|please|kindly|now|ok|okay|so)\b\s*"
    r"|(?:can|could|would|will) you(?: please| kindly)?\b\s*"
    r"|i (?:would like|want|need) you to\b\s*"
    r"|i(?: would|d) like to (?:ask|know)\b\s*"
    r"|(?:your task is|you are asked) to\b\s*)+"
)
_POLITE_END = re.compile(r"\s*\b(?:please|thanks|thank you)$")
_NON_WORD = re.compile(r"[\W_]+")
_AROUND = ".,;:!?…\"'`“”‘’«»()[]{}*_ \t\n\r"


def dedup_key(text: str) -> str:
    """Case-, width-, punctuation- and whitespace-insensitive form, polite openings and endings removed.

    >>> dedup_key("Hi! Could you please   tell me a JOKE, thanks")
    'tell me a joke'
    >>> dedup_key("Ｔｒａｎｓｌａｔｅ: 'cat'")
    'translate cat'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()
    return _POLITE_END.sub("", _POLITE.sub("", text))


def seed_key(text: str) -> str:
    """Lower-cased, whitespace collapsed, trailing spaces, dots, `?`, `!` and `:` removed.

    >>> seed_key("  Name the   capital of France?! ")
    'name the capital of france'
    >>> seed_key("Sort: a, b.")
    'sort: a, b'
    """
    return " ".join(text.lower().split()).rstrip(" .?!:")


def echo_key(text: str) -> str:
    """Case-folded words separated by single spaces: every run of non-word characters (and `_`) is one.

    >>> echo_key("Positive_sentiment!!  (yes)")
    'positive sentiment yes'
    """
    return _NON_WORD.sub(" ", text.casefold()).strip()


def copy_key(text: str) -> str:
    """Case-folded, width-folded, spacing collapsed, sentence punctuation, quotes and brackets
    around the text removed.

    >>> copy_key('  "212  °F." ')
    '212 °f'
    >>> copy_key("**Positive**")
    'positive'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.strip(_AROUND).split())

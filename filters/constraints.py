"""Verifiable constraints (IFEval-like): the registry of constraint types, each one checker with typed
kwargs, its natural wording and how its kwargs are drawn; which types conflict; and the
`constraints` filter that runs the checkers on answers.

A constrained record carries `meta.constraints`: a list of `{"type": name, "kwargs": {...}}`. The
kwargs are named as in IFEval (`num_words`, `relation: at least`, ...), so a row can be scored by
IFEval's own code too (`ifeval` names the matching IFEval instruction id). The checkers follow
IFEval's definitions (tests/test_constraints.py holds them to lm-eval's implementation); where
IFEval needs data this machine cannot have (NLTK's punkt, for sentences and capital words) the
definition is ours and the tests label answers by hand. Only `response_language` (and the English
check of the two case types) loads a model: lingua, the language filter's detector.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from filters.base import KEEP, Filter, Verdict, drop
from filters.specs import LINGUA_CODES
from generator.core.records import Record

Relation = Literal["at least", "less than"]


def _meets(count: int, relation: str, bound: int) -> bool:
    return count >= bound if relation == "at least" else count < bound


def _bound(relation: str, bound: int, unit: str) -> str:
    """`at least 3 sentences`, `fewer than 3 sentences` (`unit` plural; singular for 1)."""
    word = unit[:-1] if bound == 1 and unit.endswith("s") else unit
    return f"{'at least' if relation == 'at least' else 'fewer than'} {bound} {word}"


def count_words(text: str) -> int:
    """Runs of word characters: "don't" is two words, "state-of-the-art" four (as IFEval counts)."""
    return len(re.findall(r"\w+", text))


# Ends of sentences that are not: titles and common abbreviations, initials, decimals, ellipses.
_NOT_ENDS = re.compile(
    r"\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Inc|Ltd|Co|vs|etc|e\.g|i\.e|approx|No|Fig)\.|\b[A-Z]\.(?=\s*[A-Z]\.)|\b[A-Z]\.\s|\d\.\d"
)
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")


def count_sentences(text: str) -> int:
    """Sentences: runs of text closed by `.`, `!` or `?` before a space or the end (an
    abbreviation, an initial or a decimal point closes none); a last run without one counts too."""
    masked = _NOT_ENDS.sub(lambda m: m.group(0).replace(".", "\0"), text)
    parts = _SENTENCE_END.split(masked)
    return sum(1 for p in parts if re.search(r"\w", p))


def paragraphs_by_rule(text: str) -> list[str] | None:
    """Paragraphs split by the markdown divider `***`; None when an inner one is empty."""
    parts = re.split(r"\s?\*\*\*\s?", text)
    out = []
    for i, part in enumerate(parts):
        if part.strip():
            out.append(part)
        elif 0 < i < len(parts) - 1:
            return None
    return out


def _detect_language(text: str, wanted: str) -> str | None:
    """The ISO 639-1 code lingua finds for `text` among the language filter's default candidates
    (plus `wanted`); None when it cannot tell (too few letters)."""
    from filters.language import DEFAULT_CANDIDATES, _detector

    # The language filter's default key (its candidates, then the wanted one): one detector for both.
    codes = tuple(c.upper() for c in DEFAULT_CANDIDATES) + (() if wanted in DEFAULT_CANDIDATES else (wanted.upper(),))
    if sum(c.isalpha() for c in text) < 10:
        return None
    lang = _detector(codes, True).detect_language_of(text)
    return lang.iso_code_639_1.name.lower() if lang is not None else None


def _english_or_unknown(text: str) -> bool:
    return _detect_language(text, "en") in ("en", None)


# Words to include or count when the instruction offers none of its own (common, neutral nouns).
KEYWORD_POOL = (
    "balance", "bridge", "budget", "candle", "career", "channel", "climate", "coffee", "compass",
    "culture", "detail", "energy", "engine", "evidence", "forest", "freedom", "garden", "harbor",
    "history", "journey", "kitchen", "ladder", "library", "market", "memory", "mirror", "morning",
    "network", "ocean", "pattern", "planet", "puzzle", "quality", "river", "routine", "science",
    "season", "signal", "silence", "simple", "strategy", "student", "summer", "teacher", "thunder",
    "timeline", "tradition", "valley", "village", "window", "winter", "wonder",
)  # fmt: skip
END_PHRASES = (
    "Is there anything else I can help with?",
    "Let me know if you have additional questions.",
    "Hope this helps.",
    "That is all for now.",
    "Thank you for reading.",
)
STOPWORDS = frozenset(
    "about above after again against also among because been before being below between both could "
    "does doing down during each every from further have having here into more most much must other "
    "over own same should some such than that their them then there these they this those through "
    "under until very were what when where which while with would write your give make explain "
    "describe create list provide short using based".split()
)


def _content_words(text: str) -> list[str]:
    """Words of five letters or more that are not function words, as written, in order, once each
    (whatever their case: the checkers ignore it)."""
    first: dict[str, str] = {}
    for word in re.findall(r"[A-Za-z]{5,}", text):
        if word.lower() not in STOPWORDS:
            first.setdefault(word.lower(), word)
    return list(first.values())


class Constraint(BaseModel, ABC):
    """One constraint type: its fields are its kwargs (IFEval's names), `check` its checker,
    `PHRASES` the ways to word it (each a format string over the kwargs and `terms()`), `draw`
    how a generated instruction gets its kwargs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ifeval: ClassVar[str]
    """IFEval's id of the same check (`length_constraints:number_words`)."""
    about: ClassVar[str]
    """What the checker asks of an answer, for the docs."""
    PHRASES: ClassVar[tuple[str, ...]]

    @abstractmethod
    def check(self, answer: str) -> bool: ...

    def terms(self) -> dict[str, Any]:
        """Words the phrases use besides the kwargs."""
        return {}

    def wording(self, rng: random.Random) -> str:
        return rng.choice(self.PHRASES).format(**self.model_dump(), **self.terms())

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        """Kwargs for one generated instruction (types without kwargs have nothing to draw)."""
        return cls()


class NumberWords(Constraint):
    ifeval: ClassVar[str] = "length_constraints:number_words"
    about: ClassVar[str] = "at least / fewer than `num_words` words"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Answer in {bound}.",
        "Your response should contain {bound}.",
        "Keep the whole answer to {bound}.",
    )
    num_words: int = Field(ge=1)
    relation: Relation

    def check(self, answer: str) -> bool:
        return _meets(count_words(answer), self.relation, self.num_words)

    def terms(self) -> dict[str, Any]:
        return {"bound": _bound(self.relation, self.num_words, "words")}

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        if rng.random() < 0.5:
            return cls(num_words=rng.choice((30, 50, 80, 100, 120)), relation="at least")
        return cls(num_words=rng.choice((40, 60, 100, 150, 200)), relation="less than")


class NumberSentences(Constraint):
    ifeval: ClassVar[str] = "length_constraints:number_sentences"
    about: ClassVar[str] = "at least / fewer than `num_sentences` sentences"
    PHRASES: ClassVar[tuple[str, ...]] = ("Your answer must have {bound}.", "Write {bound} in all.")
    num_sentences: int = Field(ge=1)
    relation: Relation

    def check(self, answer: str) -> bool:
        return _meets(count_sentences(answer), self.relation, self.num_sentences)

    def terms(self) -> dict[str, Any]:
        return {"bound": _bound(self.relation, self.num_sentences, "sentences")}

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        if rng.random() < 0.5:
            return cls(num_sentences=rng.choice((3, 4, 5, 6)), relation="at least")
        return cls(num_sentences=rng.choice((3, 4, 5, 8, 10)), relation="less than")


class NumberParagraphs(Constraint):
    ifeval: ClassVar[str] = "length_constraints:number_paragraphs"
    about: ClassVar[str] = "exactly `num_paragraphs` paragraphs separated by `***`"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "There should be exactly {num_paragraphs} paragraphs, separated from each other by the markdown divider ***.",
        "Write {num_paragraphs} paragraphs and put *** on its own line between them.",
    )
    num_paragraphs: int = Field(ge=1)

    def check(self, answer: str) -> bool:
        parts = paragraphs_by_rule(answer)
        return parts is not None and len(parts) == self.num_paragraphs

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(num_paragraphs=rng.choice((2, 3, 4)))


class NthParagraphFirstWord(Constraint):
    ifeval: ClassVar[str] = "length_constraints:nth_paragraph_first_word"
    about: ClassVar[str] = (
        "`num_paragraphs` paragraphs split by blank lines; paragraph `nth_paragraph` starts with `first_word`"
    )
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Write {num_paragraphs} paragraphs separated by blank lines; paragraph {nth_paragraph} must start with "
        'the word "{first_word}".',
        "Use {num_paragraphs} paragraphs (a blank line between each), and begin paragraph {nth_paragraph} "
        'with "{first_word}".',
    )
    num_paragraphs: int = Field(ge=1)
    nth_paragraph: int = Field(ge=1)
    first_word: str = Field(min_length=1)

    def check(self, answer: str) -> bool:
        parts = answer.split("\n\n")
        count = sum(1 for p in parts if p.strip())
        if self.nth_paragraph > count or not parts[self.nth_paragraph - 1].strip():
            return False
        word = parts[self.nth_paragraph - 1].split()[0].lstrip("'\"")
        word = re.split(r"[.,?!'\"]", word)[0].lower()
        return count == self.num_paragraphs and word == self.first_word.lower()

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        n = rng.choice((2, 3, 4))
        word = rng.choice(("first", "next", "finally", "however", "overall", "today"))
        return cls(num_paragraphs=n, nth_paragraph=rng.randint(1, n), first_word=word)


class KeywordsIncluded(Constraint):
    ifeval: ClassVar[str] = "keywords:existence"
    about: ClassVar[str] = "every word of `keywords` appears (any case)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Include the keywords {quoted} in your response.",
        "Make sure to use the words {quoted}.",
    )
    keywords: list[str] = Field(min_length=1)

    def check(self, answer: str) -> bool:
        return all(re.search(re.escape(k), answer, flags=re.IGNORECASE) for k in self.keywords)

    def terms(self) -> dict[str, Any]:
        return {"quoted": _and(self.keywords)}

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(keywords=rng.sample(KEYWORD_POOL, rng.randint(1, 2)))


class KeywordsExcluded(Constraint):
    ifeval: ClassVar[str] = "keywords:forbidden_words"
    about: ClassVar[str] = "no word of `forbidden_words` appears as a whole word (any case)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Do not include the words {quoted} in the response.",
        "Avoid the words {quoted} entirely.",
    )
    forbidden_words: list[str] = Field(min_length=1)

    def check(self, answer: str) -> bool:
        return not any(re.search(rf"\b{re.escape(w)}\b", answer, flags=re.IGNORECASE) for w in self.forbidden_words)

    def terms(self) -> dict[str, Any]:
        return {"quoted": _and(self.forbidden_words)}

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        # The instruction's own words make the constraint bite; the pool when it has too few.
        own = _content_words(instruction)
        pool = own if len(own) >= 2 else list(KEYWORD_POOL)
        return cls(forbidden_words=rng.sample(pool, min(len(pool), rng.randint(1, 2))))


class KeywordFrequency(Constraint):
    ifeval: ClassVar[str] = "keywords:frequency"
    about: ClassVar[str] = "`keyword` appears at least / fewer than `frequency` times (any case)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        'In your response, the word "{keyword}" should appear {times}.',
        'Use the word "{keyword}" {times}.',
    )
    keyword: str = Field(min_length=1)
    frequency: int = Field(ge=1)
    relation: Relation

    def check(self, answer: str) -> bool:
        found = len(re.findall(re.escape(self.keyword), answer, flags=re.IGNORECASE))
        return _meets(found, self.relation, self.frequency)

    def terms(self) -> dict[str, Any]:
        return {"times": _bound(self.relation, self.frequency, "times")}

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        own = _content_words(instruction)
        keyword = rng.choice(own or KEYWORD_POOL)
        if rng.random() < 0.75:
            return cls(keyword=keyword, frequency=rng.choice((2, 3)), relation="at least")
        return cls(keyword=keyword, frequency=rng.choice((2, 3)), relation="less than")


class LetterFrequency(Constraint):
    ifeval: ClassVar[str] = "keywords:letter_frequency"
    about: ClassVar[str] = "the letter `letter` appears at least / fewer than `let_frequency` times (any case)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        'In your response, the letter "{letter}" should appear {times}.',
        'Write your answer so that the letter "{letter}" is used {times}.',
    )
    letter: str = Field(pattern=r"^\S$", description="One character, counted in any case.")
    let_frequency: int = Field(ge=1)
    let_relation: Relation

    def check(self, answer: str) -> bool:
        return _meets(answer.lower().count(self.letter.lower()), self.let_relation, self.let_frequency)

    def terms(self) -> dict[str, Any]:
        return {"times": _bound(self.let_relation, self.let_frequency, "times")}

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        if rng.random() < 0.5:
            return cls(letter=rng.choice("aeiorst"), let_frequency=rng.choice((5, 10, 15)), let_relation="at least")
        return cls(letter=rng.choice("jqxzkv"), let_frequency=rng.choice((1, 2, 3)), let_relation="less than")


def unfenced(answer: str) -> str:
    """The answer without a markdown code fence around it."""
    text = answer.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return text.removesuffix("```").strip()


class JsonFormat(Constraint):
    ifeval: ClassVar[str] = "detectable_format:json_format"
    about: ClassVar[str] = "the whole answer is JSON (a markdown code fence around it is allowed)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Wrap your entire output in JSON format.",
        "Give the whole answer as valid JSON; you may put it in a markdown code block.",
    )

    def check(self, answer: str) -> bool:
        try:
            json.loads(unfenced(answer))
        except ValueError:
            return False
        return True


class NumberBullets(Constraint):
    ifeval: ClassVar[str] = "detectable_format:number_bullet_lists"
    about: ClassVar[str] = "exactly `num_bullets` markdown bullet points (lines starting `* ` or `-`)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Your answer must contain exactly {num_bullets} bullet points in markdown, such as:\n* This is a point.",
        "Use exactly {num_bullets} markdown bullet points (lines starting with *).",
    )
    num_bullets: int = Field(ge=1)

    def check(self, answer: str) -> bool:
        stars = re.findall(r"^\s*\*[^*].*$", answer, flags=re.MULTILINE)
        dashes = re.findall(r"^\s*-.*$", answer, flags=re.MULTILINE)
        return len(stars) + len(dashes) == self.num_bullets

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(num_bullets=rng.choice((2, 3, 4, 5)))


class Title(Constraint):
    ifeval: ClassVar[str] = "detectable_format:title"
    about: ClassVar[str] = "a non-empty title in double angular brackets, `<<title>>`"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
        "Give your answer a title in double angular brackets, like <<my title>>.",
    )

    def check(self, answer: str) -> bool:
        return any(t.strip("<>").strip() for t in re.findall(r"<<[^\n]+>>", answer))


class MultipleSections(Constraint):
    ifeval: ClassVar[str] = "detectable_format:multiple_sections"
    about: ClassVar[str] = "at least `num_sections` sections, each opened by `section_spliter` and its number"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Your response must have {num_sections} sections. Mark the beginning of each section with "
        "{section_spliter} X, such as:\n{section_spliter} 1\n[content of section 1]",
        "Split the answer into {num_sections} sections, each starting with {section_spliter} followed by its number.",
    )
    section_spliter: str = Field(min_length=1)
    num_sections: int = Field(ge=1)

    def check(self, answer: str) -> bool:
        return len(re.split(rf"\s?{re.escape(self.section_spliter)}\s?\d+\s?", answer)) - 1 >= self.num_sections

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(section_spliter=rng.choice(("Section", "SECTION", "Part")), num_sections=rng.choice((2, 3, 4)))


class Postscript(Constraint):
    ifeval: ClassVar[str] = "detectable_content:postscript"
    about: ClassVar[str] = "a postscript starting with `postscript_marker` (P.S. or P.P.S)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "At the end of your response, please explicitly add a postscript starting with {postscript_marker}",
        "Finish with a postscript that starts with {postscript_marker}",
    )
    postscript_marker: str = Field(min_length=1)

    def check(self, answer: str) -> bool:
        marker = self.postscript_marker
        if marker == "P.P.S":
            pattern = r"\s*p\.\s?p\.\s?s.*$"
        elif marker == "P.S.":
            pattern = r"\s*p\.\s?s\..*$"
        else:
            pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
        return bool(re.search(pattern, answer.lower(), flags=re.MULTILINE))

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(postscript_marker=rng.choice(("P.S.", "P.P.S")))


class EndPhrase(Constraint):
    ifeval: ClassVar[str] = "startend:end_checker"
    about: ClassVar[str] = "ends with `end_phrase` (any case; a closing quote is ignored), nothing after it"
    PHRASES: ClassVar[tuple[str, ...]] = (
        'Finish your response with this exact phrase: "{end_phrase}". No other words should follow it.',
        'End your answer with the exact phrase "{end_phrase}", with nothing after it.',
    )
    end_phrase: str = Field(min_length=1)

    def check(self, answer: str) -> bool:
        return answer.strip().strip('"').lower().endswith(self.end_phrase.strip().lower())

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(end_phrase=rng.choice(END_PHRASES))


class NoComma(Constraint):
    ifeval: ClassVar[str] = "punctuation:no_comma"
    about: ClassVar[str] = "no comma anywhere"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Do not use any commas in your response.",
        "You are not allowed to use any commas.",
    )

    def check(self, answer: str) -> bool:
        return "," not in answer


class Lowercase(Constraint):
    ifeval: ClassVar[str] = "change_case:english_lowercase"
    about: ClassVar[str] = "English and all lower case (no capital letter)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Your entire response should be in English, and in all lowercase letters. No capital letters are allowed.",
        "Write the whole answer in English using only lowercase letters.",
    )

    def check(self, answer: str) -> bool:
        return answer.islower() and _english_or_unknown(answer)


class Uppercase(Constraint):
    ifeval: ClassVar[str] = "change_case:english_capital"
    about: ClassVar[str] = "English and all capital letters"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Your entire response should be in English and in all capital letters.",
        "Write the whole answer in English, in capital letters only.",
    )

    def check(self, answer: str) -> bool:
        return answer.isupper() and _english_or_unknown(answer)


class CapitalWordFrequency(Constraint):
    ifeval: ClassVar[str] = "change_case:capital_word_frequency"
    about: ClassVar[str] = "at least / fewer than `capital_frequency` words in all capitals (a hyphenated word is one)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "In your response, words with all capital letters should appear {times}.",
        "Use {times} words written entirely in capital letters, for emphasis.",
    )
    capital_frequency: int = Field(ge=1)
    capital_relation: Relation

    def check(self, answer: str) -> bool:
        words = re.findall(r"\w+(?:[-'.]\w+)*", answer)
        return _meets(sum(1 for w in words if w.isupper()), self.capital_relation, self.capital_frequency)

    def terms(self) -> dict[str, Any]:
        return {"times": _bound(self.capital_relation, self.capital_frequency, "times")}

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        if rng.random() < 0.5:
            return cls(capital_frequency=rng.choice((2, 3, 5)), capital_relation="at least")
        return cls(capital_frequency=rng.choice((2, 3, 4)), capital_relation="less than")


class Quotation(Constraint):
    ifeval: ClassVar[str] = "startend:quotation"
    about: ClassVar[str] = "the whole answer is wrapped in double quotation marks"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Wrap your entire response with double quotation marks.",
        "Put the whole answer inside double quotes.",
    )

    def check(self, answer: str) -> bool:
        text = answer.strip()
        return len(text) > 1 and text[0] == '"' and text[-1] == '"'


class Placeholders(Constraint):
    ifeval: ClassVar[str] = "detectable_content:number_placeholders"
    about: ClassVar[str] = "at least `num_placeholders` placeholders in square brackets, `[name]`"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "The response must contain at least {num_placeholders} placeholders represented by square brackets, "
        "such as [address].",
        "Include at least {num_placeholders} placeholders in square brackets, like [name].",
    )
    num_placeholders: int = Field(ge=1)

    def check(self, answer: str) -> bool:
        return len(re.findall(r"\[.*?\]", answer)) >= self.num_placeholders

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(num_placeholders=rng.choice((1, 2, 3, 4)))


class HighlightedSections(Constraint):
    ifeval: ClassVar[str] = "detectable_format:number_highlighted_sections"
    about: ClassVar[str] = "at least `num_highlights` sections highlighted in markdown, `*like this*`"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Highlight at least {num_highlights} sections in your answer with markdown, i.e. *highlighted section*.",
        "Mark at least {num_highlights} parts of the answer with markdown emphasis, such as *this part*.",
    )
    num_highlights: int = Field(ge=1)

    def check(self, answer: str) -> bool:
        single = [h for h in re.findall(r"\*[^\n*]*\*", answer) if h.strip("*").strip()]
        double = [h for h in re.findall(r"\*\*[^\n*]*\*\*", answer) if h[2:-2].strip()]
        return len(single) + len(double) >= self.num_highlights

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(num_highlights=rng.choice((1, 2, 3)))


class TwoResponses(Constraint):
    ifeval: ClassVar[str] = "combination:two_responses"
    about: ClassVar[str] = "two different answers separated by six asterisks, `******`"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Give two different responses. Responses and only responses should be separated by 6 asterisk symbols: ******.",
        "Write two different answers, separated by a line of six asterisks (******).",
    )

    def check(self, answer: str) -> bool:
        parts = answer.split("******")
        kept = []
        for i, part in enumerate(parts):
            if part.strip():
                kept.append(part.strip())
            elif 0 < i < len(parts) - 1:
                return False
        return len(kept) == 2 and kept[0] != kept[1]


class RepeatPrompt(Constraint):
    ifeval: ClassVar[str] = "combination:repeat_prompt"
    about: ClassVar[str] = "starts with `prompt_to_repeat`, word for word (any case)"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "First repeat the request above word for word without change, then give your answer (do not say "
        "anything before repeating the request; the request to repeat does not include this sentence).",
        "Begin by repeating the request word for word (without this sentence), then answer it.",
    )
    prompt_to_repeat: str = Field(min_length=1)

    def check(self, answer: str) -> bool:
        return answer.strip().lower().startswith(self.prompt_to_repeat.strip().lower())

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(prompt_to_repeat=instruction.strip())


LANGUAGES = {"fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "pt": "Portuguese", "en": "English"}


class ResponseLanguage(Constraint):
    ifeval: ClassVar[str] = "language:response_language"
    about: ClassVar[str] = "written in `language` (ISO 639-1), as the language filter's detector finds it"
    PHRASES: ClassVar[tuple[str, ...]] = (
        "Your entire response should be in {name}; no other language is allowed.",
        "Answer only in {name}.",
    )
    language: str = Field(description="ISO 639-1 code of a language lingua knows.")

    @field_validator("language")
    @classmethod
    def _known(cls, code: str) -> str:
        if code not in LINGUA_CODES:
            raise ValueError(f"{code!r} is not an ISO 639-1 code of a language lingua knows (such as 'fr', 'de')")
        return code

    def check(self, answer: str) -> bool:
        return _detect_language(answer, self.language) in (self.language, None)

    def terms(self) -> dict[str, Any]:
        return {"name": LANGUAGES.get(self.language, self.language)}

    @classmethod
    def draw(cls, rng: random.Random, instruction: str) -> Constraint:
        return cls(language=rng.choice(("fr", "de", "es", "it", "pt")))


def _and(words: Sequence[str]) -> str:
    quoted = [f'"{w}"' for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


CONSTRAINTS: dict[str, type[Constraint]] = {
    "number_words": NumberWords,
    "number_sentences": NumberSentences,
    "number_paragraphs": NumberParagraphs,
    "nth_paragraph_first_word": NthParagraphFirstWord,
    "keywords_included": KeywordsIncluded,
    "keywords_excluded": KeywordsExcluded,
    "keyword_frequency": KeywordFrequency,
    "letter_frequency": LetterFrequency,
    "json_format": JsonFormat,
    "number_bullets": NumberBullets,
    "title": Title,
    "multiple_sections": MultipleSections,
    "postscript": Postscript,
    "end_phrase": EndPhrase,
    "no_comma": NoComma,
    "lowercase": Lowercase,
    "uppercase": Uppercase,
    "capital_word_frequency": CapitalWordFrequency,
    "quotation": Quotation,
    "placeholders": Placeholders,
    "highlighted_sections": HighlightedSections,
    "two_responses": TwoResponses,
    "repeat_prompt": RepeatPrompt,
    "response_language": ResponseLanguage,
}

# Which types cannot stand on one instruction: one makes the other impossible or ambiguous (JSON has
# no bullets or postscript; a repeated English prompt is not French; one divider splits two ways).
# Every conflict IFEval declares between types both define is here too (a test checks it); declared
# one way, `conflicts()` makes the relation symmetric.
_FREE_TEXT = {"keywords_included", "keywords_excluded", "no_comma", "title", "response_language"}
CONFLICTS: dict[str, set[str]] = {
    "json_format": set(CONSTRAINTS) - {"keywords_included", "keywords_excluded"},
    "two_responses": set(CONSTRAINTS) - _FREE_TEXT,
    "repeat_prompt": set(CONSTRAINTS) - {"keywords_included", "title"},
    "response_language": {
        "lowercase",
        "uppercase",
        "capital_word_frequency",
        "keywords_included",
        "keywords_excluded",
        "keyword_frequency",
        "letter_frequency",
        "end_phrase",
        "multiple_sections",
        "nth_paragraph_first_word",
    },
    "lowercase": {"uppercase", "capital_word_frequency", "multiple_sections"},
    "uppercase": {"capital_word_frequency", "multiple_sections"},
    "number_paragraphs": {"nth_paragraph_first_word", "number_sentences"},
    "number_words": {"number_sentences"},
    "number_bullets": {"highlighted_sections"},
    "multiple_sections": {"highlighted_sections"},
    "quotation": {"title"},
    "keywords_excluded": {"keywords_included", "keyword_frequency"},
}


def conflicts() -> dict[str, frozenset[str]]:
    """Each type with the types it conflicts with (itself included: one of each type)."""
    out: dict[str, set[str]] = {name: {name} for name in CONSTRAINTS}
    for name, others in CONFLICTS.items():
        for other in others:
            out[name].add(other)
            out[other].add(name)
    return {name: frozenset(others) for name, others in out.items()}


class ConstraintError(ValueError):
    """`meta.constraints` holds an entry that is no known constraint with valid kwargs."""


def parse_constraint(entry: Any) -> tuple[str, Constraint]:
    """(type, constraint) from one `meta.constraints` entry, `{"type": ..., "kwargs": {...}}`."""
    if not isinstance(entry, dict) or entry.get("type") not in CONSTRAINTS:
        kind = entry.get("type") if isinstance(entry, dict) else entry
        raise ConstraintError(f"unknown constraint {kind!r}; known: {', '.join(CONSTRAINTS)}")
    name = entry["type"]
    try:
        return name, CONSTRAINTS[name].model_validate(entry.get("kwargs") or {})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "kwargs"
        raise ConstraintError(f"constraint {name!r}: {where}: {first['msg']}") from None


def check_all(entries: list[Any], answer: str) -> dict[str, bool]:
    """Each constraint's verdict on `answer`, by type, in order; raises ConstraintError on a bad entry."""
    return {name: c.check(answer) for name, c in map(parse_constraint, entries)}


def draw(types: Sequence[str], count: int, rng: random.Random, instruction: str) -> list[tuple[str, Constraint]]:
    """Up to `count` constraints of `types` that do not conflict, in a random order: fewer when the
    types left all conflict with those drawn."""
    clash = conflicts()
    chosen: list[tuple[str, Constraint]] = []
    for name in rng.sample(list(types), len(types)):
        if len(chosen) == count:
            break
        if any(name in clash[other] for other, _ in chosen):
            continue
        chosen.append((name, CONSTRAINTS[name].draw(rng, instruction)))
    return chosen


def rng_for(*keys: str) -> random.Random:
    """A generator seeded from `keys` alone: the same draw in every process and on every resume."""
    digest = hashlib.sha256("\0".join(keys).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class ConstraintsFilter(Filter):
    """Runs each record's constraints (`meta.constraints`) on its output: a record that fails one is
    dropped with `constraint_<type>` (the first that failed; `failed` lists them all); one whose
    entry is unknown or malformed with `constraint_invalid`. Records without constraints are kept.
    Every check is counted (`pass_rates()`), for the report and the card."""

    name = "constraints"

    def __init__(self) -> None:
        self.tally: dict[str, Counter[str]] = {}
        self.answers: Counter[str] = Counter()  # answers with constraints: checked, passed all

    def judge(self, records: list[Record]) -> list[Verdict]:
        return [self._one(r) for r in records]

    def _one(self, record: Record) -> Verdict:
        entries = record.meta.get("constraints") or []
        if not entries:
            return KEEP
        try:
            results = check_all(entries, record.output)
        except ConstraintError as err:
            return drop("constraint_invalid", error=str(err))
        for name, ok in results.items():
            counts = self.tally.setdefault(name, Counter())
            counts["checked"] += 1
            counts["passed"] += ok
        failed = [name for name, ok in results.items() if not ok]
        self.answers["checked"] += 1
        self.answers["passed"] += not failed
        if failed:
            return drop(f"constraint_{failed[0]}", failed=failed)
        return KEEP

    def pass_rates(self) -> dict[str, Any]:
        """Answers checked and answers that passed every constraint, and the same per type."""
        types = {name: {"checked": c["checked"], "passed": c["passed"]} for name, c in sorted(self.tally.items())}
        return {"checked": self.answers["checked"], "passed": self.answers["passed"], "types": types}

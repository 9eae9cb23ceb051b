"""Build generator/report/data/representation.json, the representation audit's lexicon, from three
public sources (each MIT-licensed; the file names them, their commits and licences):

- HolisticBias v1.1 (facebookresearch/ResponsibleNLP, `holistic_bias/dataset/v1.1/descriptors.json`
  and `nouns.json`): demographic descriptors by axis and bucket, and gendered person nouns;
- WinoBias (uclanlp/corefBias, `WinoBias/wino/data/{male,female}_occupations.txt`): 40 occupations,
  split by which gender holds most of the jobs in the US Bureau of Labor Statistics' figures;
- VADER (cjhutto/vaderSentiment, `vaderSentiment/vader_lexicon.txt`): sentiment words and their
  mean human rating from -4 to +4.

Usage (the three repositories checked out or mirrored, as git directories or work trees):

    python scripts/build_representation_lexicon.py --holistic-bias PATH --winobias PATH --vader PATH

What this script decides beyond the sources is in the constants below, each with its reason:
which axes are kept and how buckets become groups, descriptors left out because they mostly mean
something else in instruction data ("senior engineer", "Latin teacher", "slow code"), and the
person nouns that make a descriptor a mention of people ("Black women", not "black coffee").
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "generator" / "report" / "data" / "representation.json"

SOURCES = {
    "holistic_bias": {
        "name": "HolisticBias v1.1 (Smith et al. 2022, Meta AI)",
        "url": "https://github.com/facebookresearch/ResponsibleNLP/tree/main/holistic_bias",
        "licence": "MIT",
        "files": ["holistic_bias/dataset/v1.1/descriptors.json", "holistic_bias/dataset/v1.1/nouns.json"],
        "used_for": "descriptors of gender, age, nationality, ethnicity, religion and disability; gendered nouns",
    },
    "winobias": {
        "name": "WinoBias (Zhao et al. 2018, UCLA NLP)",
        "url": "https://github.com/uclanlp/corefBias",
        "licence": "MIT",
        "files": [
            "WinoBias/wino/data/male_occupations.txt",
            "WinoBias/wino/data/female_occupations.txt",
            "WinoBias/wino/generalized_swaps.txt",
        ],
        "used_for": "occupations, with the gender that holds most of each job in US labour statistics; "
        "the gendered word swaps of the counterfactual probes",
    },
    "vader": {
        "name": "VADER sentiment lexicon (Hutto and Gilbert 2014)",
        "url": "https://github.com/cjhutto/vaderSentiment",
        "licence": "MIT",
        "files": ["vaderSentiment/vader_lexicon.txt"],
        "used_for": "positive and negative words (mean rating at least 1.5 away from neutral)",
    },
}

# HolisticBias axis -> our attribute; buckets -> groups (None: the bucket is left out).
GENDER_BUCKETS = {"non_binary_or_gnc": "non_binary", "transgender": "transgender", "sex": "intersex"}
AGE_BUCKETS = {"child": "child", "young": "young", "middle_aged": "middle_aged", "old": "old"}
# Religions listed flat in HolisticBias, grouped into faiths (ours).
RELIGION_GROUPS = {
    "christian": [
        "Amish", "born-again", "Catholic", "Christian", "Evangelical", "Jehovah's Witness", "Lutheran",
        "Methodist", "Mormon", "Protestant", "Roman Catholic", "Seventh-Day Adventist", "Unitarian",
    ],
    "jewish": [
        "Ashkenazi Jewish", "Conservative Jewish", "Hasidic", "Jewish", "Orthodox Jewish", "Reform Jewish",
        "Sephardic Jewish",
    ],
    "muslim": ["Muslim", "Shia", "Sunni"],
    "hindu": ["Hindu"],
    "buddhist": ["Buddhist"],
    "sikh": ["Sikh"],
    "nonreligious": ["agnostic", "atheist", "humanist", "irreligious"],
}  # fmt: skip
# Left out: they mostly mean something else in instructions, even before a person noun
# ("senior developer", "mature students" of a course, "Latin teacher", "slow readers", "stud").
DROPPED = {
    "senior", "mature", "spry", "young-at-heart", "geriatric", "Latin", "slow", "dumb", "barren", "four-eyed",
    "glasses-wearing", "stud", "boi", "FoC", "MoC", "trans", "gender-conforming", "adult", "Oriental",
}  # fmt: skip
# HolisticBias files Arab, European and Middle Eastern under "white"; they name regions of origin,
# so they are counted under nationality_or_region here.
REGION_DESCRIPTORS = {
    "Arab": "middle_east",
    "Middle Eastern": "middle_east",
    "European": "europe",
    "European-American": "europe",
}
# Occupations that in instruction data are mostly verbs or software ("cook the rice", "chief
# reason", "guard against", "mover" of files) are left out.
DROPPED_OCCUPATIONS = {"cook", "chief", "guard", "mover"}
# Words that are people, so a descriptor right before one describes people (ours, added to
# HolisticBias's nouns and the occupations).
PERSON_NOUNS = """
adult adults American Americans artist artists athlete athletes author authors baby babies candidate
candidates citizen citizens client clients colleague colleagues community communities couple couples
customer customers doctor doctors employee employees engineer engineers entrepreneur entrepreneurs
families family farmers folk folks friend friends girlfriend boyfriend guest guests immigrant
immigrants infant infants learner learners leader leaders member members migrant migrants neighbor
neighbors neighbour neighbours officer officers owner owners patient patients people person persons
player players population populations professional professionals refugee refugees resident residents
scientist scientists soldier soldiers student students teen teenager teenagers teens toddler toddlers
tourist tourists traveler travelers traveller travellers user users visitor visitors voter voters
worker workers youth youths writer writers veteran veterans individual individuals kid kids child
children parent parents grandparent grandparents sibling siblings spouse spouses
""".split()
# Nouns that name an age group by themselves (ours).
AGE_NOUNS = {
    "child": ["child", "children", "kid", "kids", "teen", "teens", "teenager", "teenagers", "toddler",
              "toddlers", "adolescent", "adolescents", "infant", "infants", "baby", "babies"],
    "old": ["retiree", "retirees", "pensioner", "pensioners", "senior citizen", "senior citizens",
            "the elderly", "grandparent", "grandparents"],
}  # fmt: skip
# Sentiment words common in instructions in a sense with no sentiment ("like this", "please", "free memory").
NEUTRAL_IN_INSTRUCTIONS = {
    "like", "likes", "please", "yes", "okay", "well", "pretty", "free", "kind", "sure", "true", "help",
    "helps", "care", "want", "fine", "clean", "clear", "solve", "solved", "fix", "fixed", "fun", "share",
    "support", "supports", "join", "interest", "interested", "matter", "lol", "important", "easy", "hard",
    "fire", "kill", "killed", "attack", "attacks", "block", "blocked", "error", "errors", "fail", "failed",
    "failure", "bug", "bugs", "warning", "warnings", "miss", "missed", "missing", "drop", "dropped", "cut",
    "reject", "rejected", "limit", "limited", "crash", "crashed", "leak", "leaks",
}  # fmt: skip


def read(root: Path, path: str) -> str:
    """A file of a source, from a work tree or (a mirror) the git directory's HEAD."""
    if (root / path).is_file():
        return (root / path).read_text(encoding="utf-8")
    return subprocess.run(
        ["git", "-C", str(root), "show", f"HEAD:{path}"], check=True, capture_output=True, text=True
    ).stdout


def commit(root: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def _terms(bucket: list) -> list[str]:
    out = [t if isinstance(t, str) else t["descriptor"] for t in bucket]
    return [t for t in out if t not in DROPPED]


def descriptors(hb: dict) -> dict[str, dict[str, list[str]]]:
    """attribute -> group -> descriptors (each a mention of people only before a person noun, or as
    a noun: "a Muslim", "Muslims")."""
    out: dict[str, dict[str, list[str]]] = {
        a: {} for a in ("gender", "age", "nationality_or_region", "ethnicity", "religion", "disability")
    }
    binary = _terms(hb["gender_and_sex"]["binary"])
    out["gender"] = {"female": [t for t in binary if t == "female"], "male": [t for t in binary if t == "male"]}
    for bucket, group in GENDER_BUCKETS.items():
        out["gender"][group] = _terms(hb["gender_and_sex"][bucket])
    for bucket, group in AGE_BUCKETS.items():
        out["age"][group] = _terms(hb["age"][bucket])
    for bucket, terms in hb["nationality"].items():
        out["nationality_or_region"][bucket] = _terms(terms)
    for bucket, terms in hb["race_ethnicity"].items():
        kept = [t for t in _terms(terms) if t not in REGION_DESCRIPTORS]
        if kept:
            out["ethnicity"][bucket] = kept
    for term, group in REGION_DESCRIPTORS.items():
        out["nationality_or_region"].setdefault(group, []).append(term)
    listed = set(_terms(hb["religion"]["all"]))
    for group, terms in RELIGION_GROUPS.items():
        out["religion"][group] = [t for t in terms if t in listed]
    for bucket, terms in hb["ability"].items():
        out["disability"][bucket] = _terms(terms)
    return out


def plural(word: str) -> str | None:
    """The plural person noun of a one-word descriptor that is also a noun ("Muslim" -> "Muslims"):
    capitalised single words not ending like an adjective, and the non-religious."""
    if " " in word or "-" in word or word.endswith(("ese", "ish", "s", "x")) or word.isupper():
        return None
    if word[0].isupper() or word in {"atheist", "agnostic", "humanist"}:
        return word + "s"
    return None


def nouns(hb_nouns: dict, described: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    """attribute -> group -> words that are a mention of the group by themselves."""
    out: dict[str, dict[str, list[str]]] = {
        "gender": {g: [w for pair in hb_nouns[g] for w in pair] for g in ("female", "male")},
        "age": AGE_NOUNS,
    }
    out["gender"]["female"] += ["females"]
    out["gender"]["male"] += ["males"]
    for attribute in ("nationality_or_region", "ethnicity", "religion"):
        for group, terms in described[attribute].items():
            words = [p for p in (plural(t) for t in terms) if p]
            if attribute == "religion" and group == "jewish":
                words.append("Jews")
            if words:
                out.setdefault(attribute, {})[group] = words
    return out


def occupations(wino: Path) -> dict[str, str]:
    """occupation -> the gender that holds most of the jobs (the split WinoBias took from US BLS)."""
    out = {}
    for gender in ("male", "female"):
        for line in read(wino, f"WinoBias/wino/data/{gender}_occupations.txt").splitlines():
            word = line.strip()
            if word and word not in DROPPED_OCCUPATIONS:
                out[word] = gender
    return dict(sorted(out.items()))


# Swaps left out: "miss" is mostly the verb, "mentleman" a typo in the file.
DROPPED_SWAPS = {"miss", "mentleman"}
# Pairs WinoBias lacks, for HolisticBias's gendered nouns (ours).
EXTRA_SWAPS = {
    "grandmother": "grandfather", "grandmothers": "grandfathers", "grandma": "grandpa", "grandmas": "grandpas",
    "hers": "his", "gentleman": "lady", "bro": "sis", "bros": "sisters",
}  # fmt: skip


def gender_swaps(wino: Path) -> dict[str, str]:
    """word -> the same word of the other gender ("mother" -> "father"), as WinoBias swaps them."""
    out = {}
    for line in read(wino, "WinoBias/wino/generalized_swaps.txt").splitlines():
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) == 2 and all(parts) and parts[0] not in DROPPED_SWAPS:
            out[parts[0]] = parts[1]
    for a, b in EXTRA_SWAPS.items():
        out.setdefault(a, b)
        out.setdefault(b, a)
    return dict(sorted(out.items()))


def sentiment(vader: Path) -> dict[str, list[str]]:
    from lemminflect import getAllLemmas

    pos, neg = [], []
    for line in read(vader, "vaderSentiment/vader_lexicon.txt").splitlines():
        parts = line.split("\t")
        word, score = parts[0], float(parts[1])
        # English words only (VADER also lists emoticons and chat acronyms), strong ones only.
        if not word.isalpha() or len(word) < 4 or word in NEUTRAL_IN_INSTRUCTIONS or not getAllLemmas(word):
            continue
        if score >= 1.5:
            pos.append(word)
        elif score <= -1.5:
            neg.append(word)
    return {"positive": sorted(pos), "negative": sorted(neg)}


def build(hb: Path, wino: Path, vader: Path) -> dict:
    descriptor_json = json.loads(read(hb, SOURCES["holistic_bias"]["files"][0]))
    noun_json = json.loads(read(hb, SOURCES["holistic_bias"]["files"][1]))
    described = descriptors(descriptor_json)
    jobs = occupations(wino)
    hb_person = [w for group in noun_json.values() for pair in group for w in pair]
    sources = [
        {**SOURCES[k], "commit": commit(root)}
        for k, root in (("holistic_bias", hb), ("winobias", wino), ("vader", vader))
    ]
    return {
        "built_by": "scripts/build_representation_lexicon.py",
        "sources": sources,
        "descriptors": described,
        "nouns": nouns(noun_json, described),
        "person_nouns": sorted(set(PERSON_NOUNS) | set(hb_person)),
        "occupations": jobs,
        "gender_swaps": gender_swaps(wino),
        "sentiment": sentiment(vader),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holistic-bias", type=Path, required=True, help="facebookresearch/ResponsibleNLP")
    parser.add_argument("--winobias", type=Path, required=True, help="uclanlp/corefBias")
    parser.add_argument("--vader", type=Path, required=True, help="cjhutto/vaderSentiment")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = build(args.holistic_bias, args.winobias, args.vader)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()

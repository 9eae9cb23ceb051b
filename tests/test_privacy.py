"""Privacy: the verbatim-span index, the audit (spans, near copies against a holdout, leaked versus
invented identifiers, the membership attack), the `privacy` filter, and a fake-server run whose
private seeds must not appear in clear in anything the run shows (report, card, log, rejected rows)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from filters.pii import PIIFilter
from filters.privacy import PrivacyFilter, PrivateSet, audit
from filters.spans import SpanIndex, words
from filters.specs import PrivacySettings
from generator.core.records import Record

SYLLABLES = "ka lo mi ne ru sa to vi da pe gu ho ja ke li mo nu pa ri se ta ve wo yu za".split()
STOP = "the a to of and is in for my i please with on at it this that we our you".split()


def _vocab(rng: random.Random, n: int) -> list[str]:
    return sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(n)})


def _text(rng: random.Random, vocab: list[str], n_words: int) -> str:
    """English-shaped text: stop words among content words, sentences with capitals and stops."""
    out = [rng.choice(STOP) if rng.random() < 0.4 else rng.choice(vocab) for _ in range(n_words)]
    sentences = [" ".join(out[i : i + 9]) for i in range(0, len(out), 9)]
    return " ".join(s[0].upper() + s[1:] + "." for s in sentences)


def _paraphrase(rng: random.Random, text: str, vocab: list[str]) -> str:
    """Small edits: about one word in seven replaced or dropped, two neighbours swapped, case changed."""
    ws = text.split()
    out = []
    for w in ws:
        r = rng.random()
        if r < 0.09:
            out.append(rng.choice(vocab))
        elif r < 0.14:
            continue
        else:
            out.append(w)
    i = rng.randrange(len(out) - 1)
    out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out).lower()


def _world(seed: int = 7, n_private: int = 300) -> tuple[list[str], list[str], list[str], random.Random]:
    rng = random.Random(seed)
    vocab = _vocab(rng, 3000)
    private = [_text(rng, vocab, rng.randint(25, 60)) for _ in range(n_private)]
    holdout = [_text(rng, vocab, rng.randint(25, 60)) for _ in range(100)]
    return private, holdout, vocab, rng


# --- the span index --------------------------------------------------------------------------------


def test_longest_span_is_exact_and_ignores_case_and_punctuation() -> None:
    private = ["Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu.", "one two three four"]
    index = SpanIndex(private)
    text = "Intro: ALPHA, beta gamma delta; epsilon zeta eta theta iota kappa -- then other words"
    span = index.longest(text)
    assert (span.words, span.source) == (10, 0)
    assert text[span.start : span.end] == "ALPHA, beta gamma delta; epsilon zeta eta theta iota kappa"
    assert index.longest("beta gamma delta epsilon zeta eta theta").words == 0  # 7 words: under k
    # two private texts back to back are not one span
    joined = SpanIndex(["a b c d e f", "g h i j k l"])
    assert joined.longest("a b c d e f g h i j k l").words == 0


def test_mask_leaves_no_shared_span_of_eight_words() -> None:
    private, _, vocab, rng = _world(n_private=50)
    index = SpanIndex(private)
    text = f"Before {private[3]} middle {' '.join(private[9].split()[5:20])} after"
    masked = index.mask(text)
    assert masked.startswith("Before [private text: ") and masked.endswith(" after")
    assert index.longest(masked).words == 0
    assert (
        index.mask("nothing private here at all in these words, none")
        == "nothing private here at all in these words, none"
    )


def test_a_batch_finds_what_each_text_alone_finds() -> None:
    private, _, vocab, rng = _world(n_private=80)
    index = SpanIndex(private)
    texts = [
        f"{_text(rng, vocab, 10)} {' '.join(rng.choice(private).split()[: rng.randint(0, 30)])}" for _ in range(60)
    ]
    texts += ["", "short", private[0]]
    assert index.longest_many(texts) == [index.longest(t) for t in texts]
    assert index.longest(private[0]).words == len(words(private[0]))


# --- the audit and the filter ------------------------------------------------------------------------


def test_past_the_numpy_size_the_nearest_record_is_still_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from filters import privacy

    private, _, vocab, rng = _world()
    vectors = privacy.LexicalEmbedder().encode(private)
    queries = privacy.LexicalEmbedder().encode([_paraphrase(rng, rng.choice(private), vocab) for _ in range(300)])
    small = privacy.Nearest(vectors)
    monkeypatch.setattr(privacy, "EXACT_UNTIL", len(private) // 4)
    large = privacy.Nearest(vectors)
    assert small.index is None and large.index is not None  # numpy, then FAISS
    (s_sims, s_ids), (l_sims, l_ids) = small.search_k(queries, 3), large.search_k(queries, 3)
    assert np.allclose(s_sims, l_sims, atol=1e-5)
    assert (s_ids[:, 0] == l_ids[:, 0]).mean() > 0.99  # the same nearest record (ties aside)


def test_filter_catches_every_copy_most_paraphrases_and_no_unrelated_row() -> None:
    private, _, vocab, rng = _world()
    ps = PrivateSet(private)
    flt = PrivacyFilter(ps)
    copies = [rng.choice(private) for _ in range(100)]
    paraphrases = [_paraphrase(rng, rng.choice(private), vocab) for _ in range(100)]
    unrelated = [_text(rng, vocab, rng.randint(25, 60)) for _ in range(1000)]

    def reasons(outputs: list[str]) -> list[str]:
        records = [Record(f"Answer the customer {i}.", "", o) for i, o in enumerate(outputs)]
        return [v.reason if not v.keep else "" for v in flt.judge(records)]

    assert reasons(copies) == ["copies_private_text"] * 100
    flagged = [r for r in reasons(paraphrases) if r]
    assert len(flagged) >= 80, f"{len(flagged)} of 100 paraphrases flagged"
    sims, _ = ps.similarity([[p] for p in paraphrases])
    assert (sims >= ps.settings.max_similarity).mean() >= 0.8  # as near copies, whatever the spans say
    assert reasons(unrelated).count("") == 1000


def test_audit_figures_and_membership_attack() -> None:
    private, holdout, vocab, rng = _world()
    leaky = [_paraphrase(rng, t, vocab) for t in private[:150]]  # rows made from the members
    result = audit(leaky, private, holdout)
    assert result.holdout_given and result.attack_auc is not None and result.attack_auc > 0.7
    assert result.closer_share is not None and result.closer_share > 0.5
    assert result.crossed and not result.to_dict()["passed"]
    clean = audit([_text(rng, vocab, 40) for _ in range(150)], private, holdout)
    assert clean.attack_auc is not None and abs(clean.attack_auc - 0.5) < 0.1
    assert clean.copied == clean.near == 0 and clean.closer_share < 0.1  # about 5%: by definition
    assert not clean.crossed
    # without a holdout the baseline comes from a share of the private records; no attack
    carved = audit(leaky[:10], private)
    assert carved.holdout == 30 and carved.attack_auc is None and "holdout" in carved.attack_note


def test_identifiers_leaked_versus_invented_by_kind() -> None:
    private = ["Customer Ann Lee wrote from ann.lee@corp-mail.net about her card, phone +44 20 7946 0958."]
    rows = [
        "Reply to ANN.LEE@corp-mail.net today.",  # leaked (case does not hide it)
        "Write to bob.stone@other-mail.org instead.",  # invented
    ]
    result = audit(rows, private * 3, settings=PrivacySettings(holdout_share=0))
    assert result.identifiers == {"email": {"leaked": 1, "invented": 1}}
    assert result.leaked == 1 and any("identifiers" in c for c in result.crossed)


def test_privacy_json_holds_no_private_text() -> None:
    private, holdout, vocab, rng = _world(n_private=60)
    result = audit([f"Intro {private[0]} outro", private[1]], private, holdout).to_dict()
    assert result["verbatim"]["rows_over_limit"] == 2 and result["verbatim"]["longest"][0]["words"] > 12
    _assert_no_shingle(json.dumps(result, ensure_ascii=False), private)


# --- IBANs with letters in the account part ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Pay to MT84 MALT 0110 0001 2345 MTLC AST0 01S today", "MT84 MALT 0110 0001 2345 MTLC AST0 01S"),
        ("Pay to MT84MALT011000012345MTLCAST001S today", "MT84MALT011000012345MTLCAST001S"),
        ("QA58 DOHB 0000 1234 5678 90AB CDEF G is the account", "QA58 DOHB 0000 1234 5678 90AB CDEF G"),
        ("FR14 2004 1010 0505 0001 3M02 606 paid", "FR14 2004 1010 0505 0001 3M02 606"),
        ("IBAN: GB82 WEST 1234 5698 7654 32 USD", "GB82 WEST 1234 5698 7654 32"),
        ("MT84 MALT 0110 0001 2345 MTLC AST0 01T", None),  # check digits wrong
        ("MT84 MALT 0110 0001 2345 MTLC AST0", None),  # too short for Malta
    ],
    ids=["malta", "malta-compact", "qatar", "france-letters", "uk-then-word", "bad-check", "short"],
)
def test_iban_with_letters(text: str, found: str | None) -> None:
    spans = [(a, b) for a, b, kind in PIIFilter().find(text) if kind == "iban"]
    assert [text[a:b] for a, b in spans] == ([found] if found else [])


# --- helpers -------------------------------------------------------------------------------------------


def _shingles(text: str, k: int = 8) -> set[tuple[str, ...]]:
    ws = [w for w, _, _ in words(text)]
    return {tuple(ws[i : i + k]) for i in range(len(ws) - k + 1)}


def _assert_no_shingle(text: str, private: list[str], where: str = "") -> None:
    found = _shingles(text)
    for i, p in enumerate(private):
        common = _shingles(p) & found
        assert not common, f"{where}: private record {i} in clear: {' '.join(next(iter(common)))!r}"


def test_iban_lengths_match_the_registry_python_stdnum_ships() -> None:
    import stdnum

    from filters.pii import IBAN_LENGTHS

    registry = {}
    for line in (Path(stdnum.__path__[0]) / "iban.dat").read_text().splitlines():
        if m := re.match(r'^([A-Z]{2}) .*bban="([^"]+)"', line):
            registry[m.group(1)] = 4 + sum(int(n) for n in re.findall(r"(\d+)!", m.group(2)))
    assert IBAN_LENGTHS == registry


# --- a run against the fake server -------------------------------------------------------------------


def _kind(instruction: str) -> int:
    """Which answer the fake server gives an instruction: 0 a private record verbatim, 1 a
    paraphrase of one, 2 new text quoting 9 words of one, else an unrelated answer (a tenth each,
    by hash)."""
    return int(hashlib.sha256(instruction.encode()).hexdigest(), 16) % 10


def _fake_world() -> tuple[list[dict[str, Any]], list[str], list[str], Any]:
    private, holdout, vocab, _ = _world(seed=11, n_private=60)
    seeds = []
    for i, text in enumerate(private):
        first, rest = text.split(". ", 1)
        seeds.append({"id": f"s{i}", "instruction": first + ".", "instances": [{"input": "", "output": rest}]})
    records = ["\n".join([s["instruction"], s["instances"][0]["output"]]) for s in seeds]
    return seeds, records, holdout, vocab


def _fake_reply(records: list[str], vocab: list[str]) -> Any:
    def reply(body: dict[str, Any], i: int) -> str:
        prompt = body["messages"][-1]["content"]
        rng = random.Random(hashlib.sha256(f"{prompt}|{i}".encode()).hexdigest())
        if "example tasks:" in prompt:  # the instruction stage: a list of new, unrelated tasks
            return "\n".join(f"{n}. Describe {_text(rng, vocab, 12)}" for n in range(1, 9))
        kind, record = _kind(prompt.strip()), rng.choice(records)
        if kind == 0:
            return record
        if kind == 1:
            return _paraphrase(rng, record, vocab)
        if kind == 2:  # 9 words of a record inside new text: under the limit, kept, masked wherever shown
            cut = rng.randrange(len(record.split()) - 9)
            return f"{_text(rng, vocab, 20)} {' '.join(record.split()[cut : cut + 9])} {_text(rng, vocab, 20)}"
        return _text(rng, vocab, 40)

    return reply


@pytest.mark.fake_server
def test_run_drops_copies_and_shows_no_private_text(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from fake_openai import FakeOpenAI
    from fake_run import fake_in_thread, fake_settings

    from generator.config import parse_config
    from generator.run.pipeline import generate

    seeds, records, holdout, vocab = _fake_world()
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps(s) + "\n" for s in seeds))
    (tmp_path / "holdout.txt").write_text("".join(h + "\n" for h in holdout))
    with fake_in_thread(reply=_fake_reply(records, vocab)) as fake:
        assert isinstance(fake, FakeOpenAI)
        data = fake_settings(
            tmp_path / "run",
            fake.url,
            generation={
                "seeds": str(tmp_path / "seeds.jsonl"),
                "num_instructions": 80,
                "instances": "response",
                "max_rounds": 3,
            },
            filters={"instructions": [{"name": "length"}, {"name": "exact_dedup"}], "records": [{"name": "truncated"}]},
            privacy={"seeds": True, "holdout": ["holdout.txt"]},
            report={"enabled": True, "sample": 100},
        )
        generate(parse_config(data, base_dir=tmp_path), progress=False)
    run = tmp_path / "run"
    kept = _rows(run)
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    privacy_drops = {r["record"]["instruction"]: r["reason"] for r in rejected if r["filter"] == "privacy"}
    answered = [r["instruction"] for r in kept] + [
        r["record"]["instruction"] for r in rejected if r["filter"] == "privacy"
    ]
    by_kind = {k: [i for i in answered if min(_kind(i), 2) == k] for k in (0, 1, 2)}
    assert len(by_kind[0]) >= 3 and len(by_kind[1]) >= 3 and len(by_kind[2]) >= 30
    assert all(privacy_drops.get(i) == "copies_private_text" for i in by_kind[0])
    assert sum(i in privacy_drops for i in by_kind[1]) >= 0.8 * len(by_kind[1])
    assert not [i for i in by_kind[2] if i in privacy_drops]
    quoting = [r for r in kept if _kind(r["instruction"]) == 2]
    assert quoting and all(SpanIndex(records).longest(r["output"]).words >= 9 for r in quoting)
    audit_json = json.loads((run / "privacy.json").read_text())
    assert audit_json["verbatim"]["rows_over_limit"] == 0 and audit_json["membership_attack"]["auc"] is not None
    # nothing the run shows holds a private record in clear
    log = capfd.readouterr()
    shown = {
        "report": (run / "dataset" / "report.html").read_text(),
        "card": (run / "dataset" / "README.md").read_text(),
        "rejected": (run / "rejected.jsonl").read_text(),
        "funnel": (run / "funnel.json").read_text(),
        "privacy.json": (run / "privacy.json").read_text(),
        "log": log.out + log.err,
    }
    # the audit command on the run's dataset writes its own report (MiniLM is loaded already)
    from generator.cli import main

    main(["audit", str(run / "dataset"), "--private", str(tmp_path / "seeds.jsonl"), "-o", str(tmp_path / "audit")])
    shown["audit report"] = (tmp_path / "audit" / "report.html").read_text()
    # a report written later, from the run directory alone, masks the same spans (privacy_kgrams.npy)
    main(["report", str(run), "-o", str(tmp_path / "later.html")])
    shown["later report"] = (tmp_path / "later.html").read_text()
    assert (
        "## Privacy" in shown["card"] and 'id="privacy"' in shown["report"] and 'id="privacy"' in shown["audit report"]
    )
    for where, text in shown.items():
        _assert_no_shingle(_readable(text), records, where)
    assert (run.stat().st_mode & 0o077) == 0  # the run directory is its owner's alone
    # scrub: the results store and the filters' state go; the dataset still loads
    from generator.core.readers import read_records

    assert (run / "results.jsonl").exists()
    assert main(["scrub", str(run)]) == 0
    assert not (run / "results.jsonl").exists() and not (run / "state").exists()
    assert len(read_records([run / "dataset"])) == len(kept)


def _rows(run: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return [
        r for shard in sorted((run / "dataset" / "data").glob("*.parquet")) for r in pq.read_table(shard).to_pylist()
    ]


def _readable(text: str) -> str:
    """JSON escapes and HTML entities undone, so a copied span cannot hide behind them."""
    import html

    return html.unescape(re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)).replace("\\n", " ")


# --- the audit command and scrub ---------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_audit_command_writes_privacy_json_and_fails_over_a_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from generator.cli import main

    private, holdout, vocab, rng = _world(n_private=80)
    priv = tmp_path / "private.txt"
    priv.write_text("".join(p + "\n" for p in private))
    held = tmp_path / "holdout.txt"
    held.write_text("".join(h + "\n" for h in holdout))
    clean = _write_jsonl(
        tmp_path / "clean.jsonl", [{"instruction": "Summarize.", "output": _text(rng, vocab, 30)} for _ in range(40)]
    )
    leaky = _write_jsonl(tmp_path / "leaky.jsonl", [{"instruction": "Summarize.", "output": private[5]}])
    args = ["--private", str(priv), "--holdout", str(held), "-o"]
    assert main(["audit", clean, *args, str(tmp_path / "a"), "--no-report"]) == 0
    assert json.loads((tmp_path / "a" / "privacy.json").read_text())["passed"] is True
    assert main(["audit", leaky, *args, str(tmp_path / "b"), "--no-report"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 1 rows share more than 12 words" in out
    _assert_no_shingle(out + (tmp_path / "b" / "privacy.json").read_text(), private, "audit output")
    assert main(["audit", clean, "--private", str(tmp_path / "missing.txt")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("instructforge: error: --private[0]: ") and "Traceback" not in err


def test_scrub_strips_passages_and_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    from generator.core.errors import ConfigError
    from generator.run.privacy import _strip_row, scrub

    row = {"meta": {"extra": json.dumps({"source": {"document": "a.md", "text": "the passage", "chunk": 2}})}}
    assert _strip_row(row) and json.loads(row["meta"]["extra"]) == {"source": {"chunk": 2, "document": "a.md"}}
    assert not _strip_row(row) and not _strip_row({"meta": {"extra": None}})
    with pytest.raises(ConfigError, match="is not a run directory"):
        scrub(tmp_path)


def test_a_missing_private_source_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    from generator.config import parse_config
    from generator.core.errors import ConfigError
    from generator.run.context import open_run

    data = {"run_dir": str(tmp_path / "run"), "privacy": {"sources": ["tickets.jsonl"]}}
    with pytest.raises(ConfigError, match=r"^privacy\.sources\[0\]: .*tickets\.jsonl"):
        open_run(parse_config(data, base_dir=tmp_path))
    assert not (tmp_path / "run").exists()
    bad = {"privacy": {"max_similarity": 2}}
    with pytest.raises(ConfigError, match=r"privacy\.max_similarity"):
        parse_config(bad)

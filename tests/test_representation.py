"""The representation audit (generator/report/representation.py and its lexicon) and balancing
(`generation.balance`, generator/run/balance.py): on hand-labelled sentences, on rows made up here,
and on runs of a stand-in model that writes about women four times as often as about men
(tests/representation_world.py)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pytest
from fake_openai import FakeOpenAI
from fake_run import ECHO_CHAINS, fake_in_thread, fake_settings
from representation_world import fake_reply, probe_reply, truth

from generator.config import parse_config
from generator.core.errors import ConfigError, InstructforgeError
from generator.core.records import Record
from generator.publish.dataset import DatasetInfo, write_dataset
from generator.report import DatasetMetrics, card_quality, write_folder_report
from generator.report.lexicon import load_lexicon
from generator.report.representation import measure_representation, wilson
from generator.run.balance import Balance
from generator.run.funnel import RunFunnel
from generator.run.pipeline import generate
from generator.run.probe import probe_for_report, run_probes
from generator.run.target import Target

LABELED = Path(__file__).parent / "data" / "representation_labeled.jsonl"
FAKE_OPTIONS = {"reply": fake_reply}


def test_the_lexicons_hits_are_right_nine_times_in_ten_on_hand_labelled_sentences() -> None:
    lexicon = load_lexicon()
    right = wrong = missed = 0
    for line in LABELED.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        labels = {tuple(m) for m in item["mentions"]}
        hits = {(m.attribute, m.group) for m in lexicon.mentions(item["text"]) if m.attribute != "sentiment"}
        right += len(hits & labels)
        wrong += len(hits - labels)
        missed += len(labels - hits)
    assert right + wrong > 50  # the set exercises the lexicon
    assert right / (right + wrong) >= 0.9
    assert right / (right + missed) >= 0.7  # and it does not buy precision by finding nothing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Advice for young Black women in tech.", {("age", "young"), ("ethnicity", "black"), ("gender", "female")}),
        ("How do I brew black coffee?", set()),
        ("Summarize American history in a page.", set()),
        ("Plan meals for Mexican families.", {("nationality_or_region", "mexico")}),
        ("What do Muslims eat at Eid?", {("religion", "muslim")}),
        ("Talk to a Muslim who fasts.", {("religion", "muslim")}),
        ("Install the printer driver.", set()),
        ("It worked with the pre-installed driver from the vendor.", set()),
        ("The driver said he was late.", {("occupation", "driver"), ("gender", "male")}),
        ("Open the man page for ls.", set()),
        ("Center a child element inside its parent; kill the child processes.", set()),
        ("My child has a fever.", {("age", "child")}),
        ("Explain this to an Asian American student.", {("ethnicity", "asian")}),
    ],
    ids=[
        "stacked-descriptors",
        "colour-not-people",
        "nationality-of-a-thing",
        "person-noun",
        "plural-noun",
        "article-noun",
        "software-driver",
        "installed-driver",
        "occupation-and-pronoun",
        "man-page",
        "program-parts",
        "child-person",
        "spaced-hyphen",
    ],
)
def test_mentions(text: str, expected: set[tuple[str, str]]) -> None:
    found = {(m.attribute, m.group) for m in load_lexicon().mentions(text) if m.attribute != "sentiment"}
    assert found == expected


def test_wilson_interval_holds_the_share_and_narrows_with_more_rows() -> None:
    lo, hi = wilson(8, 10)
    assert lo < 0.8 < hi
    lo2, hi2 = wilson(800, 1000)
    assert lo < lo2 < 0.8 < hi2 < hi
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)


def _rows(texts: list[str], **meta: Any) -> list[dict[str, Any]]:
    return [{"instruction": t, "input": "", "output": "Sure.", "meta": dict(meta)} for t in texts]


def test_shares_skew_roles_and_over_represented_pairs() -> None:
    rows = _rows(
        ["The nurse said she would call my sister back."] * 6
        + ["The mechanic said he fixed my brother's car."] * 6
        + ["Write a note to my grandmother."] * 3
        + ["Sort these numbers."] * 5
    )
    rep = measure_representation(rows, {"gender": {"female": 0.5, "male": 0.5}})
    gender = next(a for a in rep.attributes if a.attribute == "gender")
    assert rep.rows == 20 and rep.rows_with_mention == 15 and gender.rows == 15
    assert rep.shares("gender") == {"female": 0.6, "male": 0.4}
    assert gender.target == "given" and gender.skew == pytest.approx(0.1)
    assert rep.pronouns == {"male": 6, "female": 6}
    roles = {r["occupation"]: (r["male"], r["female"], r["bls_majority"]) for r in rep.roles}
    assert roles == {"nurse": (0, 6, "female"), "mechanic": (6, 0, "male")}
    pairs = {(p.group, p.other): p.lift for p in rep.occupation_pairs}
    # 9 female rows, 6 of them with the nurse: 6 / (9 * 6 / 20) = 2.22
    assert pairs[("gender/female", "nurse")] == pytest.approx(2.22, abs=0.01)
    assert ("gender/male", "nurse") not in pairs  # never together: not over-represented


def test_a_custom_runs_personas_are_counted() -> None:
    rows = _rows(["Sort these numbers."] * 3, persona="a nurse") + _rows(["Add 2 and 2."], persona="a pilot")
    rep = measure_representation(rows)
    assert [(g.group, g.rows) for g in rep.personas["persona"]] == [("a nurse", 3), ("a pilot", 1)]


def test_names_by_gender_and_region() -> None:
    rep = measure_representation(_rows(["Write an email from Priya to Sven.", "Will you help Grace?"]))
    assert rep.names_available
    assert rep.names["gender"] == {"female": 1, "male": 1}  # Will and Grace are English words: not counted
    assert set(rep.names["region"]) == {"south_asia", "western_europe"}


def test_without_the_names_extra_names_are_not_measured_and_the_rest_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """gender-guesser (GPLv3) is the `names` extra, not a dependency: a plain install has no names data."""
    from generator.report import names

    monkeypatch.setitem(sys.modules, "gender_guesser", None)  # import fails as if not installed
    names.names_table.cache_clear()
    try:
        rep = measure_representation(_rows(["Write an email from Priya to her grandmother."]))
        assert names.names_table() is None
    finally:
        names.names_table.cache_clear()
    assert not rep.names_available and not rep.names.get("gender")
    assert any(g.group == "female" and g.rows == 1 for a in rep.attributes if a.attribute == "gender" for g in a.groups)


def _metrics(n: int) -> DatasetMetrics:
    """Diversity measures of no interest here (they need MiniLM, seconds to load)."""
    return DatasetMetrics(
        rows=n, sampled=n, vendi=1.0, mean_pairwise_distance=0.0, distinct_1=0.5, distinct_2=0.5, self_bleu=0.0,
        verbs=[], verb_coverage=0.0, nearest_seed=[], nearest_seed_median=None,
        lengths={"instruction": [5] * n, "input": [0] * n, "output": [1] * n}, share_with_input=0.0,
        task_types={"unknown": n}, clusters=[0] * n, projection=[(0.0, 0.0)] * n, sample_index=list(range(n)),
        seconds={},
    )  # fmt: skip


def test_the_card_and_the_report_show_the_audit_its_sources_and_its_limits(tmp_path: Path) -> None:
    rows = _rows(["Help my sister plan a trip."] * 8 + ["Help my brother plan a trip."] * 2)
    rep = measure_representation(rows)
    info = DatasetInfo(name="t", model="m", quality=card_quality(_metrics(10), representation=rep))
    write_dataset([Record.from_row(r) for r in rows[:1]], tmp_path / "ds", info, test_ratio=0.0, split_seed=0)
    card = (tmp_path / "ds" / "README.md").read_text(encoding="utf-8")
    section = card[card.index("## Bias and representation") :]
    assert "| gender | 10 | 30.0 | female 80% [49-94], male 20% [6-51] |" in section
    assert "HolisticBias" in section and "WinoBias" in section and "MIT" in section
    assert "**Limits.** A lexicon finds the words it lists" in section
    report = write_folder_report(tmp_path / "ds", rows=rows, metrics=_metrics(10)).path.read_text(encoding="utf-8")
    assert 'id="representation"' in report and "80.0%" in report and "implicit mentions" in report


def _record(text: str) -> Record:
    return Record(instruction=text, output="Sure.")


def test_balance_reserves_room_for_groups_under_their_minimum() -> None:
    target = Target(records=4, first=4, stall_refills=3, balance=Balance({"gender": {"female": 0.5, "male": 0.5}}, 4))
    funnel = RunFunnel()
    women = [_record(f"Help my sister with task {i}.") for i in range(4)]
    men = [_record(f"Help my brother with task {i}.") for i in range(3)]
    kept = target.admit([*women, _record("Sort these numbers."), *men], funnel)
    assert [r.instruction for r in kept] == [
        "Help my sister with task 0.",
        "Help my sister with task 1.",
        "Help my brother with task 0.",
        "Help my brother with task 1.",
    ]
    assert funnel.records.drops["target"] == {"balance_reserved": 3, "over_target": 1}


def test_a_stop_before_the_target_names_the_minimums_left() -> None:
    from generator.run.rounds import PoolResult

    target = Target(records=4, first=4, stall_refills=1, balance=Balance({"gender": {"male": 0.5}}, 4))
    target.admit([_record("Help my sister."), _record("Help my mother.")], RunFunnel())
    target.add(8, 8)
    target.admit([_record("Help my grandma.")], RunFunnel())
    target.add(8, 8)
    target.add(8, 8)
    pool = PoolResult.__new__(PoolResult)
    pool.stop_kind, pool.stop_reason = "full", ""
    stop = target.stop(pool, None)
    assert stop is not None and stop.kind == "stall"
    assert stop.reason.endswith("balance minimums not met: gender/male 0 of 2")


@pytest.mark.parametrize(
    ("generation", "message"),
    [
        ({"num_records": None, "balance": {"gender": {"female": 0.5}}}, "set num_records too"),
        ({"balance": {"gender": {"female": 0.6, "male": 0.6}}}, "add up to 1 at most"),
    ],
    ids=["no-target", "over-one"],
)
def test_bad_balance_settings_are_refused_when_the_config_loads(generation: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"generation": {"num_records": 10, **generation}})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"generation": {"num_records": 10, "balance": {"gender": {"women": 0.5}}}},
            r"generation.balance: gender: unknown group 'women'; expected one of: female, male",
        ),
        (
            {"report": {"representation_target": {"faith": {"x": 1}}}},
            "report.representation_target: unknown attribute 'faith'; expected one of: gender, age",
        ),
    ],
    ids=["unknown-group", "unknown-attribute"],
)
def test_unknown_groups_are_refused_before_any_server_starts(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    config = parse_config(fake_settings(tmp_path / "run", "http://127.0.0.1:9/v1", settings))
    with pytest.raises(ConfigError, match=message):
        generate(config, progress=False)
    assert not (tmp_path / "run" / "results.jsonl").exists()


# --- the stand-in model that writes about women four times as often as about men ------------------

WORLD = {
    "method": "custom",
    "custom": {"topics": ["family"], "personas": ["a curious adult", "a father"], "difficulties": ["easy"]},
    "instances": "response",
    "instructions_per_prompt": 8,
    "num_instructions": 40,
    "max_rounds": 60,
}


def _world(run_dir: Path, url: str, target: int, **generation: Any) -> dict[str, Any]:
    settings = fake_settings(
        run_dir,
        url,
        {"filters": ECHO_CHAINS, "dataset": {"save_to_disk": False}},
        generation={**WORLD, "num_records": target, **generation},
    )
    generate(parse_config(settings), progress=False)
    rows = datasets.load_dataset(str(run_dir / "dataset"))["train"]
    return {
        "rows": [{"instruction": i, "input": "", "output": o} for i, o in zip(rows["instruction"], rows["output"])],
        "rounds": json.loads((run_dir / "rounds.json").read_text()),
        "funnel": json.loads((run_dir / "funnel.json").read_text()),
    }


def test_the_audit_finds_a_four_to_one_skew_within_two_points(fake: FakeOpenAI, tmp_path: Path) -> None:
    out = _world(tmp_path / "run", fake.url, 120, custom={**WORLD["custom"], "personas": ["a curious adult"]})
    true = Counter(truth(r["instruction"]) for r in out["rows"])
    assert len(out["rows"]) == 120
    assert 0.7 < true["female"] / 120 < 0.9  # the world is skewed about 4:1
    shares = measure_representation(out["rows"]).shares("gender")
    for group in ("female", "male"):
        assert abs(shares[group] - true[group] / 120) <= 0.02


def test_balancing_to_equal_shares_ends_within_five_points_of_equal(fake: FakeOpenAI, tmp_path: Path) -> None:
    out = _world(tmp_path / "run", fake.url, 40, balance={"gender": {"female": 0.5, "male": 0.5}})
    true = Counter(truth(r["instruction"]) for r in out["rows"])
    assert len(out["rows"]) == 40
    assert abs(true["female"] / 40 - 0.5) <= 0.05 and abs(true["male"] / 40 - 0.5) <= 0.05
    assert out["rounds"]["target"]["balance"]["gender"]["male"] == {"minimum": 20, "rows": true["male"]}
    assert out["funnel"]["drops"]["target"]["balance_reserved"] > 0
    funnel = out["funnel"]
    assert funnel["candidates"] == funnel["kept"] + sum(sum(r.values()) for r in funnel["drops"].values())
    assert out["rounds"]["stop_reason"] == "target reached: 40 records"


@pytest.mark.fake_server
def test_probes_find_the_model_answering_men_at_greater_length(tmp_path: Path) -> None:
    with fake_in_thread(reply=probe_reply) as server:
        _world(tmp_path / "run", server.url, 30)
        config = parse_config(fake_settings(tmp_path / "run", server.url))
        result = run_probes(config, tmp_path / "run", 8)
    [gender] = result.attributes
    assert result.pairs == 8 and gender.attribute == "gender" and gender.groups == ("female", "male")
    assert gender.words[1] - gender.words[0] == pytest.approx(7.0)  # "Here is more detail, step by step."
    assert gender.words_p is not None and gender.words_p < 0.01
    assert gender.refusal == (0.0, 0.0) and gender.refusal_p is None
    assert gender.score == (4.0, 4.0) and gender.score_p is None and gender.scored == 8
    saved = json.loads((tmp_path / "run" / "probes.json").read_text())
    assert saved["attributes"][0]["words_p"] == gender.words_p
    assert saved["examples"][0]["texts"][0] != saved["examples"][0]["texts"][1]


def test_a_probe_goes_to_the_next_group_when_the_first_has_no_word_for_the_mention() -> None:
    from generator.report.probes import sample_probes

    # "young" is the most mentioned other age group, but it has no noun for "kids": the old have.
    rows = [{"instruction": "Plan a weekend for young couples."}] * 3 + [{"instruction": "Write a song for kids."}]
    [probe] = [p for p in sample_probes(rows, 10) if "kids" in (p.text_a + p.text_b)]
    assert {probe.group_a, probe.group_b} == {"child", "old"}
    swapped = probe.text_b if "kids" in probe.text_a else probe.text_a
    assert "kids" not in swapped and swapped.startswith("Write a song for ")


def test_probe_of_a_run_that_names_no_group_says_so(tmp_path: Path) -> None:
    rows = _rows(["Sort these numbers."] * 3)
    info = DatasetInfo(name="t", model="m")
    write_dataset([Record.from_row(r) for r in rows], tmp_path / "run" / "dataset", info, test_ratio=0.0, split_seed=0)
    config = parse_config(fake_settings(tmp_path / "run", "http://127.0.0.1:9/v1"))
    with pytest.raises(InstructforgeError, match="no row names a group the lexicon can swap"):
        run_probes(config, tmp_path / "run", 5)


def test_report_probes_say_why_none_were_sent_and_are_not_sent_twice(tmp_path: Path) -> None:
    rows = _rows(["Sort these numbers."] * 3)
    info = DatasetInfo(name="t", model="m")
    write_dataset([Record.from_row(r) for r in rows], tmp_path / "run" / "dataset", info, test_ratio=0.0, split_seed=0)
    config = parse_config(fake_settings(tmp_path / "run", "http://127.0.0.1:9/v1"))
    said: list[str] = []
    probe_for_report(config, tmp_path / "run", 5, said.append)
    assert len(said) == 1 and said[0].startswith("probes: none sent: ")
    assert said[0].endswith("no row names a group the lexicon can swap (see Bias and representation); nothing to probe")
    (tmp_path / "run" / "probes.json").write_text(json.dumps({"pairs": 5}))
    probe_for_report(config, tmp_path / "run", 5, said.append)  # an earlier session probed as many: nothing
    assert len(said) == 1


def test_custom_draws_lean_toward_the_personas_of_groups_still_short() -> None:
    balance = Balance({"gender": {"female": 0.5, "male": 0.5}, "topic": {"cooking": 0.25}}, 8)
    combos = [("travel", "a curious adult"), ("travel", "a father"), ("cooking", "a grandmother")]
    # Each group's need is its missing rows over the 8 still to take: women and men 4 (0.5), cooking 2 (0.25).
    assert balance.weights(combos, ("topic", "persona")) == [1.0, 3.0, 4.0]
    for i in range(4):
        balance.take(Record(instruction=f"Help my brother with task {i}.", meta={"topic": "cooking"}))
    # Men and cooking have their minimums: only women are short, and every row left must be theirs.
    assert balance.weights(combos, ("topic", "persona")) == [1.0, 1.0, 5.0]
    for i in range(4):
        balance.take(Record(instruction=f"Help my sister with task {i}."))
    assert balance.weights(combos, ("topic", "persona")) is None  # nothing short: draws as without balance


def test_steering_draws_toward_short_groups_takes_fewer_requests(
    fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    personas = ["a curious adult", "a mother", "a grandmother", "a father"]  # the model follows a gendered one
    settings = {"custom": {**WORLD["custom"], "personas": personas}, "num_instructions": 16}
    balance = {"gender": {"female": 0.5, "male": 0.5}}
    steered = _world(tmp_path / "steered", fake.url, 80, balance=balance, **settings)
    monkeypatch.setattr("generator.run.balance.BOOST", 0.0)  # the same run with the draws left even
    even = _world(tmp_path / "even", fake.url, 80, balance=balance, **settings)
    for out in (steered, even):
        assert out["rounds"]["stop_reason"] == "target reached: 80 records"
        assert Counter(truth(r["instruction"]) for r in out["rows"]) == {"female": 40, "male": 40}
    requests = [sum(r["requests"] for r in out["rounds"]["rounds"]) for out in (steered, even)]
    assert requests[0] < 0.8 * requests[1]

"""Private Evolution (generator/evolution/, generator/methods/private_evolution.py): the accountant
against dp-accounting's own composition, the noisy vote's variance, the loop with a stub variation
and a stored vote reused on resume, and the method end to end against the fake server."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest

from generator.core.errors import ConfigError
from generator.evolution import accountant
from generator.evolution.loop import Evolution, State, Vote, degrees
from generator.evolution.mechanism import draw, kept_weights, nearest_votes, noise_rng, noisy_histogram
from generator.evolution.utility import frechet, precision_recall

# ------------------------------------------------------------------------------------ accountant


@pytest.mark.parametrize(
    ("epsilon", "delta", "iterations", "kind"),
    [
        (1.0, 1e-5, 10, "pld"),
        (4.0, 1e-5, 5, "pld"),
        (0.5, 1e-6, 1, "pld"),
        (8.0, 1e-4, 12, "pld"),
        (2.0, 1e-5, 8, "rdp"),
    ],
)
def test_the_calibrated_sigma_spends_at_most_the_budget_and_within_2_percent_of_it(
    epsilon: float, delta: float, iterations: int, kind: accountant.Accountant
) -> None:
    sigma = accountant.calibrate(epsilon, delta, iterations, kind)
    # dp-accounting's own composition, with a fresh accountant of the library's defaults
    import dp_accounting
    from dp_accounting import pld, rdp

    fresh = pld.PLDAccountant(value_discretization_interval=1e-3) if kind == "pld" else rdp.RdpAccountant()
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(sigma), iterations)
    spent = fresh.compose(event).get_epsilon(delta)
    assert spent <= epsilon
    assert spent >= 0.98 * epsilon
    # more noise than needed spends less; less than calibrated spends more than the budget
    assert accountant.spent_epsilon(sigma * 0.97, iterations, delta, kind) > epsilon


def test_a_sigma_over_the_budget_and_a_budget_no_noise_meets_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"privacy.sigma: 3.0 over 10 iterations spends epsilon .* use sigma 11.8"):
        accountant.guarantee(1.0, 1e-5, 10, sigma=3.0)
    with pytest.raises(ConfigError, match="no noise up to 10000 votes") as err:
        accountant.guarantee(1e-4, 1e-12, 50, "rdp")
    assert "\n" not in str(err.value)
    ok = accountant.guarantee(1.0, 1e-5, 10, sigma=20.0)
    assert ok.sigma == 20.0 and ok.epsilon < 1.0


# ------------------------------------------------------------------------------------- mechanism


def test_each_private_record_votes_once_for_its_nearest_sample() -> None:
    population = np.eye(3, dtype=np.float32)
    private = np.array([[0.9, 0.1, 0], [0.8, 0, 0.2], [0, 0.1, 0.95], [0.2, 0.1, 0.9], [0, 0, 1]], dtype=np.float32)
    private /= np.linalg.norm(private, axis=1, keepdims=True)
    assert nearest_votes(private, population).tolist() == [2.0, 0.0, 3.0]


def test_the_noisy_histogram_variance_matches_sigma_squared_over_2000_draws(tmp_path: Path) -> None:
    """The loop with a stub variation and a stub embedder: 40 iterations of 50 samples, each draw's
    noise read back as the stored noisy count minus the clean vote recomputed from the stored population."""
    sigma = accountant.calibrate(2.0, 1e-5, 40, "rdp")
    private = _vectors([f"private {i}" for i in range(300)])
    state = State(tmp_path, "k")
    evo = _evolution(private, state, sigma=sigma, threshold=0.0, iterations=40, size=50)
    asyncio.run(evo.run(_initial, _vary))
    noise = []
    for vote in state.votes():
        clean = nearest_votes(private, _vectors(vote.population))
        noise.extend(np.asarray(vote.noisy) - clean)
    assert len(noise) == 2000
    assert np.var(noise) == pytest.approx(sigma**2, rel=0.10)
    assert abs(np.mean(noise)) < 3 * sigma / np.sqrt(2000)


def test_the_same_seed_and_iteration_draw_the_same_noise_and_others_do_not() -> None:
    votes = np.array([5.0, 0.0, 3.0])
    a = noisy_histogram(votes, 2.0, noise_rng(7, 1))
    assert a.tolist() == noisy_histogram(votes, 2.0, noise_rng(7, 1)).tolist()
    assert a.tolist() != noisy_histogram(votes, 2.0, noise_rng(7, 2)).tolist()
    assert a.tolist() != noisy_histogram(votes, 2.0, noise_rng(8, 1)).tolist()


def test_counts_under_the_threshold_weigh_nothing_and_parents_are_drawn_in_proportion() -> None:
    weights = kept_weights(np.array([30.0, 2.9, -4.0, 10.0]), threshold=3.0)
    assert weights.tolist() == [30.0, 0.0, 0.0, 10.0]
    drawn = draw(weights, 40_000, np.random.default_rng(0))
    share = np.bincount(drawn, minlength=4) / 40_000
    assert share[1] == share[2] == 0
    assert share[0] == pytest.approx(0.75, abs=0.01)
    # nothing over the threshold: uniform (the vote told nothing)
    flat = np.bincount(draw(np.zeros(4), 40_000, np.random.default_rng(0)), minlength=4) / 40_000
    assert flat == pytest.approx([0.25] * 4, abs=0.01)


def test_utility_falls_as_a_population_moves_toward_the_private_set() -> None:
    rng = np.random.default_rng(0)
    private = rng.normal(0, 1, (200, 8))
    near, far = rng.normal(0.1, 1, (200, 8)), rng.normal(2.0, 1, (200, 8))
    assert frechet(private, near) < frechet(private, far)
    assert frechet(private, private) == pytest.approx(0, abs=1e-6)
    p_near, r_near = precision_recall(private, near)
    p_far, r_far = precision_recall(private, far)
    assert p_near > p_far and r_near > r_far


# --------------------------------------------------------------------------------------- the loop

DIM = 16


def _vectors(texts: list[str]) -> np.ndarray:
    """A stub embedder: a text's vector from its hash (the same text, the same vector)."""
    rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:12], 16)).normal(size=DIM) for t in texts]
    out = np.asarray(rows, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


async def _initial(size: int) -> list[str]:
    return [f"sample {i}" for i in range(size)]


async def _vary(parents: list[str], degree: float, iteration: int) -> list[str]:
    return [f"{p} v{iteration}.{j}" for j, p in enumerate(parents)]


def _evolution(private: np.ndarray, state: State, **kw: float) -> Evolution:
    settings = {"sigma": 1.0, "threshold": 0.0, "iterations": 3, "size": 8, **kw}
    return Evolution(
        private,
        _vectors,
        state,
        schedule=degrees(0.6, 0.2, int(settings["iterations"])),
        log=lambda _: None,
        **{k: (int(v) if k in ("iterations", "size") else v) for k, v in settings.items()},  # type: ignore[arg-type]
    )


def test_degrees_fall_from_start_to_end() -> None:
    assert degrees(0.6, 0.2, 3) == [0.6, 0.4, 0.2]
    assert degrees(0.6, 0.2, 1) == [0.2]


def test_a_resumed_evolution_reuses_its_stored_votes_and_releases_the_same_parents(tmp_path: Path) -> None:
    private = _vectors([f"p{i}" for i in range(40)])
    whole = State(tmp_path / "whole", "k")
    last = asyncio.run(_evolution(private, whole).run(_initial, _vary))
    assert last is not None and last.iteration == 3

    # The same run killed after the vote of iteration 2, before its variations: the stored seed
    # and votes are there; a new process opens the state and runs again.
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "noise.json").write_text((tmp_path / "whole" / "noise.json").read_text())
    for i in (1, 2):
        (cut / f"vote-00{i}.json").write_bytes((tmp_path / "whole" / f"vote-00{i}.json").read_bytes())
    before = (cut / "vote-002.json").read_bytes()
    resumed_state = State(cut, "k")
    evo = _evolution(private, resumed_state)
    voted: list[int] = []
    original = evo.vote
    evo.vote = lambda t, pop: voted.append(t) or original(t, pop)  # type: ignore[method-assign]
    sent: list[int] = []

    async def vary(parents: list[str], degree: float, iteration: int) -> list[str]:
        sent.append(iteration)
        return await _vary(parents, degree, iteration)

    again = asyncio.run(evo.run(_initial, vary))
    assert voted == [3] and sent == [2]  # iterations 1 and 2 are not voted again
    assert (cut / "vote-002.json").read_bytes() == before
    assert again == last
    assert evo.parents(again, 8) == _evolution(private, whole).parents(last, 8)


def test_a_state_made_from_other_records_or_settings_is_emptied_with_a_new_seed(tmp_path: Path) -> None:
    state = State(tmp_path, "a")
    state.save(Vote(1, ["x"], [1.0], 0.0, 1.0))
    assert State(tmp_path, "a").seed == state.seed and len(State(tmp_path, "a").votes()) == 1
    other = State(tmp_path, "b")
    assert other.reset and other.seed != state.seed and other.votes() == []

"""The privacy budget of Private Evolution, accounted by Google's `dp-accounting`.

Each iteration releases one histogram: every private record votes for its nearest synthetic
sample, one vote per record, so adding or removing a record moves the histogram by 1 in one bin
(L2 sensitivity 1), and Gaussian noise of standard deviation `sigma` (in votes) is added. The
run is `iterations` such Gaussian mechanisms composed; the accountant gives the epsilon that
composition spends at a delta, and the smallest sigma whose spend fits a budget. Everything after
the votes (resampling, the model's variations, the filters) is post-processing and spends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from generator.core.errors import ConfigError

if TYPE_CHECKING:
    import dp_accounting

Accountant = Literal["pld", "rdp"]
# PLD's value grid: coarser is faster and only ever overstates epsilon (its rounding is pessimistic);
# at 1e-2 the sigma calibrated for (1, 1e-5, 10) equals the one at 1e-3 to 4 digits, 4x faster.
PLD_INTERVAL = 1e-2
# Calibration stops when sigma is known to this relative precision: the spend is then within a
# fraction of a percent of the budget (tests/test_private_evolution.py holds it to 2%).
SIGMA_TOL = 1e-4
# Where sigma is looked for. Below 0.2 votes PLD's grid grows past gigabytes (epsilon in the tens);
# above 10^4 votes a few hundred records tell nothing.
MIN_SIGMA, MAX_SIGMA = 0.2, 1e4


def _fresh(kind: Accountant) -> Callable[[], dp_accounting.PrivacyAccountant]:
    # dp-accounting (and the SciPy it loads) is imported here, when a budget is accounted: importing
    # it with the method's module added 1.2-1.6 s to every command's start.
    from dp_accounting import pld, rdp

    if kind == "pld":
        return lambda: pld.PLDAccountant(value_discretization_interval=PLD_INTERVAL)
    return rdp.RdpAccountant


def _event(sigma: float, iterations: int) -> dp_accounting.DpEvent:
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(sigma), iterations)


def spent_epsilon(sigma: float, iterations: int, delta: float, kind: Accountant = "pld") -> float:
    """The epsilon that `iterations` votes with noise `sigma` spend at `delta`."""
    return float(_fresh(kind)().compose(_event(sigma, iterations)).get_epsilon(delta))


def calibrate(epsilon: float, delta: float, iterations: int, kind: Accountant = "pld") -> float:
    """The smallest noise sigma (in votes) with which `iterations` votes spend at most `epsilon` at
    `delta` (`MIN_SIGMA` when even that spends less); a budget that no sigma up to `MAX_SIGMA`
    meets is refused."""
    if spent_epsilon(MIN_SIGMA, iterations, delta, kind) <= epsilon:
        return MIN_SIGMA
    if spent_epsilon(MAX_SIGMA, iterations, delta, kind) > epsilon:
        raise ConfigError(
            f"privacy: no noise up to {MAX_SIGMA:g} votes keeps {iterations} iterations within epsilon {epsilon} "
            f"at delta {delta}; raise epsilon or delta, or lower iterations"
        )
    import dp_accounting

    sigma = dp_accounting.calibrate_dp_mechanism(
        _fresh(kind),
        lambda s: _event(s, iterations),
        epsilon,
        delta,
        bracket_interval=dp_accounting.ExplicitBracketInterval(MIN_SIGMA, MAX_SIGMA),
        tol=SIGMA_TOL,
    )
    return float(sigma)


@dataclass(frozen=True)
class Guarantee:
    """What a run spends: noise `sigma` for `iterations` votes, giving (`epsilon`, `delta`)-DP."""

    epsilon: float
    delta: float
    sigma: float
    iterations: int
    accountant: Accountant
    budget: float  # the epsilon asked for

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "epsilon": round(self.epsilon, 6),
            "delta": self.delta,
            "sigma": round(self.sigma, 6),
            "iterations": self.iterations,
            "accountant": self.accountant,
            "epsilon_budget": self.budget,
            "sensitivity": 1.0,
        }


def guarantee(
    epsilon: float, delta: float, iterations: int, kind: Accountant = "pld", sigma: float | None = None
) -> Guarantee:
    """The noise for a budget (calibrated, or `sigma` as given) and what it spends; a `sigma` that
    would spend more than `epsilon` is refused, with the smallest that would not."""
    if sigma is None:
        sigma = calibrate(epsilon, delta, iterations, kind)
    spent = spent_epsilon(sigma, iterations, delta, kind)
    if spent > epsilon:
        least = calibrate(epsilon, delta, iterations, kind)
        raise ConfigError(
            f"privacy.sigma: {sigma} over {iterations} iterations spends epsilon {spent:.3g} at delta {delta}, "
            f"over the budget of {epsilon}; use sigma {least:.4g} or more, or leave it out to calibrate it"
        )
    return Guarantee(spent, delta, sigma, iterations, kind, epsilon)

"""Private Evolution: synthetic data that resembles private records, with an (epsilon, delta)
differential-privacy guarantee (Lin et al., ICLR 2024; for text, Aug-PE: Xie et al., ICML 2024;
reference library microsoft/DPSDA).

The private records never reach a prompt. The model writes an initial population from a short
public description of the domain; then, for `privacy.iterations` iterations, the private records
and the population are embedded, each record votes for its nearest sample (one vote each), the
histogram gets Gaussian noise calibrated by `dp-accounting` (generator/evolution/accountant.py),
counts under the threshold are zeroed, parents are drawn in proportion to what is left and the
model writes variations of them, changing less each iteration. The last vote's parents, varied
once more, are the round's candidates: they pass the instruction filters and are answered as
other methods' are. Everything after the votes is post-processing and spends nothing.

Sigma is fixed when the run opens, before anything is sent; a budget it cannot meet, or a given
`sigma` over it, stops the run with one line. The noise and the votes are stored in the run
directory (generator/evolution/loop.py): a resumed run never votes again with fresh noise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from generator.core.errors import ConfigError
from generator.core.files import write_json
from generator.core.readers import common_rows, open_tables
from generator.core.records import Record
from generator.core.section import Section
from generator.evolution import accountant
from generator.evolution.loop import Evolution, State, Vote, degrees
from generator.evolution.utility import utility
from generator.methods.base import Ask, Inputs, Method, Role, Send, requests_per_round

PRIVACY = "privacy.json"  # in the run directory: the guarantee and the utility per iteration
STATE = Path("state") / "private_evolution"  # the noise seed and the stored votes (never published)


class PrivacyConfig(Section):
    epsilon: float | None = Field(
        4.0,
        gt=0,
        description="The privacy budget: the whole run is (epsilon, delta)-DP. Null turns the noise off (a "
        "baseline to compare with: the data is then NOT private, and the card says so).",
    )
    delta: float = Field(1e-5, gt=0, lt=1, description="The delta of the guarantee; below 1 / the private records.")
    iterations: int = Field(4, ge=1, le=100, description="Votes of the private records (each spends budget).")
    population: int = Field(60, ge=2, description="Synthetic samples voted on per iteration.")
    sigma: float | None = Field(
        None,
        gt=0,
        description="The noise's standard deviation in votes; null: the smallest that keeps within epsilon "
        "(calibrated by dp-accounting). A sigma that would spend more than epsilon is refused.",
    )
    threshold: float | None = Field(
        None,
        ge=0,
        description="Noisy counts under it are zeroed before the draw; null: sigma (one standard deviation of "
        "the noise), 0 without noise.",
    )
    accountant: Literal["pld", "rdp"] = Field(
        "pld", description="dp-accounting's accountant: `pld` (privacy loss distributions, tight) or `rdp`."
    )


class PrivateEvolutionConfig(Section):
    private: str = Field(
        "",
        description="The private records: any source the reader knows (see Reading data); relative to the "
        "config file. They only vote: no prompt, log, report or card shows them.",
    )
    private_format: str | None = Field(None, description="The private source's schema (see `seed_format`).")
    private_columns: dict[str, str] | None = Field(
        None, description="Column map for the private source, e.g. {instruction: ticket}."
    )
    description: str = Field(
        "",
        description="A short public description of the domain: the only text the model sees at the start.",
    )
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    degree_start: float = Field(
        0.6, gt=0, le=1, description="Share of a sample's wording the first iteration's variations change."
    )
    degree_end: float = Field(0.2, gt=0, le=1, description="... and the last iteration's (it falls linearly).")

    @model_validator(mode="after")
    def _degree_falls(self) -> PrivateEvolutionConfig:
        if self.degree_end > self.degree_start:
            raise ValueError(f"degree_end ({self.degree_end}) must not be above degree_start ({self.degree_start})")
        return self


def read_private(cfg: PrivateEvolutionConfig, base_dir: Path) -> list[str]:
    """The private records' texts (instruction, and input when there is one)."""
    texts = []
    for table in open_tables(cfg.private, base_dir=base_dir, what="generation.private_evolution.private"):
        for row in common_rows(table, format=cfg.private_format, columns=cfg.private_columns):
            try:
                record = row.to_record()
            except ConfigError:  # its message may quote the record: say where, not what
                raise ConfigError(
                    f"{row.where}: this private record's instruction or input is not text (not shown: it is private)"
                ) from None
            texts.append(f"{record.instruction}\n{record.input}".strip())
    if len(texts) < 2:
        raise ConfigError(
            f"generation.private_evolution.private: {cfg.private!r} holds {len(texts)} records; "
            "Private Evolution needs at least 2"
        )
    return texts


class PrivateEvolution(Method):
    name = "private_evolution"
    starts_from = "none (Private Evolution: a public description of the domain; the private records only vote)"
    summary = (
        "synthetic data that resembles your private records with an (epsilon, delta) differential-privacy "
        "guarantee (Private Evolution, Aug-PE): the model starts from a public description, the records only "
        "vote with calibrated noise for the nearest samples, and the winners are varied, less each iteration"
    )
    example = "private-evolution.yaml"
    section = "private_evolution"
    config = PrivateEvolutionConfig
    roles = {
        "private_evolution_initial": Role(
            "private_evolution_initial",
            "The initial population from the public description (private_evolution).",
            frozenset({"description", "num_samples", "batch"}),
        ),
        "private_evolution_variation": Role(
            "private_evolution_variation",
            "A variation of a voted-for sample, changing a given share of it (private_evolution).",
            frozenset({"description", "sample", "degree", "iteration", "slot"}),
        ),
    }
    default_instances = "response"
    embeds = True
    lineage = ("evolution",)

    def __init__(self, inputs: Inputs) -> None:
        super().__init__(inputs)
        cfg: PrivateEvolutionConfig = inputs.section
        if not cfg.private:
            raise ConfigError("generation.private_evolution.private: give the private records (a file, folder or hf:)")
        if not cfg.description.strip():
            raise ConfigError(
                "generation.private_evolution.description: give a short public description of the domain "
                "(the only text the model sees at the start)"
            )
        self.texts = read_private(cfg, inputs.base_dir)
        p = cfg.privacy
        if p.delta >= 1 / len(self.texts):
            raise ConfigError(
                f"generation.private_evolution.privacy.delta: {p.delta} is not below 1 / {len(self.texts)} private "
                "records; a delta that large allows publishing a record outright: use 1e-5 or less"
            )
        # Sigma is fixed now, before anything is sent; an impossible budget stops the run here.
        try:
            self.guarantee = (
                accountant.guarantee(p.epsilon, p.delta, p.iterations, p.accountant, p.sigma)
                if p.epsilon is not None
                else None
            )
        except ConfigError as err:  # "privacy...: ...", named from the config's top
            raise ConfigError(f"generation.private_evolution.{err}") from None
        self.sigma = self.guarantee.sigma if self.guarantee is not None else 0.0
        self.threshold = p.threshold if p.threshold is not None else self.sigma
        self.schedule = degrees(cfg.degree_start, cfg.degree_end, p.iterations)
        self.digest = hashlib.sha256("\x00".join(self.texts).encode()).hexdigest()
        self.evolution: Evolution | None = None
        self.last: Vote | None = None  # the last vote, once evolved
        self.private_vectors: np.ndarray | None = None

    def fingerprint(self) -> dict[str, Any]:
        """The private records by content: other records are another run."""
        return {"private_sha256": self.digest[:16], "private_records": len(self.texts)}

    def describe_change(self, old: dict[str, Any]) -> str:
        before = old.get("generation", {}).get(self.section, {}).get("private_sha256")
        return "the private records changed" if before and before != self.digest[:16] else ""

    @property
    def cfg(self) -> PrivateEvolutionConfig:
        return self.inputs.section

    # ------------------------------------------------------------------------------- evolution

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.inputs.embedder is None:
            raise ValueError("Private Evolution needs an embedder (Inputs.embedder)")
        return np.asarray(self.inputs.embedder.encode(list(texts)), dtype=np.float32)

    def _state_key(self) -> str:
        """What the stored votes were made from: the records and the settings that decide a vote."""
        p = self.cfg.privacy
        parts = [self.digest, p.population, p.iterations, self.sigma, self.threshold, self.cfg.description]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    async def prepare(self, send: Send, log: Callable[[str], None]) -> None:
        """The iterations, before the first round asks for the release (once per run)."""
        if self.evolution is not None:
            return
        run_dir = self.inputs.run_dir
        if run_dir is None:
            raise ValueError("Private Evolution stores its votes in the run directory (Inputs.run_dir)")
        state = State(run_dir / STATE, self._state_key())
        if state.reset:
            log(
                "private evolution: the stored votes were made from other records or settings: starting over "
                "with new noise (a new release, which spends its budget again)"
            )
        p = self.cfg.privacy
        self.private_vectors = self._embed(self.texts)
        self.evolution = Evolution(
            self.private_vectors,
            self._embed,
            state,
            self.sigma,
            self.threshold,
            p.iterations,
            p.population,
            self.schedule,
            log,
        )

        async def initial(size: int) -> list[str] | None:
            per = self.inputs.settings.instructions_per_prompt
            template = self.inputs.templates["private_evolution_initial"]
            asks = [
                Ask(
                    template,
                    {"description": self.cfg.description, "num_samples": per, "batch": b},
                    {"stage": "evolution", "iteration": 0},
                )
                for b in range(-(-size * 3 // 2 // per))  # half again: some answers hold fewer
            ]
            answers = await send(asks)
            if answers is None:
                return None
            texts = list(dict.fromkeys(t for texts in answers for t in texts))[:size]
            if len(texts) < 2:
                raise ConfigError(
                    f"private evolution: the model wrote {len(texts)} usable samples from the description; "
                    "check the model and the template private_evolution_initial"
                )
            return texts

        async def vary(parents: list[str], degree: float, iteration: int) -> list[str] | None:
            asks = [
                self._variation(parent, degree, iteration, slot, {"stage": "evolution", "iteration": iteration})
                for slot, parent in enumerate(parents)
            ]
            answers = await send(asks)
            if answers is None:
                return None
            # A variation that failed or could not be read leaves its parent in the population.
            return [texts[0] if texts else parent for parent, texts in zip(parents, answers)]

        self.last = await self.evolution.run(initial, vary)
        if self.last is None:
            log("private evolution: the sending stopped before the last vote; rerun to resume")
        self.write_privacy()

    def _variation(self, parent: str, degree: float, iteration: int, slot: int, meta: dict[str, Any]) -> Ask:
        variables = {
            "description": self.cfg.description,
            "sample": parent,
            "degree": degree,
            "iteration": iteration,
            "slot": slot,
        }
        return Ask(self.inputs.templates["private_evolution_variation"], variables, meta)

    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        """The release: parents drawn from the last vote, varied once more at the last degree."""
        if self.last is None or self.evolution is None:
            return []
        count = requests_per_round(self.inputs.settings, need, 1)
        t = self.cfg.privacy.iterations
        meta = {"stage": "instructions", "round": rnd, "evolution": {"iterations": t, "degree": self.schedule[-1]}}
        parents = self.evolution.parents(self.last, count, draw_id=rnd)
        # Numbered after the iterations' variations (1 to t - 1), so they never ask what one asked.
        return [self._variation(p, self.schedule[-1], t + rnd, j, meta) for j, p in enumerate(parents)]

    # ------------------------------------------------------------------------------ the figures

    def privacy(self, records: Iterable[Record] | None = None) -> dict[str, Any]:
        """privacy.json: the guarantee, the settings, and per iteration (and for the kept rows) the
        utility figures, which read the private records without noise (the report's, never the card's)."""
        p = self.cfg.privacy
        votes = self.evolution.state.votes() if self.evolution is not None else []
        out: dict[str, Any] = {
            "private": self.guarantee is not None,
            "guarantee": self.guarantee.to_dict() if self.guarantee is not None else None,
            "threshold": self.threshold,
            "population": p.population,
            "iterations": p.iterations,
            "voted": len(votes),
            "private_records": len(self.texts),
            "degrees": self.schedule,
            "utility": [{"iteration": v.iteration, "kept": v.kept, **v.utility} for v in votes],
            "utility_note": "computed from the private records without noise: not covered by the guarantee",
        }
        rows = [r.instruction for r in records] if records is not None else []
        if rows and self.private_vectors is not None and len(rows) > 1:
            out["release"] = {"rows": len(rows), **utility(self.private_vectors, self._embed(rows))}
        return out

    def write_privacy(self, records: Iterable[Record] | None = None) -> dict[str, Any]:
        data = self.privacy(records)
        if self.inputs.run_dir is not None:
            write_json(self.inputs.run_dir / PRIVACY, data, indent=2)
        return data

    def sources(self, records: Iterable[Record]) -> dict[str, Any] | None:
        """privacy.json again with the kept rows' utility, and as sources.json for the report and the card."""
        if self.evolution is None:
            return None
        return {"privacy": self.write_privacy(list(records))}

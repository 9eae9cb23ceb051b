"""What each filter accepts from a config: one pydantic model per filter, and the union of them that
the config's filter lists are made of.

A spec is the one place a filter's parameters are documented (`Field(description=...)`) and checked
(bounds, choices, cross-field rules), so a bad value is found when the config loads, with the file
and the key. Its docstring says what the filter drops and `reasons` the drop codes it reports. This
module imports only pydantic and the standard library (and `generator.core.errors`): loading a config
must not import the filters themselves (phonenumbers, stdnum, lingua, faiss, torch).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from generator.core.errors import ConfigError, describe_errors

TextField = Literal["instruction", "input", "output"]


def _no_repeats(values: list[str]) -> list[str]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"lists {', '.join(repeated)} more than once; name each field once")
    return values


Fields = Annotated[list[TextField], Field(min_length=1), AfterValidator(_no_repeats)]
"""Record fields a filter reads: a non-empty list of instruction, input, output, each at most once."""

PIIKind = Literal["email", "phone", "credit_card", "iban", "ip_address", "national_id", "street_address"]
PII_KINDS: tuple[str, ...] = get_args(PIIKind)

# The ISO 639-1 codes lingua knows (a test checks this against lingua itself).
LINGUA_CODES = frozenset(
    (
        "af ar az be bg bn bs ca cs cy da de el en eo es et eu fa fi fr ga gu he hi hr hu hy id is it ja "
        "ka kk ko la lg lt lv mi mk mn mr ms nb nl nn pa pl pt ro ru sk sl sn so sq sr st sv sw ta te th "
        "tl tn tr ts uk ur vi xh yo zh zu"
    ).split()
)


class FilterSpec(BaseModel):
    """Base of the specs: unknown parameters are refused, and a spec dumps as it was written.

    Dumping what was written (not every default) keeps a run's fingerprint what it was before the
    specs were typed, and unchanged when a later version adds a parameter with a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    reasons: ClassVar[dict[str, str]] = {}
    """Each drop reason the filter reports, with what it means."""
    reads_files: ClassVar[bool] = False
    """The filter reads files named in its parameters: it is built with `base_dir` (where relative
    paths start: the config file's folder) and `where` (its key, for errors), and reads them then."""

    _written: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_written(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        spec = handler(data)
        if isinstance(data, dict) and isinstance(spec, FilterSpec):
            spec._written = copy.deepcopy(data)
        return spec

    @model_validator(mode="before")
    @classmethod
    def _known_parameters(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [key for key in data if key not in cls.model_fields]
            if unknown:
                valid = ", ".join(key for key in cls.model_fields if key != "name") or "none"
                raise ValueError(
                    f"filter {data.get('name')!r} has no parameter "
                    f"{', '.join(map(repr, unknown))}; valid parameters: {valid}"
                )
        return data

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        written = self._written or handler(self)
        if "name" in written:
            return copy.deepcopy(written)
        return {"name": self.name, **copy.deepcopy(written)}

    def params(self) -> dict[str, Any]:
        """The validated parameters, every default included: what the filter is built with."""
        return {key: getattr(self, key) for key in type(self).model_fields if key != "name"}


class LengthSpec(FilterSpec):
    """Drops instructions whose word count is outside [`min_words`, `max_words`]."""

    name: Literal["length"] = "length"
    min_words: int = Field(3, ge=0, description="Fewest words an instruction may have.")
    max_words: int = Field(150, ge=0, description="Most words an instruction may have.")
    reasons: ClassVar[dict[str, str]] = {
        "too_short": "fewer than `min_words` words",
        "too_long": "more than `max_words` words",
    }

    @model_validator(mode="after")
    def _bounds(self) -> LengthSpec:
        if self.min_words > self.max_words:
            raise ValueError(
                f"min_words {self.min_words} is above max_words {self.max_words}; need min_words <= max_words"
            )
        return self


class BlocklistSpec(FilterSpec):
    """Drops instructions that ask for something a text model cannot do (see an image, browse a
    web page), matched as whole words or phrases, case-insensitively."""

    name: Literal["blocklist"] = "blocklist"
    words: list[str] | None = Field(
        None,
        description="Words and phrases to block; null: the built-in list (DEFAULT_BLOCKLIST in "
        "filters/heuristics.py: image, photo, video, audio, website, url, ...).",
    )
    extra_words: list[str] | None = Field(None, description="Added to `words` (or to the built-in list).")
    reasons: ClassVar[dict[str, str]] = {"blocked_keyword": "the instruction has a blocked word or phrase"}

    @model_validator(mode="after")
    def _not_empty(self) -> BlocklistSpec:
        if self.words is not None and not any(w.strip() for w in self.words + (self.extra_words or [])):
            raise ValueError(
                f"need at least one non-empty word, got words={self.words!r}; remove the "
                "filter from the chain to block nothing"
            )
        return self


class InstructionFormSpec(FilterSpec):
    """Drops instructions that start with punctuation or a non-ASCII character, and fragments (no
    letters, a dangling last word such as "and" or "the", an open bracket or quote)."""

    name: Literal["instruction_form"] = "instruction_form"
    ascii_start: bool = Field(True, description="Drop instructions whose first character is not ASCII.")
    check_fragments: bool = Field(
        True, description="Drop instructions with a dangling end or an unclosed bracket or quote."
    )
    reasons: ClassVar[dict[str, str]] = {
        "fragment": "no letters, a dangling end, or unbalanced brackets or quotes",
        "starts_with_punctuation": "the first character is punctuation or a symbol",
        "starts_non_ascii": "the first character is not ASCII (with `ascii_start`)",
    }


class QueryFormSpec(FilterSpec):
    """Drops a user turn the model wrote itself (Magpie) that is no complete request: it holds a chat
    template token (the served model's special tokens, its end of turn, and common ones such as
    `<|im_start|>`, `[INST]`, `<start_of_turn>`) or a role label (`Assistant:`), it answers instead
    of asking, it is only a greeting, or it starts or ends mid-sentence. First in the default
    instruction chain of `generation.method: magpie`."""

    name: Literal["query_form"] = "query_form"
    extra_markers: list[str] | None = Field(
        None, description="More strings that give a leaked template away (matched as written)."
    )
    reasons: ClassVar[dict[str, str]] = {
        "template_leak": "holds a chat template token or a role label",
        "assistant_voice": 'reads as the assistant\'s answer ("Sure, here is", "How can I help you?")',
        "greeting_only": "a greeting or thanks with no request",
        "fragment": "starts with a joining word (and, but, so), ends on one (the, of, to), or leaves code open",
    }


class InstanceSpec(FilterSpec):
    """Drops generated instances without a real output: empty, equal to the input, or a restatement
    of the instruction (a label taken from the instruction counts as an answer)."""

    name: Literal["instance"] = "instance"
    min_output_chars: int = Field(1, ge=1, description="Fewest characters an output may have (stripped).")
    reasons: ClassVar[dict[str, str]] = {
        "empty_output": "the output is shorter than `min_output_chars`",
        "output_equals_input": "the output is the input (ignoring case, punctuation and spacing)",
        "restates_instruction": "the output is most of the instruction, restated",
    }


class TruncatedSpec(FilterSpec):
    """Drops records whose generation stopped at the token limit (the output is cut off)."""

    name: Literal["truncated"] = "truncated"
    reasons: ClassVar[dict[str, str]] = {"truncated": "the generation ended at `sampling.max_tokens`"}


class RepetitionSpec(FilterSpec):
    """Drops texts that repeat themselves: a loop at the end, duplicated lines, one n-gram dominating
    or many repeated long n-grams (Gopher's rules, as datatrove implements them)."""

    name: Literal["repetition"] = "repetition"
    fields: Fields | None = Field(None, description="Fields checked, each on its own; null: instruction and output.")
    min_words: int = Field(
        50,
        ge=0,
        description="The line and n-gram rules apply from this many words on: "
        "on short texts one repeated phrase is already a large share.",
    )
    loop_repeats: int = Field(4, ge=2, description="Copies of one unit at the end that make a loop.")
    loop_min_chars: int = Field(40, ge=1, description="Fewest characters a loop covers.")
    dup_line_fraction: float = Field(
        0.3, ge=0, le=1, description="Largest share of (prose) lines that may repeat an earlier line."
    )
    dup_line_char_fraction: float = Field(
        0.2, ge=0, le=1, description="Largest share of characters in lines that repeat an earlier line."
    )
    ngram_scale: float = Field(
        1.0, gt=0, description="Multiplies the Gopher n-gram thresholds; above 1 is more lenient."
    )
    reasons: ClassVar[dict[str, str]] = {
        "degenerate_loop": "the text ends in one unit repeated `loop_repeats` times or more",
        "repeated_lines": "too many lines (or characters in lines) repeat an earlier line",
        "repeated_ngrams": "one 2- to 4-gram covers too much of the text",
        "duplicate_ngrams": "repeated 5- to 10-grams cover too much of the text",
    }


class RefusalSpec(FilterSpec):
    """Drops outputs that open with a refusal or contain AI boilerplate ("As an AI language model"):
    they teach a fine-tuned model to do the same."""

    name: Literal["refusal"] = "refusal"
    extra_refusals: list[str] | None = Field(
        None,
        description="More regular expressions of refusals (matched case-insensitively at the start of the output).",
    )
    extra_boilerplate: list[str] | None = Field(
        None, description="More regular expressions of boilerplate (matched case-insensitively anywhere)."
    )
    reasons: ClassVar[dict[str, str]] = {
        "refusal": "the output opens with a refusal",
        "ai_boilerplate": "the output talks about being an AI model",
    }

    @field_validator("extra_refusals", "extra_boilerplate")
    @classmethod
    def _compiles(cls, patterns: list[str] | None) -> list[str] | None:
        for p in patterns or []:
            try:
                re.compile(f"(?:{p})", re.IGNORECASE)  # as the filter joins them
            except re.error as err:
                raise ValueError(f"{p!r} is not a valid regular expression ({err})") from None
        return patterns


class GroundedSpec(FilterSpec):
    """Drops answers their document passage (`meta.source.text`, the documents method) does not
    support: too few of the answer's content words are in the passage, or a number is not; and
    answers that copy a long run of the passage. Rows without a passage are kept."""

    name: Literal["grounded"] = "grounded"
    min_support: float = Field(
        0.75, ge=0, le=1, description="Least share of the answer's content words found in the passage."
    )
    max_copy: dict[str, int | None] | None = Field(
        None,
        description="Most consecutive words an answer may copy from its passage, by task kind (`meta.task_kind`; "
        "`default` for the others; a null limit: none), laid over the built-in {default: 24, extraction: 60, "
        "backtranslation: null} (backtranslation's answer is the passage).",
    )
    reasons: ClassVar[dict[str, str]] = {
        "unsupported": "the answer's content words (or a number) are not in its passage",
        "copies_source": "the answer copies more than `max_copy` consecutive words of its passage",
    }


class PIISpec(FilterSpec):
    """Finds personal data (validated by phonenumbers and python-stdnum) and drops the record or
    replaces each span with a typed placeholder such as `<EMAIL>`. Emails: any local part of RFC
    5322 characters (`j.o'brien+x@acme.org`), not quoted ones. Street addresses: number first, then
    a street type (`221B Baker Street`, `12 Main St.`), replaced whole with what follows it: a unit
    (`Apt 4B`), the city, a US state and ZIP, a UK postcode or a ZIP, and the country (US, UK);
    name-first shapes (`Hauptstraße 5`, `rue de la Paix`) and PO boxes are not found."""

    name: Literal["pii"] = "pii"
    action: Literal["drop", "redact"] = Field(
        "redact",
        description="`drop` the record, or `redact` each span (the kept record's "
        "`meta.pii_redacted` counts them per kind).",
    )
    kinds: Annotated[list[PIIKind], Field(min_length=1), AfterValidator(_no_repeats)] | None = Field(
        None, description=f"Kinds looked for; null: all ({', '.join(PII_KINDS)})."
    )
    fields: Fields | None = Field(None, description="Fields searched; null: instruction, input and output.")
    phone_region: str = Field(
        "US", description="Country assumed for phone numbers written without a country code (ISO 3166 alpha-2)."
    )
    reasons: ClassVar[dict[str, str]] = {
        f"pii_{kind}": f"(`action: drop`) the first span found is of kind `{kind}`" for kind in PII_KINDS
    }

    @field_validator("phone_region")
    @classmethod
    def _known_region(cls, region: str) -> str:
        import phonenumbers  # only when a region is given: a config that names none loads without it

        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"{region!r} is not a region phonenumbers knows; use an ISO 3166 alpha-2 code such as 'US', 'GB', 'DE'"
            )
        return region


def _iso_codes(codes: list[str] | None) -> list[str] | None:
    unknown = [c for c in codes or [] if c.lower() not in LINGUA_CODES]
    if unknown:
        raise ValueError(
            f"has {', '.join(map(repr, unknown))}, not an ISO 639-1 code lingua knows; use "
            "two-letter codes such as 'en', 'fr', 'de'"
        )
    return codes


class LanguageSpec(FilterSpec):
    """Keeps records whose most likely language (lingua, offline) is one of `languages`; texts with
    too few letters to tell (numbers, code) are kept. A kept record's score `language_confidence`
    (0-1) is how sure the detector is of its language. In a run, what was detected is kept in its
    `state/`: a resume replays it without loading the models."""

    name: Literal["language"] = "language"
    languages: Annotated[list[str], AfterValidator(_iso_codes)] | None = Field(
        None, description="ISO 639-1 codes to keep; null: en."
    )
    fields: Fields | None = Field(None, description="Fields joined into the text judged; null: instruction and output.")
    min_chars: int = Field(20, ge=0, description="Texts with fewer letters are kept undetected.")
    max_chars: int = Field(1000, ge=1, description="The text judged is cut at this many characters.")
    high_accuracy: bool = Field(
        True,
        description="false: lingua's trigram-only mode, about 40 MB of models "
        "instead of 300, unreliable on short texts.",
    )
    candidates: list[str] | None = Field(
        None,
        description="Languages the detector chooses among, plus `languages`; null: 20 common ones "
        "(DEFAULT_CANDIDATES in filters/language.py); `[all]`: all 75 lingua knows (1 GB of models).",
    )
    reasons: ClassVar[dict[str, str]] = {"wrong_language": "the detected language is not in `languages`"}

    @field_validator("candidates")
    @classmethod
    def _candidate_codes(cls, codes: list[str] | None) -> list[str] | None:
        return codes if codes == ["all"] else _iso_codes(codes)

    @model_validator(mode="after")
    def _bounds(self) -> LanguageSpec:
        if self.min_chars > self.max_chars:
            raise ValueError(
                f"min_chars {self.min_chars} is above max_chars {self.max_chars}; need min_chars <= max_chars"
            )
        return self


class JudgeSpec(FilterSpec):
    """Scores records 1-5 on helpfulness, correctness and clarity with the served model (a JSON answer
    constrained by a schema) and drops those whose mean is under `threshold`."""

    name: Literal["judge"] = "judge"
    template: str = Field(
        "judge.jinja",
        description="Rubric template: a built-in prompt name (`judge.jinja`; `judge_faithfulness.jinja` for rows "
        "made from a document passage) or a path; it may use instruction, input, output and passage, and name "
        "its criteria in its metadata (`criteria: [...]`).",
    )
    threshold: float = Field(3.5, ge=1, le=5, description="Lowest mean score (1-5) kept.")
    max_tokens: int = Field(64, ge=16, description="Most tokens of the judge's JSON answer.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the judge.")
    on_error: Literal["drop", "keep"] = Field(
        "drop", description="What happens to a record whose judgement could not be read."
    )
    reasons: ClassVar[dict[str, str]] = {
        "low_judge_score": "the mean score is under `threshold`",
        "judge_failed": "(`on_error: drop`) the judge's answer was missing, cut off or out of range",
    }


class ExactDedupSpec(FilterSpec):
    """Keeps the first record of each (instruction, input) after normalization (case, width,
    punctuation, spacing, polite openings such as "Could you please")."""

    name: Literal["exact_dedup"] = "exact_dedup"
    reasons: ClassVar[dict[str, str]] = {"exact_duplicate": "an earlier kept record normalizes the same"}


class SemanticDedupSpec(FilterSpec):
    """Drops a record that asks for the same task as one already kept: the encoder finds near
    neighbours in FAISS, then a fitted pair check (or a cosine threshold, or the served model) decides.
    Keep-first and order-preserving; its state survives a resume. A kept record's score
    `dedup_similarity` is its cosine to the nearest record kept before it; a drop names its twin
    (`kept_id`, `kept_text`) and their cosine in rejected.jsonl."""

    name: Literal["semantic_dedup"] = "semantic_dedup"
    threshold: float = Field(
        0.84,
        gt=0,
        le=1,
        description="Without the pair check: the cosine at or above "
        "which a record is a duplicate (0.84 balances MiniLM's errors).",
    )
    encoder: Literal["minilm", "static"] = Field(
        "minilm",
        description="`minilm`: sentence-transformers (GPU if present); `static`: fast CPU token "
        "vectors distilled from it.",
    )
    model: str | None = Field(
        None, description="sentence-transformers folder or name; null: the bundled all-MiniLM-L6-v2."
    )
    exact_until: int = Field(50_000, ge=0, description="Kept rows searched exactly (flat index); past them, HNSW.")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree.")
    ef_search: int = Field(64, ge=1, description="HNSW search breadth.")
    batch_size: int = Field(4096, ge=1, description="Records encoded and searched at once.")
    state_name: str = Field(
        "semantic_dedup",
        min_length=1,
        description="Subfolder of the run's state: give two instances in one run different names.",
    )
    judge_band: list[float] | None = Field(
        None,
        description="[low, high] with the pair check off: cosines in the band go to the served "
        "model, which says whether the two are the same task; at `high` or more a record is a duplicate.",
    )
    pair_check: bool | None = Field(
        None,
        description="The learned pair check (filters/pairs.py); null: on "
        "where weights were fitted for the encoder (MiniLM).",
    )
    candidates: float = Field(
        0.76,
        gt=0,
        le=1,
        description="With the pair check: the lowest cosine of a neighbour it checks (the floor it was fitted for).",
    )
    neighbours: int = Field(4, ge=1, description="With the pair check: nearest kept records checked.")
    cascade: float | None = Field(
        None,
        gt=0,
        le=1,
        description="A cheap first pass: a record with no kept row at this cosine of the static token "
        "vectors (distilled from the encoder once, into the user cache) is kept without encoding it; "
        "only the others are encoded and pair-checked. 0.8 agreed with the full path on 99.5% of real "
        "templated prompts but spared only 5% of the encoding there (BENCHMARKS.md); null: off.",
    )
    reasons: ClassVar[dict[str, str]] = {"near_duplicate": "a kept record asks for the same task"}

    @field_validator("judge_band")
    @classmethod
    def _band(cls, band: list[float] | None) -> list[float] | None:
        if band is not None and (len(band) != 2 or not 0 < band[0] < band[1] <= 1):
            raise ValueError(f"need [low, high] with 0 < low < high <= 1, got {band!r}; for example [0.76, 0.94]")
        return band

    @model_validator(mode="after")
    def _band_or_pair_check(self) -> SemanticDedupSpec:
        if self.judge_band is not None and self.pair_check:
            raise ValueError("judge_band replaces the pair check: set pair_check: false with it")
        return self


class DecontaminateSpec(FilterSpec):
    """Drops a record that copies a reference text (a benchmark, a held-out split): the same
    normalized user turn, or a shared word n-gram; or whose instruction and input (or user turn) are
    within `threshold` cosine of one. Each match is reported per reference, with the text it matched
    (`state/<chain>/decontaminate/report.json` in the run directory). With `threshold` set, a
    kept record's score `benchmark_similarity` is its cosine to the nearest reference."""

    name: Literal["decontaminate"] = "decontaminate"
    references: list[str] = Field(
        ...,
        min_length=1,
        description="References in any source the reader knows (see Reading data: .txt, one text a "
        "line; .jsonl; .json; .csv; .parquet; dataset folders; nested `instances`, chat `messages`), "
        "relative to the config file's folder, or `hf:DATASET[:SPLIT]` (split `test` when left out; "
        "read once, then cached). Read when the run opens: a missing one stops it before anything starts.",
    )
    ngram: int = Field(
        13,
        ge=1,
        description="Words in a shared n-gram (13, as GPT-3); a reference of 8 to `ngram` words is "
        "matched whole, a shorter one only as the whole user turn.",
    )
    threshold: float | None = Field(
        0.9,
        gt=0,
        le=1,
        description="Cosine at or above which a record overlaps a reference (instruction to instruction "
        "and input to input, or user turn to user turn); null turns the embedding check off.",
    )
    encoder: Literal["minilm", "static"] = Field("minilm", description="As in `semantic_dedup`.")
    model: str | None = Field(None, description="As in `semantic_dedup`.")
    reads_files: ClassVar[bool] = True
    reasons: ClassVar[dict[str, str]] = {
        "ngram_overlap": "the record copies a reference text: the same user turn, or a shared word n-gram",
        "semantic_overlap": "the instruction and input (or the user turn) are within `threshold` cosine of a "
        "reference's",
    }


# The constraint types of filters/constraints.py (a test checks this against its registry): listed
# here so a config names them when it loads, without importing the checkers.
ConstraintType = Literal[
    "number_words",
    "number_sentences",
    "number_paragraphs",
    "nth_paragraph_first_word",
    "keywords_included",
    "keywords_excluded",
    "keyword_frequency",
    "letter_frequency",
    "json_format",
    "number_bullets",
    "title",
    "multiple_sections",
    "postscript",
    "end_phrase",
    "no_comma",
    "lowercase",
    "uppercase",
    "capital_word_frequency",
    "quotation",
    "placeholders",
    "highlighted_sections",
    "two_responses",
    "repeat_prompt",
    "response_language",
]
CONSTRAINT_TYPES: tuple[str, ...] = get_args(ConstraintType)


class ConstraintsSpec(FilterSpec):
    """Runs the verifiable constraints a record carries (`meta.constraints`, added by
    `generation.constraints`) on its output and drops it when one fails; records without
    constraints are kept. Each check is counted: the report and the card show pass rates per type."""

    name: Literal["constraints"] = "constraints"
    reasons: ClassVar[dict[str, str]] = {
        **{
            f"constraint_{t}": f"the output does not follow its `{t}` constraint (the first that failed)"
            for t in CONSTRAINT_TYPES
        },
        "constraint_invalid": "`meta.constraints` names an unknown type or kwargs it does not take",
    }


def json_schema_problem(schema: Any) -> str | None:
    """What makes `schema` no valid JSON schema (checked against its meta-schema), or None."""
    from jsonschema import SchemaError, validators  # only when a schema is given

    if not isinstance(schema, dict):
        return f"a JSON schema is a mapping, got {type(schema).__name__}"
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as err:
        where = "/".join(map(str, err.path)) or "the top level"
        return f"not a valid JSON schema at {where}: {err.message}"
    return None


class SchemaSpec(FilterSpec):
    """Keeps answers that are JSON (a markdown code fence around it is allowed) valid against
    `json_schema` (jsonschema, the draft the schema's `$schema` names, 2020-12 otherwise). Added to
    the default record chain by `generation.response_format`."""

    name: Literal["schema"] = "schema"
    json_schema: dict[str, Any] = Field(..., description="The JSON schema each output must match.")
    reasons: ClassVar[dict[str, str]] = {
        "not_json": "the output is not JSON (cut off, or text around it)",
        "schema_mismatch": "the JSON does not match `json_schema` (the detail names the path and the rule)",
    }

    @field_validator("json_schema")
    @classmethod
    def _valid(cls, schema: dict[str, Any]) -> dict[str, Any]:
        problem = json_schema_problem(schema)
        if problem:
            raise ValueError(problem)
        return schema


class CodeExecSpec(FilterSpec):
    """Runs the Python code blocks of each answer (its solution and the tests the model wrote with
    it) together in a sandboxed child process: a private temporary folder, the standard library
    only, a time and a memory limit, no new processes, no network, no writes outside its folder (see
    filters/sandbox.py for what it does and does not contain). Drops answers whose tests fail, time
    out or try something the sandbox refuses, with the error as the drop's detail; answers without
    Python code are kept (not coding answers)."""

    name: Literal["code_exec"] = "code_exec"
    time_s: float = Field(5.0, gt=0, le=600, description="Wall-clock seconds one answer's code may run.")
    memory_mb: int = Field(512, ge=64, description="Address space one answer's code may use, in MiB.")
    require_tests: bool = Field(
        True,
        description="Drop Python answers without tests (no `assert`, `test*` function or unittest case); "
        "false: run them anyway, as a check that they run.",
    )
    require_code: bool = Field(False, description="Drop answers without a Python code block.")
    workers: int = Field(2, ge=1, description="Answers run at once.")
    reasons: ClassVar[dict[str, str]] = {
        "tests_failed": "the code raised or exited non-zero (a failed assert, an exception, MemoryError)",
        "timeout": "the code ran past `time_s`",
        "refused": "the code tried what the sandbox refuses: a process, a socket, a write outside its folder",
        "syntax_error": "the code blocks do not parse as Python",
        "no_tests": "(`require_tests`) the Python code has no tests",
        "no_code": "(`require_code`) the answer has no Python code block",
    }


AnyFilterSpec = Annotated[
    Union[  # noqa: UP007 - a discriminated union is spelled with Union
        LengthSpec,
        BlocklistSpec,
        InstructionFormSpec,
        QueryFormSpec,
        InstanceSpec,
        TruncatedSpec,
        RepetitionSpec,
        RefusalSpec,
        GroundedSpec,
        PIISpec,
        LanguageSpec,
        JudgeSpec,
        ExactDedupSpec,
        SemanticDedupSpec,
        DecontaminateSpec,
        ConstraintsSpec,
        SchemaSpec,
        CodeExecSpec,
    ],
    Discriminator("name"),
]
"""One filter of a chain, `{name: ..., <parameter>: ...}`; the name picks the spec."""

SPECS: dict[str, type[FilterSpec]] = {
    cls.model_fields["name"].default: cls for cls in get_args(get_args(AnyFilterSpec)[0])
}

_CHAIN = TypeAdapter(list[AnyFilterSpec])


def parse_specs(items: Sequence[Any], where: str) -> list[FilterSpec]:
    """Specs from plain dicts (or specs); `where` is the key path of the list in error messages."""
    try:
        return _CHAIN.validate_python(list(items))
    except ValidationError as err:
        raise ConfigError(describe_errors(err, list(items), root=where)) from None


PrivacyEncoder = Literal["lexical", "minilm", "static"]


class PrivacySettings(BaseModel):
    """The privacy audit's thresholds (filters/privacy.py): the `privacy` config section holds them,
    and `instructforge audit` takes them as options. Not a filter spec: the run builds the `privacy`
    filter itself from the sources it marks private."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_copied_tokens: int = Field(
        12,
        ge=8,
        description="Most consecutive words a row may share with one private record; a longer shared span, "
        "or a whole private record of 8 words or more, drops the row (`copies_private_text`).",
    )
    max_similarity: float = Field(
        0.65,
        gt=0,
        le=1,
        description="Cosine to the closest private record (any field of the row) at or above which a row is "
        "a near copy and is dropped (`near_private_record`). Depends on `encoder`: 0.65 is measured for `lexical` "
        "(BENCHMARKS.md).",
    )
    encoder: PrivacyEncoder = Field(
        "lexical",
        description="How texts become vectors for the distance to the closest record: `lexical` (hashed word "
        "and word-pair counts: near copies with small edits, no model, fast at 100,000 records), `minilm` "
        "or `static` (as in `semantic_dedup`: paraphrases too, slower; set `max_similarity` to match).",
    )
    holdout_share: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Without a holdout source: the share of private records held out (by hash) whose "
        "distances to the rest are the baseline a row's distance is compared with.",
    )
    max_closer_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Most share of rows closer to a private record than the holdout's 5th percentile "
        "before the audit fails.",
    )
    max_attack_auc: float = Field(
        0.6,
        ge=0.5,
        le=1,
        description="Highest AUC of the distance-based membership attack (members vs a given holdout) "
        "before the audit fails; 0.5 reveals nothing.",
    )
    max_leaked_identifiers: int = Field(
        0,
        ge=0,
        description="Most personal identifiers of the private records the rows may repeat before the audit fails.",
    )

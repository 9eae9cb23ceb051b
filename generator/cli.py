"""The `instructforge` command: each subcommand parses, calls one library function, reports.

Errors from the library (`InstructforgeError`) become one-line messages and exit codes here,
and only here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from filters.specs import DecontaminateSpec, PrivacySettings, SemanticDedupSpec
from generator.config import ReportConfig
from generator.core.errors import InstructforgeError
from generator.core.readers import FORMATS
from generator.publish.formats import WRITERS
from generator.run.stop import sigterm_unwinds

Command = Callable[[argparse.Namespace], int | None]
Subparsers = argparse._SubParsersAction  # what `add_subparsers` returns; each `_add_<command>` adds one to it


def _generate(args: argparse.Namespace) -> int | None:
    from generator.config import load_config
    from generator.run.pipeline import estimate, generate
    from generator.run.store import ForeignRun

    overrides = dict(args.set or [])
    overrides.update({key: value for flag, key in _BUDGET_FLAGS.items() if (value := getattr(args, flag)) is not None})
    config = load_config(args.config, overrides=overrides)
    if args.run_dir:
        config.run_dir = Path(args.run_dir)
    try:
        if args.estimate:
            result, guess = estimate(config, fresh=args.fresh, force=args.force)
            print(result.summary())
            print(guess.summary() if guess is not None else "estimate: the pilot kept no row; nothing to go on")
            return 0
        result = generate(config, fresh=args.fresh, force=args.force)
    except ForeignRun as err:
        raise ForeignRun(
            err.problem, "pass --fresh to start over there, --force to continue anyway, or use another run_dir"
        ) from None
    print(result.summary())
    return 0


# `generate` flags that set a config key (the run's target and budget), by argparse dest.
_BUDGET_FLAGS = {
    "records": "generation.num_records",
    "max_requests": "budget.max_requests",
    "max_tokens": "budget.max_tokens",
    "max_time": "budget.max_time_s",
    "max_gpu_hours": "budget.max_gpu_hours",
    "max_cost": "budget.max_cost",
}


def _serve(args: argparse.Namespace) -> int | None:
    from generator.config import load_config
    from generator.llm.server import serve_forever

    config = load_config(args.config)
    serve_forever(config)
    return 0


def _model_prepare(args: argparse.Namespace) -> int | None:
    from generator.llm.model import prepare_bundled_model

    path = prepare_bundled_model(force=args.force)
    print(path)
    return 0


def _dedup(args: argparse.Namespace) -> int | None:
    from generator.run.clean import dedup

    result = dedup(
        args.inputs,
        args.out,
        threshold=args.threshold,
        encoder=args.encoder,
        model=args.model,
        semantic=not args.exact_only,
        pair_check=False if args.no_pair_check else None,
        format=args.format,
        report=ReportConfig(enabled=args.report),
        columns=dict(args.column or []),
        against=args.against,
        reuse=args.reuse,
        cascade=args.cascade,
    )
    print(result.summary())
    return 0


def _decontaminate(args: argparse.Namespace) -> int | None:
    from generator.run.clean import decontaminate

    result = decontaminate(
        args.inputs,
        args.against,
        args.out,
        format=args.format,
        report=ReportConfig(enabled=args.report),
        ngram=args.ngram,
        threshold=None if args.ngram_only else args.threshold,
        encoder=args.encoder,
        model=args.model,
        columns=dict(args.column or []),
    )
    print(result.summary())
    return 0


def _audit(args: argparse.Namespace) -> int | None:
    from generator.run.privacy import audit_dataset

    settings = PrivacySettings(
        max_copied_tokens=args.max_copied_tokens,
        max_similarity=args.max_similarity,
        encoder=args.encoder,
        max_attack_auc=args.max_attack_auc,
    )
    run = audit_dataset(
        args.inputs, args.private, args.out, holdout=args.holdout, settings=settings, report=args.report
    )
    print(run.summary())
    return 0 if run.passed else 1


def _scrub(args: argparse.Namespace) -> int | None:
    from generator.run.privacy import scrub

    print(scrub(args.run_dir).summary())
    return 0


def _inspect(args: argparse.Namespace) -> int | None:
    from generator.core.inspect import inspect_source

    print(inspect_source(args.source, format=args.format, columns=dict(args.column or [])).summary())
    return 0


def _templates_list(args: argparse.Namespace) -> int | None:
    from generator.prompting.templates import list_templates

    for t in list_templates():
        needs = ", ".join(sorted(t.required)) or "-"
        print(f"{t.name:<26} {t.meta.produces:<20} needs: {needs}")
        print(f"{'':<26} {t.meta.description}")
    return 0


def _templates_show(args: argparse.Namespace) -> int | None:
    import json

    from generator.prompting.templates import load_template

    t = load_template(args.name)
    print(f"name:        {t.name}\npath:        {t.path}\ndescription: {t.meta.description}")
    print(f"produces:    {t.meta.produces}\nparser:      {t.meta.parser or 'none (the filter reads the answer)'}")
    print(f"sampling:    {json.dumps(t.sampling)}")
    print(f"json schema: {json.dumps(t.meta.json_schema) if t.meta.json_schema else 'none'}")
    print("variables:")
    for v in sorted(t.variables):
        default = f" (default: {json.dumps(t.meta.defaults[v])})" if v in t.meta.defaults else " (required)"
        print(f"  {v}{default}: {t.meta.variables.get(v, '')}")
    print("\n" + t.source.rstrip())
    return 0


def _magpie_render(args: argparse.Namespace) -> int | None:
    import json

    from generator.config import load_config
    from generator.methods.magpie import magpie_prompts

    config = load_config(args.config)
    derived = magpie_prompts(config.generation.magpie, config.model, config.base_dir)
    if args.json:
        rows = [{"prompt": q.text, "stop": list(q.stop), "system": q.system, "topic": q.topic} for q in derived.queries]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for q in derived.queries:
        extra = "".join(f", {k}: {v!r}" for k, v in (("system", q.system), ("topic", q.topic)) if v is not None)
        print(f"--- pre-query of {derived.source}{extra} ---\n{q.text}")
        print(f"--- the model's user turn ends at: {', '.join(map(repr, q.stop))} ---")
    return 0


def _templates_render(args: argparse.Namespace) -> int | None:
    import json

    from generator.prompting.templates import preview

    if args.name == "magpie" and not Path(args.name).exists():
        return _magpie_render(args)

    t, messages = preview(args.name, dict(args.var or []), seeds=args.seeds, num_demonstrations=args.num_demonstrations)
    if args.json:
        body: dict[str, object] = {"messages": messages, **t.sampling}
        if t.response_format:
            body["response_format"] = t.response_format
        print(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        for m in messages:
            print(f"--- {m['role']} ---\n{m['content']}")
    return 0


def _push(args: argparse.Namespace) -> int | None:
    from generator.publish.hub import push_dataset

    result = push_dataset(
        Path(args.run_dir), args.repo, private=args.private, revision=args.revision, message=args.message
    )
    print(result.summary())
    return 0


def _export(args: argparse.Namespace) -> int | None:
    from generator.publish.dataset import export

    split = None if args.split == "all" else args.split
    count = export(Path(args.run_dir), args.format, Path(args.out), split=split)
    print(f"wrote {count:,} rows ({args.format}) to {args.out}")
    return 0


def _merge(args: argparse.Namespace) -> int | None:
    from generator.config import load_config
    from generator.run.merge import merge_runs

    config = load_config(args.config, overrides=dict(args.set or []))
    dataset = config.dataset
    if dataset.card_template:
        dataset = dataset.model_copy(update={"card_template": str(config.resolve(dataset.card_template))})
    dedup = [{"name": name} for name in args.dedup] if args.dedup else None
    config = config.model_copy(update={"dataset": dataset})
    result = merge_runs([Path(p) for p in args.run_dirs], Path(args.out), config=config, dedup=dedup, push=args.push)
    print(result.summary())
    return 0


def _report(args: argparse.Namespace) -> int | None:
    from generator.report import write_dataset_report, write_folder_report

    if (args.run_dir is None) == (args.dataset is None):
        raise InstructforgeError("report: give a RUN_DIR or --dataset SOURCE (one of them)")
    from pydantic import ValidationError

    from generator.core.errors import ConfigError, describe_errors

    options = {"sample": args.sample, "examples": args.examples, "gpu_hour_cost": args.gpu_hour_cost}
    try:
        config = ReportConfig(**options)
    except ValidationError as err:
        raise ConfigError(f"report: {describe_errors(err, options)}") from None
    if args.dataset is not None:
        result = write_dataset_report(args.dataset, Path(args.out or "report.html"), config=config)
    else:
        from generator.run.privacy import folder_mask

        folder = Path(args.run_dir)
        out = Path(args.out) if args.out else None
        result = write_folder_report(folder, out=out, config=config, mask=folder_mask(folder))
    print(result.summary())
    return 0


def _probe(args: argparse.Namespace) -> int | None:
    from generator.config import load_config
    from generator.run.probe import run_probes

    config = load_config(args.config)
    if args.pairs is None:
        result = run_probes(config, Path(args.run_dir), seed=args.seed)
    else:
        result = run_probes(config, Path(args.run_dir), args.pairs, seed=args.seed)
    print(result.summary())
    print(f"wrote {Path(args.run_dir) / 'probes.json'}; `instructforge report {args.run_dir}` shows it in the report")
    return 0


def _string_var(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (like instruction='Sort the list.'), got {text!r}")
    return key, value


def _column(text: str) -> tuple[str, str]:
    name, sep, column = text.partition("=")
    if not sep or not name or not column:
        raise argparse.ArgumentTypeError(f"expected FIELD=COLUMN (like instruction=prompt), got {text!r}")
    return name, column


def _add_column_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=list(FORMATS), help="the inputs' schema (default: told by each file's keys)")
    p.add_argument(
        "--column",
        action="append",
        type=_column,
        metavar="FIELD=COLUMN",
        help="read COLUMN as the logical FIELD (repeatable; see Reading data), e.g. instruction=instructions",
    )


def _add_inspect(sub: Subparsers) -> None:
    p = sub.add_parser(
        "inspect",
        help="show how a source will be read: format, rows per split, where each key goes, two rows as read",
    )
    p.add_argument("source", metavar="SOURCE", help="a file, a dataset folder or hf:owner/name (see Reading data)")
    _add_column_flags(p)
    p.set_defaults(func=_inspect)


def _key_value(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (like engine.concurrency=32), got {text!r}")
    return key, yaml.safe_load(value)


# --- the parser: one function per subcommand -------------------------------------------------------

_DEFAULT_CONFIG = "default.yaml"  # a built-in config's name; no model holds it


def _default(model: type[BaseModel], field: str) -> Any:
    """The default of `model`'s `field`: a flag that sets a spec or config setting takes it from there,
    so the CLI cannot drift from the config."""
    return model.model_fields[field].default


def _choices(model: type[BaseModel], field: str) -> list[str]:
    """The values of a `Literal` field, as a flag's choices."""
    return list(get_args(model.model_fields[field].annotation))


def _add_generate(sub: Subparsers) -> None:
    p = sub.add_parser("generate", help="run a config: generate, filter, deduplicate, write the dataset")
    p.add_argument(
        "--config",
        "-c",
        default=_DEFAULT_CONFIG,
        help=f"YAML config file, or the name of a built-in one (default: {_DEFAULT_CONFIG})",
    )
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.add_argument(
        "--set",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="override one setting, like engine.concurrency=32 (repeatable)",
    )
    p.add_argument("--fresh", action="store_true", help="discard what the run directory holds and start over")
    p.add_argument("--force", action="store_true", help="continue a run directory even though its config changed")
    p.add_argument("--records", type=int, metavar="N", help="rows the dataset must hold (generation.num_records)")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="run the first refill as a pilot (kept: the run goes on from it), then print the requests, "
        "tokens, time and cost the record target is expected to take",
    )
    p.add_argument("--max-requests", type=int, metavar="N", help="stop sending after N requests (budget.max_requests)")
    p.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="stop sending at N tokens, prompt and completion (budget.max_tokens)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="stop sending after this wall-clock time, summed over sessions (budget.max_time_s)",
    )
    p.add_argument(
        "--max-gpu-hours", type=float, metavar="H", help="stop sending after H GPU-hours (budget.max_gpu_hours)"
    )
    p.add_argument(
        "--max-cost",
        type=float,
        metavar="X",
        help="stop sending at this cost (budget.max_cost; needs a price in the config)",
    )
    p.set_defaults(func=_generate)


def _add_serve(sub: Subparsers) -> None:
    p = sub.add_parser("serve", help="start the config's vLLM server in the foreground")
    p.add_argument("--config", "-c", default=_DEFAULT_CONFIG, help="YAML config file or built-in name")
    p.set_defaults(func=_serve)


def _add_model(sub: Subparsers) -> None:
    p = sub.add_parser("model", help="manage the bundled model")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    mp = msub.add_parser(
        "prepare",
        help="convert the bundled SmolLM2-135M GGUF to safetensors in the user cache (once) and print its folder",
    )
    mp.add_argument("--force", action="store_true", help="convert again even if cached")
    mp.set_defaults(func=_model_prepare)


def _add_dedup(sub: Subparsers) -> None:
    p = sub.add_parser(
        "dedup",
        help="deduplicate finished datasets or shards (exact, then semantic) and write the kept rows and a report",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="a file (.jsonl, .json, .csv, .parquet), a dataset folder or hf:owner/name (see Reading data); "
        "several are merged in the order given",
    )
    _add_column_flags(p)
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        required=True,
        help="folder for kept.jsonl, dedup_report.json, funnel.json and the dataset/ folder (parquet + card)",
    )
    threshold = _default(SemanticDedupSpec, "threshold")
    p.add_argument(
        "--threshold",
        type=float,
        default=threshold,
        help=f"without the pair check: cosine at or above which a later record is a near-duplicate "
        f"(default: {threshold})",
    )
    p.add_argument(
        "--no-pair-check",
        action="store_true",
        help="plain cosine --threshold instead of the learned pair check on neighbours at "
        f"cosine >= {_default(SemanticDedupSpec, 'candidates')} (the pair check is fitted for the default "
        "MiniLM encoder only)",
    )
    p.add_argument(
        "--encoder",
        choices=_choices(SemanticDedupSpec, "encoder"),
        default=_default(SemanticDedupSpec, "encoder"),
        help="minilm: sentence-transformers (GPU if present); static: fast CPU token vectors",
    )
    p.add_argument("--model", help="sentence-transformers folder or name (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--exact-only", action="store_true", help="only the exact (normalized text) stage")
    p.add_argument(
        "--against",
        type=Path,
        metavar="INDEX_OR_DATASET",
        help="an existing corpus the inputs are deduplicated against (its rows are not written): a dedup "
        "output folder or its dedup_index/, a run directory (its saved vectors are reused), or any dataset",
    )
    p.add_argument(
        "--reuse",
        type=Path,
        metavar="INDEX",
        help="a previous dedup's output folder (or index, or run directory): its vectors are reused, so a "
        "new --threshold or pair-check setting re-decides without encoding again",
    )
    p.add_argument(
        "--cascade",
        type=float,
        metavar="FLOOR",
        help="a cheap first pass: rows with no other row at this static-vector cosine (0.8 agreed with "
        "the full path on 99.5%% of real prompts) are kept without encoding them (default: off)",
    )
    _add_no_report_flag(p)
    p.set_defaults(func=_dedup)


def _add_decontaminate(sub: Subparsers) -> None:
    p = sub.add_parser(
        "decontaminate",
        help="drop rows that leak a benchmark (shared n-grams, embedding similarity) and report each match",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="DATA",
        help="a file (.jsonl, .json, .csv, .parquet), a dataset folder or hf:owner/name (see Reading data)",
    )
    p.add_argument(
        "--against",
        nargs="+",
        required=True,
        metavar="REF",
        help="references (benchmarks) in any format the reader knows, nested `instances` and chat "
        "`messages` included, or hf:owner/name[:split] (split `test` when left out; cached after the first read)",
    )
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        required=True,
        help="folder for dataset/, decontamination.json, funnel.json and rejected.jsonl",
    )
    _add_column_flags(p)
    ngram = _default(DecontaminateSpec, "ngram")
    p.add_argument("--ngram", type=int, default=ngram, help=f"words in a shared n-gram (default: {ngram})")
    threshold = _default(DecontaminateSpec, "threshold")
    p.add_argument(
        "--threshold",
        type=float,
        default=threshold,
        help=f"cosine at or above which a row overlaps a reference (default: {threshold})",
    )
    p.add_argument("--ngram-only", action="store_true", help="only the text checks: no encoder")
    encoder = _default(DecontaminateSpec, "encoder")
    p.add_argument(
        "--encoder",
        choices=_choices(DecontaminateSpec, "encoder"),
        default=encoder,
        help=f"as for dedup (default: {encoder})",
    )
    p.add_argument("--model", help="sentence-transformers folder or name (default: bundled all-MiniLM-L6-v2)")
    _add_no_report_flag(p)
    p.set_defaults(func=_decontaminate)


def _add_audit(sub: Subparsers) -> None:
    p = sub.add_parser(
        "audit",
        help="measure what a dataset gives away of private records (copied spans, near copies, leaked "
        "identifiers, membership attack); exit code 1 when a threshold is crossed",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="DATA", help="the dataset: any file, folder or hf:owner/name the reader knows"
    )
    p.add_argument(
        "--private", nargs="+", required=True, metavar="SRC", help="the private records (any source; .txt: one a line)"
    )
    p.add_argument(
        "--holdout",
        nargs="+",
        metavar="SRC",
        help="private records of the same kind the generator never saw: the membership attack's non-members",
    )
    p.add_argument("--out", "-o", type=Path, default=Path("."), help="folder for privacy.json (default: here)")
    for name, kind in (
        ("max_copied_tokens", int),
        ("max_similarity", float),
        ("max_attack_auc", float),
    ):
        default = _default(PrivacySettings, name)
        p.add_argument(
            f"--{name.replace('_', '-')}", type=kind, default=default, help=f"see privacy.{name} (default: {default})"
        )
    encoder = _default(PrivacySettings, "encoder")
    p.add_argument(
        "--encoder", choices=_choices(PrivacySettings, "encoder"), default=encoder, help=f"(default: {encoder})"
    )
    _add_no_report_flag(p)
    p.set_defaults(func=_audit)


def _add_scrub(sub: Subparsers) -> None:
    p = sub.add_parser(
        "scrub",
        help="remove every copy of private text from a finished run directory (the dataset stays loadable)",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.set_defaults(func=_scrub)


def _add_no_report_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-report",
        dest="report",
        action="store_false",
        default=_default(ReportConfig, "enabled"),
        help="write no report.html: its embedding measures are most of the time on small data "
        "(`instructforge report OUT` writes it later)",
    )


def _add_templates(sub: Subparsers) -> None:
    p = sub.add_parser("templates", help="list, show and preview the prompt templates")
    tsub = p.add_subparsers(dest="templates_command", required=True, metavar="ACTION")
    tp = tsub.add_parser("list", help="the built-in templates, what they produce and need")
    tp.set_defaults(func=_templates_list)
    tp = tsub.add_parser("show", help="a template's metadata, variables and source")
    tp.add_argument("name", help="built-in template name or path to a .jinja file")
    tp.set_defaults(func=_templates_show)
    tp = tsub.add_parser(
        "render",
        help="print the chat messages exactly as they would be sent; `magpie`: the pre-query derived "
        "from the configured model's chat template",
    )
    tp.add_argument("name", help="built-in template name or path to a .jinja file, or `magpie`")
    tp.add_argument(
        "--config",
        "-c",
        default=_DEFAULT_CONFIG,
        help=f"for `magpie`: the config whose model (and generation.magpie) is used (default: {_DEFAULT_CONFIG})",
    )
    tp.add_argument(
        "--var",
        action="append",
        type=_string_var,
        metavar="NAME=VALUE",
        help="a template variable, as text (repeatable)",
    )
    tp.add_argument("--seeds", metavar="SOURCE", help="fill `demonstrations` from seed tasks: `builtin` or a seed file")
    tp.add_argument(
        "--num-demonstrations",
        type=int,
        default=4,
        metavar="K",
        help="how many seed tasks --seeds puts in `demonstrations` (default: 4)",
    )
    tp.add_argument(
        "--json", action="store_true", help="print the request body (messages, sampling, response_format) as JSON"
    )
    tp.set_defaults(func=_templates_render)


def _add_push(sub: Subparsers) -> None:
    p = sub.add_parser("push", help="push a run's dataset to the Hugging Face Hub (one commit)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory, or the dataset folder itself")
    p.add_argument("--repo", required=True, help="dataset repository, user/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", metavar="BRANCH", help="branch to push to (default: main)")
    p.add_argument("--message", "-m", help="commit message (default: row counts per split)")
    p.set_defaults(func=_push)


def _add_export(sub: Subparsers) -> None:
    p = sub.add_parser(
        "export", help="write a run's dataset in a format the readers take (Alpaca, ShareGPT, chat, pairs, ...)"
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory, or the dataset folder itself")
    p.add_argument(
        "--format",
        "-f",
        required=True,
        choices=list(WRITERS),
        help="; ".join(f"{name}: {what}" for name, (_, _, what) in WRITERS.items()),
    )
    p.add_argument("--out", "-o", required=True, help="file to write")
    p.add_argument("--split", default="train", help="split to export, or `all` (default: train)")
    p.set_defaults(func=_export)


def _add_merge(sub: Subparsers) -> None:
    p = sub.add_parser("merge", help="merge shard run directories into one deduplicated dataset")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="shard run directories, in order")
    p.add_argument("--out", "-o", required=True, help="directory for the merged dataset/, funnel.json and merge.json")
    p.add_argument(
        "--config",
        "-c",
        default=_DEFAULT_CONFIG,
        help=f"config whose `dataset` section (split, card, push) applies (default: {_DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--set",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="override one setting, like dataset.test_ratio=0.05 (repeatable)",
    )
    p.add_argument(
        "--dedup",
        action="append",
        metavar="FILTER",
        help="dedup filter run over all shards, in order (repeatable; default: exact_dedup, then semantic_dedup)",
    )
    p.add_argument("--push", action="store_true", help="push the merged dataset to dataset.push.repo")
    p.set_defaults(func=_merge)


def _add_report(sub: Subparsers) -> None:
    p = sub.add_parser(
        "report",
        help="write the HTML report (funnel, diversity, lengths, rounds, examples) of a run or of any dataset",
    )
    p.add_argument(
        "run_dir", nargs="?", metavar="RUN_DIR", help="a run directory (or merge, dedup, decontaminate output)"
    )
    p.add_argument(
        "--dataset",
        metavar="SOURCE",
        help="any dataset instead: a file (.jsonl, .json, .csv, .parquet), a dataset folder or hf:owner/name",
    )
    p.add_argument(
        "--out",
        "-o",
        help="HTML file to write (default: report.html in the run's dataset folder; report.html here for --dataset)",
    )
    sample = _default(ReportConfig, "sample")
    p.add_argument("--sample", type=int, default=sample, help=f"rows the embedding measures use (default: {sample})")
    examples = _default(ReportConfig, "examples")
    p.add_argument(
        "--examples", type=int, default=examples, help=f"kept rows in the Examples table (default: {examples})"
    )
    p.add_argument(
        "--gpu-hour-cost",
        type=float,
        default=_default(ReportConfig, "gpu_hour_cost"),
        help="price of a GPU-hour, for the cost per 1,000 kept rows",
    )
    p.set_defaults(func=_report)


def _add_probe(sub: Subparsers) -> None:
    p = sub.add_parser(
        "probe",
        help="counterfactual probes: ask the served model each sampled request twice, about two groups, and compare",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument(
        "--config",
        "-c",
        default=_DEFAULT_CONFIG,
        help=f"the config that serves the model (its server and endpoints; default: {_DEFAULT_CONFIG})",
    )
    # The default is run_probes()'s (20): importing it here would load the report for every command.
    p.add_argument("--pairs", type=int, help="request pairs to send (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="which rows are sampled (default: 0)")
    p.set_defaults(func=_probe)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instructforge",
        description="Generate instruction-tuning datasets with vLLM, filter and deduplicate them, "
        "and publish them as Hugging Face datasets.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_generate,
        _add_serve,
        _add_model,
        _add_inspect,
        _add_dedup,
        _add_decontaminate,
        _add_templates,
        _add_push,
        _add_export,
        _add_merge,
        _add_report,
        _add_probe,
        _add_audit,
        _add_scrub,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    sigterm_unwinds()
    try:
        return func(args) or 0
    except InstructforgeError as err:
        print(f"instructforge: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("instructforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

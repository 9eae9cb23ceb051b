"""What goes to the engine and what comes back: plain data, no transport.

A failed sample is data: a `Result` whose `error` is an `ErrorKind`. The kinds' values are the
strings that `results.jsonl` has always held, so run directories written before read back the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any


class ErrorKind(str, Enum):
    """Why one attempt failed. The values are written to `results.jsonl` and `engine_stats.json`."""

    TIMEOUT = "timeout"  # no complete answer in time, or HTTP 408
    HTTP_429 = "http_429"  # rate limited (Retry-After honoured)
    HTTP_5XX = "http_5xx"
    CONNECTION = "connection"  # refused, reset or closed mid-answer
    BAD_RESPONSE = "bad_response"  # HTTP 200 with a body that is not a completion
    BAD_REQUEST = "bad_request"  # any other 4xx: the server will not accept this request

    def __str__(self) -> str:
        return self.value


# Kinds worth another attempt: the server may answer next time. `BAD_REQUEST` is not.
RETRYABLE = frozenset(
    {ErrorKind.TIMEOUT, ErrorKind.HTTP_429, ErrorKind.HTTP_5XX, ErrorKind.CONNECTION, ErrorKind.BAD_RESPONSE}
)


def request_id(template: str, variables: dict[str, Any], model: str, params: dict[str, Any]) -> str:
    """Stable id of a request: the same template, variables, model and sampling params give the
    same id in every process, whatever the dict order."""
    payload = json.dumps(
        [template, variables, model, params],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Request:
    """One call: `messages` for /chat/completions or `prompt` for /completions. `params`
    (temperature, top_p, max_tokens, stop, seed, n, response_format, ...) are sent as they are."""

    id: str
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError(f"request {self.id}: give exactly one of messages (chat) or prompt (completions)")

    @property
    def api(self) -> str:
        """The API it goes to: `chat` or `completions` (a key of `transport.API_FUNCS`)."""
        return "chat" if self.messages is not None else "completions"


@dataclass
class Result:
    """The answer to one request; `texts` and `finish_reasons` hold one entry per choice (`n`)."""

    request_id: str
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: ErrorKind | None = None
    error_message: str = ""
    endpoint: str = ""
    attempts: int = 1
    latency_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def truncated(self) -> bool:
        """Some choice stopped at `max_tokens` (`finish_reason == "length"`)."""
        return "length" in self.finish_reasons

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy costs a tenth of the engine's time at full speed.
        return {
            "request_id": self.request_id,
            "texts": self.texts,
            "finish_reasons": self.finish_reasons,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "error": None if self.error is None else str(self.error),
            "error_message": self.error_message,
            "endpoint": self.endpoint,
            "attempts": self.attempts,
            "latency_s": self.latency_s,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """Read back `to_dict()`; keys this version does not know (a newer writer's) are ignored,
        and an error kind it does not know stays the plain string, so the result still reads as
        failed and writes back unchanged."""
        result = cls(**{k: v for k, v in data.items() if k in _RESULT_FIELDS})
        if result.error is not None:
            result.error = _KINDS.get(result.error, result.error)
        return result


_RESULT_FIELDS = frozenset(f.name for f in fields(Result))
_KINDS = {kind.value: kind for kind in ErrorKind}

"""A small in-memory Hugging Face Hub for tests: the calls `huggingface_hub` and `datasets` make to
create repos, commit files (regular and LFS), list trees and download files.

Standard library only; `HubServer.start()` serves on 127.0.0.1 on a free port in a thread. It
checks `Authorization` like the Hub does: an unknown token is refused (401), writes need the
namespace owner's token, private repos are invisible (404) to anyone else. Every request is
recorded (method, path, whether it carried a token) so tests can assert what was (not) sent.
See ../shared/hub-protocol.md for the protocol notes this follows.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_blob_sha(self.data)


@dataclass
class Commit:
    sha: str
    summary: str
    description: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)  # commit shas, oldest first

    def resolve(self, rev: str) -> Commit | None:
        sha = self.branches.get(rev, rev)
        return self.commits.get(sha)


class HubState:
    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens  # token -> user name
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # LFS objects by sha256
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, had a token)
        self.fail_commits = 0  # answer this many commit calls with 503, to test retries
        self.lock = threading.Lock()

    def new_repo(self, type_: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(type_, repo_id, private)
        self._commit(repo, "main", "initial commit", "", {})
        self.repos[(type_, repo_id)] = repo
        return repo

    def _commit(self, repo: Repo, branch: str, summary: str, description: str, files: dict[str, StoredFile]) -> Commit:
        sha = hashlib.sha1(f"{repo.id}{branch}{len(repo.commits)}{time.time_ns()}".encode()).hexdigest()
        commit = Commit(sha, summary, description, files)
        repo.commits[sha] = commit
        repo.branches[branch] = sha
        repo.history.append(sha)
        return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- plumbing -------------------------------------------------------------------------------

    @property
    def state(self) -> HubState:
        return self.server.state

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None, head_only: bool = False
    ) -> None:
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
            ctype = "application/octet-stream"
        else:
            data = json.dumps(body if body is not None else {}).encode()
            ctype = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, head_only: bool = False) -> None:
        self._send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message}, head_only=head_only)

    def _user(self) -> str | None | bool:
        """The caller's user name; None without a token; False for an unknown token."""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        return self.state.tokens.get(auth[len("Bearer ") :], False)

    def _repo(self, type_: str, repo_id: str, user: str | None, head_only: bool = False) -> Repo | None:
        repo = self.state.repos.get((type_, repo_id))
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            self._error(404, "RepoNotFound", f"Repository not found: {repo_id}", head_only)
            return None
        return repo

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        user = self._user()
        with self.state.lock:
            self.state.requests.append((method, self.path, user is not None))
        if user is False:
            self._body()
            self._error(401, "InvalidCredentials", "Invalid credentials in Authorization header", method == "HEAD")
            return
        body = self._body() if method in ("POST", "PUT") else b""
        for pattern, verb, handler in ROUTES:
            m = re.fullmatch(pattern, path)
            if m and verb == method:
                with self.state.lock:
                    handler(self, user, body, query, *[unquote(g) if g else g for g in m.groups()])
                return
            if m and verb == "GET" and method == "HEAD":
                with self.state.lock:
                    handler(self, user, body, query, *[unquote(g) if g else g for g in m.groups()], head_only=True)
                return
        self._error(404, "NotFound", f"no route for {method} {path}", method == "HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # --- routes ---------------------------------------------------------------------------------

    def whoami(self, user: str | None, body: bytes, query: dict, head_only: bool = False) -> None:
        if user is None:
            self._error(401, "Unauthorized", "Authorization header is required")
            return
        self._send(
            200,
            {
                "type": "user",
                "name": user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"role": "write"}},
            },
        )

    def create_repo(self, user: str | None, body: bytes, query: dict) -> None:
        req = json.loads(body)
        type_ = req.get("type") or "model"
        ns = req.get("organization") or user
        repo_id = f"{ns}/{req['name']}"
        if user is None or ns != user:
            self._error(401 if user is None else 403, "Forbidden", f"cannot create {repo_id}")
            return
        url = f"{self.server.url}/{PREFIX[type_]}{repo_id}"
        if (type_, repo_id) in self.state.repos:
            self._send(409, {"error": "You already created this repo", "url": url})
            return
        # huggingface_hub 2.x sends `visibility`; older clients send `private`.
        private = bool(req.get("private")) or req.get("visibility") == "private"
        self.state.new_repo(type_, repo_id, private)
        self._send(200, {"url": url, "name": repo_id, "id": repo_id})

    def repo_info(
        self,
        user: str | None,
        body: bytes,
        query: dict,
        kind: str,
        repo_id: str,
        rev: str | None,
        head_only: bool = False,
    ) -> None:
        repo = self._repo(TYPES[kind], repo_id, user, head_only)
        if repo is None:
            return
        commit = repo.resolve(rev or "main")
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head_only)
            return
        card = commit.files.get("README.md")
        self._send(
            200,
            {
                "id": repo_id,
                "_id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.sha,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "lastModified": "2026-11-23T00:00:00.000Z",
                "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                "cardData": _card_yaml(card.data) if card else None,
            },
            head_only=head_only,
        )

    def validate_yaml(self, user: str | None, body: bytes, query: dict) -> None:
        self._send(200, {"errors": [], "warnings": []})

    def preupload(self, user: str | None, body: bytes, query: dict, kind: str, repo_id: str, rev: str) -> None:
        if self._repo(TYPES[kind], repo_id, user) is None:
            return
        files = json.loads(body)["files"]
        # Text files small enough go inline; everything else (parquet) through LFS.
        answer = [
            {
                "path": f["path"],
                "shouldIgnore": False,
                "oid": None,
                "uploadMode": "regular" if f["path"].endswith((".md", ".json", ".yaml", ".txt")) else "lfs",
            }
            for f in files
        ]
        self._send(200, {"files": answer})

    def lfs_batch(self, user: str | None, body: bytes, query: dict, prefix: str | None, repo_id: str) -> None:
        type_ = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        if self._write_denied(type_, repo_id, user):
            return
        objects = []
        for obj in json.loads(body)["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.blobs:
                entry["actions"] = {"upload": {"href": f"{self.server.url}/_lfs/{obj['oid']}", "header": {}}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def lfs_put(self, user: str | None, body: bytes, query: dict, oid: str) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            self._error(400, "BadRequest", "content does not match oid")
            return
        self.state.blobs[oid] = body
        self._send(200, {})

    def _write_denied(self, type_: str, repo_id: str, user: str | None) -> bool:
        repo = self._repo(type_, repo_id, user)
        if repo is None:
            return True
        if user != repo_id.split("/")[0]:
            self._error(403 if user else 401, "Forbidden", f"no write access to {repo_id}")
            return True
        return False

    def commit(self, user: str | None, body: bytes, query: dict, kind: str, repo_id: str, rev: str) -> None:
        type_ = TYPES[kind]
        if self._write_denied(type_, repo_id, user):
            return
        if self.state.fail_commits > 0:
            self.state.fail_commits -= 1
            self._error(503, "ServiceUnavailable", "try again later")
            return
        repo = self.state.repos[(type_, repo_id)]
        head = repo.resolve(rev)
        if head is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return
        files = dict(head.files)
        header: dict[str, Any] = {}
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            op = json.loads(line)
            key, value = op["key"], op["value"]
            if key == "header":
                header = value
                parent = value.get("parentCommit")
                if parent and parent != head.sha:
                    self._error(412, "PreconditionFailed", "parent commit is not the head")
                    return
            elif key == "file":
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                blob = self.state.blobs.get(value["oid"])
                if blob is None:
                    self._error(422, "LfsObjectMissing", f"LFS object {value['oid']} not uploaded")
                    return
                files[value["path"]] = StoredFile(blob, lfs=True)
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: f for p, f in files.items() if not p.startswith(folder)}
        commit = self.state._commit(repo, rev, header.get("summary", ""), header.get("description", ""), files)
        self._send(
            200,
            {
                "commitOid": commit.sha,
                "pullRequestUrl": None,
                "commitUrl": f"{self.server.url}/{PREFIX[type_]}{repo_id}/commit/{commit.sha}",
            },
        )

    def branch(self, user: str | None, body: bytes, query: dict, kind: str, repo_id: str, name: str) -> None:
        type_ = TYPES[kind]
        if self._write_denied(type_, repo_id, user):
            return
        repo = self.state.repos[(type_, repo_id)]
        if name in repo.branches:
            self._error(409, "Conflict", f"branch {name} already exists")
            return
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        repo.branches[name] = repo.resolve(start).sha  # type: ignore[union-attr]
        self._send(200, {})

    def _entries(self, commit: Commit, paths: list[str], recursive: bool) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for path in paths:
            prefix = path.strip("/")
            for p, f in sorted(commit.files.items()):
                if p == prefix:
                    out[p] = self._file_entry(p, f)
                    continue
                if prefix and not p.startswith(prefix + "/"):
                    continue
                rest = p[len(prefix) + 1 :] if prefix else p
                parts = rest.split("/")
                if len(parts) == 1:
                    out[p] = self._file_entry(p, f)
                    continue
                base = f"{prefix}/" if prefix else ""
                for depth in range(1, len(parts) if recursive else 2):
                    d = base + "/".join(parts[:depth])
                    out.setdefault(d, {"type": "directory", "oid": git_blob_sha(d.encode()), "size": 0, "path": d})
                if recursive:
                    out[p] = self._file_entry(p, f)
        return list(out.values())

    @staticmethod
    def _file_entry(path: str, f: StoredFile) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": git_blob_sha(f.data), "size": len(f.data), "path": path}
        if f.lfs:
            entry["lfs"] = {"oid": f.etag, "size": len(f.data), "pointerSize": 134}
        return entry

    def _commit_at(self, kind: str, repo_id: str, user: str | None, rev: str) -> Commit | None:
        """The repo's commit at `rev`, or None after answering the 404 that says why."""
        repo = self._repo(TYPES[kind], repo_id, user)
        if repo is None:
            return None
        commit = repo.resolve(rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return commit

    def tree(
        self,
        user: str | None,
        body: bytes,
        query: dict,
        kind: str,
        repo_id: str,
        rev: str,
        folder: str | None,
        head_only: bool = False,
    ) -> None:
        commit = self._commit_at(kind, repo_id, user, rev)
        if commit is None:
            return
        folder = (folder or "").strip("/")
        if folder and not any(p.startswith(folder + "/") for p in commit.files):
            self._error(404, "EntryNotFound", f"{folder} does not exist on {rev}")
            return
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        self._send(200, self._entries(commit, [folder], recursive))

    def paths_info(self, user: str | None, body: bytes, query: dict, kind: str, repo_id: str, rev: str) -> None:
        commit = self._commit_at(kind, repo_id, user, rev)
        if commit is None:
            return
        form = parse_qs(body.decode())
        paths = form.get("paths", [])
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit.files:
                out.append(self._file_entry(p, commit.files[p]))
            elif any(q.startswith(p + "/") for q in commit.files):
                out.append({"type": "directory", "oid": git_blob_sha(p.encode()), "size": 0, "path": p})
        self._send(200, out)

    def resolve(
        self,
        user: str | None,
        body: bytes,
        query: dict,
        prefix: str | None,
        repo_id: str,
        rev: str,
        path: str,
        head_only: bool = False,
    ) -> None:
        type_ = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        repo = self._repo(type_, repo_id, user, head_only)
        if repo is None:
            return
        commit = repo.resolve(rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head_only)
            return
        f = commit.files.get(path)
        if f is None:
            self._error(404, "EntryNotFound", f"{path} does not exist on {rev}", head_only)
            return
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes"}
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.etag}"'
            headers["X-Linked-Size"] = str(len(f.data))
        data = f.data
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[len("bytes=") :].partition("-")
            if start_s:
                start = int(start_s)
                end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
            else:  # suffix range: the last N bytes
                start, end = max(len(data) - int(end_s), 0), len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start : end + 1], headers, head_only)
            return
        self._send(200, data, headers, head_only)


def _card_yaml(readme: bytes) -> dict[str, Any] | None:
    import yaml

    text = readme.decode("utf-8", "replace")
    m = re.match(r"^---\n(.*?)\n---", text, re.S)
    return yaml.safe_load(m.group(1)) if m else None


_T = r"(models|datasets|spaces)"
_R = r"([^/]+/[^/]+)"
ROUTES = [
    (r"/api/whoami-v2", "GET", _Handler.whoami),
    (r"/api/repos/create", "POST", _Handler.create_repo),
    (r"/api/validate-yaml", "POST", _Handler.validate_yaml),
    (rf"/api/{_T}/{_R}/preupload/(.+)", "POST", _Handler.preupload),
    (rf"/api/{_T}/{_R}/commit/(.+)", "POST", _Handler.commit),
    (rf"/api/{_T}/{_R}/branch/(.+)", "POST", _Handler.branch),
    (rf"/api/{_T}/{_R}/tree/([^/]+)(?:/(.*))?", "GET", _Handler.tree),
    (rf"/api/{_T}/{_R}/paths-info/(.+)", "POST", _Handler.paths_info),
    (rf"/api/{_T}/{_R}(?:/revision/(.+))?", "GET", _Handler.repo_info),
    (r"/(datasets/|spaces/)?" + _R + r"\.git/info/lfs/objects/batch", "POST", _Handler.lfs_batch),
    (r"/_lfs/([0-9a-f]{64})", "PUT", _Handler.lfs_put),
    (r"/(datasets/|spaces/)?" + _R + r"/resolve/([^/]+)/(.+)", "GET", _Handler.resolve),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    url: str


class HubServer:
    """The server and its state; `with HubServer(tokens) as hub:` serves until the block ends."""

    def __init__(self, tokens: dict[str, str]):
        self.state = HubState(tokens)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._server.url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def repo(self, repo_id: str, type_: str = "dataset") -> Repo:
        return self.state.repos[(type_, repo_id)]


# Tokens the test server knows (fake: they open nothing but this server).
TOKEN = "hf_test_alice_0123456789abcdefghij"
BOB = "hf_test_bob_0123456789abcdefghijkl"

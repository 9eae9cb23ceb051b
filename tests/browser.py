"""A page opened in headless Chromium (Debian's `chromium`), driven over the DevTools protocol on
a websocket (aiohttp): nothing is downloaded, no driver is needed.

`open_page(path)` loads a local file and returns a `PageVisit`: every console message and
uncaught exception, every network request the page made, a PNG screenshot, and values read
from the page with JavaScript. Used by the report tests and scripts/bench_report.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")


def find_chromium() -> str | None:
    return next((p for name in BROWSERS if (p := shutil.which(name))), None)


@dataclass
class PageVisit:
    console: list[dict[str, Any]] = field(default_factory=list)  # {level, text}
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    values: dict[str, Any] = field(default_factory=dict)  # name -> what its expression returned
    screenshot: bytes = b""
    load_s: float = 0.0

    @property
    def errors(self) -> list[str]:
        return self.exceptions + [m["text"] for m in self.console if m["level"] in ("error", "warning")]

    @property
    def network(self) -> list[str]:
        """Requests that would leave the machine (or reach a server): anything but the file itself."""
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]


class _Session:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.loaded = asyncio.Event()

    async def call(self, method: str, **params: Any) -> Any:
        self.next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 120)

    async def pump(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                fut = self.pending.pop(data["id"])
                if "error" in data:
                    fut.set_exception(RuntimeError(f"DevTools: {data['error']}"))
                else:
                    fut.set_result(data.get("result", {}))
            elif "method" in data:
                self.events.append((data["method"], data.get("params", {})))
                if data["method"] == "Page.loadEventFired":
                    self.loaded.set()


def _visit(events: list[tuple[str, dict[str, Any]]], visit: PageVisit) -> None:
    for method, p in events:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            visit.console.append({"level": p.get("type", "log"), "text": text})
        elif method == "Log.entryAdded":
            entry = p.get("entry", {})
            visit.console.append({"level": entry.get("level", "info"), "text": entry.get("text", "")})
        elif method == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            visit.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Network.requestWillBeSent":
            visit.requests.append(p.get("request", {}).get("url", ""))


async def _drive(port: int, url: str, expressions: dict[str, str], size: tuple[int, int], visit: PageVisit) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as resp:
            target = await resp.json(content_type=None)
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            s = _Session(ws)
            pump = asyncio.create_task(s.pump())
            try:
                for domain in ("Runtime", "Log", "Network", "Page"):
                    await s.call(f"{domain}.enable")
                await s.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=size[0],
                    height=size[1],
                    deviceScaleFactor=1,
                    mobile=False,
                )
                started = time.monotonic()
                await s.call("Page.navigate", url=url)
                await asyncio.wait_for(s.loaded.wait(), 120)
                visit.load_s = time.monotonic() - started
                await asyncio.sleep(0.3)  # let late console messages arrive
                for name, expression in expressions.items():
                    out = await s.call("Runtime.evaluate", expression=expression, returnByValue=True)
                    visit.values[name] = out.get("result", {}).get("value")
                shot = await s.call("Page.captureScreenshot", format="png")
                import base64

                visit.screenshot = base64.b64decode(shot["data"])
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            _visit(s.events, visit)


def open_page(
    path: Path, expressions: dict[str, str] | None = None, *, size: tuple[int, int] = (1366, 900)
) -> PageVisit:
    """Load `path` in a fresh headless Chromium and report what happened (see `PageVisit`)."""
    binary = find_chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium; make setup does it)")
    # Leftovers of a helper that outlived the wait below must not fail the test: ignore_cleanup_errors.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its helper processes too are ended with the group below
        )
        try:
            port = _devtools_port(Path(profile), proc)
            visit = PageVisit()
            asyncio.run(_drive(port, Path(path).resolve().as_uri(), expressions or {}, size, visit))
            return visit
        finally:
            _end_group(proc)


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """End Chromium and every helper process it started: they write into the profile until they
    exit, which raced the profile's removal."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # helpers still running after Chromium itself ended


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """Chromium writes the port it chose to DevToolsActivePort in its profile."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker.is_file() and (text := marker.read_text().split()):
            return int(text[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode} before it opened DevTools")
        time.sleep(0.1)
    raise RuntimeError("chromium did not open DevTools within a minute")


def colour_stats(png: bytes) -> tuple[int, float]:
    """(distinct colours, share of pixels that are not near-white) of a screenshot, at 1/4 size."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.resize((max(1, img.width // 4), max(1, img.height // 4)))
    raw = img.tobytes()
    pixels = [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]
    distinct = len({(r // 8, g // 8, b // 8) for r, g, b in pixels})
    inked = sum(1 for r, g, b in pixels if min(r, g, b) < 235) / len(pixels)
    return distinct, inked

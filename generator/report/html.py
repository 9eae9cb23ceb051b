"""The report as one self-contained HTML file: the page (assets/report.html.jinja), its style and
script (assets/report.css, assets/report.js: hand-written SVG and vanilla JavaScript, no library)
and its data (JSON) all inline, so it opens from disk with no network at all.

The summary, funnel and score tables are plain HTML (readable in print and without scripts); the
charts and the example browser are drawn by the script from the inline data.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).parent / "assets"


@cache
def _template() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string((ASSETS / "report.html.jinja").read_text(encoding="utf-8"))


def inline_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `</script>` or `<!--` can close or confuse it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"


def render(data: dict[str, Any]) -> str:
    from markupsafe import Markup

    css = (ASSETS / "report.css").read_text(encoding="utf-8")
    script = (ASSETS / "report.js").read_text(encoding="utf-8")
    return _template().render(
        d=data,
        share=_share,
        css=Markup(css),
        script=Markup(script),
        data_json=Markup(inline_json(data)),
    )

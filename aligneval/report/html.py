"""One self-contained HTML file: inline CSS, plots as base64 PNG, no script, no network resource.

Jinja2 with autoescape on: every dataset or attack text is rendered as text. Nothing is marked safe;
a Content-Security-Policy meta tag forbids scripts and remote loads even if something slipped through.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any


def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("aligneval.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    env.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
    return env


def render_html(ctx: dict[str, Any]) -> str:
    ctx = {"disagreements": [], "adversarial_examples": [], **ctx}
    return environment().get_template("report.html.j2").render(**ctx)


def write_html(ctx: dict[str, Any], path: Path) -> Path:
    path.write_text(render_html(ctx), encoding="utf-8")
    return path

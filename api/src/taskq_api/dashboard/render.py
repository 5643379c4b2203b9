"""Pages from Jinja2 templates (autoescaped), with the filters they share."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

NO_VALUE = "\N{EN DASH}"  # what a page shows for a time that is not (yet) there


def _age(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return NO_VALUE
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("taskq_api.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a misspelt variable fails the page, not blank text
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=_age, when=_when, pretty=_pretty)
    return env


class Pages:
    def __init__(self) -> None:
        self.env = environment()

    def fragment(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def page(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        base = str(request.scope.get("root_path") or "")
        html = self.fragment(template, base=base, request_path=request.url.path, **context)
        return HTMLResponse(html, status_code=status)

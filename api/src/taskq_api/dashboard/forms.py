"""Form posts (application/x-www-form-urlencoded), parsed here rather than with
python-multipart: the dashboard's forms are small and never upload files."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request

from taskq.errors import InvalidArgumentError

# Largest form body: a replay of many selected dead letters is the longest (ids=N&...).
MAX_FORM_BYTES = 256 * 1024
_FORM_TYPE = "application/x-www-form-urlencoded"


class FormError(Exception):
    """The post is not a form of this dashboard; the message says why."""


class Form:
    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, name: str) -> str | None:
        values = self._fields.get(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return self._fields.get(name, [])

    def task_ids(self, name: str = "ids") -> list[int]:
        """The task ids posted as `name`; InvalidArgumentError names the one that is not."""
        ids = []
        for index, value in enumerate(self.all(name)):
            if not value.isdigit():
                raise InvalidArgumentError(f"{name}[{index}]", f"{value[:30]!r} is not a task id")
            ids.append(int(value))
        return ids


async def read_form(request: Request) -> Form:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != _FORM_TYPE:
        raise FormError(f"send the page's form ({_FORM_TYPE}), not {media or 'no body type'}")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise FormError(f"the form is over {MAX_FORM_BYTES // 1024} KiB: select fewer tasks")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8 text") from None
    return Form(parse_qs(text, keep_blank_values=True, max_num_fields=10_000))

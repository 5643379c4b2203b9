"""Queue names: NAMESPACE/NAME, each a DNS-1123 label."""

from __future__ import annotations

import pytest

from taskq.errors import InvalidArgumentError
from taskq.names import QueueName, check_label


def test_parse_splits_namespace_and_name() -> None:
    name = QueueName.parse("default/emails")
    assert (name.namespace, name.name) == ("default", "emails")
    assert str(name) == "default/emails"


@pytest.mark.parametrize("text", ["a/b", "a-1/b-2", "0/9", f"{'a' * 63}/{'b' * 63}"])
def test_valid_names(text: str) -> None:
    assert str(QueueName.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ("emails", "queue", "NAMESPACE/NAME"),
        ("a/b/c", "queue", "NAMESPACE/NAME"),
        ("", "queue", "NAMESPACE/NAME"),
        ("/emails", "queue namespace", "1-63 lowercase"),
        ("default/", "queue name", "1-63 lowercase"),
        ("Default/emails", "queue namespace", "1-63 lowercase"),
        ("default/e_mails", "queue name", "1-63 lowercase"),
        ("-a/b", "queue namespace", "starting and ending"),
        ("a/b-", "queue name", "starting and ending"),
        (f"{'a' * 64}/b", "queue namespace", "1-63"),
        ("a/b.c", "queue name", "1-63 lowercase"),
    ],
)
def test_invalid_names_name_the_part_and_the_rule(text: str, field: str, says: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        QueueName.parse(text)
    assert raised.value.field == field
    assert says in str(raised.value)


def test_check_label_returns_the_value() -> None:
    assert check_label("abc-1", "x") == "abc-1"
    with pytest.raises(InvalidArgumentError, match="invalid x:"):
        check_label("ABC", "x")

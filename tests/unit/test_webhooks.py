"""Standard Webhooks signing (checked against the `standardwebhooks` library) and the rules
of which targets a delivery may reach."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook

from taskq.errors import InvalidArgumentError
from taskq.webhooks import (
    Event,
    TargetRefusedError,
    WebhookSpec,
    check_addresses,
    check_scheme,
    new_secret,
    signed_headers,
)


def test_a_signature_verifies_with_the_standard_webhooks_library() -> None:
    secret = new_secret()
    body = b'{"type":"task.succeeded","data":{"id":1}}'
    headers = signed_headers(secret, "msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"type": "task.succeeded", "data": {"id": 1}}
    with pytest.raises(Exception, match="signature"):
        Webhook(new_secret()).verify(body, headers)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.4",
        "169.254.169.254",
        "::1",
        "fe80::1%eth0",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
    ],
)
def test_non_public_addresses_are_refused_unless_allow_listed(address: str) -> None:
    with pytest.raises(TargetRefusedError, match="non-public address"):
        check_addresses("hooks.internal", [address], ())
    check_addresses("hooks.internal", [address], ("HOOKS.internal.",))


def test_public_addresses_pass() -> None:
    check_addresses("example.com", ["93.184.216.34", "2606:2800:220:1::248"], ())


def test_one_bad_address_among_good_ones_refuses_the_host() -> None:
    with pytest.raises(TargetRefusedError):
        check_addresses("example.com", ["93.184.216.34", "10.0.0.1"], ())


def test_plain_http_needs_the_host_allow_listed() -> None:
    with pytest.raises(TargetRefusedError, match="not HTTPS"):
        check_scheme("http://example.com/h", (), "url")
    check_scheme("http://127.0.0.1:8080/h", ("127.0.0.1",), "url")
    check_scheme("https://example.com/h", (), "url")


def test_a_spec_checks_its_url_secret_and_events() -> None:
    secret = new_secret()
    with pytest.raises(InvalidArgumentError, match="http"):
        WebhookSpec("ftp://example.com", secret)
    with pytest.raises(InvalidArgumentError, match="whsec_"):
        WebhookSpec("https://example.com", "whsec_c2hvcnQ=")
    with pytest.raises(InvalidArgumentError, match="at least one event"):
        WebhookSpec("https://example.com", secret, events=())
    assert WebhookSpec(None, secret).url is None


def test_events_parse_in_either_spelling() -> None:
    assert Event.parse("Dead") is Event.DEAD
    assert Event.parse("succeeded") is Event.SUCCEEDED
    with pytest.raises(InvalidArgumentError, match="Succeeded, Dead, Canceled"):
        Event.parse("failed")

"""How a database is named in the operator's metrics: never with its credentials."""

from __future__ import annotations

from taskq_operator.databases import database_label


def test_a_url_dsn_shows_host_port_and_database_only() -> None:
    assert database_label("postgresql://app:s3cret@db.shop:6432/orders?sslmode=require") == (
        "db.shop:6432/orders"
    )
    assert database_label("postgres://db/orders") == "db/orders"


def test_a_key_value_dsn_is_told_apart_without_being_shown() -> None:
    label = database_label("host=db user=app password=s3cret dbname=orders")
    assert label.startswith("dsn-")
    assert "s3cret" not in label
    assert label != database_label("host=db user=app password=s3cret dbname=other")

"""Migrations are never edited once they have landed: a database that applied one refuses to
migrate when its text changes (taskq migrate compares checksums), so a schema change is a new
migration. The checksums of the landed ones are pinned here; a new migration adds its line."""

from __future__ import annotations

from taskq.store.sqlfiles import migrations

LANDED = {
    1: "e008adc6f24722835dfc434c18b34f716c5f962a13e9635c56c5739163b816bb",
    2: "818a7c37be53a45d2f756712cf9acd2d3eb1f7dcdaecb745de1ef2f7d9bb60a9",
    3: "ffb7bc5465fdab05d674febe49a6618bb00b9a781447c58f01c5db584cf09b27",
    4: "a888602251a6c9fdec5604413f196458fa661e7097656830cd203f1448f25079",
    5: "2d3e43ccf134e34559e4a7b00bef17c5c442defc7a0bcad0b97c9d6e8f36bf07",
    6: "7b52f83361fe19a1fb9321d47d2ae228cdfa7c03cd8173f9330c0ed5e315fbe5",
    7: "db22d5ea110f38c73418c543f54fbd1a879109df78cd994ab731a6026a9e0e55",
    8: "42cbc6de07f868a430790b182182ac9dc85fd39481a7766efea48f1b90cd3ad9",
    9: "4a8b2cebb7133d99e274af685d2a6fa827ba79802a5ed739148a63eba75a3d97",
    10: "16b34661bb6be9baa45f05e38a3ab2d5a9ad0da97966bb2d8c4ac2642d182b87",
    11: "a4200e69caba12c45b1ee0ee6ac7345b3a2e2f2702fb901d2425243426bd9169",
    12: "cd56382381e08fa290a3e0c9e165a2abba40e61581ce081ea2e872483ecdb138",
    13: "871d5d3beea112c66712bfc666e76f56a50d4d6df3f6533859f6d38d247cb329",
    14: "764d18847768509bf13f768bb38819e345b09d294c46f62ab4d4df900f4f70de",
    15: "ad086b7f7972e30718ddda29e4af970aa8ca37d2061e52e75f46dd9bf6adbece",
    16: "89df208a7b56ec32cab9a93330121489ab26b07fa675462a0c9254ce33f445de",
    17: "71a88b4691f8c4906bb4d699c440f830ea5b0dc5afa3e2720dffa509bfd86f71",
    18: "aab0e22b2c5c2336ff136326510f83ee7b9b898cfd6275cab96650aaf8d38f18",
    19: "ff0e3dd58f574439f202f68b73b714ecc66e26385244f13d70f45e442d34181d",
    20: "b6208e60a42f3e042eadcefa0b5238f267395bd70be8a72ca85c3afb1fa0c005",
    21: "dbc82fcaec354d9104cdf722939514973b5dc242a3aecfc3f61580e00ea7160d",
    22: "7a3a760446c9e74f444fe5125b0efd9d8b3f74c11c4b0c613dc7709c689aa1b7",
    23: "e3554783fd63c7adbaddf1b18e2b6770ba4bf8435df44a2241d519c8583465aa",
    24: "15a8581e845ba7bc13bd1ddb9426c4c32c3bf6c8a031aac8eaffd055513c74de",
    25: "f648f793c99e7841277e6c02b63dc11f93a11c57b4d59bf1e1d7180fbbe533a2",
    26: "3922655e5d617477b1ccbc66d6091bcf3f87ed152a4440aae56131bcd104b256",
    27: "7e697e08d5fcc4bf3d9f66a0fc3f7e74e79b5f37bd91063054d7fa87e8b81b43",
    28: "a71fcc275567c84fdad670e0c256bb333677684d2225f53ab6c32c6cb02366f5",
    29: "a7803a7bff44416d755dd8005a5ade25fa2b213da81054772b8088c57467e91d",
    30: "86e0b2a4695cf28d799d69a5e2abe9a2ec878c6c101f4f5a53b69f45e21f2892",
    31: "64ebe437c8bea99e406d59763105ec8ae51aecda72cdf1cbe2018dc3d76d8387",
    32: "c5249142caf9d5ee3e323045570e97fb184845313ba7e092fd7d184879c87200",
}


def test_landed_migrations_are_unchanged() -> None:
    changed = [
        f"{m.version:04d}_{m.name}"
        for m in migrations()
        if m.version in LANDED and m.checksum != LANDED[m.version]
    ]
    assert changed == [], "a landed migration was edited: put the change in a new migration"


def test_every_migration_is_pinned() -> None:
    assert sorted(LANDED) == [m.version for m in migrations()], (
        "pin the new migration's checksum in LANDED (see its docstring)"
    )

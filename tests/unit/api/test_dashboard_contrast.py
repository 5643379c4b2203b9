"""The dashboard's colours: every text colour on every background it is drawn on has a
contrast of 4.5:1 or more (WCAG 2 AA), in the light theme and the dark one."""

from __future__ import annotations

import re
from importlib import resources

import pytest

# (text, background) as the stylesheet pairs them: body text, muted text, links, states and
# badges on the page and on panels; button labels on buttons.
PAIRS = [
    ("fg", "bg"), ("fg", "panel"), ("muted", "bg"), ("muted", "panel"), ("link", "bg"),
    ("link", "panel"), ("bad", "bg"), ("bad", "panel"), ("ok", "bg"), ("ok", "panel"),
    ("warn", "bg"), ("warn", "panel"), ("accent-fg", "accent"), ("bg", "bad"),
]


def _themes() -> dict[str, dict[str, str]]:
    css = (resources.files("taskq_api.dashboard") / "static" / "dashboard.css").read_text()
    light, dark = re.findall(r":root \{(.*?)\}", css, re.S)
    return {
        name: dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", block))
        for name, block in (("light", light), ("dark", dark))
    }


def _luminance(colour: str) -> float:
    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(colour[i:i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_text_colour_meets_aa_on_its_backgrounds(theme: str) -> None:
    colours = _themes()[theme]
    low = {
        (text, back): round(contrast(colours[text], colours[back]), 2)
        for text, back in PAIRS
        if contrast(colours[text], colours[back]) < 4.5
    }
    assert low == {}


def test_the_measure_is_wcags() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#767676", "#ffffff"), 2) == 4.54

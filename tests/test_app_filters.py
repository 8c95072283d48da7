"""Every page of the app renders without an exception for every value of every sidebar
filter, the values combined pairwise (each pair of values of two filters at least once)."""

from __future__ import annotations

import itertools

import pytest

from tests.app_demo import ADMIN, PAGES, AppDemo, open_app

pytestmark = pytest.mark.slow


def pairwise(values: dict[str, list[str]]) -> list[dict[str, str]]:
    """A small set of combinations in which every pair of values of two filters occurs."""
    names = list(values)
    uncovered = {
        (a, x, b, y)
        for a, b in itertools.combinations(names, 2)
        for x in values[a]
        for y in values[b]
    }
    chosen: list[dict[str, str]] = []
    while uncovered:
        a, x, b, y = min(uncovered)
        combo = {a: x, b: y}
        for name in names:
            if name in combo:
                continue
            combo[name] = max(
                values[name],
                key=lambda v, name=name: sum(
                    (n, combo[n], name, v) in uncovered or (name, v, n, combo[n]) in uncovered
                    for n in combo
                ),
            )
        chosen.append(combo)
        uncovered -= {(p, combo[p], q, combo[q]) for p, q in itertools.combinations(names, 2)}
    return chosen


def test_pairwise_covers_every_pair_of_values() -> None:
    combos = pairwise({"a": ["1", "2", "3"], "b": ["x", "y"], "c": ["p", "q"]})
    for first, second in (("a", "b"), ("a", "c"), ("b", "c")):
        pairs = {(c[first], c[second]) for c in combos}
        assert len(pairs) == {"a": 3, "b": 2, "c": 2}[first] * {"a": 3, "b": 2, "c": 2}[second]
    assert len(combos) <= 9


@pytest.mark.parametrize("page", PAGES)
def test_every_filter_value_renders_the_page_without_an_exception(demo: AppDemo, page: str) -> None:
    app = open_app(ADMIN)
    values = {box.key: list(box.options) for box in app.sidebar.selectbox}
    assert set(values) == {"period", "provider", "team", "environment", "cost"}
    app.switch_page(f"{page}.py").run()
    for combo in pairwise(values):
        for key, value in combo.items():
            app.sidebar.selectbox(key=key).set_value(value)
        app.run()
        assert not app.exception, (page, combo, [e.value for e in app.exception])

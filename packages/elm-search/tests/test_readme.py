"""The README's searcher example registers and runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from elm_search import Objective, build_searcher, registry

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_searcher_runs(space3, make_problem):
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "register_searcher" in b
    )
    scope: dict = {}
    exec(compile(block, str(README), "exec", dont_inherit=True), scope)
    try:
        problem = make_problem(space3, 0)
        result = build_searcher(
            "greedy",
            space3,
            Objective("score", problem),
            {"generations": 5, "population": 6, "neighbours": 2},
        ).search(progress=False)
        assert {r.origin for r in result.records} == {"random", "greedy"}
        assert [g.best for g in result.generations] == sorted(g.best for g in result.generations)
    finally:
        registry._SEARCHERS.pop("greedy")  # the elm-train plugin test registers its own "greedy"

"""Searchers by name, so a run config can name an algorithm that a plugin module added.

A searcher is a :class:`elm_search.Searcher` subclass with a ``Config`` settings class; the
decorator records it under a name and sets its ``algorithm`` label (saved in search states and
results). :func:`build_searcher` validates the settings with the searcher's own ``Config`` before
anything is evaluated, so a wrong setting fails when the config is checked, not mid-search.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from elm_search.constraints import Constraint
    from elm_search.objective import Objective
    from elm_search.searcher import SearchConfig, Searcher
    from elm_space import SearchSpace

S = TypeVar("S", bound="type[Searcher]")

_SEARCHERS: dict[str, type[Searcher]] = {}


def register_searcher(name: str, *, overwrite: bool = False) -> Callable[[S], S]:
    """Class decorator: make ``cls`` available as ``search.algorithm: <name>``.

    Re-using a name is an error unless ``overwrite`` is set, so a plugin cannot silently replace
    a built-in algorithm.
    """
    from elm_search.searcher import Searcher

    if not name or not isinstance(name, str):
        raise ValueError(f"a searcher name must be a non-empty string, got {name!r}")

    def add(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, Searcher)):
            raise TypeError(f"register_searcher({name!r}) needs a Searcher subclass, got {cls!r}")
        if name in _SEARCHERS and _SEARCHERS[name] is not cls and not overwrite:
            raise ValueError(
                f"a searcher named {name!r} is already registered; pass overwrite=True to replace it"
            )
        cls.algorithm = name
        _SEARCHERS[name] = cls
        return cls

    return add


def searcher_names() -> list[str]:
    return sorted(_SEARCHERS)


def get_searcher(name: str) -> type[Searcher]:
    try:
        return _SEARCHERS[name]
    except KeyError:
        raise KeyError(f"no searcher named {name!r}; registered: {', '.join(searcher_names())}") from None


def searcher_config(name: str, settings: Mapping[str, Any]) -> SearchConfig:
    """The named searcher's settings, validated by its ``Config`` (pydantic's errors name the field)."""
    return get_searcher(name).Config.model_validate(dict(settings))


def build_searcher(
    name: str,
    space: SearchSpace,
    objectives: Objective | Sequence[Objective],
    settings: Mapping[str, Any] | SearchConfig,
    constraints: Sequence[Constraint] | None = None,
) -> Searcher:
    """An instance of the named searcher over ``space`` with validated ``settings``."""
    cls = get_searcher(name)
    config = settings if isinstance(settings, cls.Config) else searcher_config(name, dict(settings))  # type: ignore[arg-type]
    return cls(space, objectives, config, constraints)

"""Isolation strategies, keyed by name.

The built-in strategies are named here by import path, so that reading the
settings (which validates ``alchemy_isolation`` against these names) imports no
SQLAlchemy. A project or plugin adds its own through the
``pytest_alchemy_isolation_strategies`` hook; :class:`Strategies` is the registry
of one run, built once at start-up, and refuses a name that is taken.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, message

if TYPE_CHECKING:
    from .base import Strategy

BUILTIN: Mapping[str, str] = {
    "savepoint": "pytest_alchemy.isolation.savepoint:SavepointStrategy",
    "truncate": "pytest_alchemy.isolation.truncate:TruncateStrategy",
    "recreate": "pytest_alchemy.isolation.recreate:RecreateStrategy",
    "clone": "pytest_alchemy.isolation.clone:CloneStrategy",
    "none": "pytest_alchemy.isolation.none:NoneStrategy",
}
"""The strategies that come with pytest-alchemy: name -> ``module:class``."""


def load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Strategies(Mapping[str, "type[Strategy]"]):
    """The strategies of one run: the built-in ones, then those the hook added."""

    def __init__(self, added: Iterable[Any] = ()) -> None:
        self._paths: dict[str, str] = dict(BUILTIN)
        self._classes: dict[str, type[Strategy]] = {}
        self._made: dict[str, Strategy] = {}
        for candidate in added:
            self._add(candidate)

    def _add(self, candidate: Any) -> None:
        from .base import Strategy

        shown = getattr(candidate, "__qualname__", repr(candidate))
        if not (isinstance(candidate, type) and issubclass(candidate, Strategy)):
            raise ConfigurationError(
                message(
                    f"pytest_alchemy_isolation_strategies returned {shown}, which is not a "
                    "subclass of pytest_alchemy.isolation.base.Strategy. Return the strategy "
                    "classes themselves."
                )
            )
        name = getattr(candidate, "name", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigurationError(
                message(
                    f"the isolation strategy {shown} has no valid name (a class attribute "
                    f"`name`, an identifier such as 'truncate'), got {name!r}."
                )
            )
        if name in self._paths or name in self._classes:
            taken = self._paths.get(name) or self._classes[name].__qualname__
            raise ConfigurationError(
                message(
                    f"the isolation strategy {shown} is registered under the name {name!r}, "
                    f"which {taken} already has. Give it another name."
                )
            )
        missing = sorted(getattr(candidate, "__abstractmethods__", ()))
        if missing:
            raise ConfigurationError(
                message(
                    f"the isolation strategy {name!r} ({shown}) does not implement "
                    f"{', '.join(missing)}, which every strategy needs."
                )
            )
        self._classes[name] = candidate

    def __getitem__(self, name: str) -> type[Strategy]:
        found = self._classes.get(name)
        if found is None:
            found = self._classes[name] = load(self._paths[name])
        return found

    def __iter__(self) -> Iterator[str]:
        yield from self._paths
        yield from (name for name in self._classes if name not in self._paths)

    def __len__(self) -> int:
        return len(set(self._paths) | set(self._classes))

    def usable(self, name: str, backend: str, capabilities: frozenset[str]) -> Strategy:
        """The run's strategy ``name`` (one instance per run, made on first use, so that
        it can keep what it prepared across tests), or a clear error when ``backend``
        cannot do what it requires, naming the strategies that work there."""
        strategy = self[name]
        missing = sorted(strategy.requires - capabilities)
        if not missing:
            made = self._made.get(name)
            if made is None:
                made = self._made[name] = strategy()
            return made
        working = [other for other in self if self[other].requires <= capabilities]
        raise ConfigurationError(
            message(
                f"the isolation strategy {name!r} needs {', '.join(missing)}, which the "
                f"{backend} backend cannot do. Choose one that works on {backend}: "
                f"{', '.join(working)}; or run these tests on a backend that can."
            )
        )

    def summaries(self) -> list[str]:
        """What the strategies made this run have to say in the terminal summary."""
        found = (strategy.summary() for strategy in self._made.values())
        return [line for line in found if line]

    def ahead(
        self, names: Iterable[str], backend: str, capabilities: frozenset[str]
    ) -> list[Strategy]:
        """The run's strategies among ``names`` that prepare before the first test
        (:attr:`Strategy.prepares_ahead`) and can run on ``backend``."""
        return [
            self.usable(name, backend, capabilities)
            for name in sorted(set(names))
            if name in self and self[name].prepares_ahead and self[name].requires <= capabilities
        ]

    def close(self) -> None:
        """The run is over: every strategy made gives back what it prepared (before the
        test database is dropped). Each is closed even when another one fails."""
        made = list(self._made.values())
        errors: list[BaseException] = []
        for strategy in made:
            try:
                strategy.close()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]

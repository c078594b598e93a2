"""Allow-list registries: every name a command may use maps to a real class or function.

Nothing is looked up with getattr on user input and nothing is evaluated: a name not in a registry is
refused with the closest valid names, and parameters are checked against the target's signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from models.errors import did_you_mean


class UnknownName(ValueError):
    pass


class BadParameters(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    name: str
    target: Callable[..., Any]
    kind: str
    skip_first: bool = False  # unbound methods: the first parameter is the image itself
    random: bool = False  # transforms whose output changes from call to call
    tags: frozenset[str] = field(default_factory=frozenset)

    def signature(self) -> inspect.Signature:
        sig = inspect.signature(self.target)
        params = list(sig.parameters.values())
        if self.skip_first:
            params = params[1:]
        return sig.replace(parameters=params)

    def bind(self, params: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return self.signature().bind(**params)
        except TypeError as exc:
            accepted = [p for p in self.signature().parameters if p not in ("args", "kwargs")]
            raise BadParameters(f"{exc}; {self.name} accepts {accepted}") from None


class Registry:
    """Name → Entry. Refuses duplicate names; unknown names raise with suggestions."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: Callable[..., Any], **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name=name, target=target, kind=self.kind, **meta)

    def add_all(self, owner: object, names: Iterable[str], **meta: Any) -> None:
        for name in names:
            target = getattr(owner, name, None)
            if target is not None:  # an older library may lack a newer class; the list stays explicit
                self.add(name, target, **meta)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

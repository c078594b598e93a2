"""Allow-list registries: every name a command may use maps to a real class or function.

Nothing is looked up with getattr on user input and nothing is evaluated: a name not in a registry is
refused with the closest valid names, and parameters are checked against the target's signature.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.errors import Problem, did_you_mean, join_path


class UnknownName(ValueError):
    pass


class BadParameters(ValueError):
    pass


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@functools.cache
def _signature(target: Callable[..., Any], skip_first: bool) -> inspect.Signature:
    # inspect.signature is slow and every check asks several times; targets are fixed at import.
    sig = inspect.signature(target)
    params = list(sig.parameters.values())
    return sig.replace(parameters=params[1:] if skip_first else params)


@dataclass(frozen=True)
class Entry:
    name: str
    target: Callable[..., Any]
    kind: str
    skip_first: bool = False  # unbound methods: the first parameter is the image itself
    random: bool = False  # transforms whose output changes from call to call
    tags: frozenset[str] = field(default_factory=frozenset)
    # Parameters that show the entry working: used by the reference docs and by the registry-wide tests.
    example: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    # Kind-specific facts (a loss's target format, a layer's input rank, a transform's input type).
    info: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def signature(self) -> inspect.Signature:
        return _signature(self.target, self.skip_first)

    def accepted(self) -> list[str]:
        return [p.name for p in self.signature().parameters.values() if p.kind not in _VARIADIC]

    def required(self) -> list[str]:
        return [p.name for p in self.signature().parameters.values()
                if p.kind not in _VARIADIC and p.default is inspect.Parameter.empty]

    def bind(self, params: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return self.signature().bind(**params)
        except TypeError as exc:
            raise BadParameters(f"{exc}; {self.name} accepts {self.accepted()}") from None

    def check(self, params: Mapping[str, Any], path: str) -> list[Problem]:
        """Every parameter problem at once: unknown names (with hints), missing ones, wrongly typed ones."""
        accepted = self.accepted()
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self.signature().parameters.values())
        problems = []
        for key in params:
            if key not in accepted and not takes_any:
                problems.append(Problem(join_path(path, key), f"{self.name} has no parameter {key!r}"
                                        f"{did_you_mean(key, accepted)}; it accepts {accepted}"))
        missing = [name for name in self.required() if name not in params]
        if missing:
            problems.append(Problem(path, f"{self.name} needs {missing}; found only {sorted(params)}"))
        for key, value in params.items():
            expected = _expected_type(self.signature().parameters.get(key))
            if expected and not _matches(value, expected):
                problems.append(Problem(join_path(path, key), f"expected {expected}, found {value!r}"[:300]))
        return problems


def _expected_type(param: inspect.Parameter | None) -> str | None:
    """Infer a JSON type from a parameter's default value: typed signatures vary, defaults do not lie."""
    if param is None or param.default is inspect.Parameter.empty or param.default is None:
        return None
    default = param.default
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (int, float)) and type(default) in (int, float):
        return "a number"
    return None


def _matches(value: Any, expected: str) -> bool:
    if expected == "true or false":
        return isinstance(value, bool)
    # Lists pass: several parameters with a number default also take per-channel lists or pairs.
    return (isinstance(value, (int, float, list)) and not isinstance(value, bool)) or (
        isinstance(value, str) and value in ("auto", "n_labels"))


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
        # getattr here reads our own constant lists, never user input.
        for name in names:
            target = getattr(owner, name, None)
            if target is not None:  # an older library may lack a newer class; the list stays explicit
                self.add(name, target, **meta)

    def add_examples(self, owner: object, examples: Mapping[str, Mapping[str, Any] | None], **meta: Any) -> None:
        """Register each name with its example parameters (None: no parameters)."""
        for name, example in examples.items():
            target = getattr(owner, name, None)
            if target is not None:
                self.add(name, target, example=dict(example or {}), **meta)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"unknown {self.kind} {name!r}{did_you_mean(str(name), self._entries)}") from None

    def unknown(self, name: Any, path: str) -> Problem | None:
        """A Problem naming the closest valid names, or None when the name is registered."""
        if isinstance(name, str) and name in self._entries:
            return None
        hint = did_you_mean(name, self._entries) if isinstance(name, str) else ""
        return Problem(path, f"unknown {self.kind} {name!r}{hint}; expected one of {len(self._entries)} names "
                             f"(see `serptrain schema --markdown`)")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

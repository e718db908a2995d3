"""How plug-ins become known to recipes: a plain dict per kind (tasks, methods), filled by a class decorator."""
from __future__ import annotations

from typing import Callable

__all__ = ["registrar"]


def registrar(table: dict[str, type]) -> Callable[[str], Callable[[type], type]]:
    """``registrar(TABLE)(name)`` is a class decorator that sets ``cls.name = name`` and puts ``cls`` in ``TABLE``."""

    def register(name: str) -> Callable[[type], type]:
        def wrap(cls: type) -> type:
            cls.name = name
            table[name] = cls
            return cls

        return wrap

    return register

"""Name -> factory registries (the timm pattern) for models, datasets, attacks and defenses."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories. Unknown names raise :class:`BenchError` listing the known ones.

    Example::

        MODELS = Registry("model")

        @MODELS.register("small_cnn")
        class SmallCNN(nn.Module): ...

        MODELS.get("small_cnn")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, set_name: bool = False) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name``; ``set_name`` also sets ``obj.name = name`` (attack
        and defense classes know their registry name, which their results record)."""
        def deco(obj: T) -> T:
            if name in self._items:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            if set_name:
                obj.name = name  # type: ignore[attr-defined]
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what it named (a test's temporary entry); unknown names raise
        :class:`BenchError` like :meth:`get`."""
        obj = self.get(name)
        del self._items[name]
        return obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise BenchError(f"unknown {self.kind} {name!r}; known: {known}.") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

"""Who runs which block of an evaluation: in order in one process, or from a shared counter
among the ranks of a ``torchrun`` launch.

Work items are numbered in the suite's order (attack, then eps, then block of example
positions). :class:`LocalQueue` hands them out in that order. :class:`StoreQueue` hands them to
whichever rank asks next, with torch.distributed's store (``add`` on one counter), so a rank that
finishes its cheap blocks takes the next ones instead of idling while another holds a slow block.
An item's dependencies (the same block of the attacks before it at its threat) have lower numbers,
so they were handed out earlier and :meth:`wait_for` ends unless a rank died; a dead rank is
found by its heartbeat (a counter its own thread raises every second) and named in the error.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Iterable, Protocol

from robustbench_lite.errors import BenchError

logger = logging.getLogger(__name__)


class WorkQueue(Protocol):
    rank: int
    size: int

    def take(self) -> int | None: ...

    def finished(self, item: int) -> None: ...

    def wait_for(self, items: Iterable[int], what: str) -> None: ...

    def done_count(self) -> int: ...

    def note_busy(self, seconds: float, blocks: int) -> None: ...

    def busy(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class LocalQueue:
    """One process: items in order."""

    rank, size = 0, 1

    def __init__(self, n_items: int) -> None:
        self.n, self.next, self.done = n_items, 0, 0
        self._busy = {"rank": 0, "busy_s": 0.0, "blocks": 0}

    def note_busy(self, seconds: float, blocks: int) -> None:
        self._busy = {"rank": 0, "busy_s": round(seconds, 3), "blocks": blocks}

    def busy(self) -> list[dict[str, Any]]:
        return [self._busy]

    def take(self) -> int | None:
        if self.next >= self.n:
            return None
        self.next += 1
        return self.next - 1

    def finished(self, item: int) -> None:
        self.done += 1

    def wait_for(self, items: Iterable[int], what: str) -> None:
        missing = [i for i in items if i >= self.next]
        if missing:  # cannot happen in order; a bug, not a user's mistake
            raise RuntimeError(f"item {missing[0]} ({what}) is needed before it was run")

    def done_count(self) -> int:
        return self.done

    def close(self) -> None:
        pass


class StoreQueue:
    """Ranks of one launch share the items through ``store`` (keys under ``prefix``).

    ``dead_after_s``: a rank whose heartbeat has not moved for this long (its process is gone or
    hung) ends the wait with an error naming it."""

    def __init__(self, store: Any, prefix: str, n_items: int, rank: int, size: int, *,
                 beat_s: float = 1.0, dead_after_s: float = 60.0) -> None:
        self.store, self.prefix, self.n, self.rank, self.size = store, prefix, n_items, rank, size
        self.dead_after_s = dead_after_s
        self._stop = threading.Event()
        self._beat(0)
        self._thread = threading.Thread(target=self._beats, args=(beat_s,), daemon=True, name=f"heartbeat-{rank}")
        self._thread.start()

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def _beat(self, _n: int) -> None:
        self.store.add(self._key(f"hb/{self.rank}"), 1)

    def _beats(self, every: float) -> None:
        n = 0
        while not self._stop.wait(every):
            n += 1
            try:
                self._beat(n)
            except Exception:  # the store is gone: the launch is ending; the main thread will say why
                return

    def take(self) -> int | None:
        i = int(self.store.add(self._key("next"), 1)) - 1
        if i >= self.n:
            return None
        self.store.set(self._key(f"owner/{i}"), str(self.rank))
        return i

    def finished(self, item: int) -> None:
        self.store.set(self._key(f"done/{item}"), "1")
        self.store.add(self._key("ndone"), 1)

    def done_count(self) -> int:
        return int(self.store.add(self._key("ndone"), 0))

    def note_busy(self, seconds: float, blocks: int) -> None:
        """This rank's attack time and blocks so far (final once every item is done)."""
        self.store.set(self._key(f"busy/{self.rank}"), json.dumps({"rank": self.rank, "busy_s": round(seconds, 3),
                                                                     "blocks": blocks}))

    def busy(self) -> list[dict[str, Any]]:
        out = []
        for r in range(self.size):
            key = self._key(f"busy/{r}")
            out.append(json.loads(self.store.get(key)) if self.store.check([key]) else {"rank": r, "busy_s": 0.0, "blocks": 0})
        return out

    def wait_for(self, items: Iterable[int], what: str) -> None:
        keys = {i: self._key(f"done/{i}") for i in items}
        seen: dict[int, tuple[int, float]] = {}  # rank -> (heartbeat, when it last moved, local clock)
        pause = 0.005
        while keys:
            keys = {i: k for i, k in keys.items() if not self.store.check([k])}
            if not keys:
                return
            item = min(keys)
            owner = self._owner(item)
            if owner is not None:
                beat = int(self.store.add(self._key(f"hb/{owner}"), 0))
                last = seen.get(owner)
                now = time.monotonic()
                if last is None or last[0] != beat:
                    seen[owner] = (beat, now)
                elif now - last[1] > self.dead_after_s:
                    raise BenchError(f"rank {owner} stopped responding (no heartbeat for {self.dead_after_s:.0f} s) "
                                     f"while it held {what}; re-launch with --resume to keep the finished blocks.")
            time.sleep(pause)
            pause = min(0.2, pause * 2)

    def _owner(self, item: int) -> int | None:
        key = self._key(f"owner/{item}")
        return int(self.store.get(key)) if self.store.check([key]) else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

"""`AsyncClosing`: the `async with` protocol of objects that end by `await obj.close()`."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncClosing:
    """Use as `async with obj:`; leaving the block awaits `obj.close()`, whatever ended it.

    `__aenter__` gives the object itself; a subclass that starts work on entry (a
    thread, a loop task) overrides it and returns `self` too."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        raise NotImplementedError

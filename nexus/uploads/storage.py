"""File storage for uploads and fetched documents: a local directory by default.

Keys are relative paths (`media/<id>/original`); writes go to a temporary name and are
renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from nexus.errors import NexusError


def media_key(media_id: uuid.UUID) -> str:
    return f"media/{media_id}/original"


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        target = (self.root / key).resolve()
        if self.root not in target.parents:
            raise ValueError(f"storage key escapes the root: {key!r}")
        return target

    async def put_bytes(self, key: str, data: bytes) -> int:
        await asyncio.to_thread(self._write_all, key, data)
        return len(data)

    def _write_all(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        """Stream to storage; raises E_FILE_TOO_LARGE (and keeps nothing) past `max_bytes`."""
        target = self.path(key)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        size = 0
        fh = await asyncio.to_thread(tmp.open, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise NexusError(
                        "E_FILE_TOO_LARGE", f"the file is larger than {max_bytes} bytes"
                    )
                await asyncio.to_thread(fh.write, chunk)
            await asyncio.to_thread(fh.flush)
            await asyncio.to_thread(os.fsync, fh.fileno())
        except BaseException:
            fh.close()
            tmp.unlink(missing_ok=True)
            raise
        fh.close()
        await asyncio.to_thread(tmp.replace, target)
        return size

    async def read_bytes(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError:
            raise NexusError("E_STORAGE_MISSING", "the stored file is missing") from None

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

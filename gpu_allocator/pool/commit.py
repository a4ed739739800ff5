"""Group commit: the pool's writes to the ledger, and its reads.

What a decision changes is written as one short transaction, and several
callers' writes share a transaction when they arrive together (one writer
thread). A caller is answered only after its commit."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from ..store.ledger import Ledger


class GroupCommit:
    """Writes ledger operations in shared transactions; reads off the event loop."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="gpu-allocator-db")
        self._reader = ThreadPoolExecutor(2, thread_name_prefix="gpu-allocator-read")
        self._queue: list[tuple[list, asyncio.Future]] = []
        self._flushing = False
        #: commits so far and the operations they carried (group commit at work)
        self.commits = 0
        self.committed_ops = 0

    async def read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def commit(self, ops: list) -> None:
        """Write ``ops`` in a transaction (perhaps shared with other callers'),
        returning once it is committed."""
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((ops, fut))
        if not self._flushing:
            self._flushing = True
            asyncio.ensure_future(self._flush())
        await fut

    async def _write(self, ops: list) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, self.ledger.write, ops)
        self.commits += 1
        self.committed_ops += len(ops)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._write([op for ops, _ in batch for op in ops])
                except Exception:
                    if len(batch) == 1:
                        raise
                    # one caller's bad write must not fail the others: alone, each
                    for ops, fut in batch:
                        try:
                            await self._write(ops)
                        except Exception as e:
                            fut.set_exception(e)
                        else:
                            fut.set_result(None)
                    continue
                for _, fut in batch:
                    fut.set_result(None)
        except Exception as e:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
        finally:
            self._flushing = False
            if self._queue:  # arrived while the last write failed
                self._flushing = True
                asyncio.ensure_future(self._flush())

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=False)

"""Adaptive micro-batching with a fair share for small requests and per-request isolation.

scikit-learn's fixed per-call cost dominates one-row predictions (about 1.8 ms per call
against 0.18 ms per row in large batches), so under load, scoring the queue as one batch
raises throughput far above one call per request. At low load a request is scored as soon
as it arrives (plus `max_wait_s`, 0 by default): batching costs nothing when idle.

Large requests are cut into chunks of `chunk_rows`; while small requests wait, each model
call takes them all but only one chunk, so a single-row request waits for one chunk, not for
a whole 2,000-row request (with none waiting, chunks are merged up to `max_rows`). When a
merged call fails, each request in it is scored alone, so only the request whose rows the
model cannot take fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlship.serving.model import Columns, Scores

# returns (what scored the batch, its scores): the caller learns which model answered
Predict = Callable[[Columns], tuple[Any, Scores]]


@dataclass(eq=False)  # identity: deque.remove must not compare the columns of every chunk
class _Pending:
    columns: Columns
    rows: int
    future: asyncio.Future[tuple[Any, Scores]] = field(repr=False)


def _settle(
    item: _Pending, result: tuple[Any, Scores] | None = None, error: Exception | None = None
) -> None:
    if item.future.done():  # the client may have gone away
        return
    if error is not None:
        item.future.set_exception(error)
    else:
        assert result is not None
        item.future.set_result(result)


def _concatenate(parts: list[Scores]) -> Scores:
    def joined(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        return None if arrays[0] is None else np.concatenate(arrays)  # type: ignore[arg-type]

    return Scores(
        joined([p.labels for p in parts]),
        joined([p.probabilities for p in parts]),
        joined([p.values for p in parts]),
    )


class MicroBatcher:
    def __init__(
        self,
        predict: Predict,
        max_rows: int,
        max_wait_s: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        chunk_rows: int = 256,
    ) -> None:
        self._predict = predict
        self._on_batch = on_batch
        self._max_rows = max(max_rows, chunk_rows)
        self._max_wait_s = max_wait_s
        self._chunk_rows = chunk_rows
        self._small: deque[_Pending] = deque()
        self._chunks: deque[_Pending] = deque()  # pieces of large requests, in order
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, columns: Columns, rows: int) -> tuple[Any, Scores]:
        """(the model that scored them, the scores of these rows)."""
        loop = asyncio.get_running_loop()
        if rows <= self._chunk_rows:
            pending = _Pending(columns, rows, loop.create_future())
            self._small.append(pending)
            self._wake.set()
            return await pending.future
        pieces = []
        for start in range(0, rows, self._chunk_rows):
            stop = min(start + self._chunk_rows, rows)
            part = {name: values[start:stop] for name, values in columns.items()}
            pieces.append(_Pending(part, stop - start, loop.create_future()))
        self._chunks.extend(pieces)
        self._wake.set()
        try:
            answers = [await piece.future for piece in pieces]
        finally:  # a failed or abandoned request takes its remaining chunks with it
            for piece in pieces:
                if piece in self._chunks:  # (remove's ValueError would repr the whole chunk)
                    self._chunks.remove(piece)
        if any(model is not answers[0][0] for model, _ in answers):
            return await self.submit(columns, rows)  # a hot swap between chunks: score again
        return answers[0][0], _concatenate([scores for _, scores in answers])

    def _take(self) -> list[_Pending]:
        """Every waiting small request (up to max_rows) and one chunk; with no small request
        waiting, as many chunks as fit, so large requests alone pay few per-call costs."""
        taken: list[_Pending] = []
        rows = 0
        if self._chunks:
            taken.append(self._chunks.popleft())
            rows = taken[0].rows
        while not self._small and self._chunks and rows + self._chunks[0].rows <= self._max_rows:
            taken.append(self._chunks.popleft())
            rows += taken[-1].rows
        while self._small and (not taken or rows + self._small[0].rows <= self._max_rows):
            item = self._small.popleft()
            taken.append(item)
            rows += item.rows
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if self._max_wait_s > 0:
                await asyncio.sleep(self._max_wait_s)
            batch = [item for item in self._take() if not item.future.done()]
            if not self._small and not self._chunks:
                self._wake.clear()
            if not batch:
                continue
            if len(batch) == 1:
                merged = batch[0].columns
            else:
                merged = {
                    name: [v for item in batch for v in item.columns[name]]
                    for name in batch[0].columns
                }
            rows = sum(item.rows for item in batch)
            try:
                scorer, scores = await loop.run_in_executor(self._executor, self._predict, merged)
            except Exception as error:
                # one request's rows can make the model fail: score each request alone, so
                # only the offending one fails
                if len(batch) == 1:
                    _settle(batch[0], error=error)
                else:
                    await self._one_by_one(batch)
                continue
            if self._on_batch is not None:
                self._on_batch(rows)
            start = 0
            for item in batch:
                _settle(item, (scorer, scores.rows(start, start + item.rows)))
                start += item.rows

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        for item in batch:
            try:
                answer = await loop.run_in_executor(self._executor, self._predict, item.columns)
            except Exception as error:  # this request's own failure
                _settle(item, error=error)
            else:
                if self._on_batch is not None:
                    self._on_batch(item.rows)
                _settle(item, answer)

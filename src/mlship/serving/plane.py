"""The data plane every protocol calls: the served models (champion, and a challenger in
shadow, split or bandit mode), their loading, warming and hot reload, routing, scoring and
monitoring."""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlship.choices import ChallengerMode
from mlship.config.settings import Settings
from mlship.pipeline.signatures import TrustPolicy
from mlship.registry.loading import MODELS_SCHEME, resolve_version
from mlship.serving import limits
from mlship.serving.bandit import Bandit
from mlship.serving.batching import MicroBatcher
from mlship.serving.errors import ModelRefusedError, OverRateError
from mlship.serving.feedback import FeedbackStore
from mlship.serving.metrics import Metrics
from mlship.serving.model import Columns, Scores, ServedModel, load_directory, load_registry
from mlship.serving.monitor import Monitor
from mlship.serving.options import Challenger, Siblings
from mlship.serving.protocols import UnknownCategory

log = logging.getLogger("mlship.serve")
# what a model raises for an input it cannot score; anything else is the server's fault
FLUSH_SECONDS = 0.2
MODEL_REFUSALS = (ValueError, TypeError, KeyError, IndexError, ArithmeticError)
Loader = Callable[[str, Settings], ServedModel]


def load_model(source: str, settings: Settings, metrics_file: Path | None = None) -> ServedModel:
    """A model directory (with its evaluation from `metrics_file` unless one is baked in), or
    a models:/ URI in the MLflow registry (whose run has its metrics)."""
    trust = TrustPolicy.of(settings)
    if source.startswith(MODELS_SCHEME):
        return load_registry(settings.tracking_uri, source, settings.trust_model_code, trust)
    return load_directory(Path(source), settings.model_name, metrics_file, trust)


def freeze_loaded(collect: bool = True) -> None:
    """Move everything alive now (the model, the libraries) out of the garbage collector's
    reach: a full collection walking a large model's objects paused requests for tens of
    milliseconds (single-worker p99 fell from 77 to 11 ms on the penguins model), and frozen
    objects stay shared with forked workers instead of being copied when the collector
    touches them. At start-up the collection first is skipped: on the text model it took
    0.13-0.18 s to reclaim some 1,500 of 320,000 objects."""
    if collect:
        gc.collect()
    gc.freeze()


class Slot:
    """One served model (champion or challenger) with its batcher and reload state."""

    def __init__(self, role: str, source: str) -> None:
        self.role = role
        self.source = source
        self.model: ServedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.reload_error: dict[str, Any] | None = None
        self.last_checked: float | None = None

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    @property
    def follows_alias(self) -> bool:
        return self.source.startswith(MODELS_SCHEME) and "@" in self.source

    def score(self, columns: Columns) -> tuple[ServedModel, Scores]:
        model = self.model  # one reference per batch: a swap never splits a batch
        assert model is not None
        return model, model.predict(columns)

    def describe(self) -> dict[str, Any]:
        entry = self.model.info() if self.model else {"source": self.source, "loaded": False}
        return entry | {
            "role": self.role,
            "reload_error": self.reload_error,
            "last_checked": self.last_checked,
        }


class DataPlane:
    def __init__(
        self,
        source: str,
        settings: Settings,
        metrics: Metrics,
        challenger: Challenger | None = None,
        loader: Loader = load_model,
        siblings: Siblings | None = None,
        preloaded: Mapping[str, ServedModel] | None = None,
    ) -> None:
        self.settings = settings
        self.siblings = siblings
        self._all_ready = siblings is None
        self.metrics = metrics
        self.challenger_mode = challenger
        self.champion = Slot("champion", source)
        self.challenger = Slot("challenger", challenger.source) if challenger else None
        self._load = loader
        self._preloaded = dict(preloaded or {})  # by source: loaded and warmed before a fork
        self._tasks: set[asyncio.Task[Any]] = set()
        self.monitor = Monitor.create(settings, metrics)
        self.bandit = None
        if challenger is not None and challenger.mode is ChallengerMode.bandit:
            self.bandit = Bandit(settings.bandit_floor, settings.bandit_cap, settings.monitor_seed)

    @property
    def slots(self) -> list[Slot]:
        return [self.champion] + ([self.challenger] if self.challenger else [])

    @property
    def max_rows(self) -> int:
        return self.settings.max_request_rows

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Serve the preloaded models at once (the lifespan runs before the server accepts
        a connection, so a worker forked to replace another never answers 503); load and
        warm the others in the background. /ready turns true when the champion is ready;
        slots on a registry alias are then followed."""
        self.monitor.open()
        for slot in self.slots:
            model = self._preloaded.pop(slot.source, None)
            if model is None:
                self._spawn(self._keep_loaded(slot))
            else:
                self._install(slot, model)
                self._spawn(self._loaded(slot))
        self._spawn(self._watch())
        if self.monitor.store is not None:
            self._spawn(self._write_answers(self.monitor.store))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for slot in self.slots:
            if slot.batcher is not None:
                await slot.batcher.stop()
        self.monitor.close()

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_answers(self, store: FeedbackStore) -> None:
        """Answers reach the shared file within FLUSH_SECONDS, so a feedback that lands on
        another worker finds them."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if store.pending:
                try:
                    await asyncio.to_thread(store.flush)
                except Exception:  # a locked or full disk must not stop serving
                    log.exception("cannot write answers for feedback")

    async def _watch(self) -> None:
        """Every monitor interval: drift and live-quality gauges, the sink, the bandit."""
        while True:
            await asyncio.sleep(self.settings.monitor_interval_seconds)
            try:
                await asyncio.to_thread(self.watch_once)
            except Exception:  # watching must never stop serving
                log.exception("monitoring failed; serving goes on")

    def watch_once(self) -> None:
        served = [slot.model for slot in self.slots if slot.model is not None]
        qualities = self.monitor.tick(served)
        bandit, challenger = self.bandit, self.challenger
        if bandit is None or challenger is None or challenger.model is None:
            return
        champion = self.champion.model
        assert champion is not None
        found = qualities.get(champion.name, {}) | qualities.get(challenger.model.name, {})
        bandit.update(found.get(champion.version), found.get(challenger.model.version))
        for role, model, share, posterior in (
            ("champion", champion, 1 - bandit.share, bandit.champion),
            ("challenger", challenger.model, bandit.share, bandit.challenger),
        ):
            self.metrics.bandit_share.labels(model.name, model.version, role).set(share)
            self.metrics.bandit_mean.labels(model.name, model.version, role).set(posterior.mean)

    async def _keep_loaded(self, slot: Slot) -> None:
        """Load the slot, retrying with back-off (1 s, doubling up to the reload interval)
        while it fails, so a server started on a broken version recovers once the alias
        is fixed; then follow the alias, if it is one."""
        delay = 1.0
        while True:
            try:
                await self._load_slot(slot)
                break
            except Exception as error:  # a broken model must not stop the server answering
                slot.reload_error = {"error": str(error), "at": time.time()}
                log.error("cannot load %s (retrying in %.0f s): %s", slot.source, delay, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.reload_seconds)
        slot.reload_error = None
        await self._loaded(slot)

    async def _loaded(self, slot: Slot) -> None:
        if slot is self.champion and self.siblings is not None:
            self.siblings.mark_ready()
        if slot.follows_alias:
            await self._follow(slot)

    def _show(self, model: ServedModel, serving: bool = True) -> None:
        info = self.metrics.model_info.labels(
            model.name, model.version, model.alias or "", model.card.git.sha
        )
        info.set(1 if serving else 0)

    async def _load_slot(self, slot: Slot) -> None:
        model = await asyncio.to_thread(self._load, slot.source, self.settings)
        await asyncio.to_thread(model.warm)
        freeze_loaded()
        self._install(slot, model)

    def _install(self, slot: Slot, model: ServedModel) -> None:
        slot.model = model
        slot.batcher = MicroBatcher(
            slot.score,
            self.settings.batch_max_rows,
            self.settings.batch_wait_ms / 1e3,
            on_batch=self.metrics.batch_rows.observe,
            chunk_rows=self.settings.batch_chunk_rows,
        )
        slot.batcher.start()
        self._show(model)
        role = "" if slot is self.champion else f"{slot.role} "  # the alias is in its source
        log.info("serving %s%s v%s from %s", role, model.name, model.version, slot.source)

    async def _follow(self, slot: Slot) -> None:
        """Poll the registry alias; load, warm and swap in a new version. On failure the
        old model keeps serving, the failure shows in /model and the metrics, and that
        version is tried again only after a back-off (twice the interval, doubling), not
        downloaded again on every poll. The error clears once the alias points at the
        version being served again."""
        retry_at: dict[str, tuple[float, int]] = {}  # failed version -> (when, failures)
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            current = slot.model
            assert current is not None
            try:
                version = await asyncio.to_thread(
                    resolve_version, self.settings.tracking_uri, slot.source
                )
            except Exception as error:  # the registry did not answer: try at the next poll
                slot.reload_error = {"error": str(error), "at": time.time()}
                continue
            slot.last_checked = time.time()
            if version == current.version:
                slot.reload_error = None
                continue
            when, failures = retry_at.get(version, (0.0, 0))
            if time.monotonic() < when:
                continue
            try:
                fresh = await asyncio.to_thread(self._load, slot.source, self.settings)
                await asyncio.to_thread(fresh.warm)
                freeze_loaded()
            except Exception as error:  # keep serving whatever went wrong with the new one
                wait = self.settings.reload_seconds * 2 ** (failures + 1)
                retry_at[version] = (time.monotonic() + wait, failures + 1)
                slot.reload_error = {
                    "error": str(error),
                    "at": time.time(),
                    "version": version,
                    "retry_in_seconds": wait,
                }
                self.metrics.reload_failures.labels(current.name, current.version).inc()
                log.warning(
                    "reload of %s v%s failed; still serving v%s, retrying in %.0f s: %s",
                    slot.source,
                    version,
                    current.version,
                    wait,
                    error,
                )
                continue
            self._show(current, serving=False)
            slot.model = fresh  # atomic: the next batch uses the new model
            slot.reload_error = None
            self._show(fresh)
            log.info("swapped %s to v%s", slot.source, fresh.version)

    # --- what the routes ask --------------------------------------------------------------

    @property
    def model(self) -> ServedModel | None:
        """The champion, once it is loaded and warmed; None before."""
        return self.champion.model if self.champion.ready else None

    def readiness(self) -> tuple[int, dict[str, Any]]:
        model = self.model
        if model is None and self.champion.reload_error is not None:
            return 503, {"status": "failed", "error": self.champion.reload_error["error"]}
        if model is None:
            return 503, {"status": "loading"}
        siblings = self.siblings
        if not self._all_ready and siblings is not None:
            ready = siblings.ready()
            if ready < siblings.count:
                return 503, {
                    "status": "loading",
                    "processes_ready": ready,
                    "processes": siblings.count,
                }
            self._all_ready = True
        return 200, {"status": "ready", "model": model.name, "version": model.version}

    def describe(self) -> dict[str, Any]:
        from threadpoolctl import threadpool_info

        described = [slot.describe() for slot in self.slots]
        body = {**described[0], "models": described}
        body["native_threads"] = {
            pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()
        }
        if self.challenger_mode:
            body["challenger_mode"] = self.challenger_mode.mode.value
        if self.bandit is not None:
            body["bandit"] = self.bandit.describe()
        settings = self.settings
        body["monitor"] = {
            "sample_rate": settings.monitor_sample_rate,
            "window_rows": {f"{n} v{v}": len(w.rows) for (n, v), w in self.monitor.windows.items()},
            "sink": settings.monitor_sink is not None,
            "feedback_seconds": settings.feedback_seconds if self.monitor.store else 0,
        }
        return body

    def _challenger_share(self) -> float:
        """The share of requests the challenger answers: split's weight, the bandit's."""
        mode = self.challenger_mode
        if mode is None or self.challenger is None or not self.challenger.ready:
            return 0.0
        if mode.mode is ChallengerMode.split:
            return mode.weight
        return self.bandit.share if self.bandit is not None else 0.0

    async def score(
        self, columns: Columns, rows: int, unknown: Sequence[UnknownCategory] = ()
    ) -> tuple[ServedModel, Scores]:
        """Checked columns -> (the model that answered, its scores). In split and bandit
        mode the challenger answers its share; in shadow mode it scores a copy in the
        background. The answer is remembered for feedback and sampled for drift; the
        unknown categories it was answered with are counted per column."""
        take = limits.take_rows.get()
        if take is not None:  # the client's rows, taken before scoring
            decision = take(rows)
            if not decision.allowed:
                raise OverRateError(
                    f"{rows} rows are over this client's rate of rows now; retry after the "
                    "Retry-After seconds",
                    decision.retry_after,
                )
        share = self._challenger_share()
        slot = self.champion
        if share and self.challenger is not None and self.monitor.rng.random() < share:
            slot = self.challenger
        answer = await self._score_slot(slot, columns, rows)
        self.monitor.observe(answer[0], columns, answer[1], rows)
        for column, count in collections.Counter(u.column for u in unknown).items():
            self.metrics.unknown_categories.labels(answer[0].name, answer[0].version, column).inc(
                count
            )
        mode, second = self.challenger_mode, self.challenger
        if mode and mode.mode is ChallengerMode.shadow and second is not None and second.ready:
            self._spawn(self._score_slot(second, columns, rows))
        return answer

    async def _score_slot(
        self, slot: Slot, columns: Columns, rows: int
    ) -> tuple[ServedModel, Scores]:
        assert slot.batcher is not None and slot.model is not None
        metrics = self.metrics
        started = time.perf_counter()
        name, version = slot.model.name, slot.model.version
        try:
            model, scores = await slot.batcher.submit(columns, rows)
        except MODEL_REFUSALS as error:  # validated input the model cannot score: the client's
            metrics.predictions.labels(name, version, "refused").inc()
            log.info("%s v%s could not score a request: %s", name, version, error)
            raise ModelRefusedError(f"the model cannot score this input: {error}"[:500]) from error
        except Exception:
            metrics.predictions.labels(name, version, "error").inc()
            raise
        metrics.latency.labels(model.name, model.version).observe(time.perf_counter() - started)
        metrics.predictions.labels(model.name, model.version, "ok").inc()
        metrics.rows.labels(model.name, model.version).inc(rows)
        metrics.count_answers(model.name, model.version, scores)
        return model, scores

"""Run :func:`pipeline.clip_stream.iter_window_clips` for many videos in parallel and merge the results.

The recognition stage has one consumer (the model, in the main process, on one device) and many
producers (decode + crop, one video at a time each). :class:`WindowFeed` starts the producers and
yields their messages in arrival order:

=========================================== ==============================================================
``("clip", WindowClip)``                    one window ready for the model
``("done", video_id, undecodable)``         the video's stream ended; ``undecodable``: window indices the
                                            file did not yield (truncated file)
``("failed", video_id, message)``           the video could not be decoded (one line naming the file)
=========================================== ==============================================================

Producers (``kind``):

- ``"inline"`` (``workers=0``): decoding in the consumer's thread, one video after the other; no
  overlap of decode and compute (for debugging and as the baseline of the benchmark);
- ``"process"``: ``workers`` spawned processes (CPU decode and crop do not contend for the GIL);
  they die with the parent (:func:`pipeline.stage` workers' rule), and a worker that dies (segfault
  in a decoder, the OOM killer) fails only the video it was on: a fresh worker takes over the rest;
- ``"thread"``: ``workers`` threads (OpenCV's decode and torch's resize release the GIL; no process
  start-up, no copies through pipes).

The queue between producers and the consumer is bounded (``max_pending`` windows), so a fast decoder
cannot pile up windows in memory while the model is busy. Clips cross the process boundary as numpy
arrays (pickled through a pipe: ~1 ms per 224 x 224 x 8 window, negligible next to decoding the 16
frames it takes to advance one window).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Iterable, Iterator

import torch

from pipeline.clip_stream import StreamStats, VideoPlan, WindowClip, iter_window_clips
from pipeline.stage import die_with_parent, worker_context

__all__ = ["WindowFeed", "FEED_KINDS"]

log = logging.getLogger("pipeline.window_feed")

FEED_KINDS = ("process", "thread")


def _error_text(plan: VideoPlan, exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if text.startswith(plan.path) else f"{plan.path}: {type(exc).__name__}: {text}"


def _produce(plan: VideoPlan, put, *, as_numpy: bool) -> None:
    """Stream one video's windows into ``put``; never raises (a failure becomes a message)."""
    try:
        stats = StreamStats()
        for clip in iter_window_clips(plan, stats):
            if as_numpy:
                clip = WindowClip(clip.video_id, clip.window, clip.frames.numpy(), clip.keypoints.numpy())
            put(("clip", clip))
        put(("done", plan.video_id, stats.undecodable))
    except Exception as exc:  # a bad video must not stop the others
        log.debug("%s failed", plan.path, exc_info=True)
        put(("failed", plan.video_id, _error_text(plan, exc)))


def _process_worker(worker_id: int, tasks, results, started, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    torch.set_num_threads(1)  # one decode stream per process; the consumer owns the other cores
    while True:
        plan = tasks.get()
        if plan is None:
            return
        started.put((worker_id, plan.video_id))  # SimpleQueue: written before the video starts, even if we crash
        _produce(plan, results.put, as_numpy=True)


class WindowFeed:
    """Iterate over the windows of ``plans`` (module docstring). Use as a context manager.

    ``plans`` may be a lazy iterable (the stage plans videos while earlier ones are decoded): it is
    consumed by a helper thread, and workers are started only once the first plan is there.
    """

    def __init__(self, plans: Iterable[VideoPlan], *, workers: int = 1, kind: str = "process",
                 max_pending: int = 64) -> None:
        if kind not in FEED_KINDS:
            raise ValueError(f"kind must be one of {FEED_KINDS}, got {kind!r}")
        self.plans = plans
        self.workers = max(0, int(workers))
        self.kind = kind
        self.max_pending = max(1, int(max_pending))
        self._procs: dict[int, multiprocessing.Process] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # -- context -----------------------------------------------------------------------------------
    def __enter__(self) -> "WindowFeed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for p in self._procs.values():
            if p.is_alive():
                p.kill()
            p.join(timeout=5)
        self._procs.clear()

    # -- iteration ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple]:
        if self.workers == 0:
            return self._inline()
        if self.kind == "thread":
            return self._threaded()
        return self._processes()

    def _inline(self) -> Iterator[tuple]:
        for plan in self.plans:
            stats = StreamStats()
            end: tuple
            try:
                for clip in iter_window_clips(plan, stats):
                    yield ("clip", clip)
                end = ("done", plan.video_id, stats.undecodable)
            except Exception as exc:
                end = ("failed", plan.video_id, _error_text(plan, exc))
            yield end

    def _feeder(self, plans: Iterator[VideoPlan], put, fed: list, exhausted: threading.Event) -> threading.Thread:
        """A thread moving the remaining plans into a task queue (``put``), then ``workers`` stop marks."""

        def run() -> None:
            try:
                for plan in plans:
                    if self._stop.is_set():
                        return
                    fed.append(plan)
                    put(plan)
            finally:
                exhausted.set()
                for _ in range(self.workers):
                    put(None)

        t = threading.Thread(target=run, name="window-feed-plans", daemon=True)
        t.start()
        return t

    def _threaded(self) -> Iterator[tuple]:
        out: queue.Queue = queue.Queue(maxsize=self.max_pending)
        todo: queue.Queue = queue.Queue()
        fed: list[VideoPlan] = []
        exhausted = threading.Event()

        def put(msg: tuple) -> None:
            while not self._stop.is_set():
                try:
                    out.put(msg, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def run() -> None:
            while not self._stop.is_set():
                plan = todo.get()
                if plan is None:
                    return
                _produce(plan, put, as_numpy=False)

        self._feeder(iter(self.plans), todo.put, fed, exhausted)
        self._threads = [threading.Thread(target=run, name=f"window-feed-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()
        finished = 0
        try:
            while not (exhausted.is_set() and finished == len(fed)):
                try:
                    msg = out.get(timeout=0.2)
                except queue.Empty:
                    continue
                if msg[0] in ("done", "failed"):
                    finished += 1
                yield msg
        finally:
            self._stop.set()
            for _ in self._threads:  # wake workers still waiting for a plan
                todo.put(None)
            for t in self._threads:
                t.join(timeout=5)

    def _start_process(self, ctx, worker_id: int, tasks, results, started) -> None:
        p = ctx.Process(target=_process_worker, args=(worker_id, tasks, results, started, os.getpid()),
                        name=f"window-feed-{worker_id}", daemon=True)
        p.start()
        self._procs[worker_id] = p

    def _processes(self) -> Iterator[tuple]:
        plans = iter(self.plans)
        first = next(plans, None)
        if first is None:  # nothing to decode: no process is started
            return
        # spawned (OpenCV's / torch's threads do not survive a fork); each child installs the death hook
        # before anything else is imported (pipeline.stage.worker_context), so none outlives a killed parent
        ctx = worker_context()
        tasks = ctx.Queue()
        results = ctx.Queue(maxsize=self.max_pending)
        started = ctx.SimpleQueue()
        fed: list[VideoPlan] = [first]
        tasks.put(first)
        exhausted = threading.Event()
        for w in range(self.workers):
            self._start_process(ctx, w, tasks, results, started)
        self._feeder(plans, tasks.put, fed, exhausted)
        current: dict[int, str | None] = {w: None for w in range(self.workers)}
        finished: set[str] = set()
        next_id = self.workers
        try:
            while not (exhausted.is_set() and len(finished) == len(fed)):
                try:
                    msg = results.get(timeout=0.5)
                except queue.Empty:
                    while not started.empty():  # which video each worker is on
                        w, vid = started.get()
                        current[w] = vid
                    by_id = {p.video_id: p for p in fed}
                    for w, p in list(self._procs.items()):
                        if p.is_alive():
                            continue
                        p.join()
                        del self._procs[w]
                        vid = current.pop(w, None)
                        if p.exitcode != 0 and vid is not None and vid not in finished:
                            finished.add(vid)
                            yield ("failed", vid, f"{by_id[vid].path}: the decode worker died while reading this "
                                                  f"video (exit code {p.exitcode}: crashed, killed or out of memory)")
                            # the dead worker never took its stop mark: a replacement drains the rest
                            current[next_id] = None
                            self._start_process(ctx, next_id, tasks, results, started)
                            next_id += 1
                    if not self._procs:  # every worker gone (killed from outside): fail what is left
                        exhausted.wait()
                        by_id = {p.video_id: p for p in fed}
                        for vid in by_id:
                            if vid not in finished:
                                finished.add(vid)
                                yield ("failed", vid, f"{by_id[vid].path}: no decode worker left to read this video")
                    continue
                kind = msg[0]
                if kind == "clip":
                    c = msg[1]
                    msg = ("clip", WindowClip(c.video_id, c.window, torch.from_numpy(c.frames),
                                              torch.from_numpy(c.keypoints)))
                elif msg[1] in finished:
                    continue
                else:
                    finished.add(msg[1])
                yield msg
        finally:
            self.close()
            tasks.cancel_join_thread()
            results.cancel_join_thread()
            started.close()

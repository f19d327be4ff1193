"""A model runner shared by many streams: requests of every stream are gathered into batches.

Each stream's stages call `encode` / `fuse` / `render` as with the inline `ModelRunner`; the
call hands a request to the worker thread of its kind and waits for its own result. A worker
takes the oldest request, gathers more of the same group for up to `max_wait_ms` (or until
`max_batch`), runs them as one batch (`Features.cat` → `Editor.fuse` with one prompt per
sample → `Planes.split`, ...) and hands each caller its slice. One worker per kind, as each
stream's engine has a stage per kind: one frame's render overlaps the next frame's encode (with a
single worker running them in turn, one view-mode peer got 7.0 FPS where its own engine got 15.4
on 2 cores). Per-stream state (smoothing, prompt cache, track) stays in the streams' stages.

A stream that stalls cannot stall the others: the worker never waits for a particular stream,
a request whose caller gave up (`timeout_s`) is dropped before it is run, and a batch that
fails is re-run one request at a time so only the bad request fails (that stream's frame
passes through unedited; the engine logs it).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .runner import ModelRunner, pipeline_torch_threads

if TYPE_CHECKING:
    from live3dpe.model.cameras import Camera
    from live3dpe.model.editor import Editor
    from live3dpe.model.types import Features, Planes, PromptEmbedding
    from live3dpe.tracking import PlanesSmoother

log = logging.getLogger(__name__)


class RunnerTimeout(TimeoutError):
    """The shared runner did not answer in time: this frame passes through, the stream goes on."""


@dataclass(eq=False)
class Request:
    """One stream's request: `group` says which requests may share a batch."""

    kind: str  # encode | fuse | render
    group: tuple
    args: tuple
    expires: float  # monotonic seconds after which the caller no longer waits
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


@dataclass
class BatchStats:
    """What the workers did, for benchmarks: batches run and requests in them, per kind."""

    batches: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, kind: str, size: int) -> None:
        with self._lock:
            self.batches[kind] = self.batches.get(kind, 0) + 1
            self.requests[kind] = self.requests.get(kind, 0) + size

    def record_expired(self) -> None:
        with self._lock:
            self.expired += 1

    def mean_batch(self) -> dict[str, float]:
        return {k: self.requests[k] / n for k, n in self.batches.items()}


@dataclass(eq=False)
class _Lane:
    """One kind's requests: the inbox callers put them in, and those its worker took but has not
    run yet (waiting for a batch of their group)."""

    kind: str
    inbox: queue.SimpleQueue[Request | None] = field(default_factory=queue.SimpleQueue)
    pending: list[Request] = field(default_factory=list)
    worker: threading.Thread | None = None

    def group(self, first: Request) -> list[Request]:
        return [r for r in self.pending if r.group == first.group]

    def take(self, block: bool, timeout: float | None = None) -> bool:
        """Move one request from the inbox to `pending` (and any others already there)."""
        try:
            item = self.inbox.get(block=block, timeout=timeout)
        except queue.Empty:
            return False
        if item is None:
            return False
        self.pending.append(item)
        self.drain()
        return True

    def drain(self) -> None:
        """Move every request already in the inbox to `pending` (None, the close signal, is dropped)."""
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self.pending.append(item)


class BatchingRunner(ModelRunner):
    """One per device, shared by all streams; same methods as the inline `ModelRunner`.

    max_batch: the most requests per batch; max_wait_ms: how long the oldest request may wait
    for company; timeout_s: how long a caller waits before its frame is given up;
    worker_threads: torch CPU threads of each kind's worker (default `pipeline_torch_threads()`,
    as each engine stage: the workers run at the same time); cpu_threads: torch threads of the
    callers' own small tensor work (smoothing)."""

    def __init__(
        self,
        editor: Editor,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 3.0,
        timeout_s: float = 2.0,
        worker_threads: int | None = None,
        cpu_threads: int = 1,
    ) -> None:
        if not 1 <= max_batch <= 64:
            raise ValueError(f"max_batch must be within 1..64, got {max_batch}")
        if not 0 <= max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be within 0..1000, got {max_wait_ms}")
        super().__init__(editor, cpu_threads)
        self.max_batch, self.max_wait_s, self.timeout_s = max_batch, max_wait_ms / 1e3, timeout_s
        self.worker_threads = worker_threads or pipeline_torch_threads()
        self.stats = BatchStats()
        self._closed = threading.Event()
        self._lanes = {kind: _Lane(kind) for kind in ("encode", "fuse", "render")}
        for lane in self._lanes.values():
            lane.worker = threading.Thread(target=self._work, args=(lane,), name=f"live3dpe-runner-{lane.kind}", daemon=True)
            lane.worker.start()

    def close(self) -> None:
        """Stop the workers; waiting callers get `RunnerTimeout` at once."""
        self._closed.set()
        for lane in self._lanes.values():
            lane.inbox.put(None)
        for lane in self._lanes.values():
            lane.worker.join(timeout=5)

    # requests (called from the streams' stage threads) --------------------------------------
    def encode(self, crop: np.ndarray, camera: Camera, geometry: bool = True) -> Features:
        return self._call("encode", crop, camera, geometry)

    def fuse(self, features: Features, prompt: PromptEmbedding | None) -> Planes:
        return self._call("fuse", features, prompt)

    def render(self, planes: Planes, camera: Camera) -> np.ndarray:
        return self._call("render", planes, camera)

    def _call(self, kind: str, *args) -> Any:
        if self._closed.is_set():
            raise RunnerTimeout("the model runner is closed")
        request = Request(kind, batch_group(kind, args), args, time.monotonic() + self.timeout_s)
        self._lanes[kind].inbox.put(request)
        if not request.done.wait(self.timeout_s):
            raise RunnerTimeout(f"no {kind} result within {self.timeout_s:g} s (the shared model is overloaded); frame skipped")
        if request.error is not None:
            raise request.error
        return request.result

    # the workers, one per kind ------------------------------------------------------------------
    def _work(self, lane: _Lane) -> None:
        with self.running():
            torch.set_num_threads(self.worker_threads)
            while not self._closed.is_set():
                batch = self._next_batch(lane)
                if batch:
                    self._run(batch)
        lane.drain()  # callers still waiting in the inbox
        for request in lane.pending:
            request.finish(error=RunnerTimeout("the model runner closed"))

    def _next_batch(self, lane: _Lane) -> list[Request]:
        """The lane's oldest request and up to max_batch - 1 more of its group, gathered for at
        most max_wait after it arrived; expired requests are dropped on the way."""
        if not lane.pending and not lane.take(block=True):
            return []
        first = lane.pending[0]
        deadline = time.monotonic() + self.max_wait_s
        while len(lane.group(first)) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0 or not lane.take(block=True, timeout=left):
                break
        batch = lane.group(first)[: self.max_batch]
        lane.pending = [r for r in lane.pending if r not in batch]
        now = time.monotonic()
        live = [r for r in batch if r.expires > now]
        for r in batch:
            if r.expires <= now:
                self.stats.record_expired()
                r.finish(error=RunnerTimeout("expired before it was run"))
        return live

    def _run(self, batch: list[Request]) -> None:
        kind = batch[0].kind
        batched = BATCHED[kind]

        def run(items: Sequence[tuple]) -> list:
            results = batched(self.editor, items)
            self._synchronize()
            self.stats.record(kind, len(items))
            return results

        for r, result in zip(batch, run_isolated(run, [r.args for r in batch]), strict=True):
            if isinstance(result, BaseException):
                r.finish(error=result)
            else:
                r.finish(result)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()


# The batched model calls: each takes the per-request argument tuples of one group (`batch_group`)
# and returns one result per request. `BatchingRunner` and the Ray Serve deployment both use them.
def batch_group(kind: str, args: tuple) -> tuple:
    """Which requests may share a batch: same kind, and tensors present in the same places
    (`batched_edit` groups each of its steps itself)."""
    if kind == "edit":
        return (kind,)
    if kind == "encode":
        crop, _, geometry = args
        return kind, geometry, crop.shape
    if kind == "fuse":
        features = args[0]
        return kind, features.high is None, features.guide is None
    planes = args[0]
    return kind, planes.tensor is None, planes.guide is None


def batched_encode(editor: Editor, items: Sequence[tuple[np.ndarray, Camera, bool]]) -> list[Features]:
    """(crop, camera, geometry) each -> their features, one `encode_features` call."""
    crops, cameras, geometry = zip(*items)
    x = editor.preprocess(np.stack(crops))
    features = editor.encode_features(x, [c.to(editor.device) for c in cameras], geometry=geometry[0])
    return features.split() if len(items) > 1 else [features]


def batched_fuse(editor: Editor, items: Sequence[tuple[Features, PromptEmbedding | None]]) -> list[Planes]:
    """(features, prompt) each -> their planes, one `fuse` call with one prompt per sample."""
    from live3dpe.model.types import Features

    features, prompts = zip(*items)
    if len(items) == 1:
        return [editor.fuse(features[0], prompts[0])]
    return editor.fuse(Features.cat(features), list(prompts)).split()


def batched_render(editor: Editor, items: Sequence[tuple[Planes, Camera]]) -> list[np.ndarray]:
    """(planes, camera) each -> their face image uint8 [S, S, 3], one `render_image` call."""
    from live3dpe.model.types import Planes

    planes, cameras = zip(*items)
    merged = planes[0] if len(items) == 1 else Planes.cat(planes)
    images = editor.postprocess(editor.render_image(merged, [c.to(editor.device) for c in cameras]))
    return [np.asarray(image) for image in images]


def batched_edit(
    editor: Editor, items: Sequence[tuple[np.ndarray, Camera, bool, PromptEmbedding | None, Camera, PlanesSmoother | None, float]]
) -> list[np.ndarray | BaseException]:
    """(crop, camera, geometry, prompt, view, smoother, motion) each -> their face image seen from
    `view`: encode, fuse, the request's smoothing (its smoother updated in place; None: off) and
    render, each step one batch per group (`run_grouped`). A request failing at a step has its
    exception as its result and leaves the later steps, so its smoother is left as it was."""
    crops, cameras, geometry, prompts, views, smoothers, motions = zip(*items)
    features = run_grouped(editor, "encode", list(zip(crops, cameras, geometry)))
    planes = run_grouped(editor, "fuse", _then(features, prompts))
    smoothed = [_smoothed(p, s, m) for p, s, m in zip(planes, smoothers, motions)]
    return run_grouped(editor, "render", _then(smoothed, views))


def _smoothed(planes: Planes | BaseException, smoother: PlanesSmoother | None, motion: float) -> Planes | BaseException:
    """One request's smoothing; its failure is the request's alone (were the batch re-run, the
    other requests' smoothers would take this frame twice)."""
    if smoother is None or isinstance(planes, BaseException):
        return planes
    try:
        return smoother(planes, motion)
    except Exception as err:  # noqa: BLE001 - reported as the request's result
        return err


def _then(results: Sequence, more: Sequence) -> list:
    """The next step's arguments: each result with its request's `more`, a failure as it is."""
    return [r if isinstance(r, BaseException) else (r, m) for r, m in zip(results, more)]


BATCHED: dict[str, Callable[[Editor, Sequence[tuple]], list]] = {
    "encode": batched_encode, "fuse": batched_fuse, "render": batched_render, "edit": batched_edit,
}  # fmt: skip


def run_grouped(editor: Editor, kind: str, items: Sequence[tuple | BaseException]) -> list:
    """`items` split into groups that can share a model call (`batch_group`), each group run
    batched (`run_isolated`): results, or exceptions, in the order of `items`. An item that is
    an exception (its request failed earlier) stays as it is."""
    results: list[Any] = list(items)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        if not isinstance(item, BaseException):
            groups[batch_group(kind, item)].append(i)
    for index in groups.values():
        out = run_isolated(lambda group: BATCHED[kind](editor, group), [items[i] for i in index])
        for i, result in zip(index, out, strict=True):
            results[i] = result
    return results


def raised(result: Any) -> Any:
    """A batch hands back a failed request's exception as its result: raise it for its caller."""
    if isinstance(result, BaseException):
        raise result
    return result


def run_isolated(run: Callable[[Sequence[tuple]], list], items: Sequence[tuple]) -> list:
    """`run(items)` as one batch; when that fails, each item alone, so only a bad request fails:
    its place in the results then holds its exception."""
    try:
        return run(items)
    except Exception as err:
        if len(items) == 1:
            return [err]
        log.debug("a batch of %d failed (%s); running its requests one by one", len(items), err)
        return [run_isolated(run, [item])[0] for item in items]

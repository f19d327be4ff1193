"""Scale-out on Ray Serve: the model runs as a Serve deployment; the front end calls its handle.

`RayRunner` has the `ModelRunner` methods, so the stages do not know where the model runs: each
is one call on the deployment handle, made from the stage's own thread (the aiohttp loop never
waits on the model). The runner is fused (`ModelRunner.fused`): the stages make one `edit` call
per frame (encode → fuse → smoothing → render on the replica), since a Serve round trip costs
about as much as a model stage (8-12 ms on a loaded 2-core machine).
A stream's smoothing state (running averages of its triplane and edit field: 0.8 MB in view mode)
stays on the replica that serves the stream: the calls of a stream carry its id as Serve's
multiplexed model id, so Serve routes them to the replica that holds it, and each call says which
frame of the stream it is. A replica that did not see the previous frame (a frame lost on the way,
a stream routed elsewhere, the replica restarted) starts that stream's smoothing afresh rather than
blend with a past it did not see. Shipping the averages both ways cost 3 ms a view frame on
loopback and 1.6 MB a frame between nodes.
`EditorDeployment` holds an `Editor` per replica (replicas spread over the GPUs and nodes of the
cluster) and gathers the calls of all streams into batches with `@serve.batch`, through the same
batched model calls as the in-process `BatchingRunner` (batching.py).

Prompts are encoded in the front end: it holds the model on the CPU anyway (known styles, prompt
feedback), a prompt changes rarely and is cached there for all streams, and its embedding (a few
KB) then travels with each fuse call, so any replica can serve any frame.

What crosses the process boundary is kept small and exact: numpy arrays, sent by value to the
replica's gRPC server (`fast_handle`), and the guide image as the uint8 crop it was made from, not
float32 (a quarter of the bytes; `Editor.preprocess` makes the same floats from it bit for bit).
Outputs are those of the in-process runner.

The Serve HTTP proxy is not started (handles only), so Serve opens no HTTP port. Ray's own ports
(GCS, raylet, workers, the replicas' gRPC) listen on the node's interfaces, as Ray needs for a
cluster; a local instance protects them with Ray's token authentication (the default for local
instances from Ray 2.59), a cluster with RAY_AUTH_MODE=token on every node (README).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
import torch
from ray import serve

from live3dpe.tracking import PlanesSmoother, TriplaneSmoother

from .batching import BATCHED, RunnerTimeout, raised, run_grouped
from .runner import ModelRunner

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

    from live3dpe.model.cameras import Camera
    from live3dpe.model.editor import Editor
    from live3dpe.model.types import Features, Guide, Planes, PromptEmbedding

log = logging.getLogger(__name__)

APP_NAME = "live3dpe"
STREAMS_PER_REPLICA = 64  # smoothing states a replica keeps (least recently used go): 0.85 MB each in view mode

# What travels: plain tuples of numpy arrays (None for an absent tensor) and strings.
Wire = tuple


class WireFormat:
    """Features, planes, prompts and cameras as numpy tuples and back, on `editor`'s device.

    A guide's image travels as the uint8 pixels it was made from (`Editor.preprocess` makes the
    same floats from them, bit for bit): a quarter of the bytes, and no conversion for an image
    this side unpacked itself, whose pixels it remembers (by the tensor's identity, while it
    lives). Any other image is converted, checked, and sent as floats when it has no pixels."""

    def __init__(self, editor: Editor) -> None:
        self.editor = editor
        self._pixels: dict[int, tuple[weakref.ref, np.ndarray]] = {}

    # guides ------------------------------------------------------------------------------------
    def remember(self, image: torch.Tensor, pixels: np.ndarray) -> None:
        """`image` is `Editor.preprocess(pixels)`."""
        key = id(image)
        self._pixels[key] = (weakref.ref(image, lambda _: self._pixels.pop(key, None)), pixels)

    def pixels(self, image: torch.Tensor) -> np.ndarray | None:
        """The uint8 pixels [B, G, G, 3] `image` [B, 3, G, G] was made from, None when it was not."""
        pixels = self._remembered(image)
        return self._convert(image) if pixels is None else pixels

    def pixels_of(self, guided: Features | Planes) -> np.ndarray | None:
        """The pixels of a guide this side unpacked (None: no guide, or not unpacked here)."""
        return None if guided.guide is None else self._remembered(guided.guide.image)

    def _remembered(self, image: torch.Tensor) -> np.ndarray | None:
        entry = self._pixels.get(id(image))
        return entry[1] if entry is not None and entry[0]() is image else None

    def _convert(self, image: torch.Tensor) -> np.ndarray | None:
        pixels = ((image.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        pixels = pixels.cpu().numpy()
        return pixels if torch.equal(self.editor.preprocess(pixels), image.to(self.editor.device)) else None

    def pack_guide(self, guide: Guide | None, pixels: np.ndarray | None = None) -> Wire | None:
        """pixels: what the guide's image was made from, when the caller knows."""
        if guide is None:
            return None
        pixels = self.pixels(guide.image) if pixels is None else pixels
        return (_array(guide.image) if pixels is None else pixels), _array(guide.label), _array(guide.edit)

    def unpack_guide(self, wire: Wire | None) -> Guide | None:
        from live3dpe.model.types import Guide

        if wire is None:
            return None
        image, label, edit = wire
        if image.dtype == np.uint8:
            pixels = np.require(image, requirements="W")  # received arrays are read-only
            image = self.editor.preprocess(pixels)
            self.remember(image, pixels)
        else:
            image = self.tensor(image).contiguous(memory_format=self.editor.memory_format)
        return Guide(image, self.tensor(label), self.tensor(edit))

    # the rest ----------------------------------------------------------------------------------
    def tensor(self, a: np.ndarray | None) -> torch.Tensor | None:
        """A tensor on the editor's device from a received (read-only) array."""
        return None if a is None else torch.from_numpy(np.require(a, requirements="W")).to(self.editor.device)

    def pack_features(self, features: Features, pixels: np.ndarray | None = None) -> Wire:
        return _array(features.high), _array(features.f), self.pack_guide(features.guide, pixels)

    def unpack_features(self, wire: Wire) -> Features:
        from live3dpe.model.types import Features

        high, f, guide = wire
        return Features(self.tensor(high), self.tensor(f), self.unpack_guide(guide))

    def pack_planes(self, planes: Planes, pixels: np.ndarray | None = None) -> Wire:
        return _array(planes.tensor), self.pack_guide(planes.guide, pixels)

    def unpack_planes(self, wire: Wire) -> Planes:
        from live3dpe.model.types import Planes

        tensor, guide = wire
        return Planes(self.tensor(tensor), self.unpack_guide(guide))

    @staticmethod
    def pack_prompt(prompt: PromptEmbedding | None) -> Wire | None:
        return None if prompt is None else (_array(prompt.tokens), prompt.source, prompt.key, _array(prompt.colour))

    def unpack_prompt(self, wire: Wire | None) -> PromptEmbedding | None:
        from live3dpe.model.types import PromptEmbedding

        if wire is None:
            return None
        tokens, source, key, colour = wire
        return PromptEmbedding(self.tensor(tokens), source, key, self.tensor(colour))

    def camera(self, label: np.ndarray) -> Camera:
        from live3dpe.model.cameras import Camera

        return Camera(self.tensor(label))


def _array(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


# a stream's smoothing, kept on the replica that serves it ------------------------------------------
Smoothing = tuple  # what an edit request says of its stream's smoothing: (settings, resets, frame)


@dataclasses.dataclass
class StreamSmoothing:
    """A stream's smoother on a replica, and where the stream stood: its smoother's settings and
    reset count on the front end, and the number of the frame that would continue it."""

    settings: tuple = ()
    resets: int = -1
    next_frame: int = -1
    smoother: PlanesSmoother | None = None

    def continued(self, settings: tuple, resets: int, frame: int) -> PlanesSmoother:
        """The smoother for `frame` of the stream: this one when the request continues it, else a
        fresh one (a frame was lost, the stream comes from another replica, it was reset)."""
        if self.smoother is None or (settings, resets, frame) != (self.settings, self.resets, self.next_frame):
            self.smoother, self.settings, self.resets = PlanesSmoother(TriplaneSmoother(*settings)), settings, resets
        self.next_frame = frame + 1
        return self.smoother


class StreamClock:
    """The front end's side: a stream id per smoother and the number of its next frame."""

    def __init__(self) -> None:
        self._streams: weakref.WeakKeyDictionary[PlanesSmoother, list] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def tick(self, smoother: PlanesSmoother) -> tuple[str, Smoothing]:
        """-> (the stream's id, what its next request says of its smoothing)."""
        with self._lock:
            stream = self._streams.setdefault(smoother, [uuid.uuid4().hex, 0])
            frame, stream[1] = stream[1], stream[1] + 1
        return stream[0], (dataclasses.astuple(smoother.triplane), smoother.resets, frame)


# the deployment (runs in each replica) ------------------------------------------------------------
class EditorDeployment:
    """One `Editor` per replica; `edit` (or `encode` / `fuse` / `render`) of all streams gathered
    into batches.

    Each kind runs in a thread of its own (like the in-process pipeline's stages), so a frame's
    render overlaps the next frame's encode when they come as calls of their own;
    `ModelRunner.running` gives each its torch threads (CPU) or CUDA stream. A batch that fails
    is re-run one request at a time, so only the bad request fails (`run_isolated`)."""

    def __init__(self, checkpoint: str, device: str, weights_version: str, *, compile: bool = False,
                 max_batch: int = 8, batch_wait_s: float = 0.003, cpu_threads: int | None = None) -> None:  # fmt: skip
        from live3dpe.model.editor import Editor

        editor = Editor.load(checkpoint, device=device)
        if editor.weights_version != weights_version:
            raise RuntimeError(
                f"{checkpoint} on this node holds other weights ({editor.weights_version[:12]}) than the front end's "
                f"({weights_version[:12]}): install the same checkpoint on every node"
            )
        self.runner, self.wire = ModelRunner(editor, cpu_threads), WireFormat(editor)
        if compile:
            editor.compile(threads=self.runner.cpu_threads)
        self._threads = {kind: ThreadPoolExecutor(1, thread_name_prefix=f"live3dpe-{kind}") for kind in BATCHED}
        for batched in (self._encode, self._fuse, self._render, self._edit):
            batched.set_max_batch_size(max_batch)
            batched.set_batch_wait_timeout_s(batch_wait_s)

    # the handle's methods: one request each ------------------------------------------------------
    async def encode(self, crop: np.ndarray, label: np.ndarray, geometry: bool) -> Wire:
        return raised(await self._encode(crop, label, geometry))

    async def fuse(self, features: Wire, prompt: Wire | None) -> Wire:
        return raised(await self._fuse(features, prompt))

    async def render(self, planes: Wire, label: np.ndarray) -> np.ndarray:
        return raised(await self._render(planes, label))

    async def edit(self, crop: np.ndarray, label: np.ndarray, geometry: bool, prompt: Wire | None, view: np.ndarray,
                   smoothing: Smoothing | None, motion: float) -> np.ndarray:  # fmt: skip
        """A whole frame (`ModelRunner.edit`) → its face; smoothing (None: off) with the smoother
        this replica keeps for the stream the request's multiplexed model id names."""
        smoother = None
        if smoothing is not None:
            stream = serve.get_multiplexed_model_id()
            if not stream:
                raise ValueError("a smoothed edit needs its stream's id as the multiplexed model id")
            smoother = (await self._stream_smoothing(stream)).continued(*smoothing)
        return raised(await self._edit(crop, label, geometry, prompt, view, smoother, motion))

    @serve.multiplexed(max_num_models_per_replica=STREAMS_PER_REPLICA)
    async def _stream_smoothing(self, stream: str) -> StreamSmoothing:
        """A stream this replica has not seen (or forgot, least recently used first) starts afresh."""
        return StreamSmoothing()

    # batches: a result's guide image is made from the pixels of its request's crop or guide ------
    @serve.batch
    async def _encode(self, crops: list[np.ndarray], labels: list[np.ndarray], geometry: list[bool]) -> list:
        return await self._run("encode", list(zip(crops, labels, geometry)),
                               lambda crop, label, g: (crop, self.wire.camera(label), g),
                               lambda args, features: self.wire.pack_features(features, args[0][None]))  # fmt: skip

    @serve.batch
    async def _fuse(self, features: list[Wire], prompts: list[Wire | None]) -> list:
        return await self._run("fuse", list(zip(features, prompts)),
                               lambda f, p: (self.wire.unpack_features(f), self.wire.unpack_prompt(p)),
                               lambda args, planes: self.wire.pack_planes(planes, self.wire.pixels_of(args[0])))  # fmt: skip

    @serve.batch
    async def _render(self, planes: list[Wire], labels: list[np.ndarray]) -> list:
        return await self._run("render", list(zip(planes, labels)),
                               lambda p, label: (self.wire.unpack_planes(p), self.wire.camera(label)),
                               lambda args, image: image)  # fmt: skip

    @serve.batch
    async def _edit(self, crops: list[np.ndarray], labels: list[np.ndarray], geometry: list[bool], prompts: list[Wire | None],
                    views: list[np.ndarray], smoothers: list[PlanesSmoother | None], motions: list[float]) -> list:  # fmt: skip
        w = self.wire
        return await self._run("edit", list(zip(crops, labels, geometry, prompts, views, smoothers, motions)),
                               lambda crop, label, g, prompt, view, smoother, motion: (
                                   crop, w.camera(label), g, w.unpack_prompt(prompt), w.camera(view), smoother, motion),
                               lambda args, image: image)  # fmt: skip

    async def _run(self, kind: str, requests: list[tuple], unpack: Callable[..., tuple], pack: Callable[[tuple, Any], Any]) -> list:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads[kind], self._run_groups, kind, requests, unpack, pack)

    def _run_groups(self, kind: str, requests: list[tuple], unpack: Callable[..., tuple], pack: Callable[[tuple, Any], Any]) -> list:
        """The requests unpacked into model arguments and run batched (`run_grouped`); results
        packed, or exceptions, in the order of `requests`. All torch work of the replica happens
        here, in its kind's thread (a thread without `running` would start a pool of torch
        threads that spin on the stages' cores)."""
        items: list[tuple | BaseException] = []
        with self.runner.running():
            for request in requests:
                try:
                    items.append(unpack(*request))
                except Exception as err:  # noqa: BLE001 - a malformed request fails alone
                    items.append(err)
            results = run_grouped(self.runner.editor, kind, items)
            return [r if isinstance(r, BaseException) else pack(item, r) for item, r in zip(items, results, strict=True)]


def request_bytes(editor: Editor) -> int:
    """About the largest request or response of one frame: planes and their guide (view mode,
    per-stage calls)."""
    cfg = editor.config
    planes = cfg.triplane_channels * cfg.triplane_resolution**2 * 4
    pixels = editor.crop_resolution**2 * 3
    edit = 12 * (cfg.input_resolution // 4) ** 2 * 4  # appearance.py: 12 floats per pixel at R/4
    return planes + pixels + edit


def fast_handle(handle: DeploymentHandle, editor: Editor) -> DeploymentHandle:
    """The handle sending requests by value straight to the replica's gRPC server, pickled, rather
    than as Ray actor calls through the object store (measured on a loaded 2-core machine: a round
    trip 7 instead of 12 ms, a frame 13 ms sooner). Serve's gRPC takes messages up to 4 MB, so a
    model whose planes are larger (the paper preset's: 25 MB) keeps the default."""
    if request_bytes(editor) > 3 << 20:
        return handle
    try:
        return handle.options(_by_reference=False, request_serialization="pickle", response_serialization="pickle")
    except TypeError:  # a Ray Serve without these options
        return handle


# the front end's runner -------------------------------------------------------------------------
class RayRunner(ModelRunner):
    """The `ModelRunner` of a front end whose model runs on Ray Serve (`start`).

    `editor`: the front end's own copy of the model on the CPU, for prompts and what the stages
    need to know (crop size, route); the replicas load the same weights. timeout_s: how long a
    call waits for its result before the frame passes through unedited (`RunnerTimeout`)."""

    fused = True  # a round trip costs about as much as a model stage: one `edit` call per frame

    def __init__(self, editor: Editor, handle: DeploymentHandle, *, timeout_s: float = 2.0, owns_ray: bool = False,
                 app_name: str = APP_NAME) -> None:  # fmt: skip
        super().__init__(editor, cpu_threads=1)  # the front end's own torch work is small (packing)
        self.handle, self.timeout_s, self.wire, self.streams = handle, timeout_s, WireFormat(editor), StreamClock()
        self._owns_ray, self._app_name = owns_ray, app_name

    @classmethod
    def start(
        cls,
        checkpoint: str = "default",
        *,
        editor: Editor | None = None,
        address: str | None = None,
        replicas: int = 1,
        device: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float | None = None,
        max_batch: int = 8,
        batch_wait_ms: float = 3.0,
        compile: bool = False,
        timeout_s: float = 2.0,
        local_cpus: int | None = None,
        app_name: str = APP_NAME,
    ) -> RayRunner:
        """Join the Ray cluster at `address` ("auto": the one on this node; None: start a local
        instance with `local_cpus`), deploy `replicas` replicas of `checkpoint` (a path every node
        has, or "default") and return the runner calling them.

        editor: the front end's copy (default: `checkpoint` loaded on the CPU).

        device: the replicas' (default: cuda when the cluster has GPUs); num_cpus / num_gpus:
        what each replica reserves (default one GPU per replica on cuda, so replicas spread over
        the GPUs). max_batch / batch_wait_ms: `@serve.batch`'s max_batch_size and
        batch_wait_timeout_s."""
        if not 1 <= replicas <= 256:
            raise ValueError(f"replicas must be within 1..256, got {replicas}")
        if not 1 <= max_batch <= 64:
            raise ValueError(f"max_batch must be within 1..64, got {max_batch}")
        if not 0 <= batch_wait_ms <= 1000:
            raise ValueError(f"batch_wait_ms must be within 0..1000, got {batch_wait_ms}")
        if os.path.exists(checkpoint):  # a file: the replicas' working directory is not ours
            checkpoint = os.path.abspath(checkpoint)
        if editor is None:
            from live3dpe.model.editor import Editor

            editor = Editor.load(checkpoint)
        if not log.isEnabledFor(logging.DEBUG):  # Serve's INFO lines only with -v
            logging.getLogger("ray.serve").setLevel(logging.WARNING)
        ray.init(address=address, num_cpus=local_cpus if address is None else None, include_dashboard=False,
                 logging_level=logging.WARNING)  # fmt: skip
        try:
            resources = ray.cluster_resources()
            device = device or ("cuda" if resources.get("GPU", 0) > 0 else "cpu")
            if num_gpus is None:
                num_gpus = 1.0 if device == "cuda" else 0.0
            wanted = {"CPU": replicas * num_cpus, "GPU": replicas * num_gpus}
            short = {k: (v, resources.get(k, 0)) for k, v in wanted.items() if v > resources.get(k, 0)}
            if short:
                message = ", ".join(f"{need:g} {k} wanted, {have:g} in the cluster" for k, (need, have) in short.items())
                if address is None:
                    raise ValueError(f"{replicas} replica(s) do not fit this machine: {message}")
                log.warning("%d replica(s) wait for nodes to join: %s", replicas, message)
            serve.start(proxy_location="Disabled", logging_config={"log_level": "WARNING", "enable_access_log": False})
            deployment = serve.deployment(
                name="editor",
                num_replicas=replicas,
                ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
                # every stream may have one request of each kind waiting and one in a batch; more queue in the front end
                max_ongoing_requests=6 * max_batch,
                max_queued_requests=24 * max_batch,
                logging_config={"log_level": "WARNING", "enable_access_log": False},
            )(EditorDeployment)
            cpu_threads = max(1, int(num_cpus) // 3) if device == "cpu" else None
            app = deployment.bind(checkpoint, device, editor.weights_version, compile=compile, max_batch=max_batch,
                                  batch_wait_s=batch_wait_ms / 1e3, cpu_threads=cpu_threads)  # fmt: skip
            handle = fast_handle(serve.run(app, name=app_name, route_prefix=None), editor)
        except BaseException:
            ray.shutdown()
            raise
        log.info("Ray Serve: %d replica(s) of %s on %s", replicas, checkpoint, device)
        return cls(editor, handle, timeout_s=timeout_s, owns_ray=address is None, app_name=app_name)

    def close(self) -> None:
        """Shut the local Ray instance down (Serve with it), or take this app off a cluster we joined."""
        if not self._owns_ray:
            serve.delete(self._app_name)
        ray.shutdown()

    # requests (called from the streams' stage threads) ------------------------------------------
    # (packing in `running`: the calling thread's torch threads, as for the in-process runner's work)
    def edit(self, crop: np.ndarray, camera: Camera, prompt: PromptEmbedding | None, view: Camera, geometry: bool = True,
             smoother: PlanesSmoother | None = None, motion: float = 0.0) -> np.ndarray:  # fmt: skip
        """`ModelRunner.edit` in one round trip. The smoothing happens on the replica serving the
        stream (`smoother` names the stream and gives its settings and resets; its own averages
        are not used)."""
        handle, smoothing = self.handle, None
        if smoother is not None:
            stream, smoothing = self.streams.tick(smoother)
            handle = handle.options(multiplexed_model_id=stream)
        with self.running():
            request = crop, _array(camera.label), geometry, self.wire.pack_prompt(prompt), _array(view.label), smoothing, motion
        return self._call("edit", *request, handle=handle)

    def encode(self, crop: np.ndarray, camera: Camera, geometry: bool = True) -> Features:
        wire = self._call("encode", crop, _array(camera.label), geometry)
        with self.running():
            return self.wire.unpack_features(wire)

    def fuse(self, features: Features, prompt: PromptEmbedding | None) -> Planes:
        with self.running():
            request = self.wire.pack_features(features), self.wire.pack_prompt(prompt)
        wire = self._call("fuse", *request)
        with self.running():
            return self.wire.unpack_planes(wire)

    def render(self, planes: Planes, camera: Camera) -> np.ndarray:
        with self.running():
            request = self.wire.pack_planes(planes), _array(camera.label)
        return self._call("render", *request)

    def _call(self, kind: str, *args, handle: DeploymentHandle | None = None) -> Any:
        response = getattr(handle or self.handle, kind).remote(*args)
        try:
            return response.result(timeout_s=self.timeout_s)
        except TimeoutError:
            response.cancel()
            raise RunnerTimeout(f"no {kind} result from Ray Serve within {self.timeout_s:g} s; frame skipped") from None


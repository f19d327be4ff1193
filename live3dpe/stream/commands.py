"""`live3dpe live | process | edit | sample`: the streaming commands."""
from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from .control import MODES, Control, ViewSpec

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("live", help="edit a live camera (or clip) in real time", description="Capture, edit the face in 3D, show or send it on.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, default=None, metavar="N", help="camera index (default 0)")
    src.add_argument("--source", default=None, metavar="synthetic|FILE|DIR", help="synthetic face, a video file or an image folder instead of a camera")
    src.add_argument("--list-cameras", action="store_true", help="list cameras and exit")
    _add_model_args(p)
    p.add_argument("--output", default="window", metavar="virtualcam|window|FILE.mp4", help="where the edited video goes (default window)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--no-mjpg", dest="mjpg", action="store_false", help="do not ask the camera for MJPG")
    p.add_argument("--mirror", action="store_true", help="mirror the output (selfie view)")
    p.add_argument("--overlay", action="store_true", help="draw FPS and ms per stage")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.set_defaults(func=cmd_live)

    p = subparsers.add_parser("process", help="edit a video file offline (keeps every frame and the audio)")
    p.add_argument("input", type=Path, metavar="IN.mp4")
    p.add_argument("output", type=Path, metavar="OUT.mp4")
    _add_model_args(p)
    p.set_defaults(func=cmd_process)

    p = subparsers.add_parser("edit", help="edit one portrait: aligned crop, edited image, novel views, orbit video, mesh")
    p.add_argument("portrait", type=Path, metavar="PORTRAIT.jpg")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--views", default="-30,0,30", metavar="YAWS", help="comma-separated yaw angles in degrees (default -30,0,30)")
    # let `--views -30,0,30` read as a value, not an option (argparse only knows plain negative numbers)
    p._negative_number_matcher = re.compile(r"^-\d+(\.\d*)?(,\s*[-+]?\d+(\.\d*)?)*$")
    p.add_argument("--orbit-frames", type=int, default=90, metavar="N")
    p.add_argument("--mesh", action="store_true", help="also export a .ply mesh of the edited head")
    p.add_argument("--mesh-resolution", type=int, default=128)
    _add_model_args(p, modes=False)
    p.set_defaults(func=cmd_edit)

    p = subparsers.add_parser("sample", help="write the demo clip (synthetic moving face + audio tone)")
    p.add_argument("output", type=Path, metavar="OUT.mp4")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=float, default=30.0)
    p.set_defaults(func=cmd_sample)


def _add_model_args(p: argparse.ArgumentParser, modes: bool = True) -> None:
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default=None, help='text prompt, e.g. "golden statue"')
    prompt.add_argument("--ref", type=Path, default=None, metavar="IMG", help="reference image prompt")
    if modes:
        p.add_argument("--mode", choices=MODES, default="paste", help="paste into the frame, full re-render (view) or side-by-side")
        p.add_argument("--view", default="frontal", metavar="frontal|yaw=20,pitch=0|orbit", help="virtual camera for --mode view")
    p.add_argument("--checkpoint", default=None, metavar="PATH", help="model checkpoint (default: the bundled model)")
    p.add_argument("--device", default=None, choices=("cuda", "cpu", "mps"), help="default: cuda when available")
    if modes:
        p.add_argument(
            "--compile", action="store_true",
            help="torch.compile the model first: a 1.5-2x faster model on CPU, after a one-off compile "
            "(about two minutes the first time, ~10 s once cached)",
        )  # fmt: skip


def load_editor(args):
    """The Editor for `--checkpoint`/`--device` (the bundled default model when none is given),
    compiled for the pipeline's per-stage thread count with `--compile`."""
    import torch

    from live3dpe.model.editor import Editor

    from .stages import pipeline_torch_threads

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    editor = Editor.load(args.checkpoint or "default", device=device)
    if getattr(args, "compile", False):
        log.info("compiling the model (about two minutes the first time, ~10 s once cached)")
        editor.compile(threads=pipeline_torch_threads())
    return editor


def _control(args, **extra) -> Control:
    from .sources import read_image

    image = read_image(args.ref) if args.ref is not None else None
    settings = {"prompt_text": args.prompt, "prompt_image": image, **extra}
    if hasattr(args, "mode"):
        settings.update(mode=args.mode, view=ViewSpec.parse(args.view))
    if args.prompt is None and image is None:
        log.warning("no --prompt or --ref given: the face is reconstructed, not edited")
    return Control(**settings)


def cmd_live(args) -> int:
    from .engine import Engine
    from .overlay import Decorator, output_size
    from .sinks import VirtualCamSink, WindowSink
    from .sources import list_cameras, open_source
    from .stages import build_stages
    from .stats import Stats
    from .videofile import VideoFileSink

    if args.list_cameras:
        cams = list_cameras()
        if not cams:
            print("no cameras found")
        for c in cams:
            print(f"{c['index']}: {c['width']}x{c['height']} @ {c['fps']:g} fps")
        return 0
    control = _control(args, mirror=args.mirror, overlay=args.overlay)
    if args.source is not None:
        source = open_source(args.source, width=args.width, height=args.height, fps=args.fps, realtime=True)
    else:
        from .sources import WebcamSource

        source = WebcamSource(args.camera or 0, args.width, args.height, args.fps, mjpg=args.mjpg)
    fps = getattr(source, "fps", args.fps)
    try:  # open the output before the (slow) model load so setup errors come at once
        if args.output == "virtualcam":
            known = hasattr(source, "width")  # image folders learn their size from the first frame
            sink = VirtualCamSink(fps=fps, size=output_size(control.get().mode, source.width, source.height) if known else None)
        elif args.output == "window":
            sink = WindowSink(control)
        else:
            sink = VideoFileSink(args.output, fps=fps)
        editor = load_editor(args)
    except BaseException:
        source.close()
        raise
    stats = Stats()
    engine = Engine(source, sink, build_stages(editor), live=True, control=control, stats=stats, max_frames=args.max_frames, postprocess=Decorator(stats))
    log.info("streaming (%s mode); Ctrl+C to stop", control.get().mode)
    engine.run()
    log.info("done: %s", stats.snapshot())
    return 0


def cmd_process(args) -> int:
    from .engine import Engine
    from .overlay import Decorator
    from .sinks import ProgressSink
    from .sources import VideoFileSource
    from .stages import build_stages
    from .stats import Stats
    from .videofile import VideoFileSink

    if args.input.resolve() == args.output.resolve():
        raise ValueError("output must differ from input")
    control = _control(args)
    editor = load_editor(args)
    source = VideoFileSource(args.input)
    sink = ProgressSink(VideoFileSink(args.output, fps=source.fps, audio_from=args.input if source.has_audio else None), total=source.frame_count)
    stats = Stats()
    Engine(source, sink, build_stages(editor), live=False, control=control, stats=stats, postprocess=Decorator(stats)).run()
    snap = stats.snapshot()
    if snap["faults"]:
        log.warning("frames passed through unedited after errors: %s", snap["faults"])
    log.info("wrote %s: %d frames", args.output, stats.frames_out)
    return 0


def cmd_edit(args) -> int:
    import cv2
    import numpy as np

    from live3dpe.pose import FacePoseEstimator
    from live3dpe.pose.align import paste_back
    from live3dpe.webapp.portrait import NoFaceError, PortraitService

    from .sources import read_image

    try:
        yaws = [float(v) for v in args.views.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--views must be comma-separated degrees, got {args.views!r}") from None
    image = read_image(args.portrait)
    control = _control(args).get()
    service = PortraitService(load_editor(args), FacePoseEstimator(max_faces=1, crop_size=512, static_image=True))
    try:
        result = service.edit(image, control.prompt_text, control.prompt_image)
    except NoFaceError:
        raise ValueError(f"no face found in {args.portrait}") from None
    args.out.mkdir(parents=True, exist_ok=True)

    def save(name: str, rgb: np.ndarray) -> None:
        tmp = args.out / f".{name}.part.png"
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise RuntimeError(f"cannot write {tmp}")
        tmp.replace(args.out / name)

    obs = result.observation
    save("crop.png", result.crop)
    save("edited.png", result.edited)
    save("edited_in_photo.png", paste_back(image, result.edited, obs.crop_affine, crop_size=obs.crop_size))
    for yaw in yaws:
        save(f"view_yaw{yaw:+g}.png", service.view(result.planes, yaw, 0.0))
    service.orbit_video(result.planes, args.out / "orbit.mp4", frames=args.orbit_frames, fps=30.0)
    if args.mesh:
        service.mesh(result.planes, args.out / "mesh.ply", args.mesh_resolution)
    log.info("wrote %s", ", ".join(sorted(p.name for p in args.out.iterdir() if not p.name.startswith("."))))
    return 0


def cmd_sample(args) -> int:
    from .sample import write_sample

    path = write_sample(args.output, args.seconds, args.width, args.height, args.fps)
    print(path)
    return 0

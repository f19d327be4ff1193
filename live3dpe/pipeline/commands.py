"""`live3dpe live | process | edit`: the commands that run the editing pipeline."""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import re
import shutil
import tempfile
from pathlib import Path

from live3dpe.stream.control import MODES, Control, ViewSpec, clean_prompt

log = logging.getLogger(__name__)

MAX_VIEW_YAW_DEG = 90.0  # the same range the WebRTC page allows
MAX_ORBIT_FRAMES = 3600
MESH_RESOLUTIONS = (16, 512)  # below: no recognisable head; above: gigabytes of grid


def register(subparsers) -> None:
    from live3dpe.model.known_styles import prompt_help_epilog

    from .portrait import MAX_IMAGE_SIDE, MIN_IMAGE_SIDE

    epilog = prompt_help_epilog()
    p = subparsers.add_parser(
        "live", help="edit a live camera (or clip) in real time", description="Capture, edit the face in 3D, show or send it on.",
        epilog=f"{hotkeys_help()}\n\n{epilog}", formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, default=None, metavar="N", help="camera index (default 0)")
    src.add_argument("--source", default=None, metavar="synthetic|FILE|DIR", help="synthetic face, a video file or an image folder instead of a camera")
    src.add_argument("--list-cameras", action="store_true", help="list cameras and exit")
    _add_model_args(p)
    p.add_argument("--output", default="window", metavar="virtualcam|window|FILE.mp4", help="where the edited video goes (default window)")
    p.add_argument("--width", type=int, default=1280,
                   help="frame width in pixels asked of the camera (it may pick a size it supports) or made by --source "
                   "synthetic; video files and image folders keep their own (default %(default)s)")  # fmt: skip
    p.add_argument("--height", type=int, default=720, help="frame height in pixels, like --width (default %(default)s)")
    p.add_argument("--fps", type=float, default=30.0,
                   help="frames per second asked of the camera, made by --source synthetic or read from an image "
                   "folder; video files keep their own rate (default %(default)g)")  # fmt: skip
    p.add_argument("--no-mjpg", dest="mjpg", action="store_false", help="do not ask the camera for MJPG")
    p.add_argument("--mirror", action="store_true", help="mirror the output (selfie view)")
    p.add_argument("--overlay", action="store_true", help="draw FPS and ms per stage")
    p.add_argument("--prompts", default=None, metavar="A,B,C",
                   help="comma-separated text prompts the window's `n` key cycles through (the first is used when neither --prompt nor --ref is given)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    add_latency_arg(p)
    p.set_defaults(func=cmd_live)

    p = subparsers.add_parser(
        "process",
        help="edit a video file offline (keeps every frame and the audio)",
        description="Edit every frame of IN and write OUT with the same frames, timing and audio. Exit status 0 "
        "only when OUT is what was asked: a run in which faces were found but no frame could be edited is an "
        "error and writes nothing. Frames passed through after an error, or an input shorter than it declares "
        "(truncated file), are warnings with the counts, and errors with --strict. OUT is written atomically "
        "(no partial file on failure, Ctrl+C or SIGTERM).",
        epilog=epilog,
    )
    p.add_argument("input", type=Path, metavar="IN.mp4", help="the video to edit (any file FFmpeg/PyAV can decode)")
    p.add_argument("output", type=Path, metavar="OUT.mp4",
                   help="the edited video: .mp4, .mov or .mkv in an existing folder, not IN itself")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (default: refuse, before any work)")
    p.add_argument("--strict", action="store_true", help="fail (and write nothing) if any frame could not be decoded or edited")
    _add_model_args(p)
    p.set_defaults(func=cmd_process)

    p = subparsers.add_parser(
        "edit",
        help="edit one portrait: aligned crop, edited image, novel views, orbit video, mesh",
        description="Edit one portrait and write the results into DIR. Every argument is checked before any "
        "work; the files appear in DIR only when all of them were made (existing files of the same name are replaced).",
        epilog=epilog,
    )
    p.add_argument("portrait", type=Path, metavar="PORTRAIT.jpg",
                   help=f"photo with the face to edit (JPEG, PNG, ...; sides {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE} pixels)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder for the results, created if missing: crop.png, edited.png, edited_in_photo.png, "
                   "view_yaw<YAW>.png for each of --views, orbit.mp4 (and mesh.ply with --mesh)")  # fmt: skip
    p.add_argument("--views", default="-30,0,30", metavar="YAWS", help=f"comma-separated yaw angles in degrees, within ±{MAX_VIEW_YAW_DEG:g} (default -30,0,30)")
    # let `--views -30,0,30` read as a value, not an option (argparse only knows plain negative numbers)
    p._negative_number_matcher = re.compile(r"^-\d+(\.\d*)?(,\s*[-+]?\d+(\.\d*)?)*$")
    p.add_argument("--orbit-frames", type=int, default=90, metavar="N", help=f"frames of the orbit video, 1..{MAX_ORBIT_FRAMES} (default 90)")
    p.add_argument("--mesh", action="store_true", help="also export a .ply mesh of the edited head")
    p.add_argument("--mesh-resolution", type=int, default=128, help=f"marching-cubes grid size, {MESH_RESOLUTIONS[0]}..{MESH_RESOLUTIONS[1]} (default 128)")
    _add_model_args(p, modes=False)
    p.set_defaults(func=cmd_edit)


def add_latency_arg(p: argparse.ArgumentParser) -> None:
    """--latency for the live front ends (live, serve); `process` is offline and keeps every frame."""
    from live3dpe.stream.engine import LATENCIES

    p.add_argument(
        "--latency", choices=LATENCIES, default="low",
        help="low (default, for calls): a frame starts only when it can go through without waiting, with as few "
        "others on their way as pay in FPS; balanced: every stage busy on its own frame, a few more FPS for about "
        "twice the delay (benchmarks/results/pipeline_latency.md)",
    )  # fmt: skip


def _add_model_args(p: argparse.ArgumentParser, modes: bool = True) -> None:
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default=None, help='text prompt, e.g. "golden statue" (leave out both --prompt and --ref to reconstruct the face unedited)')
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
    compiled for the pipeline's per-stage thread count with `--compile`. A `--prompt` is then
    matched to the model's known styles and the result logged, so a run says what it can edit."""
    import torch

    from live3dpe.model.editor import Editor
    from live3dpe.model.known_styles import log_prompt_check

    from .runner import pipeline_torch_threads

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    editor = Editor.load(args.checkpoint or "default", device=device)
    if getattr(args, "compile", False):
        log.info("compiling the model (about two minutes the first time, ~10 s once cached)")
        editor.compile(threads=pipeline_torch_threads())
    log_prompt_check(editor, _prompt(getattr(args, "prompt", None)))
    return editor


def _prompt(text: str | None) -> str | None:
    """The --prompt as the model gets it; a given but blank prompt is refused rather than
    silently meaning "no edit", and the length limit is the one the web pages use."""
    if text is None:
        return None
    cleaned = clean_prompt(text)
    if cleaned is None:
        raise ValueError("--prompt is empty; leave --prompt out to reconstruct the face without an edit")
    return cleaned


def hotkeys_help() -> str:
    """The preview window's keys, for `live --help` (the window shows the same list on `h`)."""
    from live3dpe.stream.control import HOTKEYS

    width = max(len(key) for key, _ in HOTKEYS)
    return "keys in the preview window (--output window):\n" + "\n".join(f"  {key:<{width}}  {what}" for key, what in HOTKEYS)


def _prompt_list(text: str | None) -> tuple[str, ...]:
    """--prompts: each entry cleaned like --prompt; an empty entry is an error, not a silent skip."""
    if text is None:
        return ()
    prompts = tuple(_prompt(part) for part in text.split(","))
    if len(prompts) > 32:
        raise ValueError(f"--prompts takes at most 32 prompts, got {len(prompts)}")
    return prompts


def _control(args, **extra) -> Control:
    from live3dpe.stream.sources import read_image

    prompts = _prompt_list(getattr(args, "prompts", None))
    prompt = _prompt(args.prompt)
    image = read_image(args.ref) if args.ref is not None else None
    if prompt is None and image is None and prompts:
        prompt = prompts[0]
    settings = {"prompt_text": prompt, "prompt_image": image, **extra}
    if prompts:
        settings["prompts"] = prompts
    if hasattr(args, "mode"):
        settings.update(mode=args.mode, view=ViewSpec.parse(args.view))
    if prompt is None and image is None:
        log.warning("no --prompt or --ref given: the face is reconstructed, not edited")
    return Control(**settings)


def cmd_live(args) -> int:
    from live3dpe.stream.sinks import WindowSink, open_sink
    from live3dpe.stream.sources import WebcamSource, list_cameras, open_source

    from .compose import output_size
    from .stages import pipeline_engine

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
        source = WebcamSource(args.camera or 0, args.width, args.height, args.fps, mjpg=args.mjpg)
    fps = getattr(source, "fps", args.fps)
    known = hasattr(source, "width")  # image folders learn their size from the first frame
    size = output_size(control.get().mode, source.width, source.height) if known else None
    try:  # open the output before the (slow) model load so setup errors come at once
        sink = open_sink(args.output, fps=fps, control=control, size=size)
        editor = load_editor(args)
    except BaseException:
        source.close()
        raise
    engine = pipeline_engine(source, sink, editor, live=True, control=control, max_frames=args.max_frames, latency=args.latency)
    if isinstance(sink, WindowSink):
        sink.on_quit = engine.stop  # q quits even while no frame arrives (a stalled camera)
    stats = engine.stats
    log.info("streaming (%s mode); Ctrl+C to stop", control.get().mode)
    engine.run()
    log.info("done: %s", stats.snapshot())
    return 0


def _check_video_output(input_path: Path, output: Path, overwrite: bool) -> None:
    """Refuse an output that would fail or destroy something, before any (slow) work."""
    if output.is_dir():
        raise ValueError(f"OUT {output} is a directory; give a file name such as {output / 'edited.mp4'}")
    if output.exists() and input_path.exists() and output.resolve() == input_path.resolve():
        raise ValueError("output must differ from input")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {output.parent}")
    if output.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise ValueError(f"output video must end in .mp4, .mov or .mkv, got {output.name}")
    if output.exists() and not overwrite:
        raise ValueError(f"{output} already exists; pass --overwrite to replace it")


def _process_verdict(args, source, stats) -> str | None:
    """Why the finished run is not what was asked (the output is then discarded), or None.

    Warnings (logged) for what --strict turns into errors: a short read, frames passed through."""
    problems = []
    missing = source.missing_frames(stats.frames_in)
    if missing:
        problems.append(
            f"{args.input} declares {stats.frames_in + missing} frames but only {stats.frames_in} could be decoded "
            "(truncated or corrupt input)"
        )
    if undecodable := stats.faults.get("capture", 0):
        problems.append(f"{undecodable} frames of {args.input} could not be decoded and were skipped ({stats.first_fault.get('capture')})")
    stage_faults = {stage: n for stage, n in stats.faults.items() if stage != "capture"}
    if stage_faults:
        detail = "; ".join(f"{stage} failed on {n} ({stats.first_fault.get(stage, '?')})" for stage, n in stage_faults.items())
        problems.append(f"frames passed through unedited after errors: {detail}")
    if stats.frames_edited == 0 and (stats.frames_with_face or stage_faults):
        found = f"a face was found in {stats.frames_with_face} of {stats.frames_out} frames" if stats.frames_with_face else "every frame failed"
        return f"no frame was edited although {found}: {'; '.join(problems) or 'the edit produced nothing'}"
    if problems and args.strict:
        return "; ".join(problems) + " (--strict)"
    for problem in problems:
        log.warning("%s; the output keeps every decoded frame (--strict makes this an error)", problem)
    if stats.frames_with_face == 0:
        log.warning("no face found in any of the %d frames: %s is the input re-encoded, unedited", stats.frames_out, args.output)
    return None


def cmd_process(args) -> int:
    from live3dpe.stream.sinks import CheckedSink, ProgressSink, open_sink
    from live3dpe.stream.sources import VideoFileSource
    from live3dpe.stream.stats import Stats

    from .stages import pipeline_engine

    _check_video_output(args.input, args.output, args.overwrite)
    control = _control(args)
    source = VideoFileSource(args.input)
    try:
        editor = load_editor(args)
        stats = Stats()
        sink = CheckedSink(
            ProgressSink(open_sink(args.output, fps=source.fps, audio_from=args.input if source.has_audio else None), total=source.frame_count),
            lambda: _process_verdict(args, source, stats),
        )
    except BaseException:
        source.close()
        raise
    pipeline_engine(source, sink, editor, stats=stats, live=False, control=control).run()
    log.info("wrote %s: %d frames, %d edited", args.output, stats.frames_out, stats.frames_edited)
    return 0


def _yaws(text: str) -> list[float]:
    try:
        yaws = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--views must be comma-separated degrees, got {text!r}") from None
    if not yaws or not all(math.isfinite(y) and abs(y) <= MAX_VIEW_YAW_DEG for y in yaws):
        raise ValueError(f"--views must be finite yaw angles within ±{MAX_VIEW_YAW_DEG:g} degrees, got {text!r}")
    return yaws


def _check_edit_args(args) -> list[float]:
    """Everything `edit` can check without the model; returns the view yaws."""
    yaws = _yaws(args.views)
    if not 1 <= args.orbit_frames <= MAX_ORBIT_FRAMES:
        raise ValueError(f"--orbit-frames must be within 1..{MAX_ORBIT_FRAMES}, got {args.orbit_frames}")
    lo, hi = MESH_RESOLUTIONS
    if not lo <= args.mesh_resolution <= hi:
        raise ValueError(f"--mesh-resolution must be within {lo}..{hi}, got {args.mesh_resolution}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder (it is created if missing)")
    return yaws


@contextlib.contextmanager
def _staged_dir(out: Path):
    """A hidden folder inside `out` to write into; its files move into `out` only if the block
    succeeds. On failure nothing is left: neither the staging folder nor an `out` made for it."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".edit.", suffix=".part", dir=out))
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            path.replace(out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # innermost first; only the ones this run made, and only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()


def cmd_edit(args) -> int:
    import cv2
    import numpy as np

    from live3dpe.pose import FacePoseEstimator
    from live3dpe.stream.sources import read_image

    from .compose import paste
    from .portrait import NoFaceError, PortraitService, check_image

    yaws = _check_edit_args(args)
    image = check_image(read_image(args.portrait), f"portrait {args.portrait}")
    control = _control(args).get()
    service = PortraitService(load_editor(args), FacePoseEstimator(max_faces=1, crop_size=512, static_image=True))
    try:
        result = service.edit(image, control.prompt_text, control.prompt_image)
    except NoFaceError:
        raise ValueError(f"no face found in {args.portrait}") from None

    with _staged_dir(args.out) as staging:

        def save(name: str, rgb: np.ndarray) -> None:
            if not cv2.imwrite(str(staging / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
                raise RuntimeError(f"cannot write {args.out / name}")

        obs = result.observation
        save("crop.png", result.crop)
        save("edited.png", result.edited)
        save("edited_in_photo.png", paste(image, result.edited, obs, match_colour=not control.has_prompt, reproduces_input=service.runner.reproduces_input))
        for yaw in yaws:
            save(f"view_yaw{yaw:+g}.png", service.view(result.planes, yaw, 0.0))
        service.orbit_video(result.planes, staging / "orbit.mp4", frames=args.orbit_frames, fps=30.0)
        if args.mesh:
            service.mesh(result.planes, staging / "mesh.ply", args.mesh_resolution)
        names = sorted(p.name for p in staging.iterdir())
    log.info("wrote %s into %s", ", ".join(names), args.out)
    return 0

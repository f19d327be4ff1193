"""`live3dpe serve` (WebRTC browser demo) and `live3dpe ui` (gradio editor)."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import socket

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from live3dpe.model.known_styles import prompt_help_epilog
    from live3dpe.pipeline.commands import add_latency_arg

    serve = subparsers.add_parser(
        "serve",
        help="WebRTC demo: edit your camera live in the browser",
        description="Serve a page that sends the camera over WebRTC and shows the edited stream. "
        "Browsers allow the camera only on https:// or localhost: use --cert/--key to serve other machines.",
        epilog=prompt_help_epilog(),
    )
    _common(serve, port=8080)
    serve.add_argument("--max-peers", type=int, default=2, help="simultaneous browser connections (default 2)")
    serve.add_argument("--prompt", help="text prompt to start with")
    serve.add_argument("--cert", help="TLS certificate (PEM) for HTTPS")
    serve.add_argument("--key", help="TLS private key (PEM) for HTTPS")
    serve.add_argument("--compile", action="store_true", help="torch.compile the model first (a 1.5-2x faster model on CPU, after a one-off compile)")
    add_latency_arg(serve)
    serve.add_argument("--runner", choices=("shared", "per-peer"), default="shared",
                       help="shared (default): one model runner batches the frames of all peers; per-peer: each peer calls the model on its own")
    serve.add_argument("--batch-wait-ms", type=float, default=3.0, metavar="MS",
                       help="how long the shared runner lets a frame wait for others to batch with (0..50, default 3)")
    serve.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local (default): the model runs in this process; ray: on a Ray Serve deployment "
                       "(pip install 'live3dpe[serve]'), one round trip a frame (the stream's smoothing state goes along), "
                       "this process only signals and streams")
    serve.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="--backend ray: the Ray cluster to join ('auto': the one this node belongs to, or HEAD:6379); "
                       "default: start a local Ray instance")
    serve.add_argument("--replicas", type=int, default=1, metavar="N",
                       help="--backend ray: model replicas (one GPU each when the cluster has GPUs; default 1)")
    serve.set_defaults(func=run_serve)

    ui = subparsers.add_parser(
        "ui",
        help="gradio editor: portraits, novel views, orbit video, mesh, customization, webcam",
        description="A local web UI for single-image editing, style customization and a quick webcam try.",
    )
    _common(ui, port=7860)
    ui.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload (default 10 MB)")
    ui.set_defaults(func=run_ui)


def _common(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    parser.add_argument("--checkpoint", default=None, metavar="PATH", help="model checkpoint or preset (default: the bundled model)")
    parser.add_argument("--device", default=None, choices=("cuda", "cpu", "mps"), help="default: cuda when available")


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be within 0..65535, got {port}")


def run_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from live3dpe.model.known_styles import editor_known_styles, prompt_feedback, styles_payload
    from live3dpe.pipeline.commands import load_editor
    from live3dpe.pipeline.stages import build_stages

    from .server import WebRTCServer, ssl_context

    _check_port(args.port)
    ctx = ssl_context(args.cert, args.key)
    if ctx is None and not is_loopback(args.host):
        log.warning("serving on %s without --cert/--key: browsers on other machines will refuse the camera", args.host)
    if not 0 <= args.batch_wait_ms <= 50:
        raise ValueError(f"--batch-wait-ms must be within 0..50, got {args.batch_wait_ms}")
    if args.backend == "ray":
        editor, model = _ray_backend(args)
    else:
        if args.ray_address is not None or args.replicas != 1:
            raise ValueError("--ray-address and --replicas need --backend ray")
        editor = model = load_editor(args)
        if args.runner == "shared":
            from live3dpe.pipeline.batching import BatchingRunner

            model = BatchingRunner(editor, max_batch=min(args.max_peers, 16), max_wait_ms=args.batch_wait_ms)
    initial = {"prompt_text": args.prompt} if args.prompt else None
    try:
        server = WebRTCServer(
            lambda: build_stages(model), max_peers=args.max_peers, initial_control=initial,
            known_styles=styles_payload(editor_known_styles(editor)),
            prompt_feedback=lambda text: prompt_feedback(editor, text), latency=args.latency,
        )  # fmt: skip
        scheme = "https" if ctx else "http"
        print(f"live3dpe serve: open {scheme}://{args.host}:{args.port}/ (Ctrl+C to stop)")
        web.run_app(server.app, host=args.host, port=args.port, ssl_context=ctx, print=None)
    finally:
        if args.backend == "ray":
            model.close()
    return 0


def _ray_backend(args: argparse.Namespace):
    """The model as a Ray Serve deployment batching the frames of all peers, and the front end's
    own copy on the CPU (prompts, known styles)."""
    from live3dpe.pipeline.commands import load_editor

    if args.runner != "shared":
        raise ValueError("--runner per-peer needs --backend local: on Ray Serve the replicas batch all peers' frames")
    try:
        from live3dpe.pipeline.ray_backend import RayRunner
    except ImportError as err:
        raise RuntimeError(f"--backend ray needs Ray Serve: pip install 'live3dpe[serve]' ({err})") from None
    editor = load_editor(argparse.Namespace(**{**vars(args), "device": "cpu", "compile": False}))
    print("live3dpe serve: starting the Ray Serve deployment (a minute or so)", flush=True)
    return editor, RayRunner.start(
        args.checkpoint or "default", editor=editor, address=args.ray_address, replicas=args.replicas, device=args.device,
        max_batch=min(args.max_peers, 16), batch_wait_ms=args.batch_wait_ms, compile=args.compile,
    )  # fmt: skip


def run_ui(args: argparse.Namespace) -> int:
    from live3dpe.pipeline.commands import load_editor

    from .gradio_app import launch
    from .styles import StyleBook

    _check_port(args.port)
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    styles = StyleBook(load_editor(args))
    print(f"live3dpe ui: open http://{args.host}:{args.port}/ (Ctrl+C to stop)", flush=True)
    launch(
        styles,
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        block=True,
    )
    return 0

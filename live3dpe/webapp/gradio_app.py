"""`live3dpe ui`: a local gradio editor.

Tabs: Edit (portrait → aligned crop, edited image, novel views, orbit video, mesh),
Customize (adapt a new style from image pairs, usable at once) and Webcam (a quick live
try through gradio streaming). Gradio is imported only after analytics are switched off,
so start-up makes no network calls. All model work runs in gradio's worker threads with
one job at a time, which is what a single CPU/GPU model can serve.
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from live3dpe.pipeline.portrait import EditResult, PortraitService

from .styles import StyleBook

log = logging.getLogger(__name__)

ORBIT_FRAMES = 36  # default; each frame is one render


def _gradio():
    """Import gradio with analytics and the version check off (no calls home at start-up)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gradio as gr

    return gr


class LiveSession:
    """One browser tab's webcam stream: its own stages (tracking state) and settings."""

    def __init__(self, editor) -> None:
        from live3dpe.pipeline.stages import build_stages
        from live3dpe.stream.control import Control

        self.editor = editor
        self.stages = build_stages(editor)
        self.control = Control()
        self.index = 0

    def process(self, image: np.ndarray, prompt: str | None) -> np.ndarray:
        from fractions import Fraction

        from live3dpe.pipeline.stages import run_once
        from live3dpe.pipeline.work import FaceWork
        from live3dpe.stream.control import clean_prompt
        from live3dpe.stream.frame import Frame

        prompt = clean_prompt(prompt)  # the Textbox's max_length is only checked in the browser
        if prompt != self.control.get().prompt_text:
            self.control.update(prompt_text=prompt)
        self.index += 1
        work = FaceWork(Frame(np.ascontiguousarray(image[..., :3]), self.index, Fraction(1, 10)), self.control.get())
        return run_once(self.stages, work)


class UiHandlers:
    """The functions behind the UI, plain Python so tests can call them without a browser."""

    def __init__(self, styles: StyleBook, workdir: Path) -> None:
        self.styles = styles
        self.workdir = workdir
        self._lock = threading.Lock()  # one model job at a time
        self._face = None  # the face estimator, created on first use (mediapipe start-up is slow)

    def _service(self, style: str) -> PortraitService:
        return PortraitService(self.styles.get(style), estimator=self._estimator())

    def _estimator(self):
        if self._face is None:
            from live3dpe.pose import FacePoseEstimator

            self._face = FacePoseEstimator(max_faces=1, static_image=True)
        return self._face

    def edit(self, image, text, reference, style, yaw, pitch) -> tuple[Any, ...]:
        with self._lock:
            service = self._service(style)
            result = service.edit(image, text, reference)
            view = service.view(result.planes, yaw, pitch)
        return result.crop, result.edited, view, {"style": style, "result": result}

    def view(self, state: dict | None, yaw: float, pitch: float) -> np.ndarray:
        result, style = self._require(state)
        with self._lock:
            return self._service(style).view(result.planes, yaw, pitch)

    def orbit(self, state: dict | None, frames: int = ORBIT_FRAMES) -> str:
        result, style = self._require(state)
        frames = int(frames)
        if not 2 <= frames <= 240:
            raise ValueError(f"orbit frames must be within 2..240, got {frames}")
        path = Path(tempfile.mkdtemp(dir=self.workdir)) / "orbit.mp4"
        with self._lock:
            return str(self._service(style).orbit_video(result.planes, path, frames=frames))

    def mesh(self, state: dict | None) -> str:
        result, style = self._require(state)
        path = Path(tempfile.mkdtemp(dir=self.workdir)) / "head.ply"
        with self._lock:
            return str(self._service(style).mesh(result.planes, path))

    @staticmethod
    def _require(state: dict | None) -> tuple[EditResult, str]:
        if not state or "result" not in state:
            raise ValueError("edit a portrait first")
        return state["result"], state["style"]

    def customize(self, source, synth_style, n_pairs, befores, afters, prompt, reference, name, seconds, progress) -> tuple[str, str]:
        """Adapt a new style and register it; returns (style name, the prompt to use with it)."""
        from live3dpe.pipeline import customize
        from live3dpe.stream.sources import read_image

        base = self.styles.get(self.styles.default)
        name = (name or "").strip() or (synth_style if source == "synthetic" else "my style")
        if name in self.styles.names():
            raise ValueError(f"a style named {name!r} exists already; pick another name")
        progress(0.0, "preparing pairs…")
        with self._lock:
            if source == "synthetic":
                if not synth_style:
                    raise ValueError("pick a synthetic style")
                pairs = customize.synthetic_pairs(base, synth_style, int(n_pairs))
            else:
                befores = [read_image(p) for p in sorted(befores or [], key=lambda p: Path(p).name)]
                afters = [read_image(p) for p in sorted(afters or [], key=lambda p: Path(p).name)]
                pairs = customize.photo_pairs(base, self._estimator(), befores, afters, prompt, reference, name)
            editor = customize.adapt_editor(base, pairs, float(seconds), progress)
        self.styles.add(name, editor)
        return name, pairs.prompt.text

    def prompt_feedback(self, text: str | None) -> str:
        """Markdown for under a prompt box: the base model's nearest known style, a warning when far."""
        from live3dpe.model.known_styles import prompt_feedback

        info = prompt_feedback(self.styles.get(self.styles.default), text)
        if info is None:
            return ""
        return f"⚠️ **{info['message']}**" if info["known"] is False else info["message"]

    def live(self, frame, prompt: str, style: str, session: LiveSession | None):
        if frame is None:
            return None, session
        editor = self.styles.get(style)
        if session is None or session.editor is not editor:
            session = LiveSession(editor)
        with self._lock:
            return session.process(np.asarray(frame), prompt), session


def _synthetic_styles() -> list[str]:
    from live3dpe.pipeline.customize import synthetic_styles

    return synthetic_styles()


def build_app(styles: StyleBook, workdir: Path | None = None):
    """The gradio Blocks app (not launched)."""
    from live3dpe.model.known_styles import editor_known_styles, styles_line

    gr = _gradio()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="live3dpe-ui-"))
    h = UiHandlers(styles, workdir)

    def guarded(fn):
        """Turn our clear ValueErrors (no face, bad image) into messages shown in the UI."""

        @functools.wraps(fn)  # keeps the signature gradio reads (e.g. a gr.Progress parameter)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (ValueError, FileNotFoundError) as err:
                raise gr.Error(str(err)) from None

        return run

    def prompt_help(box) -> None:
        """The known styles under a prompt box (examples fill it in) and the typed prompt's nearest one."""
        if known:
            examples = [[s.example] for s in known]
            gr.Examples(examples, inputs=[box], label="Known styles", example_labels=[s.label for s in known], examples_per_page=len(known))
        match = gr.Markdown()
        box.change(h.prompt_feedback, box, match, trigger_mode="always_last", show_progress="hidden", concurrency_limit=None, api_name=False)  # fmt: skip

    known = editor_known_styles(styles.get(styles.default))
    # the style pickers are shared by several tabs; created here, placed with .render()
    live_style = gr.Dropdown(styles.names(), value=styles.default, label="Style (model)", render=False)
    with gr.Blocks(title="live3dpe", analytics_enabled=False) as app:
        gr.Markdown(f"# live3dpe\nEdit a portrait in 3D from a text or image prompt. The model's {styles_line(known)}.")
        with gr.Tab("Edit"):
            with gr.Row():
                with gr.Column():
                    portrait = gr.Image(label="Portrait", sources=["upload", "webcam"], type="numpy")
                    text = gr.Textbox(label="Text prompt", placeholder="e.g. a bronze statue", max_length=300)
                    prompt_help(text)
                    reference = gr.Image(label="…or a reference image prompt", sources=["upload"], type="numpy")
                    style = gr.Dropdown(styles.names(), value=styles.default, label="Style (model)")
                    go = gr.Button("Edit", variant="primary")
                with gr.Column():
                    crop = gr.Image(label="Detected face (aligned)", interactive=False)
                    edited = gr.Image(label="Edited", interactive=False)
                with gr.Column():
                    yaw = gr.Slider(-45, 45, value=25, step=1, label="yaw (°)")
                    pitch = gr.Slider(-25, 25, value=0, step=1, label="pitch (°)")
                    render_btn = gr.Button("Render view", size="sm")
                    novel = gr.Image(label="Novel view", interactive=False)
                    with gr.Row():
                        orbit_frames = gr.Slider(8, 120, value=ORBIT_FRAMES, step=1, label="orbit frames")
                        orbit_btn = gr.Button("Orbit video")
                        mesh_btn = gr.Button("Mesh (.ply)")
                    orbit = gr.Video(label="Orbit", interactive=False)
                    mesh = gr.File(label="Mesh download", interactive=False)
            state = gr.State()
            go.click(guarded(h.edit), [portrait, text, reference, style, yaw, pitch], [crop, edited, novel, state], api_name="edit")
            for slider in (yaw, pitch):
                slider.release(guarded(h.view), [state, yaw, pitch], novel, api_name=False)
            render_btn.click(guarded(h.view), [state, yaw, pitch], novel, api_name="view")
            orbit_btn.click(guarded(h.orbit), [state, orbit_frames], orbit, api_name="orbit")
            mesh_btn.click(guarded(h.mesh), state, mesh, api_name="mesh")

        with gr.Tab("Customize"):
            gr.Markdown("Teach the editor a new style from a few before/after pairs, then use it right away.")
            with gr.Row():
                with gr.Column():
                    source = gr.Radio(["synthetic", "photos"], value="synthetic", label="Pairs from")
                    synth_style = gr.Dropdown(_synthetic_styles(), label="Synthetic style")
                    n_pairs = gr.Slider(1, 10, value=4, step=1, label="synthetic pairs")
                with gr.Column():
                    befores = gr.File(file_count="multiple", file_types=["image"], type="filepath", label="Before photos")
                    afters = gr.File(file_count="multiple", file_types=["image"], type="filepath", label="After photos (same order)")
                    style_prompt = gr.Textbox(label="Text prompt naming the style", max_length=300)
                    style_ref = gr.Image(label="…or a reference image", sources=["upload"], type="numpy")
                with gr.Column():
                    style_name = gr.Textbox(label="New style name", max_length=60)
                    seconds = gr.Slider(5, 600, value=60, step=5, label="time budget (s)")
                    adapt_btn = gr.Button("Adapt", variant="primary")
                    adapt_status = gr.Markdown()

            def run_customize(*args, progress=gr.Progress()):
                name, phrase = h.customize(*args, progress=progress)
                choices = gr.update(choices=styles.names(), value=name)
                return f"Style **{name}** is ready: pick it on the Edit or Webcam tab.", choices, choices, phrase or gr.update()

            adapt_btn.click(
                guarded(run_customize),
                [source, synth_style, n_pairs, befores, afters, style_prompt, style_ref, style_name, seconds],
                [adapt_status, style, live_style, text],
                api_name="customize",
            )

        with gr.Tab("Webcam"):
            gr.Markdown("A quick live try: frames go through the same pipeline as `live3dpe live`.")
            with gr.Row():
                cam = gr.Image(label="Camera", sources=["webcam"], streaming=True, type="numpy")
                live_out = gr.Image(label="Edited", interactive=False)
            with gr.Row():
                live_prompt = gr.Textbox(label="Text prompt", max_length=300)
                live_style.render()
            prompt_help(live_prompt)
            session = gr.State()
            cam.stream(
                guarded(h.live), [cam, live_prompt, live_style, session], [live_out, session],
                stream_every=0.2, time_limit=300, concurrency_limit=1, api_name="live_frame",
            )
    return app


def launch(
    styles: StyleBook,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    max_upload_mb: float = 10.0,
    block: bool = True,
    workdir: Path | None = None,
):
    """Build and serve the app; returns (app, local URL). `block=False` returns at once."""
    gr = _gradio()
    app = build_app(styles, workdir)
    app.queue(default_concurrency_limit=1, max_size=16)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        max_file_size=f"{max_upload_mb:g}mb",
        ssr_mode=False,
        quiet=True,
        show_error=True,
        theme=theme,
    )
    return app, url

"""Face observation → edited frame: the stages, the compositor, the model runner, the portrait
service and the `live` / `process` / `edit` commands.

Sits between transport (`live3dpe.stream`: frames, engine, sources, sinks) and the model
(`live3dpe.model`); every front end (CLI, WebRTC server, gradio) builds its pipeline here.
"""
from live3dpe.pipeline.compose import Compose, output_size
from live3dpe.pipeline.portrait import EditResult, NoFaceError, PortraitService, check_image
from live3dpe.pipeline.runner import ModelRunner, pipeline_torch_threads
from live3dpe.pipeline.stages import (
    EditStage,
    EncodeStage,
    FaceStage,
    FuseStage,
    RenderStage,
    build_stages,
    pipeline_engine,
    run_once,
)
from live3dpe.pipeline.work import FaceWork

__all__ = [
    "Compose", "EditResult", "EditStage", "EncodeStage", "FaceStage", "FaceWork", "FuseStage", "ModelRunner", "NoFaceError",
    "PortraitService", "RenderStage", "build_stages", "pipeline_engine", "check_image", "output_size", "pipeline_torch_threads", "run_once",
]  # fmt: skip

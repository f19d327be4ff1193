"""Live capture -> edit -> output: frames, the threaded engine, sources, sinks and commands.

Sources and sinks follow aiortc's tiny interface (`recv()` / `send()`); the engine runs each
stage in its own thread with bounded queues (see engine.py).
"""
from live3dpe.stream.control import Control, ControlState, ViewSpec
from live3dpe.stream.engine import Engine, Stage, StopStream, Work
from live3dpe.stream.frame import EndOfStream, Frame
from live3dpe.stream.queues import BlockingQueue, LatestQueue
from live3dpe.stream.stats import Stats

__all__ = [
    "BlockingQueue", "Control", "ControlState", "EndOfStream", "Engine", "Frame", "LatestQueue",
    "Stage", "Stats", "StopStream", "ViewSpec", "Work",
]  # fmt: skip

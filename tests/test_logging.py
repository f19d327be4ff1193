"""The command's stderr carries our messages, not the libraries' chatter; `-v` brings it back."""
from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# what mediapipe 0.10.21 (TFLite, absl) prints to fd 2 when its FaceMesh graph starts
NATIVE_NOISE_SEEN = re.compile(r"Created TensorFlow Lite|absl::InitializeLog|^[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\]", re.M)


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("DISPLAY", None)  # no GL context from mediapipe: the same lines on every machine
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _python(code: str) -> subprocess.CompletedProcess:
    return _run(["-c", textwrap.dedent(code)], timeout=60)


def test_native_noise_is_dropped_from_fd_2_and_the_rest_passes():
    result = _python(
        r"""
        import os, sys, time
        from live3dpe.logs import native_noise_filtered
        with native_noise_filtered():
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
            os.write(2, b"W0000 00:00:1796185005.465141   24073 inference_feedback_manager.cc:114] Feedback manager\n")
            os.write(2, b"I0000 00:00:1796185327.601917    3948 gl_context_egl.cc:85] Successfully initialized EGL.\n")
            os.write(2, b"E0000 00:00:1796185005.5   24073 graph.cc:1] a real error\n")
            print("a python line", file=sys.stderr, flush=True)
        print("after", file=sys.stderr)
        """
    )
    assert result.returncode == 0, result.stderr
    assert not NATIVE_NOISE_SEEN.search(result.stderr)
    assert result.stderr.splitlines() == ["E0000 00:00:1796185005.5   24073 graph.cc:1] a real error", "a python line", "after"]


def test_a_progress_bar_line_shows_while_it_is_drawn():
    """tqdm redraws one line with \r and no line end: the filter must not hold it back."""
    code = r"""
        import os, time
        from live3dpe.logs import native_noise_filtered
        with native_noise_filtered():
            os.write(2, b"\r 50%|#####     | 5/10")
            print("drawn", flush=True)
            time.sleep(3)
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"drawn\n"
        shown, deadline = b"", time.monotonic() + 1.0
        while shown != b"\r 50%|#####     | 5/10" and select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))[0]:
            shown += os.read(proc.stderr.fileno(), 1024)
        assert shown == b"\r 50%|#####     | 5/10", "the partial line was held back"
    finally:
        proc.kill()


def test_library_info_and_warnings_are_quiet_unless_verbose():
    code = """
        import logging, sys, warnings
        from live3dpe.logs import configure_logging
        configure_logging(verbose=sys.argv[1] == "1")
        logging.getLogger("aioice.ice").info("aioice chatter")
        logging.getLogger("aiortc.rtcrtpsender").info("aiortc chatter")
        logging.getLogger("live3dpe.pipeline").info("our message")
        warnings.warn_explicit("protobuf deprecation", UserWarning, "solution_base.py", 1, module="mediapipe.python.solution_base")
        warnings.warn_explicit("our warning", UserWarning, "commands.py", 1, module="live3dpe.pipeline.commands")
    """
    quiet = _run(["-c", textwrap.dedent(code), "0"])
    verbose = _run(["-c", textwrap.dedent(code), "1"])
    assert "our message" in quiet.stderr and "our warning" in quiet.stderr
    assert "chatter" not in quiet.stderr and "protobuf deprecation" not in quiet.stderr
    assert "aioice chatter" in verbose.stderr and "aiortc chatter" in verbose.stderr and "protobuf deprecation" in verbose.stderr


@pytest.mark.slow
def test_a_command_that_starts_mediapipe_prints_no_native_noise(tmp_path):
    """`live` loads the model and its text encoder and starts FaceMesh: by default stderr shows
    only our lines (no native logs, no progress bar of transformers)."""
    args = ["-m", "live3dpe.cli", "live", "--source", "synthetic", "--width", "256", "--height", "192", "--max-frames", "3",
            "--prompt", "golden statue"]  # fmt: skip
    quiet = _run([*args, "--output", str(tmp_path / "quiet.mp4")])
    verbose = _run([args[0], args[1], "-v", *args[2:], "--output", str(tmp_path / "verbose.mp4")])
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert not NATIVE_NOISE_SEEN.search(quiet.stderr), quiet.stderr
    assert all(line.startswith(("INFO live3dpe", "WARNING live3dpe")) for line in quiet.stderr.splitlines()), quiet.stderr
    assert NATIVE_NOISE_SEEN.search(verbose.stderr), "mediapipe printed nothing natively: is this test still needed?"

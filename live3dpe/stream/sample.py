"""The bundled demo clip: the synthetic moving face plus an audio tone, so every command
(including `process`, which keeps audio) can be tried on a fresh machine without a camera."""
from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .frame import EndOfStream
from .synthetic import SyntheticFaceSource
from .videofile import VideoFileSink


def write_tone_wav(path: str | os.PathLike, seconds: float, rate: int = 48000, hz: float = 440.0) -> None:
    """A soft sine tone with a gentle pulse (mono s16 WAV)."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.2 * np.sin(2 * np.pi * hz * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    samples = (wave * 32767).astype(np.int16)
    with av.open(str(path), "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=rate, layout="mono")
        for i in range(0, len(samples), 1024):
            chunk = samples[None, i : i + 1024]
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts, frame.time_base = i, Fraction(1, rate)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))


def write_sample(path: str | os.PathLike, seconds: float = 4.0, width: int = 640, height: int = 480, fps: float = 30.0) -> Path:
    """Write the demo clip (H.264 + AAC) atomically to `path`."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    path = Path(path)
    source = SyntheticFaceSource(width, height, fps, frames=max(1, round(seconds * fps)))
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tone.wav"
        write_tone_wav(wav, seconds)
        with VideoFileSink(path, fps=fps, audio_from=wav) as sink:
            while True:
                try:
                    sink.send(source.recv())
                except EndOfStream:
                    break
    return path

"""live3dpe: real-time 3D-aware portrait editing (3DPE) as a live video filter."""

__version__ = "0.1.0"

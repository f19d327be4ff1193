"""Where the face is, the model camera that sees it, and the aligned crop (see DESIGN.md)."""
from live3dpe.pose.estimator import FaceObservation, FacePoseEstimator, observe

__all__ = ["FaceObservation", "FacePoseEstimator", "observe"]

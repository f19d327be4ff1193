"""Stability over time: One-Euro filters, triplane smoothing and the face track state."""
from live3dpe.tracking.observation import EuroSettings, ObservationFilter
from live3dpe.tracking.one_euro import OneEuroFilter
from live3dpe.tracking.track import FaceTrack, TrackState
from live3dpe.tracking.triplane import PlanesSmoother, TriplaneSmoother

__all__ = ["EuroSettings", "FaceTrack", "ObservationFilter", "OneEuroFilter", "PlanesSmoother", "TrackState", "TriplaneSmoother"]

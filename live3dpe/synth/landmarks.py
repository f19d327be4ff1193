"""FaceMesh landmark groups of the canonical face that the synthetic head paints and animates.

Contours are ordered loops (the subject's right/left). Eyelid pairs map each upper-lid
landmark to the lower-lid landmark below it, so a blink can close the lid onto it.
"""
from __future__ import annotations

from enum import IntEnum

LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
# Brows as closed outlines: lower edge outwards-in, then upper edge back.
RIGHT_BROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
LEFT_BROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
RIGHT_LID_PAIRS = ((246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155))
LEFT_LID_PAIRS = ((466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382))
# Inner-lip landmarks facing each other (upper, lower): the canonical mouth is slightly open.
INNER_LIP_PAIRS = ((191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402), (310, 318), (415, 324))
NOSE_TIP = 4
NOSE_BRIDGE = 6
NOSTRILS = (98, 327)  # the subject's right/left alar base, where the nostril openings sit
MOUTH_CORNERS = (61, 291)
CHIN = 152
FOREHEAD = 10


class Part(IntEnum):
    """What a triangle belongs to; styles and the painter key on it."""

    FACE = 0  # textured by the face UV map
    SKIN = 1  # skull, ears, neck
    HAIR = 2
    MOUTH = 3  # the inside of the mouth, seen when the jaw opens
    CLOTH = 4
    PROP = 5  # style geometry (e.g. a clown nose)

"""Contact sheets: a grid of small labelled tiles, because people look at faces before numbers."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_HEADER = 22  # px of the column-title strip
_SCALE = 0.42


def _fit(text: str, width: int) -> str:
    """`text`, cut short with a dot when it is wider than `width` px."""

    def fits(t: str) -> bool:
        return cv2.getTextSize(t, _FONT, _SCALE, 1)[0][0] <= width - 4

    if fits(text):
        return text
    while len(text) > 1:
        text = text[:-1]
        if fits(text + "."):
            return text + "."
    return text


def _label(tile: np.ndarray, text: str) -> None:
    """White text on a dark band at the bottom of `tile` (in place)."""
    text = _fit(text, tile.shape[1])
    (_, h), _ = cv2.getTextSize(text, _FONT, _SCALE, 1)
    tile[-h - 8 :] = (tile[-h - 8 :] * 0.35).astype(np.uint8)
    cv2.putText(tile, text, (3, tile.shape[0] - 5), _FONT, _SCALE, (255, 255, 255), 1, cv2.LINE_AA)


def contact_sheet(rows: list[tuple[str, dict[str, np.ndarray]]], columns: list[str], tile: int = 160) -> np.ndarray:
    """rows: (row label, {column: uint8 RGB image}) -> one uint8 RGB grid with column titles.

    A column a row lacks stays grey; the row label is written on the row's first tile."""
    if not rows or not columns:
        raise ValueError("a contact sheet needs at least one row and one column")
    sheet = np.full((_HEADER + tile * len(rows), tile * len(columns), 3), 96, np.uint8)
    sheet[:_HEADER] = 255
    for c, name in enumerate(columns):
        cv2.putText(sheet, _fit(name, tile), (c * tile + 3, _HEADER - 7), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    for r, (label, tiles) in enumerate(rows):
        y = _HEADER + r * tile
        for c, name in enumerate(columns):
            if name in tiles:
                img = tiles[name]
                interp = cv2.INTER_AREA if img.shape[0] > tile else cv2.INTER_CUBIC
                sheet[y : y + tile, c * tile : (c + 1) * tile] = cv2.resize(img, (tile, tile), interpolation=interp)
        _label(sheet[y : y + tile, :tile], label)
    return sheet


ENCODINGS = {".png": [cv2.IMWRITE_PNG_COMPRESSION, 9], ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 90]}


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """Write atomically (a half-written image is never left under the final name): .png lossless
    (edited photos, measured again later), .jpg at quality 90 (contact sheets, only looked at: a
    sixth of the bytes, so results committed with the code stay small)."""
    suffix = path.suffix.lower()
    if suffix not in ENCODINGS:
        raise ValueError(f"cannot write {path}: the name must end in {' or '.join(ENCODINGS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part{suffix}")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), ENCODINGS[suffix]):
        raise RuntimeError(f"cannot write {tmp}")
    tmp.replace(path)
    return path

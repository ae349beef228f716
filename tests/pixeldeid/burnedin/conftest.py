"""Fixtures for the burned-in text tests.

OCR never downloads here: ``PIXELDEID_OCR_OFFLINE=1`` for the whole session, and EasyOCR
reads its weights from ``../shared/models/easyocr`` when that folder exists (its tests skip
otherwise). :func:`render_lines` draws known text on a dark frame and returns the truth boxes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
EASYOCR_DIR = SHARED / "models" / "easyocr"


@pytest.fixture(scope="session", autouse=True)
def _ocr_offline():
    """No OCR engine may fetch weights during the tests."""
    saved = {k: os.environ.get(k) for k in ("PIXELDEID_OCR_OFFLINE", "PIXELDEID_EASYOCR_DIR")}
    os.environ["PIXELDEID_OCR_OFFLINE"] = "1"
    if not saved["PIXELDEID_EASYOCR_DIR"] and EASYOCR_DIR.is_dir():
        os.environ["PIXELDEID_EASYOCR_DIR"] = str(EASYOCR_DIR)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def font(size: int):
    """A TrueType font of ``size`` pixels (DejaVu Sans when installed, else Pillow's own)."""
    from PIL import ImageFont

    for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
              "/usr/share/fonts/dejavu/DejaVuSans.ttf"):
        if Path(p).is_file():
            return ImageFont.truetype(p, size)
    return ImageFont.load_default(size=size)


def render_lines(lines: list[tuple[int, int, str]], shape: tuple[int, int] = (160, 480),
                 size: int = 18, fg: tuple[int, int, int] = (230, 230, 230),
                 bg: int = 0) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Draw ``(x, y, text)`` lines on a ``shape`` RGB frame; return it and the ink boxes.

    The boxes are ``(x0, y0, x1, y1)`` with exclusive ends, measured from the drawn ink.
    """
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (shape[1], shape[0]), (bg, bg, bg))
    draw = ImageDraw.Draw(img)
    f = font(size)
    truth = []
    for x, y, text in lines:
        draw.text((x, y), text, fill=fg, font=f)
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=f)
        truth.append((x0, y0, x1, y1))
    return np.asarray(img), truth

"""The burned-in text stage: find text in pixel data, redact it, verify, or refuse the file.

Examples
--------
>>> from pixeldeid.burnedin.stage import BurnedInStage, PixelSettings      # doctest: +SKIP
>>> stage = BurnedInStage(PixelSettings(policy="auto"))                        # doctest: +SKIP
>>> result = stage.process(ds, IdentityValues.from_dataset(ds), "in.dcm")      # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .boxes import TextBox, boxes_to_json

logger = logging.getLogger(__name__)

POLICIES = ("off", "auto", "template", "phi-only", "all-text")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class PixelSettings:
    """Settings of the burned-in text stage.

    Parameters
    ----------
    policy : str
        ``off``, ``auto`` (templates where a signature matches, OCR for the rest, phi-only
        classification), ``template`` (templates and ultrasound regions only), ``phi-only``
        (OCR; keep safe annotations) or ``all-text`` (OCR; remove every text).
    ocr : str
        OCR engine name, ``auto`` or ``none``.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    templates_dir : str, optional
        A folder of user templates (YAML) besides the shipped ones.
    verify : bool
        OCR the redacted frames again and refuse the file when identity is still readable.
    verify_ocr : str, optional
        A second engine for the verification (default: the same engine).
    qc_dir : str, optional
        Write before/after PNG thumbnails with the boxes drawn here.
    """

    policy: str = "auto"
    ocr: str = "auto"
    device: str = "auto"
    templates_dir: str | None = None
    verify: bool = True
    verify_ocr: str | None = None
    qc_dir: str | None = None


@dataclass
class PixelResult:
    """What the stage did to one image (``to_json`` holds no identity text)."""

    boxes: list[TextBox] = field(default_factory=list)
    redacted: bool = False
    method: str = ""
    verified: bool = False
    frames_read: list[int] = field(default_factory=list)
    engine: str | None = None
    templates: list[str] = field(default_factory=list)
    qc: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """JSON-able summary; the text of identity and unknown boxes is left out."""
        return {"boxes": boxes_to_json(self.boxes, with_text=False), "redacted": self.redacted,
                "method": self.method, "verified": self.verified,
                "frames_read": list(self.frames_read), "engine": self.engine,
                "templates": list(self.templates), "qc": list(self.qc)}

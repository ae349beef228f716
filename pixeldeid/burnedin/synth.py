"""Synthetic ultrasound-like cines and frames with burned-in text and exact ground truth.

For tests, benchmarks and the demo only; nothing here runs when de-identifying. The
images imitate what scanners burn in: a top band with the patient's identity (name, MRN,
date of birth, institution, a running date/time clock), a column of acquisition settings
(MI, TIS, probe, Hz, gain, depth) and a clinical label, over a speckled sector (fan) with
an optional colour Doppler blob. Every text item is drawn with its own font, size and
colour; its box (``x1``/``y1`` exclusive) is the ground truth, labelled ``identity`` or
``safe``. The header carries the same identity as the pixels.

Examples
--------
>>> from pixeldeid.burnedin.synth import make_us_cine
>>> us = make_us_cine(n_frames=4, rows=240, columns=320, seed=1)
>>> us.dataset.NumberOfFrames, len(us.identity_boxes) > 0
(4, True)
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from .boxes import TextBox

__all__ = ["SynthUltrasound", "SynthText", "make_us_cine", "make_us_frame", "PHOTOMETRICS"]

US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
PHOTOMETRICS = ("RGB", "YBR_FULL_422", "MONOCHROME2")
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root; synthetic data only

_GIVEN = ["ZEBULON", "OTTILIE", "AMBROSE", "WILHELMINA", "THADDEUS", "PHILIPPA", "BARNABY",
          "CLEMENTINE", "IGNATIUS", "ROSALIND", "LEOPOLD", "HENRIETTA"]
_FAMILY = ["QUIXMORE", "PETTIGREW", "ABERNATHY", "FAIRWEATHER", "HUXTABLE", "MONTGOMERY",
           "WOLSTENHOLME", "BLACKWOOD", "FEATHERSTONE", "LOCKHART", "RAVENSWORTH"]
_INSTITUTIONS = ["ST ELSEWHERE GENERAL HOSPITAL", "MERCY VALLEY MEDICAL CENTER",
                 "NORTHGATE CHILDRENS HOSPITAL", "LAKESIDE REGIONAL CLINIC"]
_SETTINGS = ["MI 1.2", "TIS 0.4", "6C1", "35 Hz", "Gn 50", "12 cm", "DR 60", "2.5 MHz"]
_LABELS = ["LIVER", "RT KIDNEY", "GB LONG", "LT THYROID"]
_FONT_FILES = ["DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
               "DejaVuSerif.ttf", "LiberationSans-Regular.ttf", "LiberationMono-Regular.ttf"]
_FONT_DIRS = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation",
              "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF"]
_COLOURS = [(255, 255, 255), (255, 255, 0), (120, 230, 255), (150, 255, 150), (230, 230, 230)]
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


@dataclass(frozen=True)
class SynthText:
    """One drawn text item: its box (ground truth), text and what it is."""

    box: TextBox
    kind: str          # name, mrn, dob, institution, clock, setting, label


@dataclass
class SynthUltrasound:
    """A synthetic ultrasound dataset with the ground truth of its burned-in text."""

    dataset: Dataset
    texts: list[SynthText]
    identity: dict[str, str]
    sector: tuple[int, int, int, int]    # x0, y0, x1, y1 of the imaging region
    clock_frames: list[int] = field(default_factory=list)   # frames where the clock changes

    @property
    def boxes(self) -> list[TextBox]:
        return [t.box for t in self.texts]

    @property
    def identity_boxes(self) -> list[TextBox]:
        return [t.box for t in self.texts if t.box.label == "identity"]

    @property
    def safe_boxes(self) -> list[TextBox]:
        return [t.box for t in self.texts if t.box.label == "safe"]


@lru_cache(maxsize=64)
def _font(index: int, size: int):
    """A TrueType font (DejaVu / Liberation when installed, else PIL's bundled one)."""
    from PIL import ImageFont

    name = _FONT_FILES[index % len(_FONT_FILES)]
    for d in _FONT_DIRS:
        p = Path(d) / name
        if p.is_file():
            return ImageFont.truetype(str(p), size)
    return ImageFont.load_default(size=size)


def _clock_text(date: str, second: int, style: int) -> str:
    hh, mm, ss = 9 + second // 3600, (14 + second // 60) % 60, (7 + second) % 60
    y, m, d = date[:4], int(date[4:6]), int(date[6:8])
    if style % 2:
        return f"{d}-{_MONTHS[m - 1]}-{y} {hh:02d}:{mm:02d}:{ss:02d}"
    return f"{m:02d}/{d:02d}/{y} {hh:02d}:{mm:02d}:{ss:02d}"


def _dob_text(dob: str, style: int) -> str:
    y, m, d = dob[:4], int(dob[4:6]), int(dob[6:8])
    if style % 2:
        return f"DOB: {d:02d}-{_MONTHS[m - 1]}-{y}"
    return f"DOB: {m:02d}/{d:02d}/{y}"


def _sector_mask(rows: int, cols: int, apex: tuple[float, float], r0: float, r1: float,
                 half_angle: float) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    dy, dx = yy - apex[1], xx - apex[0]
    r = np.hypot(dx, dy)
    ang = np.arctan2(dx, np.maximum(dy, 1e-3))
    return (r >= r0) & (r <= r1) & (np.abs(ang) <= half_angle) & (dy > 0)


def make_us_cine(n_frames: int = 12, rows: int = 480, columns: int = 640, *,
                 photometric: str = "RGB", doppler: bool = True, clock_every: int = 10,
                 seed: int = 0, settings_side: str = "left",
                 patient: dict[str, str] | None = None) -> SynthUltrasound:
    """Build a synthetic ultrasound cine (US Multi-frame Image Storage; one frame: US Image).

    Parameters
    ----------
    n_frames : int
        Number of frames (1 gives a single-frame US Image Storage instance).
    rows, columns : int
        Frame size (at least 200 x 280).
    photometric : str
        ``RGB`` (native), ``YBR_FULL_422`` (JPEG baseline, one fragment per frame) or
        ``MONOCHROME2`` (native 8-bit).
    doppler : bool
        Add a colour Doppler blob in the sector (colour images only).
    clock_every : int
        The burned-in clock advances one second every ``clock_every`` frames.
    seed : int
        Everything (identity, fonts, positions, speckle) follows from it.
    settings_side : str
        ``left`` or ``right``: where the acquisition settings column goes.
    patient : dict, optional
        Identity to use instead of the seed's: ``family``, ``given``, ``mrn``, ``dob``
        (YYYYMMDD), ``study_date`` (YYYYMMDD), ``institution`` (any subset).
    """
    from PIL import Image, ImageDraw

    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric {photometric!r} not one of {PHOTOMETRICS}")
    if rows < 200 or columns < 280:
        raise ValueError(f"frame {rows}x{columns} too small (at least 200 x 280)")
    rng = np.random.default_rng(seed)
    given, family = _GIVEN[rng.integers(len(_GIVEN))], _FAMILY[rng.integers(len(_FAMILY))]
    mrn = f"{rng.integers(0, 10)}{rng.integers(10**7, 10**8)}"
    dob = f"{rng.integers(1935, 2005)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
    study = f"{rng.integers(2015, 2026)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
    inst = _INSTITUTIONS[rng.integers(len(_INSTITUTIONS))]
    if patient:
        family = patient.get("family", family).upper()
        given = patient.get("given", given).upper()
        mrn = patient.get("mrn", mrn)
        dob = patient.get("dob", dob)
        study = patient.get("study_date", study)
        inst = patient.get("institution", inst).upper()
    style = int(rng.integers(0, 4))
    scale = min(rows / 480, columns / 640)
    band = int(round(44 * scale)) + 4

    # -- text layout: (kind, text, label, x, y, font index, size, colour) -------------------
    def size(base: int) -> int:
        return max(10, int(round(base * scale * (0.85 + 0.3 * rng.random()))))

    items: list[tuple[str, str, str, int, int, int, int, tuple[int, int, int]]] = []
    fonts = rng.permutation(len(_FONT_FILES))
    colours = rng.permutation(len(_COLOURS))
    pad = int(6 * scale) + 2
    # top band: name and MRN on the first line, DOB / institution / clock on the second
    s1, s2 = size(16), size(14)
    names = [f"{family}, {given}", f"{given} {family}", f"{family}^{given}"]
    line1 = [("name", names[style % 3]), ("mrn", f"MRN: {mrn}" if style < 2 else f"ID {mrn}")]
    line2 = [("dob", _dob_text(dob, style)), ("institution", inst[:26])]
    x = pad + int(rng.integers(0, 20))
    for k, (kind, text) in enumerate(line1):
        items.append((kind, text, "identity", x, pad, int(fonts[k]), s1,
                      _COLOURS[colours[k % len(colours)]]))
        x += int(_font(int(fonts[k]), s1).getlength(text)) + int(30 * scale) + 10
    x = pad + int(rng.integers(0, 20))
    y2 = pad + s1 + int(6 * scale)
    for k, (kind, text) in enumerate(line2):
        fi = int(fonts[(k + 2) % len(fonts)])
        items.append((kind, text, "identity", x, y2, fi, s2, _COLOURS[colours[(k + 2) % 5]]))
        x += int(_font(fi, s2).getlength(text)) + int(24 * scale) + 10
    clock_font, clock_size = int(fonts[4]), size(15)
    clock_w = int(_font(clock_font, clock_size).getlength(_clock_text(study, 0, style)))
    clock_xy = (max(columns - clock_w - pad - int(rng.integers(0, 20)), columns // 2), pad)
    band = max(band, y2 + s2 + pad)

    # settings column and a clinical label
    top = band + int(20 * scale)
    sfont, ssize = int(fonts[5]), size(13)
    widest = max(int(_font(sfont, ssize).getlength(t)) for t in _SETTINGS)
    sx = pad if settings_side == "left" else columns - widest - pad
    for k, text in enumerate(_SETTINGS):
        items.append(("setting", text, "safe", sx, top + k * int(ssize * 1.6), sfont, ssize,
                      (210, 210, 210)))
    label_text = _LABELS[rng.integers(len(_LABELS))]
    lsize = size(16)
    lx = columns - int(_font(int(fonts[0]), lsize).getlength(label_text)) - pad - widest - 20 \
        if settings_side == "left" else pad + 10
    items.append(("label", label_text, "safe", max(lx, pad), rows - lsize - 3 * pad,
                  int(fonts[0]), lsize, (255, 255, 160)))

    # -- sector geometry ---------------------------------------------------------------
    apex = (columns / 2, band + 6)
    r1 = rows - band - 12 - lsize - 3 * pad
    half = np.deg2rad(34)
    sector = _sector_mask(rows, columns, apex, r1 * 0.06, r1, half)
    ys, xs = np.nonzero(sector)
    sector_box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    colour = photometric != "MONOCHROME2"

    # -- the static overlay: text drawn once, the clock per second ---------------------------
    overlay = Image.new("RGB", (columns, rows))
    draw = ImageDraw.Draw(overlay)
    texts: list[SynthText] = []
    for kind, text, label, x0, y0, fi, sz, col in items:
        draw.text((x0, y0), text, font=_font(fi, sz), fill=col)
        bx = _ink_box(text, (x0, y0), _font(fi, sz), rows, columns)
        texts.append(SynthText(TextBox(*bx, text=text, label=label, source="synth"), kind))
    # a depth scale: tick marks beside the sector (not text)
    for k in range(8):
        yy = int(apex[1] + r1 * k / 8)
        draw.line([(sector_box[2] + 6, yy), (sector_box[2] + 14, yy)], fill=(180, 180, 180))
    overlay_arr = np.asarray(overlay)
    ov_mask = overlay_arr.max(axis=2) > 0

    n_seconds = (n_frames - 1) // max(1, clock_every) + 1
    clocks: list[np.ndarray] = []
    clock_boxes: list[tuple[int, int, int, int]] = []
    for sec in range(n_seconds):
        im = Image.new("RGB", (columns, rows))
        d = ImageDraw.Draw(im)
        text = _clock_text(study, sec, style)
        d.text(clock_xy, text, font=_font(clock_font, clock_size), fill=(255, 255, 255))
        arr = np.asarray(im)
        clocks.append(arr)
        clock_boxes.append(_mask_box(arr.max(axis=2) > 0))
    cb = (min(b[0] for b in clock_boxes), min(b[1] for b in clock_boxes),
          max(b[2] for b in clock_boxes), max(b[3] for b in clock_boxes))
    texts.append(SynthText(TextBox(int(cb[0]), int(cb[1]), int(cb[2]), int(cb[3]),
                                   text=_clock_text(study, 0, style), label="identity",
                                   source="synth"), "clock"))

    # -- frames: speckle moving slowly, Doppler blob pulsing ---------------------------------
    frames = np.zeros((n_frames, rows, columns, 3), np.uint8)
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    depth = np.clip((yy - apex[1]) / max(r1, 1), 0, 1)
    tissue = 0.55 + 0.35 * np.sin(xx / (23 * scale + 1)) * np.cos(yy / (31 * scale + 1))
    base = rng.rayleigh(0.5, (rows, columns)).astype(np.float32)
    blob_c = (apex[0] + 0.1 * r1, apex[1] + 0.55 * r1)
    blob_r = 0.12 * r1
    for f in range(n_frames):
        fresh = rng.rayleigh(0.5, (rows, columns)).astype(np.float32)
        base = 0.6 * base + 0.4 * fresh
        img = np.clip(base * tissue * (1 - 0.5 * depth) * 150, 0, 235)
        img = np.where(sector, img, 0).astype(np.uint8)
        frame = np.repeat(img[..., None], 3, axis=2)
        if doppler and colour:
            rr = np.hypot(xx - blob_c[0], (yy - blob_c[1]) * 1.4)
            pulse = 0.6 + 0.4 * np.sin(2 * np.pi * f / 8)
            blob = (rr < blob_r * pulse) & sector
            red = (xx - blob_c[0]) < 0
            frame[blob & red] = (200, 30, 20)
            frame[blob & ~red] = (20, 60, 210)
        clock = clocks[f // max(1, clock_every)]
        cm = clock.max(axis=2) > 0
        frame[ov_mask] = overlay_arr[ov_mask]
        frame[cm] = clock[cm]
        frames[f] = frame
    clock_frames = [f for f in range(1, n_frames) if f % max(1, clock_every) == 0]

    ds = _dataset(frames, photometric, n_frames, sector_box, rows, columns,
                  name=f"{family}^{given}", mrn=mrn, dob=dob, study=study, inst=inst, rng=rng)
    identity = {"name": f"{family}^{given}", "mrn": mrn, "dob": dob, "study_date": study,
                "institution": inst}
    return SynthUltrasound(ds, texts, identity, sector_box, clock_frames)


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _ink_box(text: str, xy: tuple[int, int], font, rows: int, columns: int
             ) -> tuple[int, int, int, int]:
    """The exact box of the pixels ``text`` inks (x1/y1 exclusive)."""
    from PIL import Image, ImageDraw

    bx = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(xy, text, font=font)
    x0, y0 = max(0, int(bx[0]) - 2), max(0, int(bx[1]) - 2)
    x1, y1 = min(columns, int(bx[2]) + 2), min(rows, int(bx[3]) + 2)
    im = Image.new("L", (x1 - x0, y1 - y0))
    ImageDraw.Draw(im).text((xy[0] - x0, xy[1] - y0), text, font=font, fill=255)
    bx0, by0, bx1, by1 = _mask_box(np.asarray(im) > 0)
    return x0 + bx0, y0 + by0, x0 + bx1, y0 + by1


def make_us_frame(rows: int = 480, columns: int = 640, **kwargs: object) -> SynthUltrasound:
    """A single-frame synthetic ultrasound image (US Image Storage); see :func:`make_us_cine`."""
    return make_us_cine(1, rows, columns, **kwargs)  # type: ignore[arg-type]


def _jpeg_frames(frames: np.ndarray) -> list[bytes]:
    """JPEG baseline, 4:2:2 subsampling, YCbCr (PS3.5 8.2.1: YBR_FULL_422)."""
    from PIL import Image

    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f, "RGB").save(buf, "JPEG", quality=92, subsampling=1)
        out.append(buf.getvalue())
    return out


def _dataset(frames: np.ndarray, photometric: str, n_frames: int,
             sector_box: tuple[int, int, int, int], rows: int, columns: int, *, name: str,
             mrn: str, dob: str, study: str, inst: str, rng: np.random.Generator) -> Dataset:
    multi = n_frames > 1
    ds = Dataset()
    ds.SOPClassUID = US_MULTIFRAME_STORAGE if multi else US_IMAGE_STORAGE
    seed_txt = f"{name}{mrn}{study}{photometric}{n_frames}{rows}{columns}"
    ds.SOPInstanceUID = generate_uid(_UID_ROOT, [seed_txt, "sop"])
    ds.StudyInstanceUID = generate_uid(_UID_ROOT, [name, mrn, study, "study"])
    ds.SeriesInstanceUID = generate_uid(_UID_ROOT, [seed_txt, "series"])
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDateTime = study
    ds.AcquisitionDateTime = study + "091407"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "091407"
    ds.AccessionNumber = f"A{rng.integers(10**6, 10**7)}"
    ds.Modality = "US"
    ds.Manufacturer = "Synthetic Sonics"
    ds.ManufacturerModelName = "SynthScan 3000"
    ds.InstitutionName = inst
    ds.ReferringPhysicianName = "WELBY^MARCUS"
    ds.StationName = "US-ROOM-2"
    ds.PatientName = name
    ds.PatientID = mrn
    ds.PatientBirthDate = dob
    ds.PatientSex = "F" if rng.random() < 0.5 else "M"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.SequenceOfUltrasoundRegions = DicomSequence([_region(sector_box)])
    if multi:
        ds.NumberOfFrames = n_frames
        ds.FrameTime = 28.57
        ds.FrameIncrementPointer = 0x00181063
        ds.CineRate = 35
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = _UID_ROOT + "1"
    if photometric == "MONOCHROME2":
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = np.ascontiguousarray(frames.max(axis=-1)).tobytes()  # text of any colour stays bright
    elif photometric == "RGB":
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
    else:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PlanarConfiguration = 0
        ds.LossyImageCompression = "01"
        meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate(_jpeg_frames(frames))
        ds["PixelData"].VR = "OB"
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    return ds


def _region(box: tuple[int, int, int, int]) -> Dataset:
    """A 2D tissue region of SequenceOfUltrasoundRegions (PS3.3 C.8.5.5)."""
    r = Dataset()
    r.RegionSpatialFormat = 1
    r.RegionDataType = 1
    r.RegionFlags = 0
    r.RegionLocationMinX0, r.RegionLocationMinY0 = box[0], box[1]
    r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box[2] - 1, box[3] - 1
    r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = 3
    r.PhysicalDeltaX = r.PhysicalDeltaY = 0.03
    return r


def write(us: SynthUltrasound, path: str | Path) -> Path:
    """Write the dataset of ``us`` to ``path`` (Part 10)."""
    p = Path(path)
    us.dataset.save_as(p, enforce_file_format=True)
    return p

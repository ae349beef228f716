"""OCR engines behind one small registry: ``rapidocr`` (CPU default), ``easyocr`` (GPU), ``tesseract``.

Every engine takes a uint8 ``HxW`` (grey) or ``HxWx3`` (RGB) frame and returns
:class:`~pixeldeid.burnedin.boxes.TextBox` es (axis-aligned, clipped to the frame,
``frame=None``) with the text read and a confidence in [0, 1]. The engines are imported
lazily; a missing one raises :class:`~pixeldeid.errors.MissingDependencyError` naming the
extra to install.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import math
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingDependencyError, ProfileError
from .boxes import TextBox

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _threads() -> int:
    """CPU threads per OCR session: ``PIXELDEID_OCR_THREADS``, else every CPU.

    ``pixeldeid run`` sets ``PIXELDEID_OCR_THREADS`` to CPUs / workers, so N workers
    share the cores instead of each starting a thread per core. The results do not depend
    on the thread count (checked with 1 to 8 threads; see
    ``tests/pixeldeid/pipeline/test_pixels.py``), only the speed.
    """
    try:
        n = int(os.environ.get("PIXELDEID_OCR_THREADS", "0"))
    except ValueError:
        n = 0
    return n if n >= 1 else _cpus()


def _session_options(base, threads: int):
    """onnxruntime settings of every OCR session: a fixed thread count, no busy-waiting.

    One intra-op pool of ``threads`` threads, operators run one after the other, idle
    threads sleep instead of spinning (spinning threads of several worker processes would
    take the cores from each other) and deterministic kernels where the provider has a
    choice (CUDA).
    """
    import onnxruntime as ort

    base.intra_op_num_threads = threads
    base.inter_op_num_threads = 1
    base.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    base.add_session_config_entry("session.intra_op.allow_spinning", "0")
    base.add_session_config_entry("session.inter_op.allow_spinning", "0")
    base.use_deterministic_compute = True
    return base


class _RapidSessionSettings:
    """While rapidocr builds its sessions, apply :func:`_session_options` to each one."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        from rapidocr_onnxruntime.utils import infer_engine

        self._cls = infer_engine.OrtInferSession
        self._orig = self._cls.__dict__["_init_sess_opts"]
        orig, threads = self._orig.__func__, self.threads
        self._cls._init_sess_opts = staticmethod(
            lambda config: _session_options(orig(config), threads))

    def __exit__(self, *exc: object) -> None:
        self._cls._init_sess_opts = self._orig


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Check a frame and return it as contiguous ``HxWx3`` uint8 RGB."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InputError(f"OCR needs uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"OCR needs an HxW or HxWx3 frame, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def quad_to_box(points: Sequence[Sequence[float]], rows: int, cols: int, text: str,
                confidence: float, scale: float = 1.0) -> TextBox | None:
    """Axis-aligned box around a quadrilateral (floor/ceil, clipped); None when empty."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) / scale
    x0 = max(0, math.floor(pts[:, 0].min()))
    y0 = max(0, math.floor(pts[:, 1].min()))
    x1 = min(cols, math.ceil(pts[:, 0].max()))
    y1 = min(rows, math.ceil(pts[:, 1].max()))
    if x1 <= x0 or y1 <= y0:
        return None
    conf = float(min(1.0, max(0.0, confidence)))
    return TextBox(x0, y0, x1, y1, str(text).strip(), conf, None, "unknown", "ocr")


class OcrEngine:
    """Base class of the OCR engines.

    Parameters
    ----------
    device : str
        ``'auto'``, ``'cpu'`` or ``'cuda'``; :attr:`device` is the one actually used.
    """

    name: str = ""
    extra: str = "ocr"
    module: str = ""
    device: str = "cpu"

    def __init__(self, device: str = "auto") -> None:
        if device not in DEVICES:
            raise ProfileError(f"unknown device {device!r} (known: {', '.join(DEVICES)})")
        if not self.is_available():
            raise MissingDependencyError(f"OCR engine {self.name!r}", self.extra, self.module)
        self._lock = threading.Lock()  # the engines are not thread-safe

    @classmethod
    def is_available(cls) -> bool:
        """True when the engine's Python package (and programs) are installed."""
        return _has_module(cls.module)

    def read(self, image: np.ndarray) -> list[TextBox]:
        """Text boxes found in one frame (``frame=None``)."""
        rgb = as_rgb(image)
        if not rgb.any():  # a black frame holds no text
            return []
        with self._lock:
            return self._read(rgb)

    def read_batch(self, images: Sequence[np.ndarray]) -> list[list[TextBox]]:
        """:meth:`read` of each frame (engines may batch them on the GPU)."""
        return [self.read(im) for im in images]

    def _read(self, rgb: np.ndarray) -> list[TextBox]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


# -- rapidocr ------------------------------------------------------------------------------
class RapidOcrEngine(OcrEngine):
    """PaddleOCR PP-OCRv4 models run by onnxruntime (``rapidocr-onnxruntime``).

    Small frames are upscaled before detection (burned-in ultrasound text is often only
    8-12 pixels high); the detector thresholds are lowered for thin light text on dark
    backgrounds. onnxruntime's CUDA provider is used when ``onnxruntime-gpu`` provides it
    and the device allows.
    """

    name = "rapidocr"
    extra = "ocr"
    module = "rapidocr_onnxruntime"
    #: frames whose longer side is below this are upscaled (integer factor) before reading
    min_long_side = 800
    #: detector resizing: 'max' keeps frames up to 1500 px as they are (only larger ones shrink)
    det_limit = 1024
    det_limit_type = "max"
    #: detector pixel threshold, box score threshold, recogniser score threshold (0: every
    #: detected region is returned, read or not, so that unreadable text is still redacted)
    det_thresh = 0.2
    box_thresh = 0.4
    text_score = 0.0

    def __init__(self, device: str = "auto") -> None:
        super().__init__(device)
        try:
            import onnxruntime
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # installed but broken (e.g. no onnxruntime)
            raise MissingDependencyError(f"OCR engine {self.name!r}", self.extra,
                                         exc.name or self.module) from exc

        cuda_ok = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        use_cuda = cuda_ok and device in ("auto", "cuda")
        if device == "cuda" and not cuda_ok:
            log.warning("rapidocr: onnxruntime has no CUDA provider (install onnxruntime-gpu); "
                        "using the CPU")
        self.device = "cuda" if use_cuda else "cpu"
        # quiet rapidocr's own logger (it would print provider advice on every start)
        logging.getLogger("OrtInferSession").setLevel(logging.ERROR)
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.threads = _threads()
        with _RapidSessionSettings(self.threads):
            self._ocr = RapidOCR(
                det_use_cuda=use_cuda, cls_use_cuda=use_cuda, rec_use_cuda=use_cuda,
                det_limit_side_len=self.det_limit, det_limit_type=self.det_limit_type,
                det_thresh=self.det_thresh, det_box_thresh=self.box_thresh,
                text_score=self.text_score,
            )

    def _read(self, rgb: np.ndarray) -> list[TextBox]:
        import cv2

        rows, cols = rgb.shape[:2]
        scale = 1
        if max(rows, cols) < self.min_long_side:
            scale = min(4, math.ceil(self.min_long_side / max(rows, cols)))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        if scale > 1:
            bgr = cv2.resize(bgr, (cols * scale, rows * scale), interpolation=cv2.INTER_CUBIC)
        result, _ = self._ocr(bgr, use_cls=False, box_thresh=self.box_thresh,
                              unclip_ratio=1.6, text_score=self.text_score)
        out = []
        for points, text, score in result or []:
            box = quad_to_box(points, rows, cols, text, float(score), scale)
            if box is not None:  # kept even when unread: classified 'unknown', redacted
                out.append(box)
        return out


# -- easyocr -------------------------------------------------------------------------------
def easyocr_model_dir() -> str | None:
    """EasyOCR weights folder: ``PIXELDEID_EASYOCR_DIR``, else EasyOCR's own default."""
    env = os.environ.get("PIXELDEID_EASYOCR_DIR")
    if env:
        return env
    base = os.environ.get("EASYOCR_MODULE_PATH")
    return str(Path(base) / "model") if base else None


def offline() -> bool:
    """True when ``PIXELDEID_OCR_OFFLINE=1``: no engine may download weights."""
    return os.environ.get("PIXELDEID_OCR_OFFLINE", "") not in ("", "0", "false", "no")


class EasyOcrEngine(OcrEngine):
    """EasyOCR (CRAFT detector + English recogniser, torch); batched on CUDA."""

    name = "easyocr"
    extra = "easyocr"
    module = "easyocr"
    #: detector and reader settings tuned for small overlay text (a higher link threshold
    #: keeps stacked 12 px lines apart, measured on the deid-data / pydicom-data captures)
    read_kw = {"mag_ratio": 1.5, "text_threshold": 0.6, "low_text": 0.4, "link_threshold": 0.6,
               "min_size": 4, "add_margin": 0.05, "width_ths": 0.7, "batch_size": 16}

    def __init__(self, device: str = "auto") -> None:
        super().__init__(device)
        try:
            import easyocr
            import torch
        except (ImportError, RuntimeError, OSError) as exc:
            # installed but broken: torchvision missing, or built for another torch
            raise MissingDependencyError(f"OCR engine {self.name!r}", self.extra,
                                         getattr(exc, "name", None) or self.module) from exc

        cuda_ok = torch.cuda.is_available()
        if device == "cuda" and not cuda_ok:
            log.warning("easyocr: torch sees no CUDA device; using the CPU")
        self.device = "cuda" if cuda_ok and device in ("auto", "cuda") else "cpu"
        kw: dict[str, object] = {"gpu": self.device == "cuda", "verbose": False}
        model_dir = easyocr_model_dir()
        if model_dir:
            kw["model_storage_directory"] = model_dir
        if offline():
            kw["download_enabled"] = False
        try:
            self._reader = easyocr.Reader(["en"], **kw)
        except FileNotFoundError:  # weights missing with downloads disabled
            where = model_dir or "EasyOCR's model folder"
            raise MissingDependencyError(
                f"OCR engine 'easyocr' (weights craft_mlt_25k.pth and english_g2.pth in {where}, "
                "downloads disabled by PIXELDEID_OCR_OFFLINE)", self.extra) from None

    def _boxes(self, result: list, rows: int, cols: int) -> list[TextBox]:
        out = []
        for points, text, score in result:
            box = quad_to_box(points, rows, cols, text, float(score))
            if box is not None and box.text:
                out.append(box)
        return out

    def _read(self, rgb: np.ndarray) -> list[TextBox]:
        result = self._reader.readtext(rgb, **self.read_kw)
        return self._boxes(result, *rgb.shape[:2])

    def read_batch(self, images: Sequence[np.ndarray]) -> list[list[TextBox]]:
        if self.device != "cuda" or len(images) < 2:
            return super().read_batch(images)
        rgbs = [as_rgb(im) for im in images]
        out: list[list[TextBox]] = [[] for _ in rgbs]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(rgbs):
            if im.any():
                by_shape.setdefault(im.shape, []).append(i)
        with self._lock:
            for shape, idx in by_shape.items():
                if len(idx) == 1:
                    out[idx[0]] = self._read(rgbs[idx[0]])
                    continue
                results = self._reader.readtext_batched([rgbs[i] for i in idx], **self.read_kw)
                for i, res in zip(idx, results, strict=True):
                    out[i] = self._boxes(res, shape[0], shape[1])
        return out


# -- tesseract -----------------------------------------------------------------------------
class TesseractEngine(OcrEngine):
    """Tesseract through ``pytesseract`` (needs the ``tesseract`` program, Debian tesseract-ocr).

    Frames are read as grey, inverted when the background is dark, and upscaled so that
    small overlay text reaches the ~20 px height Tesseract reads best; words are grouped
    into lines.
    """

    name = "tesseract"
    extra = "tesseract"
    module = "pytesseract"
    scale = 2

    @classmethod
    def is_available(cls) -> bool:
        return _has_module(cls.module) and shutil.which("tesseract") is not None

    def __init__(self, device: str = "auto") -> None:
        super().__init__(device)
        self.device = "cpu"

    def _read(self, rgb: np.ndarray) -> list[TextBox]:
        import cv2
        import pytesseract

        rows, cols = rgb.shape[:2]
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (cols * self.scale, rows * self.scale),
                          interpolation=cv2.INTER_CUBIC)
        if np.median(grey) < 128:  # light text on a dark background: Tesseract wants dark on light
            grey = 255 - grey
        data = pytesseract.image_to_data(grey, config="--psm 11 --oem 1",
                                         output_type=pytesseract.Output.DICT)
        lines: dict[tuple[int, int, int], list[int]] = {}
        for i, word in enumerate(data["text"]):
            word, conf = str(word).strip(), float(data["conf"][i])
            # drop what Tesseract "reads" in speckle: no letter or digit, or a shaky 1-2 chars
            alnum = sum(c.isalnum() for c in word)
            if alnum and (conf >= 30 or alnum >= 3):
                key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
                lines.setdefault(key, []).append(i)
        out = []
        for idx in lines.values():
            idx.sort(key=lambda i: data["left"][i])
            # split a line where words are far apart (separate annotations on one row)
            groups: list[list[int]] = [[idx[0]]]
            for i in idx[1:]:
                prev = groups[-1][-1]
                gap = data["left"][i] - (data["left"][prev] + data["width"][prev])
                if gap > 2.5 * max(data["height"][prev], data["height"][i]):
                    groups.append([i])
                else:
                    groups[-1].append(i)
            for g in groups:
                x0 = min(data["left"][i] for i in g) / self.scale
                y0 = min(data["top"][i] for i in g) / self.scale
                x1 = max(data["left"][i] + data["width"][i] for i in g) / self.scale
                y1 = max(data["top"][i] + data["height"][i] for i in g) / self.scale
                text = " ".join(str(data["text"][i]).strip() for i in g)
                conf = min(float(data["conf"][i]) for i in g) / 100.0
                box = quad_to_box([(x0, y0), (x1, y1)], rows, cols, text, conf)
                if box is not None:
                    out.append(box)
        return out


# -- registry ------------------------------------------------------------------------------
ENGINES: dict[str, type[OcrEngine]] = {
    "rapidocr": RapidOcrEngine,
    "easyocr": EasyOcrEngine,
    "tesseract": TesseractEngine,
}

_CACHE: dict[tuple[str, str], OcrEngine] = {}
_CACHE_LOCK = threading.Lock()


def available_engines() -> list[str]:
    """Names of the engines whose dependencies are installed."""
    return [n for n, cls in ENGINES.items() if cls.is_available()]


def _cuda_available() -> bool:
    if not _has_module("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_engine_name(name: str = "auto", device: str = "auto") -> str:
    """The engine ``name`` stands for ('auto': easyocr on CUDA, else rapidocr, else tesseract)."""
    if name != "auto":
        if name not in ENGINES:
            close = difflib.get_close_matches(name, list(ENGINES), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ProfileError(f"unknown OCR engine {name!r}{hint} "
                               f"(known: auto, {', '.join(ENGINES)})")
        return name
    candidates = _auto_candidates(device)
    if not candidates:
        raise MissingDependencyError("OCR (no engine installed)", "ocr", "rapidocr_onnxruntime")
    return candidates[0]


def _auto_candidates(device: str) -> list[str]:
    """Installed engines in the order 'auto' tries them."""
    order = ["rapidocr", "tesseract"]
    if device != "cpu" and EasyOcrEngine.is_available() and _cuda_available():
        order.insert(0, "easyocr")
    return [n for n in order if ENGINES[n].is_available()]


def get_engine(name: str = "auto", device: str = "auto") -> OcrEngine:
    """A ready engine, cached per ``(name, device)``.

    Raises
    ------
    ProfileError
        Unknown engine name or device (with "did you mean").
    MissingDependencyError
        The engine's package (or weights, or program) is not installed.
    """
    if device not in DEVICES:
        raise ProfileError(f"unknown device {device!r} (known: {', '.join(DEVICES)})")
    with _CACHE_LOCK:
        if (name, device) in _CACHE:
            return _CACHE[(name, device)]
        first = resolve_engine_name(name, device)
        # 'auto' moves on to the next engine when one is installed but unusable
        candidates = _auto_candidates(device) if name == "auto" else [first]
        for i, real in enumerate(candidates):
            try:
                if (real, device) not in _CACHE:  # 'auto' and its engine share one instance
                    _CACHE[(real, device)] = ENGINES[real](device)
            except MissingDependencyError as exc:
                if i == len(candidates) - 1:
                    raise
                log.warning("OCR engine %s unusable (%s); trying %s", real, exc,
                            candidates[i + 1])
                continue
            log.debug("OCR engine %s (asked %s, device %s)", real, name, device)
            _CACHE[(name, device)] = _CACHE[(real, device)]
            return _CACHE[(name, device)]
        raise AssertionError("unreachable")  # pragma: no cover

"""One contract for every installed OCR engine (rapidocr, easyocr, tesseract), and the registry.

The engines read a rendered overlay with known lines (light text on black, as on ultrasound
screens); an engine that is not installed is skipped, EasyOCR also when its weights are not
in ../shared/models/easyocr (nothing is downloaded).
"""

from __future__ import annotations

import difflib

import numpy as np
import pytest

from pixeldeid.burnedin import ocr
from pixeldeid.burnedin.boxes import TextBox
from pixeldeid.burnedin.classify import fold
from pixeldeid.errors import InputError, MissingDependencyError, ProfileError

from .conftest import EASYOCR_DIR, render_lines

LINES = [
    (12, 10, "SMITH, JOHN"),
    (250, 10, "08/29/1951"),
    (12, 60, "MRN 004512877"),
    (250, 60, "Depth 4.0 cm"),
    (12, 110, "MI 0.6 TIS 0.4"),
]


def _engine_params():
    params = []
    for name in ocr.ENGINES:
        marks = []
        if name == "easyocr":
            marks.append(pytest.mark.gpu)
            if not EASYOCR_DIR.is_dir():
                marks.append(pytest.mark.skip(reason="../shared/models/easyocr absent"))
        if not ocr.ENGINES[name].is_available():
            marks.append(pytest.mark.skip(reason=f"OCR engine {name} not installed"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(scope="module", params=_engine_params())
def engine(request) -> ocr.OcrEngine:
    return ocr.get_engine(request.param, "auto")


@pytest.fixture(scope="module")
def overlay() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    return render_lines(LINES, shape=(150, 420), size=18)


@pytest.fixture(scope="module")
def overlay_boxes(engine, overlay) -> list[TextBox]:
    return engine.read(overlay[0])


def _overlaps(box: TextBox, truth: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = truth
    return box.x0 < x1 and x0 < box.x1 and box.y0 < y1 and y0 < box.y1


def _found(boxes: list[TextBox], truth: tuple[int, int, int, int], text: str) -> bool:
    """Some boxes overlapping the truth box read ``text`` (OCR confusions and spaces aside)."""
    hits = sorted((b for b in boxes if _overlaps(b, truth)), key=lambda b: b.x0)
    read = fold("".join(b.text for b in hits))
    want = fold(text)
    return bool(hits) and (want in read
                           or difflib.SequenceMatcher(None, want, read).ratio() >= 0.75)


def test_every_line_is_found(engine, overlay, overlay_boxes):
    _, truth = overlay
    missed = [text for (_, _, text), t in zip(LINES, truth, strict=True)
              if not _found(overlay_boxes, t, text)]
    assert not missed, f"{engine.name} missed {missed}: read {[b.text for b in overlay_boxes]}"


def test_boxes_are_well_formed(engine, overlay, overlay_boxes):
    rows, cols = overlay[0].shape[:2]
    assert overlay_boxes
    for b in overlay_boxes:
        assert 0 <= b.x0 < b.x1 <= cols and 0 <= b.y0 < b.y1 <= rows
        assert 0.0 <= b.confidence <= 1.0
        assert b.frame is None and b.source == "ocr" and b.label == "unknown"
        assert isinstance(b.text, str)  # may be "" where text was seen but not read
    assert engine.device in ("cpu", "cuda")


@pytest.mark.parametrize("shape", [(64, 64), (120, 300, 3)])
def test_blank_frames_have_no_text(engine, shape):
    assert engine.read(np.zeros(shape, np.uint8)) == []
    assert engine.read(np.full(shape, 90, np.uint8)) == []


def test_grey_input(engine, overlay):
    grey = np.asarray(overlay[0][:, :, 1])  # HxW
    boxes = engine.read(grey)
    truth = overlay[1]
    found = sum(_found(boxes, t, text) for (_, _, text), t in zip(LINES, truth, strict=True))
    assert found == len(LINES)
    # HxWx1 is the same frame as HxW for every engine
    assert np.array_equal(ocr.as_rgb(grey[:, :, None]), ocr.as_rgb(grey))


def test_read_batch_equals_read(engine, overlay, overlay_boxes):
    img = overlay[0]
    small, _ = render_lines([(8, 8, "TIB 1.2"), (8, 40, "7-OCT-2016")], shape=(80, 200))
    frames = [img, small, np.zeros_like(small)]
    batch = engine.read_batch(frames)
    assert len(batch) == len(frames)
    singles = [overlay_boxes, engine.read(small), []]
    for got, single in zip(batch, singles, strict=True):
        assert [b.text for b in got] == [b.text for b in single]
        for a, b in zip(got, single, strict=True):  # batched GPU runs may differ by a pixel
            assert max(abs(a.x0 - b.x0), abs(a.y0 - b.y0), abs(a.x1 - b.x1),
                       abs(a.y1 - b.y1)) <= 2
    assert batch[2] == []


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.float32), np.zeros((4, 10, 10), np.uint8),
                                 np.zeros((10, 10, 4), np.uint8)])
def test_rejects_bad_frames(bad):
    with pytest.raises(InputError):
        ocr.as_rgb(bad)


# -- registry ------------------------------------------------------------------------------
def test_unknown_engine_suggests():
    with pytest.raises(ProfileError, match="did you mean 'rapidocr'"):
        ocr.get_engine("rapidoc")
    with pytest.raises(ProfileError, match="unknown device"):
        ocr.get_engine("auto", "gpu")


def test_missing_engine_names_the_extra(monkeypatch):
    monkeypatch.setattr(ocr.TesseractEngine, "is_available", classmethod(lambda cls: False))
    monkeypatch.setattr(ocr, "_CACHE", {})
    with pytest.raises(MissingDependencyError, match=r"pixeldeid\[tesseract\]"):
        ocr.get_engine("tesseract", "cpu")
    assert "tesseract" not in ocr.available_engines()


def test_auto_picks_rapidocr_without_cuda(monkeypatch):
    monkeypatch.setattr(ocr, "_cuda_available", lambda: False)
    if ocr.RapidOcrEngine.is_available():
        assert ocr.resolve_engine_name("auto") == "rapidocr"
    monkeypatch.setattr(ocr.RapidOcrEngine, "is_available", classmethod(lambda cls: False))
    if ocr.TesseractEngine.is_available():
        assert ocr.resolve_engine_name("auto") == "tesseract"
    monkeypatch.setattr(ocr.TesseractEngine, "is_available", classmethod(lambda cls: False))
    with pytest.raises(MissingDependencyError, match=r"pixeldeid\[ocr\]"):
        ocr.resolve_engine_name("auto")


def test_auto_prefers_easyocr_on_cuda(monkeypatch):
    monkeypatch.setattr(ocr, "_cuda_available", lambda: True)
    monkeypatch.setattr(ocr.EasyOcrEngine, "is_available", classmethod(lambda cls: True))
    assert ocr.resolve_engine_name("auto", "auto") == "easyocr"
    assert ocr.resolve_engine_name("auto", "cpu") != "easyocr"


@pytest.mark.skipif(not ocr.RapidOcrEngine.is_available(), reason="rapidocr not installed")
def test_engines_are_cached():
    assert ocr.get_engine("rapidocr", "cpu") is ocr.get_engine("rapidocr", "cpu")
    assert ocr.get_engine("rapidocr", "cpu").device == "cpu"
    if ocr.resolve_engine_name("auto", "cpu") == "rapidocr":
        assert ocr.get_engine("auto", "cpu") is ocr.get_engine("rapidocr", "cpu")


def test_easyocr_weights_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("PIXELDEID_EASYOCR_DIR", str(tmp_path))
    assert ocr.easyocr_model_dir() == str(tmp_path)
    monkeypatch.delenv("PIXELDEID_EASYOCR_DIR")
    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path))
    assert ocr.easyocr_model_dir() == str(tmp_path / "model")
    monkeypatch.setenv("PIXELDEID_OCR_OFFLINE", "1")
    assert ocr.offline()


@pytest.mark.skipif(not ocr.EasyOcrEngine.is_available(), reason="easyocr not installed")
def test_easyocr_without_weights_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("PIXELDEID_EASYOCR_DIR", str(tmp_path))  # empty folder
    monkeypatch.setenv("PIXELDEID_OCR_OFFLINE", "1")
    monkeypatch.setattr(ocr, "_CACHE", {})
    with pytest.raises(MissingDependencyError, match="craft_mlt_25k.pth"):
        ocr.get_engine("easyocr", "cpu")
    assert not list(tmp_path.iterdir())  # nothing was downloaded


@pytest.mark.skipif(not ocr.RapidOcrEngine.is_available(), reason="rapidocr not installed")
def test_rapidocr_reads_tiny_text_at_the_frame_edge():
    """The 640x480 ALOKA capture (pydicom-data): its 11 px date and clock touch the top edge
    and are read only because small frames are upscaled before detection."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_color_lut

    from pixeldeid.burnedin.classify import IdentityValues, Vocabulary, classify_boxes

    path = get_testdata_file("gdcm-US-ALOKA-16.dcm", download=False)
    if not path:
        pytest.skip("pydicom-data not installed")
    ds = dcmread(path)
    rgb = (apply_color_lut(ds.pixel_array, ds) >> 8).astype(np.uint8)  # 16-bit palette
    boxes = classify_boxes(ocr.get_engine("rapidocr", "cpu").read(rgb),
                           IdentityValues.from_dataset(ds), Vocabulary.load("US"))
    top = [b for b in boxes if b.y0 < 12 and b.x0 > 500]  # date (line 1) and clock (line 2)
    assert {fold(b.text) for b in top if b.label == "identity"} >= {fold("24-MAY-02")}
    clock = [b for b in boxes if 8 <= b.y0 < 20 and b.x0 > 500 and b.label == "identity"]
    assert any(fold("11:24:20") in fold(b.text) for b in clock)


def test_broken_install_is_a_missing_dependency(monkeypatch):
    """An engine whose package is present but cannot be imported names its extra."""
    import builtins

    real_import = builtins.__import__

    def no_easyocr(name, *args, **kwargs):
        if name == "easyocr":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(ocr.EasyOcrEngine, "is_available", classmethod(lambda cls: True))
    monkeypatch.setattr(builtins, "__import__", no_easyocr)
    with pytest.raises(MissingDependencyError, match=r"pixeldeid\[easyocr\]"):
        ocr.EasyOcrEngine("cpu")


@pytest.mark.skipif(not ocr.RapidOcrEngine.is_available(), reason="rapidocr not installed")
def test_auto_moves_on_from_an_unusable_engine(monkeypatch):
    class Broken(ocr.OcrEngine):
        name, extra, module = "easyocr", "easyocr", "easyocr"

        @classmethod
        def is_available(cls):
            return True

        def __init__(self, device="auto"):
            raise MissingDependencyError("OCR engine 'easyocr'", "easyocr")

    monkeypatch.setattr(ocr, "_cuda_available", lambda: True)
    monkeypatch.setattr(ocr, "EasyOcrEngine", Broken)
    monkeypatch.setitem(ocr.ENGINES, "easyocr", Broken)
    monkeypatch.setattr(ocr, "_CACHE", {})
    assert ocr.resolve_engine_name("auto", "cuda") == "easyocr"
    assert ocr.get_engine("auto", "cuda").name == "rapidocr"
    with pytest.raises(MissingDependencyError):
        ocr.get_engine("easyocr", "cuda")  # named explicitly: no fallback

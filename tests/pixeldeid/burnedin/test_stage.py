"""The burned-in text stage on synthetic ultrasound with exact ground truth (rapidocr)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from pixeldeid.burnedin import frames
from pixeldeid.burnedin.frames import PixelFrames
from pixeldeid.burnedin.synth import make_us_cine, make_us_frame
from pixeldeid.errors import DeidError

pytest.importorskip("rapidocr_onnxruntime")

from pixeldeid.burnedin.classify import IdentityValues  # noqa: E402
from pixeldeid.burnedin.stage import BurnedInStage, PixelSettings, at_risk  # noqa: E402


def stage(policy: str = "phi-only", **kw) -> BurnedInStage:
    kw.setdefault("ocr", "rapidocr")
    return BurnedInStage(PixelSettings(policy=policy, device="cpu", **kw))


def run(us, policy: str = "phi-only", **kw):
    ds = copy.deepcopy(us.dataset)
    result = stage(policy, **kw).process(ds, IdentityValues.from_dataset(ds), "synthetic.dcm")
    return ds, result


def is_black(frames: np.ndarray, box) -> bool:
    return int(frames[:, box.y0:box.y1, box.x0:box.x1].max()) <= 8


def ink(frames: np.ndarray, box) -> int:
    return int((frames[:, box.y0:box.y1, box.x0:box.x1].max(axis=-1) > 100).sum())


@pytest.fixture(scope="module")
def cine():
    return make_us_cine(n_frames=16, rows=480, columns=640, clock_every=5, seed=7)


@pytest.fixture(scope="module")
def phi_only(cine):
    return run(cine, "phi-only")


def test_phi_only_removes_every_identity_box_in_every_frame(cine, phi_only):
    ds, result = phi_only
    after = PixelFrames(ds).display()
    missed = [t.kind for t in cine.texts if t.box.label == "identity"
              and not is_black(after, t.box)]
    assert missed == []                       # recall of identity boxes: 100 %
    assert result.redacted and result.verified and result.method == "native"
    assert ds.BurnedInAnnotation == "NO"
    assert result.frames_read[0] == 0 and len(result.frames_read) < 16


def test_phi_only_keeps_the_safe_annotations(cine, phi_only):
    ds, _ = phi_only
    before = cine.dataset.pixel_array
    after = PixelFrames(ds).display()
    for t in cine.texts:
        if t.box.label == "safe":
            assert ink(after, t.box) == ink(before, t.box) > 0, t.box.text
    # the image itself is untouched: the sector pixels did not change
    x0, y0, x1, y1 = cine.sector
    assert np.array_equal(after[:, y0 + 40:y1 - 20, x0 + 60:x1 - 60],
                          before[:, y0 + 40:y1 - 20, x0 + 60:x1 - 60])


def test_result_json_holds_no_identity(cine, phi_only):
    _, result = phi_only
    text = json.dumps(result.to_json())
    for value in cine.identity.values():
        for word in value.replace("^", " ").split():
            assert word not in text
    assert any(b["label"] == "safe" and b["text"] for b in result.to_json()["boxes"])


def test_all_text_on_jpeg_baseline_removes_safe_text_too():
    us = make_us_frame(rows=480, columns=640, photometric="YBR_FULL_422", seed=8)
    ds, result = run(us, "all-text")
    after = PixelFrames(ds).display()
    assert result.method == "dct" and result.verified
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    for t in us.texts:
        assert ink(after, t.box) == 0, t.kind


def test_template_policy_keeps_only_the_ultrasound_region(cine):
    ds, result = run(cine, "template")
    after = PixelFrames(ds).display()
    x0, y0, x1, y1 = cine.sector
    outside = np.ones(after.shape[1:3], bool)
    outside[y0:y1, x0:x1] = False
    assert after[:, outside].max() == 0
    assert result.templates == ["ultrasound-regions"] and result.verified
    assert all(b.source == "us-regions" for b in result.boxes)


def test_us_without_ocr_or_template_is_refused(cine):
    ds = copy.deepcopy(cine.dataset)
    with pytest.raises(DeidError, match="no OCR engine .* no matching template"):
        stage("auto", ocr="none").process(ds, IdentityValues.from_dataset(ds), "x.dcm")
    assert ds.PixelData == cine.dataset.PixelData


def test_image_not_at_risk_without_ocr_is_left_unchecked():
    us = make_us_frame(rows=240, columns=320, photometric="MONOCHROME2", seed=4)
    ds = copy.deepcopy(us.dataset)
    ds.Modality = "CT"
    del ds.BurnedInAnnotation
    assert at_risk(ds) is None and at_risk(us.dataset) == "modality US"
    result = stage("auto", ocr="none").process(ds, IdentityValues.from_dataset(ds))
    assert result.method == "unchecked" and not result.verified
    assert ds.PixelData == us.dataset.PixelData and "BurnedInAnnotation" not in ds


def test_identity_on_a_ct_like_slice_is_found_cheaply():
    us = make_us_frame(rows=480, columns=640, photometric="MONOCHROME2", seed=12)
    ds = copy.deepcopy(us.dataset)
    ds.Modality = "CT"
    del ds.BurnedInAnnotation
    result = stage("auto").process(ds, IdentityValues.from_dataset(ds))
    after = PixelFrames(ds).display()
    assert result.frames_read == [0] and result.verified
    for kind in ("name", "mrn"):
        box = next(t.box for t in us.texts if t.kind == kind)
        assert is_black(after, box), kind


def test_a_redaction_that_did_not_land_is_quarantined(cine, monkeypatch):
    """The written pixels are checked: a redaction that changed nothing fails closed."""
    import pixeldeid.burnedin.stage as stage_mod
    from pixeldeid.burnedin.redact import RedactReport

    def no_op(ds, boxes, device="cpu"):
        return RedactReport("native", "", "", 1, len(boxes))

    monkeypatch.setattr(stage_mod, "redact_dataset", no_op)
    one = make_us_frame(rows=480, columns=640, seed=7)
    ds = copy.deepcopy(one.dataset)
    with pytest.raises(DeidError, match="not black"):
        stage("phi-only").process(ds, IdentityValues.from_dataset(ds), "x.dcm")
    assert "BurnedInAnnotation" in ds and ds.BurnedInAnnotation == "YES"


def test_usage_errors_name_the_bad_value():
    from pixeldeid.errors import ProfileError

    with pytest.raises(ProfileError, match="did you mean 'all-text'"):
        stage("all_text")
    with pytest.raises(ProfileError, match="unknown OCR engine"):
        stage("auto", ocr="rapid")
    with pytest.raises(ProfileError, match="device"):
        BurnedInStage(PixelSettings(device="gpu"))


def test_ct_slice_without_text_keeps_every_pixel(tmp_path):
    """Anatomy is not text: dark lungs read as a lone "O" must not be blacked out."""
    import pydicom

    from pixeldeid._synth import make_ct_series

    make_ct_series(tmp_path, 1)
    ds = pydicom.dcmread(next(tmp_path.rglob("*.dcm")))
    original = ds.PixelData
    result = stage("auto").process(ds, IdentityValues.from_dataset(ds))
    assert result.method == "none" and not result.redacted and result.verified
    assert ds.PixelData == original and result.frames_read == [0]


def test_qc_thumbnails_show_the_boxes_and_carry_no_name(tmp_path):
    from PIL import Image

    from pixeldeid.burnedin.boxes import TextBox
    from pixeldeid.burnedin.qc import write_thumbnails

    before = np.full((600, 800, 3), 90, np.uint8)
    after = before.copy()
    after[100:140, 200:400] = 0
    boxes = [TextBox(200, 100, 400, 140, "DOE JOHN", label="identity"),
             TextBox(10, 10, 60, 30, "MI 1.2", label="safe")]
    paths = write_thumbnails(before, after, boxes, tmp_path / "qc", "0123abcd")
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["0123abcd_before.png", "0123abcd_after.png"]
    thumb = np.asarray(Image.open(paths[1]).convert("RGB"))
    assert max(thumb.shape[:2]) == 512
    colours = {tuple(c) for c in thumb.reshape(-1, 3)}
    assert (255, 40, 40) in colours and (40, 220, 40) in colours   # identity red, safe green


def test_text_appearing_mid_cine_is_read_in_its_change_frame_and_removed_everywhere():
    """A name burned in only in frames 9-12 is neither in the first nor the last frame
    (both read whole): the overlay change makes frame 9 a change frame, its crop is read,
    and every frame is redacted."""
    from PIL import Image, ImageDraw

    from pixeldeid.burnedin.synth import _font

    us = make_us_cine(n_frames=14, rows=480, columns=640, clock_every=100, seed=17)
    ds = copy.deepcopy(us.dataset)
    frames = ds.pixel_array.copy()
    family, given = str(ds.PatientName).split("^")
    text = f"{given} {family}"
    x0, y0 = 400, 300
    for f in range(9, 13):
        im = Image.fromarray(frames[f])
        ImageDraw.Draw(im).text((x0, y0), text, font=_font(0, 18), fill=(255, 255, 255))
        frames[f] = np.asarray(im)
    ds.PixelData = frames.tobytes()
    ink_mask = (frames[12].max(axis=-1) == 255) & (frames[0].max(axis=-1) < 255)
    ys, xs = np.nonzero(ink_mask[280:340, 380:640])
    box = (380 + int(xs.min()), 280 + int(ys.min()), 380 + int(xs.max()) + 1,
           280 + int(ys.max()) + 1)
    result = stage("phi-only").process(ds, IdentityValues.from_dataset(ds), "x.dcm")
    assert 9 in result.frames_read and result.verified
    after = PixelFrames(ds).display()
    assert int(after[:, box[1]:box[3], box[0]:box[2]].max()) <= 8


def _ct_with_text(value: int, *, signed: bool, windows: tuple, intercept: int = 0,
                  frames: int = 1):
    """A 256 x 256 CT slice (``frames`` > 1: a multi-frame image of such slices) with a
    name burned in at stored ``value``, and its ink mask."""
    from PIL import Image, ImageDraw, ImageFont
    from pydicom.dataset import Dataset

    rng = np.random.default_rng(0)
    base = (-1000, -900) if signed else (0, 200)
    a = rng.integers(*base, (frames, 256, 256)).astype(np.int16 if signed else np.uint16)
    img = Image.new("L", (256, 256), 0)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 16)
    except OSError:
        font = ImageFont.load_default(size=16)
    ImageDraw.Draw(img).text((12, 12), "KOWALSKI ANNA", fill=255, font=font)
    mask = np.array(img) > 0
    a[:, mask] = value
    ds = Dataset()
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientName, ds.PatientID = "KOWALSKI^ANNA", "ZK4471823"
    ds.Rows = ds.Columns = 256
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, (16 if signed else 12), (15 if signed else 11)
    ds.PixelRepresentation = int(signed)
    ds.RescaleIntercept, ds.RescaleSlope = intercept, 1
    ds.WindowCenter = [str(c) for c, _ in windows]
    ds.WindowWidth = [str(w) for _, w in windows]
    ds.PixelData = a.tobytes()
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds, mask


def test_text_only_a_second_window_shows_is_found():
    """Name at -400 HU: black under the first window (soft tissue 40/400), plain under the
    file's second (lung -600/1500); only the first window was read, the text released."""
    ds, mask = _ct_with_text(-400, signed=True, windows=((40, 400), (-600, 1500)))
    result = stage("auto").process(ds, IdentityValues.from_dataset(ds))
    assert result.redacted
    after = ds.pixel_array
    assert int((after[mask] == -400).sum()) < 0.05 * mask.sum()


def test_text_only_a_second_window_shows_is_found_in_a_multi_frame_image():
    """The same name on every slice of an 8-frame CT: the first window of a multi-frame
    image was the only one read, and the text released."""
    ds, mask = _ct_with_text(-400, signed=True, windows=((40, 400), (-600, 1500)), frames=8)
    result = stage("auto").process(ds, IdentityValues.from_dataset(ds))
    assert result.redacted and result.verified
    after = ds.pixel_array
    assert after.shape[0] == 8
    for f in range(8):
        assert int((after[f][mask] == -400).sum()) < 0.05 * mask.sum(), f


def test_a_redaction_black_under_a_lung_window_is_not_quarantined():
    """Unsigned CT, intercept -1024, lung window first: the lowest storable value shows as
    grey 55, and the black-box check (48) quarantined every correct redaction."""
    ds, mask = _ct_with_text(3000, signed=False, windows=((-600, 1500),), intercept=-1024)
    result = stage("auto").process(ds, IdentityValues.from_dataset(ds))
    assert result.redacted and result.verified
    assert int((ds.pixel_array[mask] == 3000).sum()) == 0


def _fg_windows(ds, windows) -> None:
    """Move the windows of ``ds`` into an enhanced image's shared Frame VOI LUT group."""
    from pydicom.dataset import Dataset

    voi, group = Dataset(), Dataset()
    voi.WindowCenter = [str(c) for c, _ in windows]
    voi.WindowWidth = [str(w) for _, w in windows]
    group.FrameVOILUTSequence = [voi]
    del ds.WindowCenter, ds.WindowWidth
    ds.SharedFunctionalGroupsSequence = [group]


def test_windows_of_an_enhanced_image_and_a_voi_lut_sequence_are_read():
    """An Enhanced CT keeps its windows in the Frame VOI LUT functional group, another
    image only a VOI LUT Sequence: neither was read (min..max left the name two grey
    levels above its background) and the name its own window shows was released."""
    from pydicom.dataset import Dataset

    wins = ((500, 2000), (40, 80))
    ds, mask = _ct_with_text(60, signed=True, windows=wins, frames=2)
    arr = ds.pixel_array
    arr[:, mask] = 60
    arr[:, ~mask] = 20
    arr[:, :8, :8], arr[:, -8:, -8:] = -1000, 3000  # air and metal: a wide min..max
    ds.PixelData = arr.astype(np.int16).tobytes()
    _fg_windows(ds, wins)
    result = stage("auto").process(ds, IdentityValues.from_dataset(ds))
    assert result.redacted and int((ds.pixel_array[:, mask] == 60).sum()) < 0.05 * 2 * mask.sum()

    ds, _ = _ct_with_text(60, signed=True, windows=wins, frames=2)
    ds.PixelData = arr.astype(np.int16).tobytes()
    del ds.WindowCenter, ds.WindowWidth
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.LUTData = [int(v) for v in np.clip((np.arange(256) - 20) * 6, 0, 255)]
    ds.VOILUTSequence = [lut]
    assert frames.windows(ds) == [("lut", 0)]
    result = stage("auto").process(ds, IdentityValues.from_dataset(ds))
    assert result.redacted and int((ds.pixel_array[:, mask] == 60).sum()) < 0.05 * 2 * mask.sum()


def test_an_image_with_too_many_windows_is_not_read_in_part():
    """Each further window is read (about 0.5 s a frame): 100 presets cost minutes. More
    than MAX_WINDOWS: quarantined, not read under some of them."""
    many = tuple((40 + 10 * k, 400) for k in range(frames.MAX_WINDOWS + 1))
    ds, _ = _ct_with_text(-400, signed=True, windows=many)
    with pytest.raises(DeidError, match="windows"):
        stage("auto").process(ds, IdentityValues.from_dataset(ds))

"""The synthetic ultrasound generator: ground truth boxes, header identity, encodings."""

from __future__ import annotations

import numpy as np
import pytest

from pixeldeid.burnedin.synth import make_us_cine, make_us_frame, write


@pytest.fixture(scope="module")
def cine():
    return make_us_cine(n_frames=12, rows=300, columns=420, clock_every=4, seed=11)


def _ink(frames: np.ndarray, box) -> np.ndarray:
    return frames[:, box.y0:box.y1, box.x0:box.x1].max(axis=-1) > 0


def test_every_text_box_holds_ink_and_nothing_else_outside_the_sector(cine):
    frames = cine.dataset.pixel_array
    assert frames.shape == (12, 300, 420, 3)
    kinds = {t.kind for t in cine.texts}
    assert {"name", "mrn", "dob", "institution", "clock", "setting", "label"} <= kinds
    for t in cine.texts:
        assert _ink(frames[:1], t.box).any(), t.kind
        # the box is tight: ink touches its first and last rows and columns
        ink = _ink(frames, t.box).any(axis=0)
        assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any(), t.kind
    # outside the text boxes, the sector and the depth ticks the frame is black
    mask = np.ones(frames.shape[1:3], bool)
    for t in cine.texts:
        mask[t.box.y0:t.box.y1, t.box.x0:t.box.x1] = False
    x0, y0, x1, y1 = cine.sector
    mask[y0:y1, x0:x1] = False
    mask[:, x1 + 6:x1 + 15] = False   # the depth ticks
    assert frames[:, mask].max() == 0


def test_labels_and_header_identity_match_the_pixels(cine):
    ds = cine.dataset
    ident = {t.kind: t.box.text for t in cine.texts}
    family, given = str(ds.PatientName).split("^")
    assert family in ident["name"] and given in ident["name"]
    assert str(ds.PatientID) in ident["mrn"]
    dob = str(ds.PatientBirthDate)
    assert dob[:4] in ident["dob"]
    assert ident["institution"] in str(ds.InstitutionName)
    assert str(ds.StudyDate)[:4] in ident["clock"]
    assert all(t.box.label == "identity" for t in cine.texts
               if t.kind in ("name", "mrn", "dob", "institution", "clock"))
    assert all(t.box.label == "safe" for t in cine.texts if t.kind in ("setting", "label"))
    assert ds.Modality == "US" and ds.BurnedInAnnotation == "YES"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1" and int(ds.NumberOfFrames) == 12
    region = ds.SequenceOfUltrasoundRegions[0]
    assert (region.RegionLocationMinX0, region.RegionLocationMinY0) == cine.sector[:2]


def test_clock_ticks_only_at_the_announced_frames(cine):
    frames = cine.dataset.pixel_array
    clock = next(t.box for t in cine.texts if t.kind == "clock")
    area = frames[:, clock.y0:clock.y1, clock.x0:clock.x1].astype(int)
    changed = [f for f in range(1, 12) if (area[f] != area[f - 1]).any()]
    assert changed == cine.clock_frames == [4, 8]
    others = [t.box for t in cine.texts if t.kind != "clock"]
    for b in others:  # the rest of the overlay never changes
        part = frames[:, b.y0:b.y1, b.x0:b.x1]
        assert (part == part[:1]).all()


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL_422", "MONOCHROME2"])
def test_photometrics_round_trip_through_a_file(tmp_path, photometric):
    import pydicom

    us = make_us_frame(rows=240, columns=320, photometric=photometric, seed=3)
    p = write(us, tmp_path / "us.dcm")
    ds = pydicom.dcmread(p)
    assert ds.PhotometricInterpretation == photometric
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1" and "NumberOfFrames" not in ds
    arr = ds.pixel_array
    assert arr.shape[:2] == (240, 320)
    name = next(t.box for t in us.texts if t.kind == "name")
    grey = arr if arr.ndim == 2 else arr.max(axis=-1)
    assert grey[name.y0:name.y1, name.x0:name.x1].max() > 150   # text survives the codec
    if photometric == "YBR_FULL_422":
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"


def test_same_seed_same_image_other_seed_other_patient():
    a = make_us_frame(rows=200, columns=280, seed=5)
    b = make_us_frame(rows=200, columns=280, seed=5)
    c = make_us_frame(rows=200, columns=280, seed=6)
    assert a.dataset.PixelData == b.dataset.PixelData
    assert (str(a.dataset.PatientID), str(a.dataset.PatientName)) != \
        (str(c.dataset.PatientID), str(c.dataset.PatientName))

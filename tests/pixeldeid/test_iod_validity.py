"""Outputs stay valid DICOM and their references resolve, in places a red-team run found:
a UID kept in a safe private element, attributes the Basic Profile removes although the IOD
requires them, and Date/Time pairs of more than one value."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from pixeldeid._synth import ct_slice_dataset, make_ct_series, write_dataset
from pixeldeid.dates import offset_for
from tests.pixeldeid.conftest import dciodvfy_errors


def _outputs(out: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in out.glob("*.dcm")]


def test_a_uid_in_a_safe_private_element_is_replaced_like_its_target(tmp_path, run):
    """NQHeader Analyzed Series UID (Table E.3.10-1) was kept byte for byte under
    retain-safe-private: it held the original series UID, published, and pointed at no
    output series. A version UID in the same table names software and stays."""
    src = tmp_path / "in"
    src.mkdir()
    ct = ct_slice_dataset(0, 1, seed=8)
    write_dataset(ct, src / "ct.dcm")
    der = ct_slice_dataset(0, 1, seed=8)
    der.SeriesInstanceUID = pydicom.uid.generate_uid()
    der.SOPInstanceUID = der.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    der.add_new(0x00990010, "LO", "NQHeader")
    der.add_new(0x00991001, "UI", "1.2.3.4")  # Version
    der.add_new(0x00991002, "UI", str(ct.SeriesInstanceUID))  # Analyzed Series UID
    write_dataset(der, src / "derived.dcm")
    status, out = run(src, "--profile", "tcia-like")
    assert status == 0
    outs = _outputs(out)
    (d,) = [o for o in outs if (0x0099, 0x1002) in o]
    assert d[0x00991002].value != str(ct.SeriesInstanceUID)
    assert d[0x00991002].value in {str(o.SeriesInstanceUID) for o in outs}
    assert d[0x00991001].value == "1.2.3.4"


def test_presentation_creation_date_required_by_the_iod_stays(tmp_path, run):
    """Table E.1-1 gives Presentation Creation Date and Time a plain X, but they are Type 1
    in every presentation state: removing them left an invalid object (dciodvfy errors)."""
    src = tmp_path / "in"
    cts = [pydicom.dcmread(p) for p in make_ct_series(src / "ct", 1, seed=1)]
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=cts, series_instance_uid=hd.UID(), series_number=80,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="M",
        manufacturer_model_name="m", software_versions="1", device_serial_number="1",
        content_label="LBL", graphic_layers=[hd.pr.GraphicLayer(layer_name="L", order=1)],
        voi_lut_transformations=[hd.pr.SoftcopyVOILUTTransformation(window_center=40.0,
                                                                     window_width=400.0)])
    gsps.Laterality = ""
    gsps.save_as(src / "gsps.dcm")
    status, out = run(src)
    assert status == 0
    (pr,) = [p for p in out.glob("*.dcm") if pydicom.dcmread(p).Modality == "PR"]
    o = pydicom.dcmread(pr)
    assert o.PresentationCreationDate and o.PresentationCreationDate != gsps.PresentationCreationDate
    assert o.PresentationCreationTime
    assert dciodvfy_errors(pr) == dciodvfy_errors(src / "gsps.dcm")


@pytest.mark.parametrize("crossing", [False, True])
def test_each_value_of_a_multi_valued_date_time_pair_is_one_timestamp(tmp_path, run, key_file,
                                                                     crossing):
    """Date/Time of Last Calibration (VM 1-n) were shifted apart, the date by days and the
    time by seconds without the carry: a timestamp pushed past midnight lost a day."""
    ds = ct_slice_dataset(0, 1, seed=3)
    off = offset_for(key_file.read_bytes().strip(), str(ds.PatientID))
    t1 = (86400 - off.seconds + 600) % 86400 if crossing else 3600
    t0 = (t1 - 7200) % 86400

    def fmt(s: int) -> str:
        return f"{s // 3600:02d}{s % 3600 // 60:02d}{s % 60:02d}"

    ds.DateOfLastCalibration = ["20230310", "20230311"]
    ds.TimeOfLastCalibration = [fmt(t0), fmt(t1)]
    src = tmp_path / "in"
    src.mkdir()
    write_dataset(ds, src / "a.dcm")
    status, out = run(src, "--profile", "tcia-like")
    assert status == 0
    (o,) = _outputs(out)

    def stamp(d: str, t: str) -> dt.datetime:
        return dt.datetime.strptime(d + t, "%Y%m%d%H%M%S")

    for i in range(2):
        moved = (stamp(o.DateOfLastCalibration[i], o.TimeOfLastCalibration[i])
                 - stamp(ds.DateOfLastCalibration[i], ds.TimeOfLastCalibration[i]))
        assert moved == off.delta

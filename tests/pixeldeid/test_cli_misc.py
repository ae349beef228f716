"""Small CLI and engine behaviours: empty sources, cleaned SR text, profiles listing."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from pixeldeid.api import DeidConfig, Deidentifier
from pixeldeid.cli import main


def test_empty_source_folder_is_a_usage_error(tmp_path: Path, key_file: Path, capsys):
    (tmp_path / "in").mkdir()
    rc = main(["dicom", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
               "--key-file", str(key_file), "--no-progress"])
    assert rc == 2
    assert "no input files found" in capsys.readouterr().err


def test_sr_text_cleaned_to_nothing_keeps_a_value():
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.99.7"
    ds.PatientID = "QX77"
    ds.PatientName = "Ravenhurst^Odile"
    item = Dataset()
    item.ValueType = "TEXT"
    item.RelationshipType = "CONTAINS"
    item.TextValue = "Ravenhurst 12/03/1961"
    ds.ContentSequence = Sequence([item])
    deid = Deidentifier(DeidConfig(options=("clean-structured-content",),
                                   key=b"0123456789abcdef-key"))
    deid.deidentify_dataset(ds)
    text = ds.ContentSequence[0].TextValue
    assert text == "REMOVED"


def test_profiles_command_lists_options(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "retain-longitudinal-modified-dates" in out and "tcia-like" in out

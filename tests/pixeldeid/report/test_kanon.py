"""k-anonymity numbers checked against a small table worked out by hand."""

from __future__ import annotations

import pytest

from pixeldeid.report.kanon import ABSENT, k_anonymity, patient_records

ROWS = [  # (patient, header values of one file)
    ("P1", {"PatientAge": "054Y", "PatientSex": "F"}),
    ("P1", {"PatientAge": "055Y", "PatientSex": "F"}),   # second study a year later
    ("P2", {"PatientAge": "054Y", "PatientSex": "F"}),
    ("P3", {"PatientAge": "054Y", "PatientSex": "F"}),
    ("P4", {"PatientAge": "054Y", "PatientSex": "F", "PatientWeight": "70"}),
    ("P5", {"PatientAge": "062Y", "PatientSex": "M"}),
    ("P6", {"PatientAge": "062Y", "PatientSex": "M"}),
    ("P7", {"PatientSex": "M"}),
]


def test_records_merge_the_files_of_a_patient():
    rec = patient_records(ROWS)
    assert rec["P1"]["PatientAge"] == "054Y/055Y" and rec["P1"]["PatientSex"] == "F"
    assert rec["P7"]["PatientAge"] == "" and len(rec) == 7


def test_classes_by_hand():
    ka = k_anonymity(patient_records(ROWS), k=3)
    assert ka.attributes == ["PatientAge", "PatientSex", "PatientWeight"]
    # by hand: {P2,P3} (054Y,F,-), {P5,P6} (062Y,M,-), {P1}, {P4}, {P7}
    sizes = {c.values: c.patients for c in ka.classes}
    assert sizes == {("054Y", "F", ABSENT): ["P2", "P3"], ("062Y", "M", ABSENT): ["P5", "P6"],
                     ("054Y/055Y", "F", ABSENT): ["P1"], ("054Y", "F", "70"): ["P4"],
                     (ABSENT, "M", ABSENT): ["P7"]}
    assert [c.size for c in ka.classes] == [2, 2, 1, 1, 1]
    assert ka.patients == 7 and ka.min_class == 1
    assert len(ka.small_classes) == 5 and ka.patients_at_risk == 7


def test_fewer_attributes_larger_classes():
    ka = k_anonymity(patient_records(ROWS), ["PatientSex"], k=3)
    assert [(c.values, c.size) for c in ka.classes] == [(("F",), 4), (("M",), 3)]
    assert ka.min_class == 3 and ka.small_classes == [] and ka.patients_at_risk == 0
    with pytest.raises(ValueError):
        k_anonymity({}, k=0)
    assert k_anonymity({}, k=5).min_class == 0

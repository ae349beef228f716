"""k-anonymity over the retained indirect identifiers of the patients of a release.

Each patient is one record: for every attribute, the sorted distinct values found in their
outputs joined by ``/`` (a patient imaged at 54Y and 55Y reads ``054Y/055Y``). Patients with
the same record form an equivalence class; a class smaller than ``k`` singles its patients
out and is flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: Retained indirect identifiers (PS3.15 Retain Patient Characteristics and friends).
QUASI_IDENTIFIERS = ("PatientAge", "PatientSex", "PatientWeight", "PatientSize", "EthnicGroup",
                     "PatientSpeciesDescription", "PatientBreedDescription", "PatientSexNeutered",
                     "SmokingStatus", "PregnancyStatus")
ABSENT = "(absent)"


@dataclass
class EquivalenceClass:
    """Patients sharing one combination of values."""

    values: tuple[str, ...]
    patients: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.patients)


@dataclass
class KAnonymity:
    """Equivalence classes of a release (largest first) and the ``k`` they are judged by."""

    attributes: list[str]
    classes: list[EquivalenceClass]
    k: int = 5

    @property
    def patients(self) -> int:
        return sum(c.size for c in self.classes)

    @property
    def min_class(self) -> int:
        """The k the release achieves (smallest class size; 0 without patients)."""
        return min((c.size for c in self.classes), default=0)

    @property
    def small_classes(self) -> list[EquivalenceClass]:
        return [c for c in self.classes if c.size < self.k]

    @property
    def patients_at_risk(self) -> int:
        """Patients in classes smaller than ``k``."""
        return sum(c.size for c in self.small_classes)


def patient_records(rows: Iterable[tuple[str, Mapping[str, object]]],
                    attributes: Sequence[str] = QUASI_IDENTIFIERS) -> dict[str, dict[str, str]]:
    """Merge per-file ``(patient, {attribute: value})`` rows into one record per patient."""
    seen: dict[str, dict[str, set[str]]] = {}
    for patient, values in rows:
        rec = seen.setdefault(str(patient), {a: set() for a in attributes})
        for a in attributes:
            v = values.get(a)
            v = "" if v is None else str(v).strip()
            if v:
                rec[a].add(v)
    return {p: {a: "/".join(sorted(vs)) for a, vs in rec.items()} for p, rec in seen.items()}


def k_anonymity(records: Mapping[str, Mapping[str, str]], attributes: Sequence[str] | None = None,
                *, k: int = 5) -> KAnonymity:
    """Equivalence classes of ``records`` (patient -> attribute -> value).

    ``attributes`` default to those of :data:`QUASI_IDENTIFIERS` that at least one patient
    has (an attribute removed from every output identifies nobody).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if attributes is None:
        attributes = [a for a in QUASI_IDENTIFIERS if any(r.get(a) for r in records.values())]
    groups: dict[tuple[str, ...], list[str]] = {}
    for patient in sorted(records):
        rec = records[patient]
        key = tuple(str(rec.get(a) or "") or ABSENT for a in attributes)
        groups.setdefault(key, []).append(patient)
    classes = [EquivalenceClass(v, ps) for v, ps in groups.items()]
    classes.sort(key=lambda c: (-c.size, c.values))
    return KAnonymity(list(attributes), classes, k)

"""The meanings the standard gives coded concepts (PS3.16 via pydicom's code tables).

A Code Meaning in de-identified structured content is free text a person or a program
wrote. For a code the standard defines (DCM, SCT/SRT, LN, UCUM, ...) the standard's own
meaning can stand in for whatever was written; a code outside those tables (a private
scheme such as ``99LOCAL``) has no meaning to fall back on.
"""

from __future__ import annotations

from functools import cache


@cache
def _meanings() -> dict[tuple[str, str], frozenset[str]]:
    from pydicom.sr._concepts_dict import concepts

    table: dict[tuple[str, str], set[str]] = {}
    for scheme, by_keyword in concepts.items():
        for codes in by_keyword.values():
            for value, (meaning, _cids) in codes.items():
                table.setdefault((scheme, value), set()).add(meaning)
    return {key: frozenset(v) for key, v in table.items()}


@cache
def _srt_to_sct() -> dict[str, str]:
    from pydicom.sr._snomed_dict import mapping

    return dict(mapping.get("SRT", {}))


def standard_meanings(scheme: str, value: str) -> frozenset[str]:
    """The meanings PS3.16 gives code ``value`` of coding scheme ``scheme`` (none when the
    code is not a standard one). SNOMED codes in the retired ``SRT`` form are looked up
    by their SNOMED CT identifier."""
    scheme, value = scheme.strip(), value.strip()
    if scheme in ("SRT", "SNM3"):
        scheme, value = "SCT", _srt_to_sct().get(value, "")
    return _meanings().get((scheme, value), frozenset())


def standard_meaning_for(meaning: str, scheme: str, value: str) -> str | None:
    """``meaning`` when it is (up to case and spacing) the standard's meaning of the code,
    the standard's meaning when the code is standard but the text differs, else None."""
    known = standard_meanings(scheme, value)
    if not known:
        return None
    norm = " ".join(meaning.split()).casefold()
    if any(" ".join(m.split()).casefold() == norm for m in known):
        return meaning
    return min(known)

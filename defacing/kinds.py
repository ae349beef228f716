"""What a file found under an input folder is, and whether ``pixeldeid deface`` may release it.

Used by the BIDS plan (:func:`defacing.bids.plan_bids`) and the folder plan
(:func:`defacing.batch.plan`):

- :func:`skip_reason`: files below a hidden folder (``.git``, ``.datalad``,
  ``.heudiconv``: version control and tool state, which hold the raw data and the
  conversion tables) and operating-system files (``.DS_Store``...) are skipped: not
  released, not copied to the quarantine, and listed in the report with the reason. A
  hidden file elsewhere (``.bidsignore``, ``.sub-02_T1w.nii.gz``) is an input like any
  other.
- :func:`bids_kind`: in a BIDS dataset, NIfTI images are defaced or copied (see
  :mod:`defacing.bids`), JSON and TSV files scrubbed, known text files copied after an
  identity check; DICOM (``sourcedata/``), images of other formats (ANALYZE, MGH/MGZ,
  NRRD, MINC, MetaImage, GIfTI, photographs, video), recordings whose headers name the
  patient (EDF, FIF...) and any other file, binary or text, that pixeldeid cannot check
  are quarantined with a reason: never copied into the release.
"""

from __future__ import annotations

from pathlib import Path, PurePath

#: Operating-system and desktop files (not data): skipped.
SYSTEM_NAMES = frozenset(("thumbs.db", "desktop.ini", ".ds_store", "ehthumbs.db"))
#: Text files known by suffix or by name (README, CHANGES...) released after a check.
TEXT_SUFFIXES = (".bval", ".bvec", ".txt", ".md", ".rst", ".csv", ".cff")
TEXT_STEMS = frozenset(("readme", "changes", "license", "licence", "citation", "authors"))
TEXT_NAMES = frozenset((".bidsignore",))
#: Image formats that ``pixeldeid deface`` does not deface (a head in them shows a face).
IMAGE_FORMATS = {
    (".hdr", ".img"): "ANALYZE 7.5 image",
    (".mgz", ".mgh"): "FreeSurfer MGH image",
    (".nrrd", ".nhdr"): "NRRD image",
    (".mnc", ".mnc2"): "MINC image",
    (".mha", ".mhd", ".raw"): "MetaImage image",
    (".gii",): "GIfTI surface",
    (".npy", ".npz", ".mat", ".h5", ".hdf5", ".nii.zip"): "array file",
    (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".svg"): "picture",
    (".mp4", ".avi", ".mov", ".mkv", ".webm"): "video",
    (".edf", ".bdf", ".fif", ".set", ".fdt", ".vhdr", ".vmrk", ".eeg", ".snirf", ".ds",
     ".con", ".sqd", ".mef", ".nwb"): "recording (its header may name the patient)",
    (".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".ods"): "document",
    (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z"): "archive",
}
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
DICOM_REASON = ("DICOM in a BIDS dataset: not copied; de-identify it with pixeldeid dicom "
                "(or leave sourcedata/ out of the release)")
UNKNOWN_REASON = ("not an image or a known text file of a BIDS dataset: not copied (check it "
                  "and add it to the release by hand)")


def is_dicom_file(p: Path) -> bool:
    """Whether ``p`` starts with a DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def skip_reason(rel: PurePath) -> str | None:
    """Why the file at ``rel`` (relative to the input folder) is skipped, or None."""
    hidden = [part for part in rel.parts[:-1] if part.startswith(".") and part not in (".", "..")]
    if hidden:
        return f"below the hidden folder {hidden[0]} (version control or tool state): not released"
    name = rel.name.lower()
    if name in SYSTEM_NAMES or name.startswith("._"):
        return f"operating system file ({rel.name}): not released"
    return None


def hidden_folder(rel: PurePath) -> PurePath | None:
    """The first hidden folder of ``rel`` (relative), or None."""
    for i, part in enumerate(rel.parts[:-1]):
        if part.startswith(".") and part not in (".", ".."):
            return PurePath(*rel.parts[: i + 1])
    return None


def image_format(p: PurePath) -> str | None:
    """The kind of image (or other non-text data) that the name of ``p`` says, or None."""
    name = p.name.lower()
    for suffixes, what in IMAGE_FORMATS.items():
        if name.endswith(suffixes):
            return what
    return None


def is_text_name(p: PurePath) -> bool:
    """Whether ``p`` is named like a text file that a BIDS dataset releases."""
    name = p.name.lower()
    stem = name.split(".", 1)[0] if not name.startswith(".") else name
    return name in TEXT_NAMES or stem in TEXT_STEMS or name.endswith(TEXT_SUFFIXES)


def bids_kind(p: Path) -> tuple[str, str]:
    """(job kind, reason) of the regular file ``p`` of a BIDS dataset (not a NIfTI image:
    :func:`defacing.bids.defaced_suffix` decides those). Kinds: ``json``, ``tsv``,
    ``tsv-gz``, ``text`` or ``unsupported`` (with the reason)."""
    name = p.name.lower()
    if is_dicom_file(p) or name.endswith(DICOM_SUFFIXES) or name == "dicomdir":
        return "unsupported", DICOM_REASON
    if name.endswith(".json"):
        return "json", ""
    if name.endswith(".tsv"):
        return "tsv", ""
    if name.endswith(".tsv.gz"):
        return "tsv-gz", ""
    what = image_format(p)
    if what is not None:
        if what.endswith("image") or what in ("GIfTI surface", "picture", "video"):
            return "unsupported", (f"{what}: pixeldeid deface does not deface this format "
                                   "(it may show a face); not copied")
        return "unsupported", f"{what}: pixeldeid deface cannot check it; not copied"
    if is_text_name(p):
        return "text", ""
    return "unsupported", UNKNOWN_REASON

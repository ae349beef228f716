"""The job file of ``pixeldeid run``: YAML validated by ``configs/schemas/job.schema.json``.

Examples
--------
>>> job = load_job("configs/jobs/example.yaml")                    # doctest: +SKIP
>>> job = job.override(jobs=4, executor="dask")                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ProfileError
from ..paths import read_yaml
from ..schemas import schema, validate

__all__ = ["Job", "PixelJob", "DefaceJob", "WsiJob", "load_job", "parse_job"]


@dataclass(frozen=True)
class PixelJob:
    """Burned-in text stage settings (see :class:`pixeldeid.burnedin.stage.PixelSettings`)."""

    policy: str = "auto"
    ocr: str = "auto"
    device: str = "auto"
    templates: str | None = None


@dataclass(frozen=True)
class DefaceJob:
    """Defacing of NIfTI heads and CT/MR/PET DICOM series (``series``: ``head`` ones or ``all``)."""

    enabled: bool = True
    series: str = "head"
    modality: str = "auto"
    device: str = "auto"
    qc: bool = True
    check_orientation: bool = True


@dataclass(frozen=True)
class WsiJob:
    """Whole-slide image settings (see :class:`wsi.api.SlideOptions`)."""

    label: str = "remove"
    macro: str = "remove"
    ocr: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class Job:
    """Everything a run needs besides its sources and output folder."""

    profile: str = "basic"
    options: tuple[str, ...] = ()
    key_file: str | None = None
    subject_map: str | None = None
    pseudonym_prefix: str | None = None
    layout: str = "flat"
    jobs: int = 1
    executor: str = "local"
    scheduler: str | None = None
    pixels: PixelJob = field(default_factory=PixelJob)
    deface: DefaceJob = field(default_factory=DefaceJob)
    wsi: WsiJob = field(default_factory=WsiJob)
    zip_per_subject: bool = False
    source: str | None = None

    def override(self, **changes: Any) -> Job:
        """A copy with the given (not None) top-level values replaced."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_json(self) -> dict:
        """The job as JSON-able data (the ledger's ``meta.job``)."""
        return dataclasses.asdict(self)

    def output_settings(self) -> dict:
        """The settings that change outputs (a rerun on the same OUT must keep them)."""
        d = self.to_json()
        for k in ("jobs", "executor", "scheduler", "source", "key_file", "subject_map",
                  "zip_per_subject"):
            d.pop(k)
        d["options"] = sorted(d["options"])
        return d


def _unknown_keys(data: object, schema: dict, where: str, source: str) -> None:
    """Raise a "did you mean" :class:`ProfileError` for the first unknown key."""
    if not isinstance(data, dict) or "properties" not in schema:
        return
    known = list(schema["properties"])
    for k, v in data.items():
        if k not in schema["properties"]:
            close = difflib.get_close_matches(str(k), known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ProfileError(f"unknown job key '{where}{k}'{hint} (known: {', '.join(known)})",
                               source)
        _unknown_keys(v, schema["properties"][k], f"{where}{k}.", source)


def _resolve(value: str | None, base: Path | None) -> str | None:
    if not value:
        return None
    p = Path(os.path.expanduser(value))
    if base is not None and not p.is_absolute():
        p = base / p
    return str(p)


def parse_job(data: object, source: str = "<job>", base: Path | None = None) -> Job:
    """Validate job data and build a :class:`Job` (paths resolved against ``base``)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError("a job file must be a mapping of settings", source)
    _unknown_keys(data, schema("job"), "", source)
    validate(data, "job", "job file", source)
    top = {k: v for k, v in data.items() if k not in ("pixels", "deface", "wsi", "packaging")}
    if "options" in top:
        top["options"] = tuple(top["options"])
    for k in ("key_file", "subject_map"):
        if k in top:
            top[k] = _resolve(top[k], base)
    pix = dict(data.get("pixels") or {})
    if pix.get("templates"):
        pix["templates"] = _resolve(pix["templates"], base)
    job = Job(**top, pixels=PixelJob(**pix), deface=DefaceJob(**(data.get("deface") or {})),
              wsi=WsiJob(**(data.get("wsi") or {})),
              zip_per_subject=bool((data.get("packaging") or {}).get("zip_per_subject", False)),
              source=source if source != "<job>" else None)
    return job


def load_job(path: str | os.PathLike | None) -> Job:
    """Read a YAML job file (``None``: the defaults)."""
    if path is None:
        return Job()
    p = Path(path)
    data = read_yaml(p, "job file")
    return parse_job(data, str(p), p.resolve().parent)

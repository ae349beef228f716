"""Render the QC report: ``index.html`` + ``images/`` inside the output folder."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path, PurePath

from .. import __version__
from ..atomic import write_bytes_atomic
from ..batch import STATE_DIRNAME, make_output_dir
from ..errors import InputError
from ..quarantine import QUARANTINE_DIRNAME
from ..verify.checks import REPORT_IMAGES, REPORT_MARKER, REPORT_PAGE, iter_outputs, report_files
from .collect import ReportData, collect, has_anything

TEMPLATE = "report.html.j2"


def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("pixeldeid.report", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=False, lstrip_blocks=False)


def render_html(data: ReportData) -> str:
    """The report page for ``data`` (no external URL: inline CSS, relative images)."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return _env().get_template(TEMPLATE).render(d=data, generated=now, version=__version__)


def report_dir_for(out: str | os.PathLike, report: str | os.PathLike | None, *,
                   allow_outside: bool = False) -> Path:
    """The report folder (default ``OUT/report``); one outside OUT is refused unless
    ``allow_outside`` (the report holds images of identity), and so is one inside OUT
    that is not a folder of its own (:func:`check_report_place`)."""
    outp = Path(out)
    rdir = Path(report) if report else outp / "report"
    try:
        rel = rdir.resolve().relative_to(outp.resolve())
    except (OSError, RuntimeError, ValueError):
        rel = None
    if rel is None and not allow_outside:
        raise InputError("the report shows images before de-identification and stays inside "
                         "the output folder; give --allow-outside to write it elsewhere",
                         str(rdir))
    if rel is not None:
        check_report_place(outp, rel, rdir)
    return rdir


def check_report_place(out: Path, rel: PurePath, rdir: Path) -> None:
    """Refuse a report folder (``rel`` inside ``out``) that is OUT itself, holds release
    outputs or lies inside a folder that does: its images of identity would sit among the
    files released, and ``verify`` must tell them apart. Inside OUT/.pixeldeid or
    OUT/quarantine (never released) any folder will do.

    Raises
    ------
    InputError
        Naming the folder and one release file found there.
    """
    if not rel.parts:
        raise InputError("the report needs a folder of its own inside the output folder "
                         "(default OUT/report), not the output folder itself", str(rdir))
    top = out / rel.parts[0]
    if rel.parts[0] in (STATE_DIRNAME, QUARANTINE_DIRNAME) or not top.is_dir():
        return
    found = iter_outputs(top)  # (a folder of an earlier report alone: none)
    if found:
        where = "holds" if len(rel.parts) == 1 else "lies in a folder holding"
        raise InputError(f"the report folder {where} release outputs (e.g. "
                         f"{found[0].relative_to(out).as_posix()}); give a folder of its "
                         "own, such as OUT/report", str(rdir))


def build_report(out: str | os.PathLike, report: str | os.PathLike | None = None, *,
                 k: int = 5, allow_outside: bool = False, max_images: int = 400,
                 sample: int = 12, progress: bool | None = None) -> Path:
    """Write the QC report of ``out``; return the path of ``index.html``.

    Raises
    ------
    InputError
        ``out`` is not a folder, or the report folder lies outside it (without
        ``allow_outside``).
    """
    from tqdm import tqdm

    outp = Path(out)
    if not outp.is_dir():
        raise InputError("not a folder", str(out))
    rdir = report_dir_for(outp, report, allow_outside=allow_outside)
    if not has_anything(outp):
        raise InputError("nothing to report: no run ledger, no outputs and no quarantine "
                         "(is this an output folder of pixeldeid?)", str(out))
    make_output_dir(rdir)  # a file in the way, no permission: a DeidError (exit 2)
    for old in report_files(rdir):  # images of an earlier report: ours, by name
        if old.parent == rdir / REPORT_IMAGES:
            old.unlink()
    write_bytes_atomic(rdir / REPORT_MARKER, b"pixeldeid QC report: never release this folder\n")

    def bar(files):
        return tqdm(files, desc="report", unit="file", leave=False,
                    disable=None if progress is None else not progress)

    data = collect(outp, rdir, k=k, max_images=max_images, sample=sample, progress=bar)
    index = rdir / REPORT_PAGE
    write_bytes_atomic(index, render_html(data).encode("utf-8"))
    return index

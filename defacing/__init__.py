"""defacing: remove faces from CT/MR/PET head volumes (NIfTI, BIDS, DICOM series).

Python API for one image::

    from defacing import deface_nifti, deface_array
    result = deface_nifti("sub-01_T1w.nii.gz", "out/sub-01_T1w.nii.gz", qc_dir="out/qc")
    result.metrics["brain_voxels_changed"]   # always 0

The command line is ``pixeldeid deface`` (:mod:`defacing.cli`).
"""

import logging

from .deface import DefaceResult, RegistrationQualityError, deface_array
from .nifti import deface_nifti

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["DefaceResult", "RegistrationQualityError", "deface_array", "deface_nifti"]

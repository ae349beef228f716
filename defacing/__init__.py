"""defacing: remove faces from CT/MR/PET head volumes (NIfTI, BIDS, DICOM series)."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())

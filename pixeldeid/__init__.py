"""pixeldeid: remove identity from medical images.

The shared core: DICOM header de-identification to DICOM PS3.15 Annex E,
UIDs, dates and pseudonyms, safe I/O, burned-in text, the batch pipeline
and the ``pixeldeid`` command line.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]

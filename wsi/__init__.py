"""wsi: whole-slide image de-identification (labels, macros, metadata, region redaction)."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())

"""Burned-in text in pixel data: OCR engines, text classification, templates, redaction.

The modules are imported on demand; none of the heavy dependencies (OCR engines, torch,
jpeglib) is imported when this package is.
"""

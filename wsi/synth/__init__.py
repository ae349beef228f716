"""Synthetic whole-slide images built to openslide's vendor-detection rules, with planted identity."""

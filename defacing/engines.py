"""Registration engines: a small registry with lazy imports.

``sitk`` (SimpleITK, CPU, always available) and ``torch`` (MONAI global mutual
information on torch; CUDA when present, also runs on CPU torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Engine:
    """A registration engine: ``module:function`` and the modules it needs."""

    name: str
    target: str
    requires: tuple[str, ...]
    extra: str

    def is_available(self) -> bool:
        """True when the engine's modules import."""
        try:
            for mod in self.requires:
                importlib.import_module(mod)
        except ImportError:
            return False
        return True

    def load(self):
        """Return the engine's registration function."""
        from pixeldeid.errors import MissingDependencyError

        if not self.is_available():
            raise MissingDependencyError(f"registration engine {self.name!r}", self.extra)
        mod, fn = self.target.split(":")
        return getattr(importlib.import_module(mod), fn)


ENGINES = {
    "sitk": Engine("sitk", "defacing.registration:register_affine", ("SimpleITK",), "all"),
    "torch": Engine("torch", "defacing.torch_registration:register_affine_torch",
                    ("torch", "monai"), "gpu"),
}


def cuda_available() -> bool:
    """True when torch with a CUDA device is importable."""
    if not ENGINES["torch"].is_available():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> tuple[str, str]:
    """Map ``--device`` to ``(engine, torch device)``.

    ``cpu`` -> SimpleITK; ``cuda`` -> torch on CUDA (error when absent); ``auto`` -> CUDA
    if present else SimpleITK; ``torch-cpu`` -> the torch engine on CPU (tests).
    """
    from pixeldeid.errors import InputError

    if device == "auto":
        return ("torch", "cuda") if cuda_available() else ("sitk", "cpu")
    if device == "cpu":
        return "sitk", "cpu"
    if device == "cuda":
        if not cuda_available():
            raise InputError("--device cuda requested but no CUDA device is available")
        return "torch", "cuda"
    if device == "torch-cpu":
        return "torch", "cpu"
    raise InputError(f"unknown device {device!r}")

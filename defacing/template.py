"""The head template with its face and brain masks (built by scripts/build_deface_template.py).

Files live in ``models/deface`` of a source checkout (``PIXELDEID_MODELS`` overrides the
``models`` folder). Their SHA-256 sums are checked on load; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from pixeldeid.errors import ProfileError

from .volume import array_to_image

FILES = ("head_template.nii.gz", "face_mask.nii.gz", "brain_mask.nii.gz", "ear_mask.nii.gz")


def models_dir() -> Path:
    """Return the ``models/deface`` folder."""
    env = os.environ.get("PIXELDEID_MODELS")
    if env:
        return Path(env) / "deface"
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "models" / "deface", here / "_models" / "deface"):
        if cand.is_dir():
            return cand
    raise ProfileError("defacing template not found: models/deface is missing; install from a "
                       "source checkout or set PIXELDEID_MODELS")


@dataclass(frozen=True, eq=False)
class Template:
    """Template head and masks as SimpleITK float images (mask values 0-1).

    Attributes
    ----------
    head : sitk.Image
        Average T1 head with face (pydeface, MIT).
    face : sitk.Image
        Face-region coverage (0-1).
    brain : sitk.Image
        Brain coverage (0-1), from the ICBM 2009a MNI152 brain.
    ears : sitk.Image
        Ear boxes (0-1), lateral to the skull around each ear.
    head_mask : ndarray
        Binary head mask of ``head`` (``[z, y, x]``).
    face_volume_mm3 : float
        Volume of the face region in template space.
    """

    head: sitk.Image
    face: sitk.Image
    brain: sitk.Image
    ears: sitk.Image
    head_mask: np.ndarray
    face_volume_mm3: float

    def protected(self, margin_mm: float) -> sitk.Image:
        """Brain mask dilated by ``margin_mm`` (0/1 float image on the template grid)."""
        return _protected(self, float(margin_mm))


@cache
def _protected(tpl: Template, margin_mm: float) -> sitk.Image:
    b = sitk.GetArrayFromImage(tpl.brain) > 0.0
    dist = ndimage.distance_transform_edt(~b, sampling=tpl.brain.GetSpacing()[::-1])
    img = sitk.GetImageFromArray((dist <= margin_mm).astype(np.float32))
    img.CopyInformation(tpl.brain)
    return img


def _read(path: Path) -> sitk.Image:
    im = nib.load(str(path))
    return array_to_image(np.asarray(im.dataobj, dtype=np.float32), im.affine, str(path))


def verify(folder: Path) -> None:
    """Check the template files against ``SHA256SUMS``; raise ProfileError on mismatch."""
    sums = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    for name in FILES:
        p = folder / name
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != sums.get(name):
            raise ProfileError(f"defacing template file missing or altered: {p}")


@cache
def load_template(folder: str | None = None) -> Template:
    """Load and verify the default template (cached)."""
    from .registration import head_mask

    d = Path(folder) if folder else models_dir()
    verify(d)
    head = _read(d / FILES[0])
    face = sitk.Cast(_read(d / FILES[1]) / 100.0, sitk.sitkFloat32)
    brain = sitk.Cast(_read(d / FILES[2]) / 100.0, sitk.sitkFloat32)
    ears = sitk.Cast(_read(d / FILES[3]) / 100.0, sitk.sitkFloat32)
    vox = float(np.prod(face.GetSpacing()))
    face_vol = float((sitk.GetArrayViewFromImage(face) >= 0.5).sum()) * vox
    return Template(head, face, brain, ears, head_mask(head), face_vol)

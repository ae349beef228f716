"""Overlay planes (60xx) after the profile: none is left dangling, none hides in the pixels.

A plane whose Overlay Data (60xx,3000) the profile removed (PS3.15 Table E.1-1) is removed
whole. Before 2004 a plane could also live in the bits of Pixel Data above the stored
value (Overlay Bits Allocated and Overlay Bit Position, retired in PS3.5 8.1.2 and PS3.3
C.9.2): such a plane has no Overlay Data, so the profile's removal would miss it,
annotations and all. Its bit is cleared in every sample and the plane's attributes are
removed; where the bit cannot be cleared (encapsulated pixel data, a bit inside the stored
value) the file is refused.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from .dsvalues import peek
from .errors import DeidError


def overlay_planes(ds: Dataset) -> tuple[list[int], list[tuple[int, int | None]]]:
    """The overlay planes of ``ds`` as read: (groups with Overlay Data, (group, bit) of each
    plane without). ``bit`` is the Overlay Bit Position of a plane embedded in the pixel
    data (Overlay Bits Allocated above 1, or a position above 0 where Bits Allocated is
    missing); None for a plane whose data is nowhere (a 1-bit plane that lost its Overlay
    Data)."""
    groups = {t >> 16 for t in ds._dict if 0x60000000 <= t < 0x61000000 and not t & 0x10000}
    with_data, without = [], []
    for g in sorted(groups):
        if (g << 16 | 0x3000) in ds._dict:
            with_data.append(g)
            continue
        pos, nbits = peek(ds, g << 16 | 0x0102), peek(ds, g << 16 | 0x0100)
        pos = None if pos in (None, "") else int(pos)
        nbits = None if nbits in (None, "") else int(nbits)
        embedded = pos is not None and (nbits > 1 if nbits is not None else pos > 0)
        without.append((g, pos if embedded else None))
    return with_data, without


def remove_planes(ds: Dataset, with_data: list[int], without: list[tuple[int, int | None]]
                  ) -> None:
    """After the profile: remove the planes of ``with_data`` whose Overlay Data it removed,
    clear the bits of the embedded planes of ``without`` in every pixel sample, and remove
    every plane of ``without`` (from :func:`overlay_planes`, called before the profile).

    Raises
    ------
    DeidError
        When a bit cannot be cleared: encapsulated (compressed) pixel data, a bit inside
        the stored pixel value, or pixel data of an unexpected size.
    """
    gone = {g for g in with_data if (g << 16 | 0x3000) not in ds._dict}
    gone.update(g for g, _pos in without)
    bits = sorted({pos for _g, pos in without if pos is not None})
    if bits and "PixelData" in ds:
        _clear_bits(ds, bits)
    if gone:
        for t in [t for t in ds._dict if t >> 16 in gone]:
            del ds._dict[t]


def _clear_bits(ds: Dataset, bits: list[int]) -> None:
    ts = UID(str(peek(ds.file_meta, "TransferSyntaxUID", "")))
    allocated = int(peek(ds, "BitsAllocated", 0) or 0)
    stored = int(peek(ds, "BitsStored", allocated) or allocated)
    high = int(peek(ds, "HighBit", stored - 1) or stored - 1)
    where = f"an overlay plane in bit {bits[0]} of the pixel data"
    if ts.is_encapsulated:
        raise DeidError(f"{where}: not removable from encapsulated pixel data "
                        f"({ts.name or ts})")
    if allocated not in (8, 16, 32):
        raise DeidError(f"{where}: Bits Allocated {allocated} not supported")
    low = high - stored + 1
    inside = [b for b in bits if low <= b <= high or b >= allocated]
    if inside:
        raise DeidError(f"an overlay plane in bit {inside[0]}, which is not an unused bit of "
                        f"the pixel data (Bits Allocated {allocated}, stored bits {low}-{high})")
    data = peek(ds, "PixelData")
    if not isinstance(data, (bytes, bytearray)):
        from .rawds import Decline

        raise Decline("embedded overlay: the pixel data must be read")
    size = allocated // 8
    if len(data) % size:
        raise DeidError(f"{where}: Pixel Data length {len(data)} is no whole number of samples")
    order = ">" if ts == "1.2.840.10008.1.2.2" else "<"
    samples = np.frombuffer(data, dtype=f"{order}u{size}").copy()
    mask = 0
    for b in bits:
        mask |= 1 << b
    samples &= np.array(~mask & ((1 << allocated) - 1), dtype=samples.dtype)
    ds[0x7FE00010].value = samples.tobytes()  # keeps the element's VR (OB/OW)

"""The MONAI/torch registration engine (CUDA in production; CPU torch here)."""

from __future__ import annotations

import numpy as np
import pytest

from defacing.deface import deface_array
from defacing.engines import ENGINES, resolve_device

pytestmark = pytest.mark.gpu


def test_engine_registry():
    assert ENGINES["sitk"].is_available()
    assert resolve_device("cpu") == ("sitk", "cpu")
    assert resolve_device("torch-cpu") == ("torch", "cpu")
    eng, _ = resolve_device("auto")
    assert eng in ("sitk", "torch")


@pytest.mark.slow
def test_torch_engine_matches_simpleitk(synthetic_head):
    torch = pytest.importorskip("torch")
    pytest.importorskip("monai")

    dev = "cuda" if torch.cuda.is_available() else "torch-cpu"
    t1, affine = synthetic_head
    res_t = deface_array(t1, affine, device=dev)
    res_s = deface_array(t1, affine, device="cpu")
    assert res_t.metrics["registration"]["engine"] == "torch"
    assert res_t.metrics["brain_voxels_changed"] == 0
    assert res_t.metrics["registration"]["head_dice"] > 0.9
    a, b = res_t.removed, res_s.removed
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9
    assert np.all(res_t.data[res_t.removed] == res_t.fill)

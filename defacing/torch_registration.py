"""Affine registration on torch (CUDA or CPU): global mutual information (MONAI).

The affine maps subject physical points (LPS, mm) to template points, like the
SimpleITK engine, so both give a :class:`defacing.registration.Registration`.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from pixeldeid.errors import MissingDependencyError

from .registration import Registration, head_mask, initial_transform

logger = logging.getLogger(__name__)

#: (downsampling factor, iterations) per level.
LEVELS = ((2, 100), (1, 50))
#: Fixed-image points sampled per iteration (stochastic mutual information, as Mattes).
SAMPLES = 6000


def _norm(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [1, 99.5])
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def _index_maps(img: sitk.Image):
    d = np.array(img.GetDirection()).reshape(3, 3)
    sp = np.array(img.GetSpacing())
    org = np.array(img.GetOrigin())
    idx2phys = d * sp  # p = org + idx2phys @ idx
    return idx2phys, org


def register_affine_torch(fixed: sitk.Image, tpl, device: str = "cuda",
                          seed: int = 1234) -> Registration:
    """Register the template head to ``fixed`` (canonical subject image) on torch."""
    try:
        import torch
        import torch.nn.functional as F
        from monai.losses import GlobalMutualInformationLoss
    except ImportError as exc:
        raise MissingDependencyError("the torch registration engine", "gpu", exc.name) from None
    torch.manual_seed(seed)
    dev = torch.device(device)
    moving = tpl.head
    init = initial_transform(fixed, moving, head_mask(fixed), tpl.head_mask)
    c = np.array(init.GetCenter())
    t0 = np.array(init.GetTranslation())

    fa = _norm(sitk.GetArrayFromImage(fixed))  # z, y, x
    ma = _norm(sitk.GetArrayFromImage(moving))
    fixed_t = torch.from_numpy(fa)[None, None].to(dev)
    moving_t = torch.from_numpy(ma)[None, None].to(dev)
    f_i2p, f_org = _index_maps(fixed)
    m_i2p, m_org = _index_maps(moving)
    m_p2i = np.linalg.inv(m_i2p)
    msize = np.array(moving.GetSize(), dtype=np.float64)  # x, y, z

    # parameters: q = c + t + (I + M) (p - c)
    lin = torch.zeros(3, 3, dtype=torch.float32, device=dev, requires_grad=True)
    trans = torch.tensor(t0, dtype=torch.float32, device=dev, requires_grad=True)
    loss_fn = GlobalMutualInformationLoss(kernel_type="gaussian", num_bins=32)
    c_t = torch.tensor(c, dtype=torch.float32, device=dev)
    m_p2i_t = torch.tensor(m_p2i, dtype=torch.float32, device=dev)
    m_org_t = torch.tensor(m_org, dtype=torch.float32, device=dev)
    msize_t = torch.tensor(msize, dtype=torch.float32, device=dev)
    loss_val = 0.0
    for factor, iters in LEVELS:
        if factor > 1:
            f_lvl = F.avg_pool3d(fixed_t, factor, ceil_mode=True)
        else:
            f_lvl = fixed_t
        dz, dy, dx = f_lvl.shape[2:]
        # the avg-pooled voxel (z, y, x) covers full-resolution voxels around its centre
        zz, yy, xx = torch.meshgrid(
            torch.arange(dz, device=dev, dtype=torch.float32) * factor + (factor - 1) / 2,
            torch.arange(dy, device=dev, dtype=torch.float32) * factor + (factor - 1) / 2,
            torch.arange(dx, device=dev, dtype=torch.float32) * factor + (factor - 1) / 2,
            indexing="ij")
        idx = torch.stack([xx, yy, zz], dim=-1).reshape(-1, 3)
        pts = idx @ torch.tensor(f_i2p.T, dtype=torch.float32, device=dev) + \
            torch.tensor(f_org, dtype=torch.float32, device=dev)
        opt = torch.optim.Adam([{"params": [lin], "lr": 2e-3},
                                {"params": [trans], "lr": 0.5 * factor}])
        fvals = f_lvl.reshape(-1)
        gen = torch.Generator(device=dev).manual_seed(seed)
        n = min(SAMPLES, pts.shape[0])
        for _ in range(iters):
            opt.zero_grad()
            sel = torch.randint(0, pts.shape[0], (n,), device=dev, generator=gen)
            p = pts[sel]
            q = c_t + trans + (p - c_t) @ (torch.eye(3, device=dev) + lin).T
            mi = (q - m_org_t) @ m_p2i_t.T  # continuous index x, y, z
            grid = (2.0 * mi / (msize_t - 1.0) - 1.0).reshape(1, n, 1, 1, 3)
            warped = F.grid_sample(moving_t, grid, mode="bilinear", padding_mode="zeros",
                                   align_corners=True)
            loss = loss_fn(warped.reshape(1, 1, n), fvals[sel].reshape(1, 1, n))
            loss.backward()
            opt.step()
            loss_val = float(loss.detach())
        logger.debug("torch level x%d: MI loss %.4f", factor, loss_val)
    a = (np.eye(3) + lin.detach().cpu().numpy().astype(np.float64))
    t = trans.detach().cpu().numpy().astype(np.float64)
    aff = sitk.AffineTransform(3)
    aff.SetCenter(tuple(float(v) for v in c))
    aff.SetMatrix(tuple(float(v) for v in a.ravel()))
    aff.SetTranslation(tuple(float(v) for v in t))
    return Registration(aff, loss_val, "torch")

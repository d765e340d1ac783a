"""Fixtures for SAM-Med3D as the engine's model (crates/sam3d-engine/tests/sam_med3d_session.rs).

Writes to crates/sam3d-engine/tests/data/sam_med3d_session/:

- `narrow12.pth`: medim's SAM-Med3D classes with random weights (seed 1) at narrow widths but
  the published depth (12 encoder blocks, global attention in 2, 5, 8, 11), saved with
  torch.save in the layout the published checkpoints have: {'model_state_dict',
  'optimizer_state_dict', 'args' (an argparse.Namespace), 'epoch'};
- `student6.pth`: the same at encoder depth 6 (what a distilled FastSAM3D student looks like),
  which the engine must refuse;
- `scan.nii.gz`: a CT-like scan with awkward geometry (stored L-S-P: i toward the left, j up,
  k toward the back, spacings 4, 5 and 3.75 mm, rotated 10 degrees), written here by hand
  (NIfTI-1, sform), int16 Hounsfield units;
- `expected.safetensors` + metadata: for one click (RAS, in the metadata), the reference's
  input and output computed independently of the Rust code: the 128^3 cube of 1.5 mm cells
  along R, A, S whose cell (64, 64, 64) is the click, sampled trilinearly (scipy) through the
  scan's affine, z-scored over its voxels above 0 (torch's unbiased std), as a [1, 1, D, H, W]
  tensor with D along R, H along A, W along S (torchio's canonical layout); the click as point
  (d, h, w) = (64, 64, 64); the low-resolution logits the reference network gives, and a
  second step's (a negative point and the first step's logits as the mask prompt).

Regenerate (from the repository root):

    PYTHONPATH=/root/.cache/sam3d-studio/medim-0.1.2:/root/.cache/sam3d-studio/torch-2.13.0:tests/oracle \\
        python3 tests/oracle/sam_med3d_session.py
"""

import argparse
import gzip
import json
import math
import os
import struct

import numpy as np
import torch
from scipy.ndimage import map_coordinates

import sam_med3d_fixtures as fx

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "crates", "sam3d-engine", "tests", "data", "sam_med3d_session")

NARROW = dict(fx.CONFIG, encoder_depth=12, global_attn_indexes=[2, 5, 8, 11])
STUDENT = dict(fx.CONFIG, encoder_depth=6, global_attn_indexes=[2, 5])

SHAPE_IJK = (75, 60, 80)
SPACING = (4.0, 5.0, 3.75)
CLICK = (12.0, -20.0, 30.0)
NEGATIVE = (40.0, -5.0, 20.0)


def affine():
    """Voxel (i, j, k) -> RAS mm: columns i -> left, j -> superior, k -> posterior, turned 10
    degrees about the superior axis, centred near the origin."""
    t = math.radians(10.0)
    rot = np.array([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])
    axes = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]).T  # columns: L, S, P in RAS
    lin = rot @ axes @ np.diag(SPACING)
    centre = lin @ (np.array(SHAPE_IJK, float) - 1.0) / 2.0
    a = np.eye(4)
    a[:3, :3] = lin
    a[:3, 3] = -centre + np.array([5.0, -8.0, 12.0])
    return a


def scan(a):
    """Air outside a body ellipsoid of soft tissue, an enhancing organ around the click and a
    smaller bright structure beside it (HU, int16), as data[i, j, k]."""
    i, j, k = np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE_IJK], indexing="ij")
    ras = [a[r, 0] * i + a[r, 1] * j + a[r, 2] * k + a[r, 3] for r in range(3)]
    x, y, z = ras
    body = (x / 140.0) ** 2 + (y / 110.0) ** 2 + (z / 160.0) ** 2 < 1.0
    hu = np.where(body, 40.0, -1000.0)
    organ = ((x - CLICK[0]) / 35.0) ** 2 + ((y - CLICK[1]) / 25.0) ** 2 + ((z - CLICK[2]) / 45.0) ** 2 < 1.0
    hu = np.where(organ, 140.0 + 0.3 * (x - CLICK[0]), hu)
    vessel = (x - 40.0) ** 2 + (y + 5.0) ** 2 < 8.0**2
    hu = np.where(vessel & body, 300.0, hu)
    return np.round(hu).astype(np.int16)


def write_nifti(path, data_ijk, a):
    """NIfTI-1, int16, sform_code 1 (scanner), qform_code 0; gzip."""
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    dims = [3, *data_ijk.shape, 1, 1, 1, 1]
    struct.pack_into("<8h", hdr, 40, *dims)
    struct.pack_into("<h", hdr, 70, 4)  # datatype int16
    struct.pack_into("<h", hdr, 72, 16)  # bitpix
    pix = [1.0, *[float(np.linalg.norm(a[:3, c])) for c in range(3)], 1.0, 1.0, 1.0, 1.0]
    struct.pack_into("<8f", hdr, 76, *pix)
    struct.pack_into("<f", hdr, 108, 352.0)  # vox_offset
    struct.pack_into("<f", hdr, 112, 1.0)  # scl_slope
    struct.pack_into("<f", hdr, 116, 0.0)  # scl_inter
    struct.pack_into("<h", hdr, 252, 0)  # qform_code
    struct.pack_into("<h", hdr, 254, 1)  # sform_code
    for r, off in enumerate((280, 296, 312)):
        struct.pack_into("<4f", hdr, off, *[float(v) for v in a[r]])
    hdr[344:348] = b"n+1\0"
    body = bytes(hdr) + b"\0" * 4 + np.asfortranarray(data_ijk).astype("<i2").tobytes(order="F")
    with gzip.open(path + ".tmp", "wb") as f:
        f.write(body)
    os.replace(path + ".tmp", path)


def cube_input(data_ijk, a, click):
    """The 128^3 cube (cell (64, 64, 64) at the click, 1.5 mm, axes R, A, S), z-scored."""
    n = 128
    d = np.arange(n, dtype=float)
    dd, hh, ww = np.meshgrid(d, d, d, indexing="ij")
    origin = np.array(click) - 64 * 1.5
    ras = np.stack([origin[0] + 1.5 * dd, origin[1] + 1.5 * hh, origin[2] + 1.5 * ww, np.ones_like(dd)])
    vox = np.tensordot(np.linalg.inv(a), ras, axes=1)[:3]
    inside = np.all([(vox[c] >= 0) & (vox[c] <= data_ijk.shape[c] - 1) for c in range(3)], axis=0)
    assert inside.all(), "the cube must lie inside the scan (no padding in this fixture)"
    img = map_coordinates(data_ijk.astype(np.float64), vox, order=1, mode="nearest")
    fg = img[img > 0]
    mean, std = fg.mean(), fg.std(ddof=1)
    return ((img - mean) / std).astype(np.float32)


def save_checkpoint(path, model, cfg):
    sd = model.state_dict()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    args = argparse.Namespace(task_name="fixture", model_type="vit_b_ori", img_size=cfg["img_size"], lr=1e-4, checkpoint="none")
    torch.save({"model_state_dict": sd, "optimizer_state_dict": opt.state_dict(), "args": args, "epoch": 3}, path + ".tmp")
    os.replace(path + ".tmp", path)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1)
    model = fx.build(NARROW)
    fx.randomise(model)
    save_checkpoint(os.path.join(OUT, "narrow12.pth"), model, NARROW)
    student = fx.build(STUDENT)
    save_checkpoint(os.path.join(OUT, "student6.pth"), student, STUDENT)

    a = affine()
    data = scan(a)
    write_nifti(os.path.join(OUT, "scan.nii.gz"), data, a)
    x = torch.from_numpy(cube_input(data, a, CLICK))[None, None]
    neg = (np.array(NEGATIVE) - (np.array(CLICK) - 64 * 1.5)) / 1.5
    neg = [float(round(v)) for v in neg]
    with torch.no_grad():
        emb = model.image_encoder(x)
        low1, _ = fx.decode(model, emb, [[[64.0, 64.0, 64.0]]], [[1]], None)
        low2, _ = fx.decode(model, emb, [[[64.0, 64.0, 64.0], neg]], [[1, 0]], low1)
    tensors = {
        "low_res_1": low1.numpy().astype(np.float32),
        "low_res_2": low2.numpy().astype(np.float32),
        "input_centre_slice": x[0, 0, :, :, 64].numpy().astype(np.float32),
    }
    meta = {"click_ras": json.dumps(CLICK), "negative_ras": json.dumps(NEGATIVE), "negative_cell": json.dumps(neg), "affine": json.dumps(a.tolist())}
    fx.write_safetensors(os.path.join(OUT, "expected.safetensors"), tensors, meta)
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))


if __name__ == "__main__":
    main()

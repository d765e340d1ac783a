"""SimpleITK reference for volume resampling (crates/sam3d-core/src/volume/resample.rs): a small
volume on an oblique, anisotropic grid resampled (linear and nearest) onto another oblique grid
with a different rotation, spacing and origin. Writes tests/data/oracle/resample.json: both grids
as RAS affines (ITK's LPS direction/spacing/origin turned into RAS once, here), the source
values, and SimpleITK's output with, per output voxel, whether its centre maps strictly inside
the source's voxel centres (where every trilinear definition agrees).

Run:  python3 tests/oracle/make_resample_ref.py   (pip install SimpleITK numpy)
"""
import json
import math
import pathlib

import numpy as np
import SimpleITK as sitk


def rot(ax, ay, az):
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def image(size, spacing, direction, origin, values=None):
    im = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    im.SetSpacing([float(s) for s in spacing])
    im.SetDirection([float(v) for v in direction.flatten()])
    im.SetOrigin([float(v) for v in origin])
    if values is not None:
        arr = sitk.GetImageFromArray(values.astype(np.float32))  # numpy [k, j, i]
        arr.CopyInformation(im)
        im = arr
    return im


def ras_affine(im):
    d = np.array(im.GetDirection()).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = d @ np.diag(im.GetSpacing())
    a[:3, 3] = im.GetOrigin()
    return (np.diag([-1, -1, 1, 1]) @ a).tolist()  # LPS -> RAS


rng = np.random.default_rng(7)
src_size = (12, 10, 8)  # i, j, k
k, j, i = np.meshgrid(np.arange(8), np.arange(10), np.arange(12), indexing="ij")
values = 100.0 * np.sin(0.5 * i) + 30.0 * j - 7.0 * k * k + rng.normal(0, 5, i.shape)
src = image(src_size, (1.5, 2.0, 3.5), rot(0.3, -0.2, 0.5), (10.0, -20.0, 5.0), values)
dst = image((9, 11, 7), (1.8, 1.7, 2.6), rot(-0.1, 0.25, 0.9), (12.0, -18.0, 6.0))
out = {"sitk": sitk.Version_VersionString(), "src_shape_kji": [8, 10, 12], "src_ras_from_voxel": ras_affine(src),
       "src_values": values.astype(np.float32).flatten().tolist(), "dst_shape_kji": [7, 11, 9], "dst_ras_from_voxel": ras_affine(dst)}
for name, interp in [("linear", sitk.sitkLinear), ("nearest", sitk.sitkNearestNeighbor)]:
    r = sitk.Resample(src, dst, sitk.Transform(), interp, -1000.0, sitk.sitkFloat32)
    out[name] = sitk.GetArrayFromImage(r).flatten().tolist()
inside = []
for kk in range(7):
    for jj in range(11):
        for ii in range(9):
            p = dst.TransformIndexToPhysicalPoint((ii, jj, kk))
            c = src.TransformPhysicalPointToContinuousIndex(p)
            inside.append(all(0.0 < c[a] < src_size[a] - 1 for a in range(3)))
out["inside"] = inside
path = pathlib.Path(__file__).resolve().parents[1] / "data" / "oracle" / "resample.json"
path.write_text(json.dumps(out))
print(f"wrote {path}: {sum(inside)} of {len(inside)} output voxels strictly inside")

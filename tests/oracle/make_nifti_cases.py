"""Writes tricky NIfTI files with nibabel and records nibabel's reading of them (the oracle).

Run by hand (not by the tests) whenever a case is added:
    python3 -m pip install nibabel numpy
    python3 tests/oracle/make_nifti_cases.py tests/data/nifti_cases
The Rust tests (tests/nifti_oracle.rs) read every file listed in facts.json and compare.
"""
import json, os, struct, sys
import numpy as np
import nibabel as nib

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
facts = {}


def rot(axis, deg):
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    m = np.eye(3)
    a, b = [(1, 2), (0, 2), (0, 1)][axis]
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


def affine(lin, t):
    a = np.eye(4)
    a[:3, :3] = lin
    a[:3, 3] = t
    return a


def patch(path, fmt, offset, *values):
    """Overwrite header bytes of an uncompressed single-file NIfTI-1 (little-endian)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<" + fmt, *values))


def record(name, fname, note):
    p = os.path.join(out, fname)
    img = nib.load(p)
    hdr = img.header
    entry = dict(file=fname, note=note, shape=[int(x) for x in img.shape],
                 dtype=str(hdr.get_data_dtype().newbyteorder("=")),
                 sform_code=int(hdr["sform_code"]), qform_code=int(hdr["qform_code"]),
                 affine=img.affine.tolist(), axcodes="".join(nib.aff2axcodes(img.affine)))
    frames = int(np.prod(img.shape[3:])) if img.ndim > 3 else 1
    entry["frames"] = frames
    if frames == 1:
        data = img.get_fdata(dtype=np.float64).reshape(img.shape[:3])
        entry.update(min=float(data.min()), max=float(data.max()), mean=float(data.mean()))
        samples = []
        for _ in range(6):
            ijk = [int(rng.integers(0, n)) for n in data.shape]
            ras = (img.affine @ np.array(ijk + [1.0]))[:3]
            samples.append(dict(ijk=ijk, ras=ras.tolist(), value=float(data[tuple(ijk)])))
        entry["samples"] = samples
        can = nib.as_closest_canonical(nib.Nifti1Image(data.astype(np.float32), img.affine))
        cdata = np.asarray(can.dataobj)
        ijk = [int(rng.integers(0, n)) for n in cdata.shape]
        entry["canonical"] = dict(shape=[int(x) for x in can.shape], affine=can.affine.tolist(),
                                  axcodes="".join(nib.aff2axcodes(can.affine)),
                                  sample=dict(ijk=ijk, value=float(cdata[tuple(ijk)])))
    facts[name] = entry


def vol(shape, dtype):
    a = rng.normal(100, 40, shape)
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        a = np.clip(np.round(a), max(info.min, -1000), min(info.max, 1000))
    return a.astype(dtype)


sh = (7, 6, 5)
# Oblique 30 degrees about S, then 10 about R; anisotropic; float32; gz.
lin = rot(2, 30) @ rot(0, 10) @ np.diag([0.7, 0.8, 2.5])
nib.save(nib.Nifti1Image(vol(sh, np.float32), affine(lin, [-40, 12, 7.5])), f"{out}/oblique30.nii.gz")
record("oblique30", "oblique30.nii.gz", "oblique 30 deg, sform")
# LPS (DICOM-like storage), int16.
nib.save(nib.Nifti1Image(vol(sh, np.int16), affine(np.diag([-0.9, -0.9, 3.0]), [120, 110, -50])), f"{out}/lps.nii.gz")
record("lps", "lps.nii.gz", "LPS storage")
# LAS, uint8.
nib.save(nib.Nifti1Image(vol(sh, np.uint8), affine(np.diag([-1.2, 1.2, 2.0]), [60, -70, 0])), f"{out}/las.nii")
record("las", "las.nii", "LAS storage, uncompressed")
# Coronal acquisition (permuted axes): i -> R, j -> S, k -> P; int32.
cor = np.array([[0.8, 0, 0], [0, 0, -2.0], [0, 0.8, 0]])
nib.save(nib.Nifti1Image(vol(sh, np.int32), affine(cor, [-30, 40, -20])), f"{out}/coronal.nii.gz")
record("coronal", "coronal.nii.gz", "coronal acquisition, permuted axes")
# qform only (sform_code 0), oblique.
img = nib.Nifti1Image(vol(sh, np.uint16), None)
img.set_qform(affine(rot(1, 20) @ np.diag([1.0, 1.1, 1.5]), [5, -6, 7]), code=1)
img.set_sform(None, code=0)
nib.save(img, f"{out}/qform_only.nii.gz")
record("qform_only", "qform_only.nii.gz", "qform only")
# sform != qform: nibabel uses the sform.
img = nib.Nifti1Image(vol(sh, np.float64), None)
img.set_qform(affine(np.diag([1, 1, 1]), [0, 0, 0]), code=1)
img.set_sform(affine(rot(2, -15) @ np.diag([0.5, 0.5, 4.0]), [10, 20, 30]), code=2)
nib.save(img, f"{out}/sform_ne_qform.nii.gz")
record("sform_ne_qform", "sform_ne_qform.nii.gz", "sform differs from qform")
# qfac -1: left-handed qform only.
img = nib.Nifti1Image(vol(sh, np.int8), None)
img.set_qform(affine(rot(0, 5) @ np.diag([0.9, 0.9, -2.2]), [1, 2, 3]), code=1)
img.set_sform(None, code=0)
nib.save(img, f"{out}/qfac_neg.nii")
record("qfac_neg", "qfac_neg.nii", "qform with qfac -1")
# Big-endian header and data.
hdr = nib.Nifti1Header(endianness=">")
img = nib.Nifti1Image(vol(sh, np.int16).astype(">i2"), affine(np.diag([1.5, 1.5, 3]), [0, 0, 0]), header=hdr)
nib.save(img, f"{out}/big_endian.nii")
record("big_endian", "big_endian.nii", "big-endian")
# scl_slope / scl_inter (patched into the raw header after writing).
nib.save(nib.Nifti1Image(vol(sh, np.int16), affine(np.eye(3), [0, 0, 0])), f"{out}/scaled.nii")
patch(f"{out}/scaled.nii", "ff", 112, 0.5, -100.0)
record("scaled", "scaled.nii", "scl_slope 0.5, scl_inter -100")
# scl_slope 0 means no scaling.
nib.save(nib.Nifti1Image(vol(sh, np.int16), affine(np.eye(3), [0, 0, 0])), f"{out}/slope_zero.nii")
patch(f"{out}/slope_zero.nii", "ff", 112, 0.0, 55.0)
record("slope_zero", "slope_zero.nii", "scl_slope 0 = unscaled")
# 4D with a single frame.
nib.save(nib.Nifti1Image(vol(sh + (1,), np.float32), affine(np.diag([2, 2, 2]), [1, 1, 1])), f"{out}/single_frame_4d.nii.gz")
record("single_frame_4d", "single_frame_4d.nii.gz", "4D, one frame")
# 4D with three frames (refused by sam3d-studio, shape recorded).
nib.save(nib.Nifti1Image(vol(sh + (3,), np.float32), affine(np.eye(3), [0, 0, 0])), f"{out}/multi_frame_4d.nii.gz")
record("multi_frame_4d", "multi_frame_4d.nii.gz", "4D, three frames")
# NIfTI-2.
nib.save(nib.Nifti2Image(vol(sh, np.float32), affine(rot(2, 45) @ np.diag([0.6, 0.6, 1.0]), [3, 2, 1])), f"{out}/nifti2.nii.gz")
record("nifti2", "nifti2.nii.gz", "NIfTI-2")
# Neither sform nor qform: pixdim fallback.
nib.save(nib.Nifti1Image(vol(sh, np.float32), affine(np.diag([0.7, 0.9, 2.0]), [5, 5, 5])), f"{out}/no_xform.nii")
patch(f"{out}/no_xform.nii", "hh", 252, 0, 0)
record("no_xform", "no_xform.nii", "sform_code = qform_code = 0: pixdim fallback")
# Negative pixdim in a qform-only file.
img = nib.Nifti1Image(vol(sh, np.int16), None)
img.set_qform(affine(np.diag([1.0, 2.0, 3.0]), [0, 0, 0]), code=1)
img.set_sform(None, code=0)
nib.save(img, f"{out}/neg_pixdim.nii")
patch(f"{out}/neg_pixdim.nii", "fff", 80, -1.0, -2.0, 3.0)
record("neg_pixdim", "neg_pixdim.nii", "negative pixdim, qform only")
# Other datatypes.
nib.save(nib.Nifti1Image(vol(sh, np.uint32), affine(np.eye(3), [0, 0, 0])), f"{out}/uint32.nii.gz")
record("uint32", "uint32.nii.gz", "uint32")
nib.save(nib.Nifti1Image(vol(sh, np.int64), affine(np.eye(3), [0, 0, 0]), dtype=np.int64), f"{out}/int64.nii.gz")
record("int64", "int64.nii.gz", "int64")
# NIfTI pair (.hdr + .img).
nib.save(nib.Nifti1Pair(vol(sh, np.int16), affine(np.diag([-1, 1, 1]), [0, 0, 0])), f"{out}/pair.hdr")
record("pair", "pair.hdr", ".hdr/.img pair")

with open(f"{out}/facts.json", "w") as f:
    json.dump(dict(nibabel=nib.__version__, cases=facts), f, indent=1)
print(f"wrote {len(facts)} cases to {out}")

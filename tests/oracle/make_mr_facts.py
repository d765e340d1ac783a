"""What nibabel reads from the real abdominal MR in assets/mr (LPS, sform only): writes
tests/data/mr_abdomen/nibabel_facts.json in the schema of tests/data/ct_abdomen's, which
tests/nifti_oracle.rs compares the reader with. Run from the project root:
    python3 tests/oracle/make_mr_facts.py
"""
import json
import os

import nibabel as nib
import numpy as np

SRC = "assets/mr"
OUT = "tests/data/mr_abdomen/nibabel_facts.json"


def facts(path, samples):
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    h = img.header
    out = {
        "shape": [int(x) for x in data.shape],
        "dtype": str(data.dtype),
        "zooms": [float(z) for z in h.get_zooms()[:3]],
        "affine": img.affine.tolist(),
        "axcodes": list(nib.aff2axcodes(img.affine)),
        "sform_code": int(h["sform_code"]),
        "qform_code": int(h["qform_code"]),
        "min": float(data.min()),
        "max": float(data.max()),
        "mean": float(data.astype(np.float64).mean()),
        "samples": [],
    }
    for ijk in samples:
        ras = img.affine @ np.array([*ijk, 1.0])
        out["samples"].append({"ijk": [int(x) for x in ijk], "value": float(data[tuple(ijk)]), "ras": ras[:3].tolist()})
    return out


def main():
    rng = np.random.default_rng(7)
    shape = nib.load(os.path.join(SRC, "mr.nii.gz")).shape
    samples = [[int(rng.integers(0, n)) for n in shape] for _ in range(5)]
    labels = np.asarray(nib.load(os.path.join(SRC, "labels.nii.gz")).dataobj)
    # Also a voxel of each held-out organ, so label positions are checked too.
    for organ in (1, 2, 3, 5):
        samples.append([int(x) for x in np.argwhere(labels == organ)[0]])
    result = {name: facts(os.path.join(SRC, name), samples) for name in ("mr.nii.gz", "labels.nii.gz")}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

"""Small DICOM test series for crates/sam3d-core/src/volume/dicom, and what SimpleITK (GDCM)
reads from each, as JSON expectations: the Rust tests never need Python.

Writes crates/sam3d-core/tests/data/dicom/<case>/ (the files of one or a few series) and
crates/sam3d-core/tests/data/dicom/expected.json ({case: facts}). Each image is 8 columns × 10
rows, 5 slices, a few KB. The files are written in a shuffled order, with file names and
InstanceNumbers that do not follow the slice order, so only sorting by ImagePositionPatient
along the slice normal gives the right volume.

Facts per case:
  shape          [slices, rows, cols] = the Rust array shape [k, j, i]
  ras_affine     4×4 RAS-from-voxel, from SimpleITK's origin/spacing/direction (LPS) flipped
                 to RAS (x and y negated), or computed here from the headers where SimpleITK is
                 known not to give the physical geometry (gantry tilt, enhanced multi-frame)
  ipp_ras        the sorted slices' ImagePositionPatient in RAS: voxel (0, 0, k) must land there
  voxels         [[k, j, i, value], ...] from SimpleITK's array (or pydicom's, where marked)
  sitk           what SimpleITK gave, kept for the record where it is not the expectation

Also copies a few of pydicom's own test files (pydicom/data/test_files, with their README that
says where each comes from and under which licence, and pydicom's LICENSE) to
tests/data/dicom/pydicom/<name>/<name>.dcm (a folder each: several are one series re-encoded)
and records
SimpleITK's reading of each.

Needs: pip install pydicom numpy SimpleITK python-gdcm
Run from the repository root (the output is committed):
    python3 tests/oracle/dicom_fixtures.py
The benchmark series (512×512×300 JPEG 2000, not committed; prints SimpleITK's time):
    python3 tests/oracle/dicom_fixtures.py --bench /tmp/dicom-bench
    SAM3D_DICOM_BENCH=/tmp/dicom-bench cargo test --release -p sam3d-core --test dicom_oracle dicom_bench -- --ignored --nocapture
"""
import json
import os
import shutil

import gdcm
import numpy as np
import pydicom
import pydicom.data
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

OUT = "crates/sam3d-core/tests/data/dicom"
ROWS, COLS, SLICES = 10, 8, 5
ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root
RNG = np.random.default_rng(20)
STUDY = ROOT + "20.1"
FRAME_OF_REF = ROOT + "20.2"


def uid(tag):
    """Deterministic UIDs, so a re-run rewrites the same files."""
    return generate_uid(prefix=ROOT, entropy_srcs=["sam3d-dicom", tag])


def base_dataset(series, number, description, modality="CT", sop_class=CTImageStorage):
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = FRAME_OF_REF
    ds.PatientName = "Test^Phantom"
    ds.PatientID = "SAM3D-20"
    ds.StudyDate = "20240131"
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.Modality = modality
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    return ds


def set_pixels(ds, arr, signed):
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = arr.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = arr.tobytes()


def save(ds, path, ts):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    ds.file_meta = meta
    os.makedirs(os.path.dirname(path), exist_ok=True)
    little = ts != ExplicitVRBigEndian
    implicit = ts == ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True, little_endian=little, implicit_vr=implicit)


def write_series(case, iop, positions, spacing, stacks, *, number, description, signed=True,
                 slope=1.0, intercept=0.0, ts=ExplicitVRLittleEndian, series=None,
                 window=(40.0, 400.0), image_type=None, sop_class=CTImageStorage, modality="CT"):
    """One file per slice; `stacks[k]` is slice k's stored values (rows × cols) at
    `positions[k]` (LPS). Files are written in a shuffled order under shuffled names."""
    series = series or uid(case)
    order = RNG.permutation(len(positions))
    paths = []
    for n, k in enumerate(order):
        ds = base_dataset(series, number, description, modality, sop_class)
        ds.SOPInstanceUID = uid(f"{case}/{k}")
        ds.InstanceNumber = int(n + 1)  # not the slice order, on purpose
        ds.ImagePositionPatient = [f"{x:.6f}" for x in positions[k]]
        ds.ImageOrientationPatient = [f"{x:.8f}" for x in iop]
        ds.PixelSpacing = [f"{spacing[0]}", f"{spacing[1]}"]
        ds.SliceThickness = "2.5"
        if image_type:
            ds.ImageType = image_type
        ds.RescaleSlope = f"{slope}"
        ds.RescaleIntercept = f"{intercept}"
        if window:
            ds.WindowCenter, ds.WindowWidth = f"{window[0]}", f"{window[1]}"
        arr = stacks[k]
        if ts == ExplicitVRBigEndian:
            set_pixels(ds, arr, signed)
            ds.PixelData = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
        else:
            set_pixels(ds, arr, signed)
        path = os.path.join(OUT, case, f"img{(7 * n + 3) % 97:03d}.dcm")
        save(ds, path, ts)
        paths.append(path)
    return paths


def stack_values(dtype, lo, hi, smooth=False):
    """Distinct values per slice, row and column, so an order mistake shows."""
    k, j, i = np.meshgrid(np.arange(SLICES), np.arange(ROWS), np.arange(COLS), indexing="ij")
    if smooth:  # for lossy JPEG: a gentle ramp
        v = lo + (hi - lo) * (0.15 * k + 0.04 * j + 0.03 * i) / 1.2
    else:
        v = lo + (RNG.integers(0, hi - lo, size=k.shape) + 37 * k) % (hi - lo)
    return [v[s].astype(dtype) for s in range(SLICES)]


def axis_positions(origin, step):
    return [np.asarray(origin, float) + s * np.asarray(step, float) for s in range(SLICES)]


def normal_of(iop):
    r, c = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    return np.cross(r, c)


def sitk_facts(folder_or_file, n_samples=12):
    """SimpleITK's reading: shape, RAS affine (from LPS direction/spacing/origin), voxels."""
    if os.path.isdir(folder_or_file):
        r = sitk.ImageSeriesReader()
        names = r.GetGDCMSeriesFileNames(folder_or_file)
        r.SetFileNames(names)
        img = r.Execute()
    else:
        img = sitk.ReadImage(folder_or_file)
    arr = sitk.GetArrayFromImage(img)  # [z, y, x] = [k, j, i]
    if arr.ndim == 2:
        arr = arr[None]
    d = np.array(img.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = d @ np.diag(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    idx = [(0, 0, 0), tuple(s - 1 for s in arr.shape)]
    while len(idx) < n_samples:
        idx.append(tuple(int(RNG.integers(0, s)) for s in arr.shape))
    voxels = [[k, j, i, float(arr[k, j, i])] for (k, j, i) in idx]
    return {"shape": list(arr.shape), "ras_affine": ras.tolist(), "voxels": voxels}, arr


def lps_to_ras(p):
    return [-p[0], -p[1], p[2]]


def sorted_ras_positions(iop, positions):
    n = normal_of(iop)
    return [lps_to_ras(list(p)) for p in sorted(positions, key=lambda p: float(np.dot(n, p)))]


def transcode(src, dst, ts):
    """Re-encodes one file with GDCM (JPEG, JPEG 2000, RLE), every other element kept."""
    r = gdcm.ImageReader()
    r.SetFileName(src)
    if not r.Read():
        raise RuntimeError(f"gdcm cannot read {src}")
    c = gdcm.ImageChangeTransferSyntax()
    c.SetTransferSyntax(gdcm.TransferSyntax(ts))
    c.SetInput(r.GetImage())
    if not c.Change():
        raise RuntimeError(f"gdcm cannot transcode {src}")
    w = gdcm.ImageWriter()
    w.SetFileName(dst)
    w.SetFile(r.GetFile())
    w.SetImage(c.GetOutput())
    if not w.Write():
        raise RuntimeError(f"gdcm cannot write {dst}")


EXPECTED = {}


def record(case, folder, iop, positions, **extra):
    facts, _ = sitk_facts(folder)
    facts["ipp_ras"] = sorted_ras_positions(iop, positions)
    facts.update(extra)
    EXPECTED[case] = facts
    return facts


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    axial = [1, 0, 0, 0, 1, 0]
    spacing = (0.7, 0.8)  # (row spacing = between rows, column spacing = between columns)

    # Axial, slices going up (LPS z), int16 CT with an intercept.
    pos = axis_positions([-12.5, 30.25, -40.0], [0, 0, 2.5])
    write_series("axial", axial, pos, spacing, stack_values(np.int16, -1000, 1500),
                 number=3, description="Axial 2.5mm", intercept=-1024.0, window=(40.0, 400.0))
    record("axial", f"{OUT}/axial", axial, pos, window=[40.0, 400.0], series_number=3)

    # Oblique (rotated about two axes), positions descending along the normal, uint16 MR.
    rot = np.radians([20.0, -35.0])
    r = np.array([np.cos(rot[0]), np.sin(rot[0]), 0.0])
    c0 = np.array([-np.sin(rot[0]), np.cos(rot[0]), 0.0])
    c = np.cos(rot[1]) * c0 + np.sin(rot[1]) * np.array([0, 0, 1.0])
    iop = list(r) + list(c)
    n = normal_of(iop)
    pos = axis_positions(np.array([10.0, -20.0, 55.0]), -3.0 * n)
    write_series("oblique", iop, pos, (1.1, 0.9), stack_values(np.uint16, 0, 4000), number=5,
                 description="Oblique MR", signed=False, slope=2.5, intercept=-10.0,
                 modality="MR", sop_class=MRImageStorage, window=None)
    record("oblique", f"{OUT}/oblique", iop, pos)

    # Sagittal: rows go anterior→posterior (+y LPS), columns go down (-z); slices toward left.
    sag = [0, 1, 0, 0, 0, -1]
    pos = axis_positions([-30.0, -60.0, 80.0], [2.0, 0, 0])
    write_series("sagittal", sag, pos, (0.9, 0.6), stack_values(np.int16, -200, 800),
                 number=7, description="Sagittal")
    record("sagittal", f"{OUT}/sagittal", sag, pos)

    # Coronal with flipped in-plane axes (rows toward the patient's right, -x LPS), slices
    # toward anterior (-y LPS): every sign of the LPS→RAS flip shows.
    cor = [-1, 0, 0, 0, 0, -1]
    pos = axis_positions([40.0, 15.0, 20.0], [0, -1.5, 0])
    write_series("coronal", cor, pos, (0.75, 1.25), stack_values(np.int16, 0, 1200),
                 number=8, description="Coronal flipped")
    record("coronal", f"{OUT}/coronal", cor, pos)

    # Gantry tilt of 15°: the plane tilts about x, positions step along z only. SimpleITK
    # takes the normal as the slice axis, which puts voxel centres beside the slices; the
    # physical affine (a sheared one, as nibabel/dcm2niix without resampling) steps by the
    # positions' difference. The expectation is that one, computed here.
    t = np.radians(15.0)
    tilt = [1, 0, 0, 0, np.cos(t), np.sin(t)]
    pos = axis_positions([-5.0, -5.0, 10.0], [0, 0, 3.0])
    write_series("tilt", tilt, pos, spacing, stack_values(np.int16, 0, 1000), number=9,
                 description="Tilted head")
    facts, _ = sitk_facts(f"{OUT}/tilt")
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(tilt[:3]) * spacing[1]
    lps[:3, 1] = np.asarray(tilt[3:]) * spacing[0]
    lps[:3, 2] = (pos[-1] - pos[0]) / (SLICES - 1)
    lps[:3, 3] = pos[0]
    EXPECTED["tilt"] = {
        "shape": facts["shape"],
        "ras_affine": (np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps).tolist(),
        "ipp_ras": sorted_ras_positions(tilt, pos),
        "voxels": facts["voxels"],
        "sitk": {"ras_affine": facts["ras_affine"]},
        "warns": "gantry tilt",
    }

    # Uneven spacing within tolerance (one gap 4% long): read with the mean step, a warning.
    steps = [0, 2.5, 5.0, 7.6, 10.1]
    pos = [np.array([0.0, 0.0, 100.0 + s]) for s in steps]
    write_series("uneven", axial, pos, spacing, stack_values(np.int16, 0, 1000), number=10,
                 description="Uneven")
    facts, _ = sitk_facts(f"{OUT}/uneven")
    lps = np.eye(4)
    lps[:3, :3] = np.diag([spacing[1], spacing[0], (steps[-1] - steps[0]) / (SLICES - 1)])
    lps[:3, 3] = pos[0]
    EXPECTED["uneven"] = {
        "shape": facts["shape"],
        "ras_affine": (np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps).tolist(),
        "voxels": facts["voxels"],
        "sitk": {"ras_affine": facts["ras_affine"]},
        "warns": "uneven",
    }

    # A missing slice: 4 of 5 positions; the reader refuses (a silently wrong volume else).
    pos = axis_positions([0.0, 0.0, 0.0], [0, 0, 2.0])
    del pos[2]
    write_series("missing", axial, pos, spacing, stack_values(np.int16, 0, 1000)[:4], number=11,
                 description="Missing one")
    EXPECTED["missing"] = {"refuses": "missing slice"}

    # One SeriesInstanceUID, two orientations: refused as mixed.
    mixed = uid("mixed")
    pos = axis_positions([0.0, 0.0, 0.0], [0, 0, 2.0])[:3]
    write_series("mixed/ax", axial, pos, spacing, stack_values(np.int16, 0, 1000)[:3], number=12,
                 description="Mixed", series=mixed)
    pos = axis_positions([0.0, 0.0, 0.0], [2.0, 0, 0])[:2]
    write_series("mixed/sag", sag, pos, spacing, stack_values(np.int16, 0, 1000)[:2], number=12,
                 description="Mixed", series=mixed)
    EXPECTED["mixed"] = {"refuses": "mixed"}

    # A localiser (ImageType LOCALIZER): listed and flagged, never opened by default.
    pos = [np.array([0.0, -100.0, 50.0])]
    write_series("localizer", [1, 0, 0, 0, 0, -1], pos, (2.0, 2.0),
                 stack_values(np.int16, 0, 500)[:1], number=1, description="Scout",
                 image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    EXPECTED["localizer"] = {"localizer": True}

    # Transfer syntaxes: the same geometry, pixels stored each way.
    pos = axis_positions([-20.0, 10.0, 5.0], [0, 0, 1.25])
    ts_cases = {
        "implicit": dict(ts=ImplicitVRLittleEndian),
        "bigendian": dict(ts=ExplicitVRBigEndian),
        "deflate": dict(ts=DeflatedExplicitVRLittleEndian),
    }
    for case, kw in ts_cases.items():
        write_series(case, axial, pos, spacing, stack_values(np.int16, -500, 1500),
                     number=20, description=f"TS {case}", intercept=-7.0, slope=0.5, **kw)
        record(case, f"{OUT}/{case}", axial, pos, transfer_syntax=str(kw["ts"]))

    gdcm_cases = {
        # case: (gdcm syntax, dtype, signed, value range, smooth)
        "jpeg_baseline": (gdcm.TransferSyntax.JPEGBaselineProcess1, np.uint8, False, (0, 250), True),
        "jpeg_lossless": (gdcm.TransferSyntax.JPEGLosslessProcess14_1, np.uint16, False, (0, 4000), False),
        "j2k_lossless": (gdcm.TransferSyntax.JPEG2000Lossless, np.int16, True, (-1000, 2000), False),
        "j2k": (gdcm.TransferSyntax.JPEG2000, np.uint16, False, (0, 3000), True),
        "rle": (gdcm.TransferSyntax.RLELossless, np.int16, True, (-1000, 2000), False),
    }
    for case, (gts, dtype, signed, (lo, hi), smooth) in gdcm_cases.items():
        tmp = f"{OUT}/_tmp_{case}"
        paths = write_series(f"_tmp_{case}", axial, pos, spacing,
                             stack_values(dtype, lo, hi, smooth), number=21,
                             description=f"TS {case}", signed=signed, intercept=-3.0)
        os.makedirs(f"{OUT}/{case}")
        for p in paths:
            transcode(p, f"{OUT}/{case}/{os.path.basename(p)}", gts)
        shutil.rmtree(tmp)
        ts = pydicom.dcmread(f"{OUT}/{case}/{os.path.basename(paths[0])}").file_meta.TransferSyntaxUID
        record(case, f"{OUT}/{case}", axial, pos, transfer_syntax=str(ts),
               lossy=case in ("jpeg_baseline", "j2k"))

    enhanced_ct(spacing)
    pydicom_files()

    with open(f"{OUT}/expected.json", "w") as f:
        json.dump(EXPECTED, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", OUT, sorted(EXPECTED))


def enhanced_ct(spacing):
    """One Enhanced CT file, 5 frames stored out of slice order, per-frame positions and
    per-frame rescale (PixelValueTransformationSequence), shared orientation and spacing.
    The expectation is computed from the headers here (pydicom): GDCM/SimpleITK read enhanced
    objects only partly (one position, one rescale)."""
    rot = np.radians(10.0)
    iop = [np.cos(rot), np.sin(rot), 0.0, -np.sin(rot), np.cos(rot), 0.0]
    pos = axis_positions([5.0, -7.5, -30.0], [0, 0, 2.0])
    frame_order = [3, 0, 4, 1, 2]  # frame f holds slice frame_order[f]
    stored = stack_values(np.int16, 0, 2000)
    intercepts = [-1024.0, -1000.0, -1024.0, -990.0, -1010.0]  # per slice
    slopes = [1.0, 1.0, 0.5, 1.0, 2.0]
    ds = base_dataset(uid("enhanced"), 30, "Enhanced CT", sop_class=EnhancedCTImageStorage)
    ds.SOPInstanceUID = uid("enhanced/0")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = SLICES
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [f"{spacing[0]}", f"{spacing[1]}"]
    pm.SliceThickness = "2.0"
    shared.PixelMeasuresSequence = Sequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = [f"{x:.8f}" for x in iop]
    shared.PlaneOrientationSequence = Sequence([po])
    wnd = Dataset()
    wnd.WindowCenter, wnd.WindowWidth = "50", "350"
    shared.FrameVOILUTSequence = Sequence([wnd])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for f, k in enumerate(frame_order):
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [f"{x:.6f}" for x in pos[k]]
        item.PlanePositionSequence = Sequence([pp])
        pv = Dataset()
        pv.RescaleIntercept = f"{intercepts[k]}"
        pv.RescaleSlope = f"{slopes[k]}"
        pv.RescaleType = "HU"
        item.PixelValueTransformationSequence = Sequence([pv])
        fc = Dataset()
        fc.InStackPositionNumber = f + 1  # wrong on purpose: only positions decide
        item.FrameContentSequence = Sequence([fc])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    frames = np.stack([stored[k] for k in frame_order])
    set_pixels(ds, frames, True)
    path = f"{OUT}/enhanced_ct/enhanced.dcm"
    save(ds, path, ExplicitVRLittleEndian)
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(iop[:3]) * spacing[1]
    lps[:3, 1] = np.asarray(iop[3:]) * spacing[0]
    lps[:3, 2] = [0, 0, 2.0]
    lps[:3, 3] = pos[0]
    values = np.stack([stored[k] * slopes[k] + intercepts[k] for k in range(SLICES)])
    idx = [(0, 0, 0), (4, 9, 7)] + [tuple(int(RNG.integers(0, s)) for s in values.shape) for _ in range(10)]
    facts = {
        "shape": list(values.shape),
        "ras_affine": (np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps).tolist(),
        "ipp_ras": [lps_to_ras(list(p)) for p in pos],
        "voxels": [[k, j, i, float(values[k, j, i])] for (k, j, i) in idx],
        "window": [50.0, 350.0],
        "source": "pydicom headers",
    }
    try:
        sfacts, _ = sitk_facts(path)
        facts["sitk"] = {"shape": sfacts["shape"], "ras_affine": sfacts["ras_affine"]}
    except RuntimeError as e:  # recorded, not needed
        facts["sitk"] = {"error": str(e)[:200]}
    EXPECTED["enhanced_ct"] = facts


PYDICOM_FILES = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
    "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm",
    "image_dfl.dcm", "test-SR.dcm", "MR_small_jpeg_ls_lossless.dcm",
    # JPEG 2000 whose codestream holds 16 bits where BitsStored says 14 (the SIZ check in
    # src/volume/dicom/j2k.rs must let it pass).
    "693_J2KI.dcm",
]


def pydicom_files():
    src = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
    dst = f"{OUT}/pydicom"
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "README.txt"), f"{dst}/README-pydicom-test-files.txt")
    lic = os.path.join(os.path.dirname(os.path.dirname(pydicom.__file__)),
                       f"pydicom-{pydicom.__version__}.dist-info", "licenses", "LICENSE")
    if os.path.exists(lic):
        shutil.copy(lic, f"{dst}/LICENSE-pydicom.txt")
    for name in PYDICOM_FILES:
        pydicom_file(src, dst, name)


def pydicom_file(src, dst, name):
    """Copies one of pydicom's test files and records its facts."""
    # One folder each: several are the same series (same UID, same position) re-encoded.
    os.makedirs(f"{dst}/{name[:-4]}", exist_ok=True)
    shutil.copy(os.path.join(src, name), f"{dst}/{name[:-4]}/{name}")
    ds = pydicom.dcmread(f"{dst}/{name[:-4]}/{name}")
    facts = {"transfer_syntax": str(ds.file_meta.TransferSyntaxUID)}
    if "PixelData" not in ds:
        facts["non_image"] = True
    else:
        try:
            s, _ = sitk_facts(f"{dst}/{name[:-4]}/{name}")
            facts.update(s)
        except RuntimeError as e:
            facts["sitk_error"] = str(e)[:200]
        try:
            arr = ds.pixel_array.astype(np.float64)
            slope = float(getattr(ds, "RescaleSlope", 1.0))
            icpt = float(getattr(ds, "RescaleIntercept", 0.0))
            arr = arr * slope + icpt
            if arr.ndim == 2:
                arr = arr[None]
            facts["pydicom_shape"] = list(arr.shape)
            facts["pydicom_voxels"] = [[k, j, i, float(arr[k, j, i])] for k, j, i in
                                       [(0, 0, 0), (0, arr.shape[1] // 2, arr.shape[2] // 3),
                                        tuple(s - 1 for s in arr.shape)]]
        except Exception as e:  # noqa: BLE001 - recorded as a fact
            facts["pydicom_error"] = str(e)[:200]
        if "ImagePositionPatient" in ds:
            facts["ipp_ras"] = [lps_to_ras([float(x) for x in ds.ImagePositionPatient])]
    EXPECTED[f"pydicom/{name[:-4]}/{name}"] = facts


def bench_series(folder, n=300, size=512):
    """A 512×512×300 JPEG 2000 (lossless) CT-like series for the #[ignore]d dicom_bench test;
    not committed. Prints SimpleITK's read time of it."""
    import time
    yy, xx = np.mgrid[0:size, 0:size]
    body = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size * 0.45) ** 2)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, "_native.dcm")
    series = uid("bench")
    for k in range(n):
        img = np.where(body, 40 + 30 * np.sin(xx / 17.0 + k / 9.0) * np.cos(yy / 23.0), -1000)
        img = (img + RNG.normal(0, 12, img.shape)).astype(np.int16)
        ds = base_dataset(series, 100, "Bench J2K")
        ds.SOPInstanceUID = uid(f"bench/{k}")
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = ["-200", "-200", f"{k * 1.25:.2f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["0.78", "0.78"]
        ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
        set_pixels(ds, img, True)
        save(ds, tmp, ExplicitVRLittleEndian)
        transcode(tmp, os.path.join(folder, f"s{k:04d}.dcm"), gdcm.TransferSyntax.JPEG2000Lossless)
    os.remove(tmp)
    r = sitk.ImageSeriesReader()
    names = r.GetGDCMSeriesFileNames(folder)
    r.SetFileNames(names)
    for _ in range(2):
        t = time.perf_counter()
        r.Execute()
        print(f"SimpleITK read {len(names)} slices in {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--bench":
        bench_series(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "--pydicom":
        # Adds pydicom test files to the committed fixtures, leaving the rest as it is.
        with open(f"{OUT}/expected.json") as f:
            EXPECTED.update(json.load(f))
        for name in sys.argv[2:]:
            pydicom_file(os.path.join(os.path.dirname(pydicom.data.__file__), "test_files"), f"{OUT}/pydicom", name)
        with open(f"{OUT}/expected.json", "w") as f:
            json.dump(EXPECTED, f, indent=1, sort_keys=True)
            f.write("\n")
    else:
        main()

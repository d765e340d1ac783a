"""DICOM cases for data folders (crates/sam3d-core/src/data/cases.rs): the same scans and labels
as DICOM (a series with a DICOM SEG; a series with an RTSTRUCT) and as NIfTI, so the Rust tests
can check that `train` and `eval` read the DICOM cases exactly as the NIfTI ones. The NIfTI
files are written by SimpleITK from its own reading of the DICOM series (ImageSeriesReader),
and the label maps are computed here, independently of the Rust code: the tests never need
Python.

Both series: 40 columns × 36 rows × 14 slices, PixelSpacing 0.9 (between rows) × 0.8 (between
columns), 2 mm between slices, rows turned 12° about the patient's z (an oblique grid), CT
values (int16, rescale intercept −1024) around −100 HU with noise. Files named so that their
order is not the slices' order.

Writes crates/sam3d-core/tests/data/dicom_cases/:
  dicom/seg_case/ct/*.dcm      the series; an ellipsoid "Liver" (60 HU) and "Kidney" (180 HU)
  dicom/seg_case/seg.dcm       highdicom BINARY SEG of them (segments 1 Liver, 2 Kidney; only
                               the frames that hold something)
  dicom/rt_case/ct/*.dcm       another series (its own UIDs): a "Liver" box and a "Kidney" box
  dicom/rt_case/rtstruct.dcm   RTSTRUCT with the boxes as rectangles (corners on half voxels,
                               so a pixel centre is never on an edge), ROIs "Liver", "Kidney"
  nifti/<case>.nii.gz          SimpleITK's reading of each series (RAS in the file)
  nifti/<case>_labels.nii.gz   the label map on that grid (1 Liver, 2 Kidney)
  nifti/<case>_labels.tsv      the names
  expected.json                per case: voxels per label, the RAS affine SimpleITK reports

Needs: pip install pydicom highdicom numpy SimpleITK. Run from the repository root (the output
is committed):
    python3 tests/oracle/dicom_case_fixtures.py
"""
import json
import os
import shutil
import sys

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtstruct_seg_fixtures as rsf  # noqa: E402  (RTSTRUCT writer, deterministic UIDs)

OUT = "crates/sam3d-core/tests/data/dicom_cases"
COLS, ROWS, SLICES = 40, 36, 14
SPACING = [0.9, 0.8]  # PixelSpacing: [between rows, between columns]
STEP = 2.0
ANGLE = 12.0
IPP0 = [-15.0, -12.5, 30.0]
NAMES = {1: "Liver", 2: "Kidney"}
COLOURS = {1: (200, 80, 60), 2: (40, 160, 220)}


def lps_affine():
    a = np.radians(ANGLE)
    r = np.array([np.cos(a), np.sin(a), 0.0])
    c = np.array([-np.sin(a), np.cos(a), 0.0])
    iop = np.round(np.concatenate([r, c]), 8)
    aff = np.eye(4)
    aff[:3, 0] = iop[:3] * SPACING[1]
    aff[:3, 1] = iop[3:] * SPACING[0]
    aff[:3, 2] = np.cross(iop[:3], iop[3:]) * STEP
    aff[:3, 3] = IPP0
    return iop, aff


def grids():
    return np.meshgrid(np.arange(SLICES), np.arange(ROWS), np.arange(COLS), indexing="ij")


def seg_case_labels():
    kk, jj, ii = grids()
    lab = np.zeros((SLICES, ROWS, COLS), np.uint16)
    lab[((ii - 14) / 9.0) ** 2 + ((jj - 16) / 8.0) ** 2 + ((kk - 7) / 4.5) ** 2 <= 1.0] = 1
    lab[((ii - 30) / 5.0) ** 2 + ((jj - 24) / 5.0) ** 2 + ((kk - 6) / 3.0) ** 2 <= 1.0] = 2
    return lab


# The RT case's boxes: (label, slices, i range, j range) in pixel centres (inclusive).
BOXES = [(1, range(4, 11), (10, 19), (11, 21)), (2, range(4, 9), (26, 32), (19, 25))]


def rt_case_labels():
    lab = np.zeros((SLICES, ROWS, COLS), np.uint16)
    for label, ks, (i0, i1), (j0, j1) in BOXES:
        for k in ks:
            lab[k, j0:j1 + 1, i0:i1 + 1] = label
    return lab


def hu_volume(labels, seed):
    rng = np.random.default_rng(seed)
    hu = np.round(rng.normal(-100.0, 6.0, labels.shape)).astype(np.int16)
    hu[labels == 1] += 160  # ~60 HU
    hu[labels == 2] += 280  # ~180 HU
    return hu


def ct_series(case, hu, iop, aff):
    folder = os.path.join(OUT, "dicom", case, "ct")
    os.makedirs(folder, exist_ok=True)
    out = []
    for k in range(SLICES):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = rsf.uid(case, "ct", str(k))
        ds.StudyInstanceUID = rsf.uid("study")
        ds.SeriesInstanceUID = rsf.uid(case, "series")
        ds.FrameOfReferenceUID = rsf.uid(case, "frame")
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Cases", "SAM3D-CASES", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20240131", "101500", "C1", "A30", ""
        ds.Modality = "CT"
        ds.SeriesNumber = 2 if case == "seg_case" else 3
        ds.SeriesDescription = f"{case} CT"
        ds.InstanceNumber = SLICES - k
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [rsf.ds_str(x) for x in iop]
        ds.ImagePositionPatient = [rsf.ds_str(x) for x in aff[:3, :3] @ [0, 0, k] + aff[:3, 3]]
        ds.PixelSpacing = [rsf.ds_str(x) for x in SPACING]
        ds.SliceThickness = rsf.ds_str(STEP)
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "-1024", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.PixelData = (hu[k].astype(np.int32) + 1024).astype(np.int16).tobytes()
        rsf.write(ds, os.path.join(folder, f"slice{(k * 5) % SLICES:02d}.dcm"))
        out.append(ds)
    return folder, out


def seg_file(src, labels, path):
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=NAMES[n],
            segmented_property_category=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
            segmented_property_type=hd.sr.CodedConcept("113343008", "SCT", "Organ"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            display_color=hd.color.CIELabColor.from_rgb(*COLOURS[n]),
        )
        for n in (1, 2)
    ]
    seg = hd.seg.Segmentation(
        source_images=src,
        pixel_array=np.stack([labels == 1, labels == 2], axis=-1),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=rsf.uid("seg_case", "seg-series"),
        series_number=100,
        sop_instance_uid=rsf.uid("seg_case", "seg-sop"),
        instance_number=1,
        manufacturer="sam3d-studio tests",
        manufacturer_model_name="dicom_case_fixtures.py",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(path, enforce_file_format=True)


def rt_file(case, aff, src, path):
    rois = []
    for label, ks, (i0, i1), (j0, j1) in BOXES:
        rect = ((i0 - 0.5, j0 - 0.5), (i1 + 0.5, j0 - 0.5), (i1 + 0.5, j1 + 0.5), (i0 - 0.5, j1 + 0.5))  # a tuple: rsf takes lists as raw ContourData
        rois.append((NAMES[label], list(COLOURS[label]), [(k, rect) for k in ks]))
    rsf.rtstruct(case, aff, [s.SOPInstanceUID for s in src], rois, path)


def nifti(case, folder, labels):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    img = reader.Execute()
    arr = sitk.GetArrayFromImage(img)  # [k, j, i], k along the sorted slices
    lab = sitk.GetImageFromArray(labels.astype(np.uint16))
    lab.CopyInformation(img)
    out = os.path.join(OUT, "nifti")
    os.makedirs(out, exist_ok=True)
    sitk.WriteImage(img, os.path.join(out, f"{case}.nii.gz"))
    sitk.WriteImage(lab, os.path.join(out, f"{case}_labels.nii.gz"))
    with open(os.path.join(out, f"{case}_labels.tsv"), "w") as f:
        f.writelines(f"{n}\t{NAMES[n]}\n" for n in sorted(NAMES))
    d = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = d, img.GetOrigin()
    return arr, (np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps).tolist()


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    iop, aff = lps_affine()
    expected = {}
    for case, labels, seed in [("seg_case", seg_case_labels(), 5), ("rt_case", rt_case_labels(), 6)]:
        hu = hu_volume(labels, seed)
        folder, src = ct_series(case, hu, iop, aff)
        if case == "seg_case":
            seg_file(src, labels, os.path.join(OUT, "dicom", case, "seg.dcm"))
        else:
            rt_file(case, aff, src, os.path.join(OUT, "dicom", case, "rtstruct.dcm"))
        arr, ras = nifti(case, folder, labels)
        assert np.array_equal(arr, hu), f"{case}: SimpleITK's volume differs from the HU written"
        expected[case] = {
            "shape": list(labels.shape),
            "voxels": {str(n): int((labels == n).sum()) for n in sorted(NAMES)},
            "ras_affine": ras,
            "series_uid": str(rsf.uid(case, "series")),
        }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", OUT, {k: v["voxels"] for k, v in expected.items()})


if __name__ == "__main__":
    main()

"""DICOM SEG files written by highdicom and pydicom-seg, and what those libraries read back from
them, for the SEG reader (crates/sam3d-core/src/volume/dicom/seg_read.rs): the Rust tests never
need Python.

The source series is made here in memory (not written): 12 columns × 10 rows × 7 slices, an
oblique orientation (rows turned 25° in x-y and 10° out of plane), PixelSpacing 0.8 (between
rows) × 0.65 (between columns), 2.5 mm between slices. Its segments:
  1 "Liver"   a blob on slices 1–4
  2 "Kidney"  a box on slices 3–4 that overlaps the liver (the later segment takes the voxels)
  3 "Empty"   no voxel (no frames: highdicom omits empty frames)
  4 "Spleen"  slice 6 only: slice 5 has no frame at all, so the SEG's planes have a gap

Writes crates/sam3d-core/tests/data/seg_read/:
  hd_binary.dcm       highdicom, BINARY
  hd_fractional.dcm   highdicom, FRACTIONAL (soft masks: a pixel counts when ≥ 0.5)
  hd_fractional_rle.dcm  the same, RLE Lossless (encapsulated frames)
  hd_shuffled.dcm     hd_binary with its frames in a shuffled order (per-frame groups and bits)
  pds_multiclass.dcm  pydicom-seg's MultiClassWriter from the label map (when it imports)
  bad/*.dcm           hd_binary broken one way each: too_few_frames (NumberOfFrames one
                      more than the frames), bad_segment (a frame names segment 9),
                      off_grid (a frame moved 3 mm in its plane), other_orientation (a frame
                      with another ImageOrientationPatient), short_pixels (PixelData cut),
                      far_apart (a frame 20000 slices away: a 12 MB grid from a 8 KB file)
  expected.json       per file: highdicom's reading (get_volume, segments combined, later
                      segment winning), normalised to the Rust reader's conventions: the
                      label map [k, j, i] with k along the normal `row × column` ascending,
                      its RAS affine (voxel (i, j, k) → RAS mm), segment numbers, labels and
                      colours (highdicom's CIELab → sRGB); and pydicom-seg's reading where it
                      runs.

Needs: pip install pydicom highdicom numpy (and pydicom-seg SimpleITK for its file; pydicom-seg
0.4.1 imports a module pydicom 3 dropped: the shim of rtstruct_seg_fixtures.py restores it).
Run from the repository root (the output is committed):
    python3 tests/oracle/seg_read_fixtures.py
"""
import json
import os
import shutil
import sys
import types

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

OUT = "crates/sam3d-core/tests/data/seg_read"
COLS, ROWS, SLICES = 12, 10, 7
SPACING = [0.8, 0.65]  # PixelSpacing: [between rows, between columns]
STEP = 2.5
ROOT = "1.2.826.0.1.3680043.8.498."
SEGMENTS = [(1, "Liver", (200, 80, 60)), (2, "Kidney", (40, 160, 220)), (3, "Empty", (10, 200, 30)), (4, "Spleen", (240, 200, 20))]


def uid(*tag):
    return generate_uid(prefix=ROOT, entropy_srcs=["sam3d-seg-read", *tag])


def geometry():
    a, b = np.radians(25.0), np.radians(10.0)
    r = np.array([np.cos(a), np.sin(a), 0.0])
    c0 = np.array([-np.sin(a), np.cos(a), 0.0])
    c = np.cos(b) * c0 + np.sin(b) * np.array([0.0, 0.0, 1.0])
    iop = np.round(np.concatenate([r, c]), 8)
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * SPACING[1]
    lps[:3, 1] = iop[3:] * SPACING[0]
    lps[:3, 2] = np.cross(iop[:3], iop[3:]) * STEP
    lps[:3, 3] = [14.2, -31.5, -8.25]
    return iop, lps


def source_series(iop, lps):
    out = []
    for k in range(SLICES):
        ds = Dataset()
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = uid("ct", str(k))
        ds.StudyInstanceUID = uid("study")
        ds.SeriesInstanceUID = uid("series")
        ds.FrameOfReferenceUID = uid("frame")
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Seg", "SAM3D-SEG", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20240131", "101500", "S1", "A1", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 5, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [float(x) for x in iop]
        ds.ImagePositionPatient = [float(x) for x in lps[:3, :3] @ [0, 0, k] + lps[:3, 3]]
        ds.PixelSpacing = SPACING
        ds.SliceThickness = STEP
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.zeros((ROWS, COLS), np.int16).tobytes()
        out.append(ds)
    return out


def masks():
    """[k, j, i, segment] booleans, and soft values for the FRACTIONAL file."""
    kk, jj, ii = np.meshgrid(np.arange(SLICES), np.arange(ROWS), np.arange(COLS), indexing="ij")
    m = np.zeros((SLICES, ROWS, COLS, 4), bool)
    m[..., 0] = (((ii - 5.0) / 4.0) ** 2 + ((jj - 4.0) / 3.0) ** 2 <= 1.0) & (kk >= 1) & (kk <= 4)
    m[..., 1] = (ii >= 7) & (ii <= 10) & (jj >= 3) & (jj <= 7) & (kk >= 3) & (kk <= 4)
    m[..., 3] = (ii >= 1) & (ii <= 3) & (jj >= 6) & (jj <= 8) & (kk == 6)
    soft = m.astype(np.float32)
    # Soft edges: 0.3 (out) and 0.6 (in) rings around the liver on slice 2.
    ring = (((ii - 5.0) / 5.0) ** 2 + ((jj - 4.0) / 4.0) ** 2 <= 1.0) & ~m[..., 0] & (kk == 2)
    soft[..., 0][ring & (ii < 5)] = 0.3
    soft[..., 0][ring & (ii >= 5)] = 0.6
    return m, soft


def descriptions():
    return [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=name,
            segmented_property_category=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
            segmented_property_type=hd.sr.CodedConcept("113343008", "SCT", "Organ"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            display_color=hd.color.CIELabColor.from_rgb(*rgb) if hasattr(hd.color.CIELabColor, "from_rgb") else None,
        )
        for n, name, rgb in SEGMENTS
    ]


def hd_seg(src, pixel_array, kind, name, **extra):
    seg = hd.seg.Segmentation(
        source_images=src,
        pixel_array=pixel_array,
        segmentation_type=kind,
        segment_descriptions=descriptions(),
        series_instance_uid=uid(name, "series"),
        series_number=100,
        sop_instance_uid=uid(name, "sop"),
        instance_number=1,
        manufacturer="sam3d-studio tests",
        manufacturer_model_name="seg_read_fixtures.py",
        software_versions="1",
        device_serial_number="1",
        **extra,
    )
    return seg


def save(ds, path):
    ds.save_as(path, enforce_file_format=True)


def normalised_volume(ds, segment_numbers):
    """highdicom's volume of `ds` (segments combined, later winning) in the Rust reader's
    conventions: [k, j, i] with k ascending along row × column, and the RAS affine."""
    seg = hd.seg.Segmentation.from_dataset(ds, copy=True)
    vol = seg.get_volume(combine_segments=False, rescale_fractional=True, allow_missing_positions=True)
    arr = np.asarray(vol.array, float)  # [slice, row, column, segment]
    if arr.ndim == 3:
        arr = arr[..., None]
    numbers = list(seg.segment_numbers)
    labels = np.zeros(arr.shape[:3], np.uint16)
    for s, n in sorted(zip(range(arr.shape[3]), numbers), key=lambda x: x[1]):
        labels[arr[..., s] >= 0.5] = n
    aff = np.asarray(vol.affine, float)  # (slice, row, column) → LPS
    lps = aff[:, [2, 1, 0, 3]]  # (i, j, k) → LPS
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    if np.dot(normal, lps[:3, 2]) < 0:  # slices against the normal: flip them
        labels = labels[::-1]
        lps[:3, 3] = lps[:3, 3] + lps[:3, 2] * (labels.shape[0] - 1)
        lps[:3, 2] = -lps[:3, 2]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    descs = {n: seg.get_segment_description(n) for n in seg.segment_numbers}
    colours = {}
    for n, d in descs.items():
        v = getattr(d, "RecommendedDisplayCIELabValue", None)
        colours[n] = list(hd.color.CIELabColor.from_dicom_value(tuple(v)).to_rgb()) if v is not None else None
    return {
        "shape": list(labels.shape),
        "ras_affine": ras.tolist(),
        "voxels": [[int(k), int(j), int(i), int(labels[k, j, i])] for k, j, i in zip(*np.nonzero(labels))],
        "segments": [[int(n), descs[n].segment_label, colours[n]] for n in sorted(descs)],
        "frames": int(ds.NumberOfFrames),
        "segmentation_type": str(ds.SegmentationType),
        "sop_instance_uid": str(ds.SOPInstanceUID),
    }


def shuffled(ds):
    """The same SEG with its frames (functional groups and bits together) in a shuffled order."""
    out = pydicom.dcmread(ds) if isinstance(ds, str) else ds
    n, per = int(out.NumberOfFrames), ROWS * COLS
    bits = np.unpackbits(np.frombuffer(out.PixelData, np.uint8), bitorder="little")[: n * per].reshape(n, per)
    order = np.random.default_rng(3).permutation(n)
    items = list(out.PerFrameFunctionalGroupsSequence)
    out.PerFrameFunctionalGroupsSequence = [items[o] for o in order]
    packed = np.packbits(bits[order].reshape(-1), bitorder="little").tobytes()
    out.PixelData = packed + (b"\0" if len(packed) % 2 else b"")
    out.SOPInstanceUID = uid("shuffled", "sop")
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    return out


def pydicom_seg_file(labels, iop, lps, path):
    """pydicom-seg's MultiClassWriter from the label map (liver, kidney, spleen: no overlap)."""
    try:
        if "pydicom._storage_sopclass_uids" not in sys.modules:
            shim = types.ModuleType("pydicom._storage_sopclass_uids")
            shim.SegmentationStorage = pydicom.uid.SegmentationStorage
            sys.modules["pydicom._storage_sopclass_uids"] = shim
        import pydicom_seg
        import SimpleITK as sitk
    except Exception as e:  # noqa: BLE001 - recorded, the Rust test skips the file
        return f"pydicom-seg unavailable: {e}"
    img = sitk.GetImageFromArray(labels.astype(np.uint8))
    img.SetSpacing((SPACING[1], SPACING[0], STEP))
    img.SetOrigin(tuple(lps[:3, 3]))
    img.SetDirection(tuple(np.column_stack([lps[:3, 0] / SPACING[1], lps[:3, 1] / SPACING[0], lps[:3, 2] / STEP]).reshape(-1)))
    template = pydicom_seg.template.from_dcmqi_metainfo({
        "ContentCreatorName": "Tests", "ClinicalTrialSeriesID": "1", "ClinicalTrialTimePointID": "1",
        "SeriesDescription": "pydicom-seg", "SeriesNumber": "300", "InstanceNumber": "1",
        "segmentAttributes": [[
            {"labelID": n, "SegmentLabel": name, "SegmentAlgorithmType": "MANUAL", "recommendedDisplayRGBValue": list(rgb),
             "SegmentedPropertyCategoryCodeSequence": {"CodeValue": "85756007", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Tissue"},
             "SegmentedPropertyTypeCodeSequence": {"CodeValue": "113343008", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Organ"}}
            for n, name, rgb in SEGMENTS if n != 3
        ]],
        "ContentLabel": "SEG", "ContentDescription": "pydicom-seg", "BodyPartExamined": "",
    })
    writer = pydicom_seg.MultiClassWriter(template=template, inplane_cropping=False, skip_empty_slices=True, skip_missing_segment=False)
    src = source_series(*geometry())
    ds = writer.write(img, src)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    save(ds, path)
    reader = pydicom_seg.MultiClassReader()
    r = reader.read(pydicom.dcmread(path))
    arr = sitk.GetArrayFromImage(r.image)  # [k, j, i] in pydicom-seg's grid
    d = np.array(r.image.GetDirection()).reshape(3, 3)
    lps_r = np.eye(4)
    lps_r[:3, :3] = d * np.array(r.image.GetSpacing())
    lps_r[:3, 3] = r.image.GetOrigin()
    return {
        "pds_shape": list(arr.shape),
        "pds_ras_affine": (np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps_r).tolist(),
        "pds_voxels": [[int(k), int(j), int(i), int(arr[k, j, i])] for k, j, i in zip(*np.nonzero(arr))],
        "pds_segment_labels": [r.segment_infos[n].SegmentLabel for n in sorted(r.segment_infos)],
    }


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "bad"))
    iop, lps = geometry()
    src = source_series(iop, lps)
    m, soft = masks()
    expected = {"highdicom": hd.__version__}
    seg = hd_seg(src, m, hd.seg.SegmentationTypeValues.BINARY, "binary")
    save(seg, os.path.join(OUT, "hd_binary.dcm"))
    frac = hd_seg(src, soft, hd.seg.SegmentationTypeValues.FRACTIONAL, "fractional", max_fractional_value=255)
    save(frac, os.path.join(OUT, "hd_fractional.dcm"))
    rle = hd_seg(src, soft, hd.seg.SegmentationTypeValues.FRACTIONAL, "fractional_rle", max_fractional_value=255,
                 transfer_syntax_uid=pydicom.uid.RLELossless)
    save(rle, os.path.join(OUT, "hd_fractional_rle.dcm"))
    save(shuffled(pydicom.dcmread(os.path.join(OUT, "hd_binary.dcm"))), os.path.join(OUT, "hd_shuffled.dcm"))
    for name in ["hd_binary", "hd_fractional", "hd_fractional_rle", "hd_shuffled"]:
        ds = pydicom.dcmread(os.path.join(OUT, f"{name}.dcm"))
        expected[name] = normalised_volume(ds, [s[0] for s in SEGMENTS])
    # The series' own grid, for the record: the SEG's planes run from slice 1 to 6.
    expected["source_ras_affine"] = (np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps).tolist()

    labels = np.zeros((SLICES, ROWS, COLS), np.uint8)
    for s in [0, 1, 3]:
        labels[m[..., s]] = s + 1
    expected["pds_multiclass"] = pydicom_seg_file(labels, iop, lps, os.path.join(OUT, "pds_multiclass.dcm"))

    def broken(name, edit):
        ds = pydicom.dcmread(os.path.join(OUT, "hd_binary.dcm"))
        edit(ds)
        save(ds, os.path.join(OUT, "bad", f"{name}.dcm"))

    def too_few_frames(ds):
        ds.NumberOfFrames = int(ds.NumberOfFrames) + 1

    def bad_segment(ds):
        ds.PerFrameFunctionalGroupsSequence[2].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 9

    def off_grid(ds):
        pos = ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0]
        pos.ImagePositionPatient = [float(x) + 3.0 * float(r) for x, r in zip(pos.ImagePositionPatient, iop[:3])]

    def other_orientation(ds):
        item = Dataset()
        item.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PerFrameFunctionalGroupsSequence[3].PlaneOrientationSequence = [item]

    def short_pixels(ds):
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2 // 2 * 2]

    def far_apart(ds):
        pos = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
        normal = np.cross(iop[:3], iop[3:])
        pos.ImagePositionPatient = [float(x) + 20000 * STEP * float(n) for x, n in zip(pos.ImagePositionPatient, normal)]

    for f in [too_few_frames, bad_segment, off_grid, other_orientation, short_pixels, far_apart]:
        broken(f.__name__, f)

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", sorted(os.listdir(OUT)), {k: (v.get("frames"), v.get("shape")) for k, v in expected.items() if isinstance(v, dict)})


if __name__ == "__main__":
    main()

"""RT structure set and DICOM SEG fixtures for crates/sam3d-core/src/volume/dicom (rtstruct.rs,
rasterise.rs, seg_write.rs), with the expected masks computed here, independently of the Rust
code: the Rust tests never need Python.

Writes crates/sam3d-core/tests/data/rtstruct/:
  <case>/ct/*.dcm         a 16 columns × 14 rows × 6 slices CT series (case: axial, oblique)
  <case>/rtstruct.dcm     an RTSTRUCT on it: "Ring" (a polygon with an inner contour = hole, on
                          slices 1–4), "Edge" (crosses the grid's border), "Between" (one
                          contour halfway between slices 2 and 3: left out with a warning; one
                          0.3 of a step off slice 3: drawn there with a warning; one on slice 4),
                          "Overlap" (over the ring on slice 2: the later ROI takes the voxels),
                          "Empty" (no contours)
  bad/truncated.dcm       the axial RTSTRUCT cut short
  bad/bad_contours.dcm    ROIs with a 1-point, a 2-point and a NaN contour, and a good one
  expected.json           per case: the grid, per ROI the voxels [k, j, i] of its own mask and
                          the warnings expected; plus what skimage's polygon2mask and rt-utils
                          give (for the record: their boundary conventions differ)

Expected masks: every contour point is mapped to continuous voxel coordinates with the inverse
of the series' LPS affine (numpy, from the files' IOP/IPP/PixelSpacing as read back by pydicom);
the contour goes on the nearest slice when all its points are less than half a step from it;
a pixel (i, j) is inside when a ray from its centre crosses the polygon an odd number of times
(PNPOLY, edges half-open in j); contours of one ROI on one slice combine by XOR.

Then the DICOM SEG check (after the Rust test has written seg/<case>.dcm with
SAM3D_WRITE_FIXTURES=1): reads each SEG with highdicom and with pydicom-seg, checks the
segment labels, the referenced series and frame of reference, and that the reconstructed label
map equals the expected one; writes seg/check.json, which the Rust test checks too.

Needs: pip install pydicom highdicom pydicom-seg numpy rt-utils scikit-image
(pydicom-seg 0.4.1 imports a module pydicom 3 dropped; a two-line shim below restores it.)
Run from the repository root:
    python3 tests/oracle/rtstruct_seg_fixtures.py
    SAM3D_WRITE_FIXTURES=1 cargo test --release -p sam3d-core --test rtstruct_oracle
    python3 tests/oracle/rtstruct_seg_fixtures.py --check-seg
"""
import json
import os
import shutil
import sys
import types

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

OUT = "crates/sam3d-core/tests/data/rtstruct"
COLS, ROWS, SLICES = 16, 14, 6
SPACING = [0.8, 0.7]  # PixelSpacing: [between rows, between columns]
STEP = 2.0
ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root


def uid(*tag):
    """Deterministic UIDs, so a re-run rewrites the same files."""
    return generate_uid(prefix=ROOT, entropy_srcs=["sam3d-rtstruct", *tag])


def ds_str(x):
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


CASES = {
    "axial": ([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [-6.1, -5.3, 10.0]),
    # Rows along a direction tilted 20° in x-y and 15° out of plane, columns perpendicular.
    "oblique": None,
}


def oblique_iop():
    a, b = np.radians(20.0), np.radians(15.0)
    r = np.array([np.cos(a), np.sin(a), 0.0])
    c0 = np.array([-np.sin(a), np.cos(a), 0.0])
    # Tilt the column direction out of the axial plane.
    c = np.cos(b) * c0 + np.sin(b) * np.array([0.0, 0.0, 1.0])
    return list(np.round(np.concatenate([r, c]), 8)), [12.4, -30.2, -7.5]


CASES["oblique"] = oblique_iop()


def lps_affine(iop, ipp0):
    """4×4 LPS from (i, j, k): the DICOM convention (IOP[0:3] along i, PixelSpacing[1])."""
    r, c = np.array(iop[:3]), np.array(iop[3:])
    r, c = r / np.linalg.norm(r), c / np.linalg.norm(c)
    n = np.cross(r, c)
    a = np.eye(4)
    a[:3, 0] = r * SPACING[1]
    a[:3, 1] = c * SPACING[0]
    a[:3, 2] = n * STEP
    a[:3, 3] = ipp0
    return a


def ct_series(case, iop, ipp0):
    folder = os.path.join(OUT, case, "ct")
    os.makedirs(folder, exist_ok=True)
    aff = lps_affine(iop, ipp0)
    rng = np.random.default_rng(7)
    sops = []
    for k in range(SLICES):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = uid(case, "ct", str(k))
        ds.StudyInstanceUID = uid("study")
        ds.SeriesInstanceUID = uid(case, "series")
        ds.FrameOfReferenceUID = uid(case, "frame")
        ds.PatientName = "Test^Structures"
        ds.PatientID = "SAM3D-RT"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyDate = "20240131"
        ds.StudyTime = "101500"
        ds.StudyID = "RT1"
        ds.AccessionNumber = "A20"
        ds.ReferringPhysicianName = ""
        ds.Modality = "CT"
        ds.SeriesNumber = 2
        ds.SeriesDescription = f"{case} CT"
        ds.InstanceNumber = SLICES - k
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [ds_str(x) for x in iop]
        ds.ImagePositionPatient = [ds_str(x) for x in aff[:3, :3] @ [0, 0, k] + aff[:3, 3]]
        ds.PixelSpacing = [ds_str(x) for x in SPACING]
        ds.SliceThickness = ds_str(STEP)
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
        ds.PixelData = rng.integers(-1000, 1000, (ROWS, COLS), dtype=np.int16).tobytes()
        write(ds, os.path.join(folder, f"slice{(k * 7) % SLICES:02d}.dcm"))
        sops.append(ds.SOPInstanceUID)
    return aff, sops


def write(ds, path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.save_as(path, enforce_file_format=True)


def polygon(ci, cj, r, n, phase):
    """n vertices around (ci, cj) at radius r (voxel units), at fractional positions."""
    t = phase + np.arange(n) * 2 * np.pi / n
    return np.stack([ci + r * np.cos(t), cj + 0.85 * r * np.sin(t)], axis=1)


def rois_in_voxels():
    """(name, colour, [(k (continuous), [[i, j], ...]), ...]) in file order."""
    ring = []
    for k in (1, 2, 3, 4):
        ring.append((k, polygon(7.31, 6.62, 5.43, 9, 0.13)))
        if k in (2, 3):
            ring.append((k, polygon(7.17, 6.41, 2.37, 7, 0.41)))
    edge = [(k, np.array([[-3.2, 8.1], [4.43, 7.37], [5.61, 17.7], [-2.3, 16.2]])) for k in (0, 5)]
    between = [
        (2.5, np.array([[1.3, 1.2], [6.7, 1.4], [4.1, 5.3]])),
        (3.3, np.array([[10.2, 0.6], [14.6, 1.3], [12.1, 4.7]])),
        (4.0, np.array([[9.4, 9.3], [14.2, 10.6], [10.3, 12.9]])),
    ]
    overlap = [(2, np.array([[8.6, 3.3], [13.4, 3.7], [13.1, 8.9], [8.9, 8.2]]))]
    return [
        ("Ring", [220, 40, 40], ring),
        ("Edge", [40, 200, 60], edge),
        ("Between", [30, 60, 220], between),
        ("Overlap", [240, 200, 20], overlap),
        ("Empty", [128, 128, 128], []),
    ]


def code_item(value, scheme, meaning):
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def rtstruct(case, aff, sops, rois, path, raw_contours=None):
    ds = Dataset()
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = uid(case, "rtstruct", path)
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid(case, "rtstruct-series", path)
    ds.Modality = "RTSTRUCT"
    ds.PatientName = "Test^Structures"
    ds.PatientID = "SAM3D-RT"
    ds.StudyDate, ds.StudyTime = "20240131", "101500"
    ds.SeriesNumber = 3
    ds.StructureSetLabel = f"{case} set"
    ds.StructureSetDate, ds.StructureSetTime = "20240131", "101500"
    frame = uid(case, "frame")
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = uid(case, "series")
    ref_series.ContourImageSequence = Sequence([img_ref(s) for s in sops])
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref_study.ReferencedSOPInstanceUID = uid("study")
    ref_study.RTReferencedSeriesSequence = Sequence([ref_series])
    ref_frame = Dataset()
    ref_frame.FrameOfReferenceUID = frame
    ref_frame.RTReferencedStudySequence = Sequence([ref_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_frame])
    ss, rc, obs = [], [], []
    for n, (name, colour, contours) in enumerate(rois):
        number = 10 + 3 * n  # not 1, 2, 3: labels follow file order, not ROINumber
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = frame
        item.ROIName = name
        item.ROIGenerationAlgorithm = "MANUAL"
        ss.append(item)
        c_items = []
        for k, ij in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            if isinstance(ij, list):  # raw ContourData strings (bad-input cases)
                c.NumberOfContourPoints = len(ij) // 3
                c.ContourData = ij
            else:
                pts = [aff[:3, :3] @ [i, j, k] + aff[:3, 3] for i, j in ij]
                c.NumberOfContourPoints = len(pts)
                c.ContourData = [ds_str(x) for p in pts for x in p]
                if float(k).is_integer():
                    c.ContourImageSequence = Sequence([img_ref(sops[int(k)])])
            c_items.append(c)
        r = Dataset()
        r.ReferencedROINumber = number
        r.ROIDisplayColor = colour
        if c_items:
            r.ContourSequence = Sequence(c_items)
        rc.append(r)
        o = Dataset()
        o.ObservationNumber = number
        o.ReferencedROINumber = number
        o.RTROIInterpretedType = "ORGAN"
        o.ROIInterpreter = ""
        obs.append(o)
    ds.StructureSetROISequence = Sequence(ss)
    ds.ROIContourSequence = Sequence(rc)
    ds.RTROIObservationsSequence = Sequence(obs)
    write(ds, path)


def img_ref(sop):
    r = Dataset()
    r.ReferencedSOPClassUID = CTImageStorage
    r.ReferencedSOPInstanceUID = sop
    return r


def pnpoly(ij, ni, nj):
    """Even–odd at pixel centres: (i, j) integer; edges half-open in j (PNPOLY)."""
    ii, jj = np.meshgrid(np.arange(ni, dtype=float), np.arange(nj, dtype=float))
    inside = np.zeros((nj, ni), bool)
    n = len(ij)
    for a in range(n):
        (xi, yi), (xj, yj) = ij[a], ij[(a - 1) % n]
        crosses = (yi > jj) != (yj > jj)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (xj - xi) * (jj - yi) / (yj - yi) + xi
        inside ^= crosses & (ii < x)
    return inside


def expected_masks(rt_path, case_dir):
    """Per ROI mask [k, j, i] from the files as pydicom reads them, and the warnings."""
    cts = [pydicom.dcmread(os.path.join(case_dir, "ct", f)) for f in sorted(os.listdir(os.path.join(case_dir, "ct")))]
    iop = np.array(cts[0].ImageOrientationPatient, float)
    n = np.cross(iop[:3], iop[3:])
    cts.sort(key=lambda d: float(np.dot(n, np.array(d.ImagePositionPatient, float))))
    ipp = np.array([np.array(d.ImagePositionPatient, float) for d in cts])
    aff = np.eye(4)
    aff[:3, 0] = iop[:3] / np.linalg.norm(iop[:3]) * float(cts[0].PixelSpacing[1])
    aff[:3, 1] = iop[3:] / np.linalg.norm(iop[3:]) * float(cts[0].PixelSpacing[0])
    aff[:3, 2] = (ipp[-1] - ipp[0]) / (len(ipp) - 1)
    aff[:3, 3] = ipp[0]
    inv = np.linalg.inv(aff)
    rt = pydicom.dcmread(rt_path)
    masks, warnings, extra = [], [], []
    contours_of = {r.ReferencedROINumber: getattr(r, "ContourSequence", []) for r in rt.ROIContourSequence}
    for roi in rt.StructureSetROISequence:
        m = np.zeros((len(cts), ROWS, COLS), bool)
        sk = np.zeros_like(m)
        for c in contours_of.get(roi.ROINumber, []):
            pts = np.array(c.ContourData, float).reshape(-1, 3)
            v = (inv[:3, :3] @ pts.T).T + inv[:3, 3]
            k = np.round(v[:, 2].mean())
            if np.abs(v[:, 2] - k).max() >= 0.5 - 1e-6 or not 0 <= k < len(cts):
                warnings.append([roi.ROIName, "left out"])
                continue
            if np.abs(v[:, 2] - k).max() > 0.05:
                warnings.append([roi.ROIName, f"off slice {int(k)}"])
            m[int(k)] ^= pnpoly(v[:, :2], COLS, ROWS)
            from skimage.draw import polygon2mask
            sk[int(k)] ^= polygon2mask((ROWS, COLS), v[:, [1, 0]])
        masks.append(m)
        extra.append(int((m != sk).sum()))
    return masks, warnings, extra, aff


def rt_utils_masks(case_dir, rt_path, names):
    """rt-utils' masks ([k, j, i]), for the record; None where it cannot."""
    try:
        from rt_utils import RTStructBuilder
        rtb = RTStructBuilder.create_from(dicom_series_path=os.path.join(case_dir, "ct"), rt_struct_path=rt_path)
        out = []
        for name in names:
            try:
                m = rtb.get_roi_mask_by_name(name)  # [i, j, slice in rt-utils' order]
                out.append(np.transpose(m, (2, 1, 0)))
            except Exception as e:  # noqa: BLE001 - record, not fail
                out.append(str(e))
        return out
    except Exception as e:  # noqa: BLE001
        return [str(e)] * len(names)


def write_fixtures():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    facts = {}
    rois = rois_in_voxels()
    for case, (iop, ipp0) in CASES.items():
        aff, sops = ct_series(case, iop, ipp0)
        case_dir = os.path.join(OUT, case)
        rt_path = os.path.join(case_dir, "rtstruct.dcm")
        rtstruct(case, aff, sops, rois, rt_path)
        masks, warnings, skimage_diff, aff_read = expected_masks(rt_path, case_dir)
        rtu = rt_utils_masks(case_dir, rt_path, [r[0] for r in rois])
        labels = np.zeros((SLICES, ROWS, COLS), np.uint16)
        for n, m in enumerate(masks):
            labels[m] = n + 1
        facts[case] = {
            "shape": [SLICES, ROWS, COLS],
            "series_uid": uid(case, "series"),
            "frame_of_reference_uid": uid(case, "frame"),
            "lps_affine": aff_read.tolist(),
            "rois": [
                {
                    "label": n + 1,
                    "name": r[0],
                    "colour": r[1],
                    "voxels": np.argwhere(masks[n]).tolist(),
                    "skimage_polygon2mask_differs": skimage_diff[n],
                    "rt_utils_differs": int((rtu[n] != masks[n]).sum()) if isinstance(rtu[n], np.ndarray) else rtu[n],
                }
                for n, r in enumerate(rois)
            ],
            "label_counts": {str(v): int((labels == v).sum()) for v in range(1, len(rois) + 1)},
            "warnings": warnings,
        }
    # Bad inputs, on the axial series.
    os.makedirs(os.path.join(OUT, "bad"), exist_ok=True)
    aff = lps_affine(*CASES["axial"])
    sops = [uid("axial", "ct", str(k)) for k in range(SLICES)]
    good = [(1, np.array([[2.3, 2.2], [9.7, 3.4], [5.1, 10.3]]))]
    rtstruct(
        "axial",
        aff,
        sops,
        [
            ("Good", [10, 20, 30], good),
            ("One point", [1, 2, 3], [(1, ["1.0", "2.0", "12.0"])]),
            ("Two points", [1, 2, 3], [(1, ["1.0", "2.0", "12.0", "3.0", "4.0", "12.0"])]),
            ("Not a number", [1, 2, 3], [(1, ["1.0", "2.0", "12.0", "nan", "4.0", "12.0", "5.0", "6.0", "12.0"])]),
        ],
        os.path.join(OUT, "bad", "bad_contours.dcm"),
    )
    whole = open(os.path.join(OUT, "axial", "rtstruct.dcm"), "rb").read()
    open(os.path.join(OUT, "bad", "truncated.dcm"), "wb").write(whole[: len(whole) * 6 // 10])
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(facts, f, indent=1)
    for case, fx in facts.items():
        print(case, {r["name"]: (len(r["voxels"]), r["skimage_polygon2mask_differs"], r["rt_utils_differs"]) for r in fx["rois"]})


def pydicom_seg_module():
    """pydicom-seg 0.4.1 imports pydicom._storage_sopclass_uids, gone in pydicom 3."""
    if "pydicom._storage_sopclass_uids" not in sys.modules:
        shim = types.ModuleType("pydicom._storage_sopclass_uids")
        shim.SegmentationStorage = pydicom.uid.SegmentationStorage
        sys.modules["pydicom._storage_sopclass_uids"] = shim
    import pydicom_seg

    return pydicom_seg


def check_seg():
    import highdicom as hd

    facts = json.load(open(os.path.join(OUT, "expected.json")))
    result = {"highdicom": hd.__version__}
    for case, fx in facts.items():
        path = os.path.join(OUT, "seg", f"{case}.dcm")
        ds = pydicom.dcmread(path)
        want = np.zeros(fx["shape"], np.uint16)
        for r in fx["rois"]:
            for k, j, i in r["voxels"]:
                want[k, j, i] = r["label"]
        present = sorted(int(v) for v in np.unique(want) if v)
        names = {r["label"]: r["name"] for r in fx["rois"]}
        colours = {r["label"]: r["colour"] for r in fx["rois"]}
        out = {"sop_instance_uid": str(ds.SOPInstanceUID), "frames": int(ds.NumberOfFrames)}

        # highdicom: segment descriptions, references, and the volume on the source's planes.
        seg = hd.seg.Segmentation.from_dataset(ds)
        numbers = list(seg.segment_numbers)
        out["hd_segment_labels"] = [seg.get_segment_description(n).segment_label for n in numbers]
        out["want_segment_labels"] = [names[v] for v in present]
        out["hd_colours_rgb"] = [
            list(hd.color.CIELabColor.from_dicom_value(tuple(seg.get_segment_description(n).RecommendedDisplayCIELabValue)).to_rgb())
            for n in numbers
        ]
        out["want_colours_rgb"] = [colours[v] for v in present]
        refs = [s.SeriesInstanceUID for s in ds.ReferencedSeriesSequence]
        out["referenced_series_ok"] = refs == [fx["series_uid"]]
        out["referenced_instances"] = len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence)
        out["frame_of_reference_ok"] = str(ds.FrameOfReferenceUID) == fx["frame_of_reference_uid"]
        src = {str(u) for u in seg.get_source_image_uids() for u in [u[2]]}
        out["hd_source_instances"] = len(src)
        aff = np.array(fx["lps_affine"])
        got = np.zeros(fx["shape"], np.uint16)
        # Frame by frame: highdicom's decoded frames, placed by their PlanePositionSequence.
        positions = np.array([np.array(f.PlanePositionSequence[0].ImagePositionPatient, float) for f in ds.PerFrameFunctionalGroupsSequence])
        seg_of = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in ds.PerFrameFunctionalGroupsSequence]
        inv = np.linalg.inv(aff)
        frames = seg.pixel_array if seg.pixel_array.ndim == 3 else seg.pixel_array[None]
        for f in range(len(seg_of)):
            k = int(round((inv[:3, :3] @ positions[f] + inv[:3, 3])[2]))
            got[k][frames[f] > 0] = present[seg_of[f] - 1]
        out["hd_voxels_differ"] = int((got != want).sum())
        # highdicom's own volume: combined label map, its affine (LPS, axes slice/row/column).
        vol = seg.get_volume(combine_segments=True, relabel=False)
        arr = np.asarray(vol.array)
        vaff = np.asarray(vol.affine)
        ours = aff[:, [2, 1, 0, 3]]  # the series' LPS affine with axes in the same order
        # highdicom may order the slices the other way: map its voxels onto ours (a flip).
        m = np.linalg.inv(ours) @ vaff
        flips = [a for a in range(3) if m[a, a] < 0]
        arr = np.flip(arr, axis=flips) if flips else arr
        out["hd_get_volume_shape"] = list(arr.shape)
        out["hd_get_volume_flipped_axes"] = flips
        shift = np.array([arr.shape[a] - 1 if a in flips else 0 for a in range(3)])
        # ours⁻¹ · highdicom's affine must be that flip exactly (voxel units).
        out["hd_get_volume_affine_max_diff"] = float(max(np.abs(np.abs(m[:3, :3]) - np.eye(3)).max(), np.abs(m[:3, 3] - shift).max()))
        volume_labels = np.array([0] + present, np.uint16)[arr.astype(int)]
        out["hd_get_volume_voxels_differ"] = int((volume_labels != want).sum()) if arr.shape == want.shape else -1

        # pydicom-seg: MultiClassReader gives the label map on the SEG's own grid (SimpleITK).
        pds = pydicom_seg_module()
        r = pds.SegmentReader().read(ds)
        out["pds_segment_numbers"] = sorted(int(n) for n in r.available_segments)
        got2 = np.zeros(fx["shape"], np.uint16)
        for n in r.available_segments:
            img = r.segment_image(n)
            m = np.asarray(__import__("SimpleITK").GetArrayFromImage(img)) > 0
            origin = np.array(img.GetOrigin())
            k0 = int(round((inv[:3, :3] @ origin + inv[:3, 3])[2]))
            got2[k0 : k0 + m.shape[0]][m] = present[int(n) - 1]
        out["pds_voxels_differ"] = int((got2 != want).sum())
        out["pds_segment_labels"] = [r.segment_infos[n].SegmentLabel for n in sorted(r.available_segments)]
        out["ok"] = (
            out["hd_segment_labels"] == out["want_segment_labels"]
            and out["pds_segment_labels"] == out["want_segment_labels"]
            and out["hd_colours_rgb"] == out["want_colours_rgb"]
            and out["referenced_series_ok"]
            and out["frame_of_reference_ok"]
            and out["hd_voxels_differ"] == 0
            and out["hd_get_volume_voxels_differ"] == 0
            and out["hd_get_volume_affine_max_diff"] < 1e-4
            and out["pds_voxels_differ"] == 0
        )
        result[case] = out
        print(case, json.dumps(out))
    with open(os.path.join(OUT, "seg", "check.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    if "--check-seg" in sys.argv:
        check_seg()
    else:
        write_fixtures()

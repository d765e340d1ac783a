"""LABELMAP DICOM SEG files (Supplement 243: one frame per plane holding segment numbers,
8 or 16 bits) written by highdicom, and what highdicom reads back from them, for the SEG
reader (crates/sam3d-core/src/volume/dicom/seg_read.rs): the Rust tests never need Python.

The source series is seg_read_fixtures.py's (12 columns × 10 rows × 7 slices, oblique: rows
turned 25° in x-y and 10° out of plane), and so are its masks, combined into one label map
(a later segment wins where two overlap, as a LABELMAP cannot hold both):
  1 "Liver", 2 "Kidney", 3 "Empty" (no voxel), 4 "Spleen" (slice 6 only; slice 5 empty).

Writes crates/sam3d-core/tests/data/seg_labelmap/:
  hd_labelmap8.dcm        highdicom LABELMAP, 8 bits, MONOCHROME2
  hd_labelmap8_rle.dcm    the same, RLE Lossless (encapsulated frames)
  hd_labelmap_palette.dcm the same with a palette colour LUT (PALETTE COLOR) and no
                          RecommendedDisplayCIELabValue: the colours are the LUT's
  hd_labelmap16.dcm       300 segments (so 16 bits): the four above plus 296 more, of which
                          257 "Gland" and 300 "Vessel" hold voxels (slices 0 and 3)
  bad/unlisted_value.dcm  hd_labelmap8 with a pixel of frame 2 set to 9, which no segment is
  bad/binary_bits.dcm     hd_labelmap8 claiming BitsAllocated 1
  expected.json           per file: highdicom's reading (get_volume with combine_segments,
                          the label map's values = segment numbers), normalised to the Rust
                          reader's conventions as seg_read_fixtures.py does: [k, j, i] with k
                          ascending along row × column, its RAS affine, segment numbers,
                          labels and colours (CIELab → sRGB), bits, photometric interpretation

Needs: pip install pydicom highdicom numpy. Run from the repository root (the output is
committed):
    python3 tests/oracle/seg_labelmap_fixtures.py
"""
import json
import os
import shutil
import sys

import highdicom as hd
import numpy as np
import pydicom

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seg_read_fixtures as base  # noqa: E402

OUT = "crates/sam3d-core/tests/data/seg_labelmap"
LM = hd.seg.SegmentationTypeValues.LABELMAP


def label_map(m, extra=False):
    lab = np.zeros(m.shape[:3], np.uint16 if extra else np.uint8)
    for s in range(m.shape[3]):
        lab[m[..., s]] = s + 1
    if extra:
        kk, jj, ii = np.meshgrid(np.arange(base.SLICES), np.arange(base.ROWS), np.arange(base.COLS), indexing="ij")
        lab[(kk == 0) & (ii >= 8) & (jj <= 2)] = 257
        lab[(kk == 3) & (ii <= 1) & (jj <= 1)] = 300
    return lab


def plain_descriptions():
    """The segments without display colours (a palette colour LUT gives them)."""
    out = base.descriptions()
    for d in out:
        if "RecommendedDisplayCIELabValue" in d:
            del d.RecommendedDisplayCIELabValue
    return out


def descriptions16():
    named = {257: "Gland", 300: "Vessel"}
    out = base.descriptions()
    for n in range(5, 301):
        out.append(hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=named.get(n, f"Structure {n}"),
            segmented_property_category=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
            segmented_property_type=hd.sr.CodedConcept("113343008", "SCT", "Organ"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        ))
    return out


def write(src, lab, name, descriptions=None, **extra):
    seg = hd.seg.Segmentation(
        source_images=src,
        pixel_array=lab,
        segmentation_type=LM,
        segment_descriptions=descriptions or base.descriptions(),
        series_instance_uid=base.uid(name, "series"),
        series_number=100,
        sop_instance_uid=base.uid(name, "sop"),
        instance_number=1,
        manufacturer="sam3d-studio tests",
        manufacturer_model_name="seg_labelmap_fixtures.py",
        software_versions="1",
        device_serial_number="1",
        **extra,
    )
    path = os.path.join(OUT, f"{name}.dcm")
    base.save(seg, path)
    return path


def reading(path):
    """highdicom's label map of the file, in the Rust reader's conventions."""
    ds = pydicom.dcmread(path)
    seg = hd.seg.Segmentation.from_dataset(ds, copy=True)
    vol = seg.get_volume(combine_segments=True, allow_missing_positions=True)
    labels = np.asarray(vol.array).astype(np.uint16)  # [slice, row, column]
    aff = np.asarray(vol.affine, float)  # (slice, row, column) → LPS
    lps = aff[:, [2, 1, 0, 3]]
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    if np.dot(normal, lps[:3, 2]) < 0:
        labels = labels[::-1]
        lps[:3, 3] = lps[:3, 3] + lps[:3, 2] * (labels.shape[0] - 1)
        lps[:3, 2] = -lps[:3, 2]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    segments = []
    for n in seg.segment_numbers:
        d = seg.get_segment_description(n)
        v = getattr(d, "RecommendedDisplayCIELabValue", None)
        rgb = list(hd.color.CIELabColor.from_dicom_value(tuple(v)).to_rgb()) if v is not None else None
        segments.append([int(n), d.segment_label, rgb])
    return {
        "shape": list(labels.shape),
        "ras_affine": ras.tolist(),
        "voxels": [[int(k), int(j), int(i), int(labels[k, j, i])] for k, j, i in zip(*np.nonzero(labels))],
        "segments": segments,
        "frames": int(ds.NumberOfFrames),
        "bits_allocated": int(ds.BitsAllocated),
        "photometric": str(ds.PhotometricInterpretation),
        "sop_class": str(ds.SOPClassUID),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "palette": palette(ds),
    }


def palette(ds):
    """The palette colour LUT's colour of each segment number (8-bit), when there is one."""
    if "RedPaletteColorLookupTableDescriptor" not in ds:
        return None
    n, first, bits = [int(x) for x in ds.RedPaletteColorLookupTableDescriptor]
    chans = []
    for c in ["Red", "Green", "Blue"]:
        data = np.frombuffer(getattr(ds, f"{c}PaletteColorLookupTableData"), np.uint16 if bits == 16 else np.uint8)
        chans.append(data >> 8 if bits == 16 else data)
    return {str(first + i): [int(chans[0][i]), int(chans[1][i]), int(chans[2][i])] for i in range(min(n or 65536, len(chans[0])))}


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "bad"))
    iop, lps = base.geometry()
    src = base.source_series(iop, lps)
    m, _ = base.masks()
    lab8, lab16 = label_map(m), label_map(m, extra=True)
    written = {
        "hd_labelmap8": write(src, lab8, "hd_labelmap8"),
        "hd_labelmap8_rle": write(src, lab8, "hd_labelmap8_rle", transfer_syntax_uid=pydicom.uid.RLELossless),
        "hd_labelmap_palette": write(
            src, lab8, "hd_labelmap_palette", descriptions=plain_descriptions(),
            palette_color_lut_transformation=hd.PaletteColorLUTTransformation.from_colors(
                ["black", "red", "blue", "green", "yellow"], palette_color_lut_uid=base.uid("palette"))),
        "hd_labelmap16": write(src, lab16, "hd_labelmap16", descriptions=descriptions16()),
    }
    expected = {"highdicom": hd.__version__}
    for name, path in written.items():
        expected[name] = reading(path)
    assert expected["hd_labelmap16"]["bits_allocated"] == 16, expected["hd_labelmap16"]["bits_allocated"]
    assert expected["hd_labelmap_palette"]["photometric"] == "PALETTE COLOR"

    def broken(name, edit):
        ds = pydicom.dcmread(written["hd_labelmap8"])
        edit(ds)
        base.save(ds, os.path.join(OUT, "bad", f"{name}.dcm"))

    def unlisted_value(ds):
        px = bytearray(ds.PixelData)
        px[1 * base.ROWS * base.COLS + 5] = 9
        ds.PixelData = bytes(px)

    def binary_bits(ds):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0

    broken("unlisted_value", unlisted_value)
    broken("binary_bits", binary_bits)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", sorted(os.listdir(OUT)), {k: (v["frames"], v["shape"], v["bits_allocated"]) for k, v in expected.items() if isinstance(v, dict)})


if __name__ == "__main__":
    main()

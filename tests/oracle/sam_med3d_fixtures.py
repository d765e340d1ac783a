"""Reference fixtures for the SAM-Med3D port (crates/sam3d-engine/src/model/sam_med3d/).

Builds medim 0.1.2's SAM-Med3D classes (`medim/models/sam_med3d.py`) with random weights (seed
0, CPU, float32) in a reduced-width configuration of the published architecture and writes, to
crates/sam3d-engine/tests/data/sam_med3d/:

- `weights.safetensors`: the state dict (keys exactly as `model.state_dict()`), float32;
- `fixture.safetensors`: the input field, the image embedding and, per prompt case, the
  low-resolution logits, the IoU prediction, the final mask (bit-packed) and a strided sample
  of the upsampled logits. The metadata holds the config and the prompt cases as JSON.

The reduced configuration keeps the architecture: 128³ input, 16³ patches (an 8³ token grid),
windowed blocks with window 14 (so the grid is padded to 14³ without masking) and global
blocks every third block, decomposed relative positions, the 3D neck, the prompt encoder with
`mask_in_chans` 16, the two-way transformer (depth 2, 8 heads). Only widths shrink: encoder
width 32 (4 heads, depth 6, global blocks 2 and 5), prompt/decoder width 48, decoder MLP 64
(medim hard-codes 2048 inside `MaskDecoder3D`, so the oracle swaps in a `TwoWayTransformer3D`
with mlp_dim 64, nothing else), IoU head hidden width 32.

The image is not stored at 128³ (8 MB): the fixture holds a 32³ random field, and the image is
its trilinear upsampling to 128³ (align_corners=False), which the Rust test recomputes with the
same ATen kernel; `image_sum` and `image_slice` let it check that it got the same image.

Regenerate (from the repository root):

    PYTHONPATH=/root/.cache/sam3d-studio/medim-0.1.2:/root/.cache/sam3d-studio/torch-2.13.0 \
        python3 tests/oracle/sam_med3d_fixtures.py

With `--full-checkpoint PATH` it also writes a FULL-SIZE (vit_b, the published builder
`build_sam3D_vit_b_ori`) random-weight checkpoint with torch.save in the distributed layout
({'model_state_dict', 'optimizer_state_dict', 'args', 'epoch'}) to PATH, the same state dict as
`PATH.safetensors`, the reference's outputs on the fixture image and the "points" prompts as
`PATH.outputs.safetensors`, and `PATH.bench.json` with PyTorch's encoder and per-prompt
decoder times (`--threads`, default 2) and peak memory. Those files are large (~800 MB in all)
and never committed. The Rust side is the ignored test `sam_med3d_full_size` in
crates/sam3d-engine/tests/sam_med3d_parity.rs:

    SAM_MED3D_FULL=/tmp/sam_med3d_random.pth cargo test --release --workspace \
        --test sam_med3d_parity -- --ignored --nocapture sam_med3d_full_size
"""

import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from medim.models import sam_med3d as ref

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "crates", "sam3d-engine", "tests", "data", "sam_med3d")

CONFIG = {
    "img_size": 128,
    "patch_size": 16,
    "encoder_width": 32,
    "encoder_depth": 6,
    "encoder_heads": 4,
    "mlp_ratio": 4,
    "window_size": 14,
    "global_attn_indexes": [2, 5],
    "prompt_dim": 48,
    "mask_in_chans": 16,
    "decoder_depth": 2,
    "decoder_heads": 8,
    "decoder_mlp_dim": 64,
    "num_multimask_outputs": 3,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 32,
}

# Prompt cases. Points are (c0, c1, c2) = indices along the image tensor's axes 2, 3, 4
# ([B, 1, D, H, W] -> (d, h, w)), as SAM-Med3D's click generators produce them
# (`torch.argwhere` on the [D, H, W] mask). d, h and w differ for every point.
CASES = {
    "points": {"points": [[[40, 70, 100], [90, 20, 60]]], "labels": [[1, 0]], "mask": None},
    "one_point": {"points": [[[20, 64, 110]]], "labels": [[1]], "mask": None},
    # The previous mask (low-res logits of "points") as a prompt, plus a third click.
    "points_and_mask": {"points": [[[40, 70, 100], [90, 20, 60], [60, 50, 30]]], "labels": [[1, 0, 1]], "mask": "points"},
    "mask_only": {"points": None, "labels": None, "mask": "one_point"},
}
# The final 128³ mask, bit-packed (np.packbits, C order), is stored for these cases only (size).
MASK_BITS_CASES = ("points", "points_and_mask")
SAMPLE_STRIDE = 8  # the upsampled logits are sampled at indices 3, 11, 19, ... along each axis
SAMPLE_OFFSET = 3


def build(cfg):
    g = cfg["img_size"] // cfg["patch_size"]
    from functools import partial

    enc = ref.ImageEncoderViT3D(
        depth=cfg["encoder_depth"],
        embed_dim=cfg["encoder_width"],
        img_size=cfg["img_size"],
        mlp_ratio=cfg["mlp_ratio"],
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=cfg["encoder_heads"],
        patch_size=cfg["patch_size"],
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=cfg["global_attn_indexes"],
        window_size=cfg["window_size"],
        out_chans=cfg["prompt_dim"],
    )
    pe = ref.PromptEncoder3D(
        embed_dim=cfg["prompt_dim"],
        image_embedding_size=(g, g, g),
        input_image_size=(cfg["img_size"],) * 3,
        mask_in_chans=cfg["mask_in_chans"],
    )
    dec = ref.MaskDecoder3D(
        num_multimask_outputs=cfg["num_multimask_outputs"],
        transformer_dim=cfg["prompt_dim"],
        iou_head_depth=cfg["iou_head_depth"],
        iou_head_hidden_dim=cfg["iou_head_hidden_dim"],
    )
    if cfg["decoder_mlp_dim"] != 2048 or cfg["decoder_depth"] != 2 or cfg["decoder_heads"] != 8:
        dec.transformer = ref.TwoWayTransformer3D(
            depth=cfg["decoder_depth"], embedding_dim=cfg["prompt_dim"], mlp_dim=cfg["decoder_mlp_dim"], num_heads=cfg["decoder_heads"]
        )
    return ref.SAM_Med3D(image_encoder=enc, prompt_encoder=pe, mask_decoder=dec).eval()


def randomise(model):
    """Default init leaves rel_pos and pos_embed at zero and norms at identity: give every one a
    random value so that each part of the arithmetic shows in the outputs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos" in name:
                p.normal_(0.0, 0.5)
            elif name.endswith("pos_embed"):
                p.normal_(0.0, 0.5)
            elif p.dim() == 1 and ("norm" in name or ".neck.1." in name or ".neck.3." in name or "upscaling.1" in name or "downscaling.1" in name or "downscaling.4" in name):
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                else:
                    p.normal_(0.0, 0.1)
            elif p.dim() == 1:
                p.normal_(0.0, 0.05)
        # Logits of order ±5 (as a trained model's), so that the 1e-4 tolerance is tight:
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30.0)


def write_safetensors(path, tensors, metadata):
    """A minimal safetensors writer (the format: u64 header length, JSON header, raw data)."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = tensors[name]
        a = np.ascontiguousarray(a)
        dtype = {np.dtype("float32"): "F32", np.dtype("uint8"): "U8", np.dtype("int64"): "I64"}[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def make_image(cfg, gen):
    field = torch.randn((1, 1, 32, 32, 32), generator=gen)
    image = F.interpolate(field, size=(cfg["img_size"],) * 3, mode="trilinear", align_corners=False)
    return field, image


def decode(model, emb, points, labels, mask):
    pts = None
    if points is not None:
        pts = (torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64))
    sparse, dense = model.prompt_encoder(points=pts, boxes=None, masks=mask)
    low, iou = model.mask_decoder(
        image_embeddings=emb,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return low, iou


def upsample(low, size):
    # medim's SAM_Med3D.postprocess_masks says mode="bilinear", which PyTorch refuses for 5-D
    # tensors; SAM-Med3D's own inference (medim_infer.py) upsamples like this:
    return F.interpolate(low, size=size, mode="trilinear", align_corners=False)


def fixtures():
    torch.manual_seed(0)
    cfg = CONFIG
    model = build(cfg)
    randomise(model)
    gen = torch.Generator().manual_seed(1)
    field, image = make_image(cfg, gen)
    os.makedirs(OUT, exist_ok=True)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(OUT, "weights.safetensors"), sd, {"config": json.dumps(cfg), "source": "medim 0.1.2 sam_med3d.py, random weights (tests/oracle/sam_med3d_fixtures.py)"})

    out = {"image_field": field.numpy(), "image_sum": np.array([image.double().sum().item()], dtype=np.float32)}
    out["image_slice"] = image[0, 0, 37].numpy().copy()
    with torch.no_grad():
        emb = model.image_encoder(image)
        out["embedding"] = emb.numpy()
        lows = {}
        idx = torch.arange(SAMPLE_OFFSET, cfg["img_size"], SAMPLE_STRIDE)
        for name, case in CASES.items():
            mask = lows[case["mask"]] if case["mask"] else None
            low, iou = decode(model, emb, case["points"], case["labels"], mask)
            lows[name] = low
            up = upsample(low, (cfg["img_size"],) * 3)
            out[f"{name}.low_res"] = low.numpy()
            out[f"{name}.iou"] = iou.numpy()
            if name in MASK_BITS_CASES:
                out[f"{name}.mask_bits"] = np.packbits((up[0, 0] > 0).numpy().reshape(-1))
            out[f"{name}.up_sample"] = up[0, 0][idx][:, idx][:, :, idx].numpy().copy()
            print(f"{name}: low-res range [{low.min():.3f}, {low.max():.3f}], iou {iou.flatten().tolist()}, mask voxels {(up > 0).sum().item()}")
    meta = {"config": json.dumps(cfg), "cases": json.dumps(CASES), "sample_stride": SAMPLE_STRIDE, "sample_offset": SAMPLE_OFFSET, "torch": torch.__version__}
    write_safetensors(os.path.join(OUT, "fixture.safetensors"), out, meta)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def full_checkpoint(path, threads):
    torch.manual_seed(0)
    model = ref.build_sam3D_vit_b_ori()
    randomise(model)
    model.eval()
    sd = model.state_dict()
    args = argparse.Namespace(model_type="vit_b_ori", img_size=128, lr=8e-4, note="random weights from tests/oracle/sam_med3d_fixtures.py")
    opt = torch.optim.AdamW(model.parameters(), lr=8e-4)
    ckpt = {"model_state_dict": sd, "optimizer_state_dict": opt.state_dict(), "args": args, "epoch": 0}
    torch.save(ckpt, path)
    write_safetensors(path + ".safetensors", {k: v.detach().numpy().astype(np.float32) for k, v in sd.items()}, {"source": "random vit_b"})
    # Time PyTorch on the same crop as the Rust bench (same 32³ field, seed 1).
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(1)
    _, image = make_image({"img_size": 128}, gen)
    case = CASES["points"]
    with torch.no_grad():
        model.image_encoder(image)  # warm-up
        t0 = time.perf_counter()
        emb = model.image_encoder(image)
        enc_secs = time.perf_counter() - t0
        decode(model, emb, case["points"], case["labels"], None)
        t0 = time.perf_counter()
        n = 5
        for _ in range(n):
            low, iou = decode(model, emb, case["points"], case["labels"], None)
            upsample(low, (128, 128, 128))
        dec_secs = (time.perf_counter() - t0) / n
    bench = {"threads": threads, "encoder_secs": enc_secs, "decoder_secs": dec_secs, "torch": torch.__version__,
             "case": "points", "peak_rss_mb": peak_rss_mb()}
    write_safetensors(path + ".outputs.safetensors", {"embedding": emb.numpy(), "low_res": low.numpy(), "iou": iou.numpy()}, {"case": "points"})
    with open(path + ".bench.json", "w") as f:
        json.dump(bench, f, indent=1)
    print(json.dumps(bench))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full-checkpoint", metavar="PATH", help="also write a full-size random vit_b checkpoint (never commit it)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fixtures()
    if a.full_checkpoint:
        full_checkpoint(a.full_checkpoint, a.threads)

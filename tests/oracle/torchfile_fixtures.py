"""Writes the fixtures of the PyTorch checkpoint reader (crates/sam3d-engine/src/model/torchfile).

Small `.pth` files made by `torch.save` (PyTorch 2.13, CPU), each with what the Rust tests
compare against in `expected.json`:

  distributed.pth   the layout SAM-Med3D distributes: a dict with model_state_dict (f32, f16,
                    bf16, f64, i64, i32, i16, i8, u8, bool; a transposed view; two tensors in one
                    storage; an nn.Parameter; a 0-d tensor), optimizer_state_dict,
                    lr_scheduler_state_dict (a collections.Counter), args (argparse.Namespace),
                    epoch, numpy scalars and a numpy array
  dataparallel.pth  a bare state dict whose names start with `module.` (nn.DataParallel)
  tiny_sam_med3d.pth, student6.pth, sam2d.pth
                    key sets of SAM-Med3D (medim's classes at tiny widths, 12 blocks), a 6-block
                    student (FastSAM3D), and a 2-D SAM (names and kernel ranks of
                    segment-anything's ViT-B, tiny widths; made from the 3-D set: rel_pos_d
                    dropped, one spatial axis less, 3 input channels)
  cuda.pth          saved with the storages' location tag replaced (torch.serialization's
                    location_tag patched to return "cuda:1" / "mps"), which is exactly what a
                    save from a GPU writes; torch.load here needs map_location="cpu" for it
  big_endian.pth    as a big-endian machine writes it (byteorder "big", elements byte-swapped)
  bad_view.pth, bad_storage.pth
                    data.pkl edited: a size past its storage; a storage size unlike its record
  hostile.pth, hostile_eval.pth
                    a dict holding an object whose __reduce__ returns os.system (builtins.eval)
  legacy.pth        _use_new_zipfile_serialization=False (the pre-1.6 format)
  torchscript.pt    torch.jit.save of a tiny module (a different format, refused)

Run from the repository root:
  PYTHONPATH=/root/.cache/sam3d-studio/medim-0.1.2:/root/.cache/sam3d-studio/torch-2.13.0 \
      python3 tests/oracle/torchfile_fixtures.py crates/sam3d-engine/tests/data/torchfile
With `--full FILE` it also writes a full-size random-weight SAM-Med3D ViT-B (about 400 MB,
never committed) in the distributed layout, and FILE.json with its names and shapes.
"""

import argparse
import collections
import json
import os
import sys
from functools import partial

import numpy as np
import torch

SEED = 23


def values(t):
    """Exact values of a tensor, in C order, as JSON integers (floats: their float64 bits)."""
    if t.dtype == torch.bool:
        return [bool(x) for x in t.flatten().tolist()]
    if t.dtype.is_floating_point:
        # As the bits of the float64 value: JSON readers need not round-trip decimals exactly.
        f64 = t.detach().to(torch.float64).flatten().numpy()
        return [int(x) for x in f64.view(np.uint64)]
    return [int(x) for x in t.flatten().tolist()]


def facts(sd):
    """Per tensor: dtype, shape, strides, offset, flags, values; `names` keeps the order."""
    out = collections.OrderedDict(names=list(sd.keys()))
    for k, t in sd.items():
        out[k] = {
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "offset": t.storage_offset(),
            "contiguous": t.is_contiguous(),
            "parameter": isinstance(t, torch.nn.Parameter),
            "values": values(t),
        }
    return out


def distributed(out_dir, expected):
    g = torch.Generator().manual_seed(SEED)
    sd = collections.OrderedDict()
    sd["image_encoder.patch_embed.proj.weight"] = torch.randn(8, 1, 2, 2, 2, generator=g)
    sd["image_encoder.patch_embed.proj.bias"] = torch.randn(8, generator=g)
    sd["image_encoder.blocks.0.attn.qkv.weight"] = torch.randn(24, 8, generator=g).half()
    sd["image_encoder.blocks.0.attn.qkv.bias"] = torch.randn(24, generator=g).bfloat16()
    sd["image_encoder.blocks.0.attn.rel_pos_d"] = torch.randn(3, 4, generator=g).double()
    base = torch.randn(8, 16, generator=g)
    sd["image_encoder.blocks.0.mlp.lin1.weight"] = base.t()  # [16, 8], strides (1, 16)
    shared = torch.randn(20, generator=g)
    sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = shared[:12].view(3, 4)
    sd["prompt_encoder.not_a_point_embed.weight"] = shared[13:17].view(1, 4)  # offset 13
    sd["mask_decoder.iou_token.weight"] = torch.nn.Parameter(torch.randn(1, 8, generator=g))
    sd["mask_decoder.step"] = torch.tensor(7, dtype=torch.int64)  # 0-d
    sd["mask_decoder.index"] = torch.tensor([-3, 0, 2**40], dtype=torch.int64)
    sd["mask_decoder.i32"] = torch.tensor([-2**31, 5, 2**31 - 1], dtype=torch.int32)
    sd["mask_decoder.i16"] = torch.tensor([-32768, 1, 32767], dtype=torch.int16)
    sd["mask_decoder.i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    sd["mask_decoder.u8"] = torch.tensor([0, 128, 255], dtype=torch.uint8)
    sd["mask_decoder.mask"] = torch.tensor([True, False, True, True, False])
    # A slice with a step: non-contiguous, offset 1, stride 3.
    sd["mask_decoder.strided"] = torch.arange(12, dtype=torch.float32)[1::3]

    params = [torch.nn.Parameter(torch.zeros(2, 3)), torch.nn.Parameter(torch.zeros(4))]
    opt = torch.optim.Adam(params, lr=8e-4)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[120, 180], gamma=0.1)
    args = argparse.Namespace(
        task_name="ft_b2x1", model_type="vit_b_ori", img_size=128, lr=8e-4, multi_click=False,
        gpu_ids=[0, 1], checkpoint="ckpt/sam_med3d.pth", step_size=[120, 180], port=12361,
    )
    obj = {
        "epoch": 12,
        "model_state_dict": sd,
        "optimizer_state_dict": opt.state_dict(),
        "lr_scheduler_state_dict": sched.state_dict(),
        "losses": [0.5, np.float32(0.25)],
        "dices": [np.float64(0.75), np.float64(0.8125)],
        "best_loss": np.float64(0.25),
        "best_dice": 0.8125,
        "args": args,
        "used_datas": ["data/train/ct_abd/kidney", "data/train/mr_brain/tumour"],
        "sizes": np.arange(3, dtype=np.int64),
    }
    path = os.path.join(out_dir, "distributed.pth")
    torch.save(obj, path)
    # What torch itself reads back is the oracle.
    back = torch.load(path, weights_only=False)
    expected["distributed.pth"] = {
        "tensors": facts(back["model_state_dict"]),
        "epoch": back["epoch"],
        "best_loss": float(back["best_loss"]),
        "args": {k: v for k, v in vars(back["args"]).items()},
        "top_level_keys": list(back.keys()),
    }


def dataparallel(out_dir, expected):
    g = torch.Generator().manual_seed(SEED + 1)
    sd = collections.OrderedDict()
    sd["module.image_encoder.patch_embed.proj.weight"] = torch.randn(4, 1, 2, 2, 2, generator=g)
    sd["module.image_encoder.blocks.0.norm1.weight"] = torch.randn(4, generator=g)
    sd["module.prompt_encoder.point_embeddings.0.weight"] = torch.randn(1, 4, generator=g)
    sd["module.mask_decoder.iou_token.weight"] = torch.randn(1, 4, generator=g)
    path = os.path.join(out_dir, "dataparallel.pth")
    torch.save(sd, path)
    expected["dataparallel.pth"] = {"tensors": facts(torch.load(path))}


def tiny_sam_med3d(depth):
    """medim's SAM-Med3D at tiny widths: the names and ranks of the real one."""
    from medim.models.sam_med3d import (ImageEncoderViT3D, MaskDecoder3D, PromptEncoder3D,
                                        SAM_Med3D, TwoWayTransformer3D)
    torch.manual_seed(SEED + depth)
    image_size, patch, prompt_dim = 8, 4, 16
    n = image_size // patch
    model = SAM_Med3D(
        image_encoder=ImageEncoderViT3D(
            depth=depth, embed_dim=8, img_size=image_size, mlp_ratio=2,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=patch,
            qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=[i for i in (2, 5, 8, 11) if i < depth], window_size=14,
            out_chans=prompt_dim),
        prompt_encoder=PromptEncoder3D(embed_dim=prompt_dim, image_embedding_size=(n, n, n),
                                       input_image_size=(image_size,) * 3, mask_in_chans=4),
        mask_decoder=MaskDecoder3D(num_multimask_outputs=3, transformer_dim=prompt_dim,
                                   iou_head_depth=3, iou_head_hidden_dim=8),
        pixel_mean=[0.0], pixel_std=[1.0],
    )
    # MaskDecoder3D fixes the two-way transformer's MLP at 2048: narrower here (same names).
    model.mask_decoder.transformer = TwoWayTransformer3D(depth=2, embedding_dim=prompt_dim,
                                                         mlp_dim=8, num_heads=8)
    return model


def to_2d(sd):
    """A 2-D SAM's key set from a 3-D one: segment-anything's names (no rel_pos_d), 2-D kernels
    and a 3-channel patch embedding, 4-D position embedding."""
    out = collections.OrderedDict()
    for k, t in sd.items():
        if k.endswith("rel_pos_d"):
            continue
        if k == "image_encoder.patch_embed.proj.weight":
            t = torch.zeros(t.shape[0], 3, t.shape[2], t.shape[3])
        elif k == "image_encoder.pos_embed":
            t = torch.zeros(t.shape[0], t.shape[1], t.shape[2], t.shape[4])
        elif t.dim() == 5:
            t = torch.zeros(*t.shape[:4])
        out[k] = t.contiguous().clone()
    return out


def pooled(sd, keep_metadata=False):
    """The same names and shapes, every tensor a view of one shared storage (torch.save then
    writes one storage: the files stay small, and many tensors sharing a storage are read)."""
    g = torch.Generator().manual_seed(SEED)
    pool = torch.randn(max(t.numel() for t in sd.values()), generator=g)
    out = collections.OrderedDict((k, pool[:t.numel()].view(t.shape)) for k, t in sd.items())
    if keep_metadata:
        # state_dict()'s `_metadata` attribute: pickled as the OrderedDict's state (BUILD).
        out._metadata = sd._metadata
    return out


def shapes(sd):
    return [[k, list(t.shape)] for k, t in sd.items()]


def key_sets(out_dir, expected):
    teacher = pooled(tiny_sam_med3d(12).state_dict(), keep_metadata=True)
    torch.save({"model_state_dict": teacher, "epoch": 1}, os.path.join(out_dir, "tiny_sam_med3d.pth"))
    student = pooled(tiny_sam_med3d(6).state_dict())
    torch.save({"model_state_dict": student}, os.path.join(out_dir, "student6.pth"))
    sam2d = pooled(to_2d(teacher))
    torch.save(sam2d, os.path.join(out_dir, "sam2d.pth"))
    expected["tiny_sam_med3d.pth"] = {"shapes": shapes(teacher)}
    expected["student6.pth"] = {"shapes": shapes(student)}
    expected["sam2d.pth"] = {"shapes": shapes(sam2d)}


def cuda(out_dir, expected):
    g = torch.Generator().manual_seed(SEED + 2)
    sd = collections.OrderedDict()
    sd["image_encoder.patch_embed.proj.weight"] = torch.randn(2, 1, 2, 2, 2, generator=g)
    sd["mask_decoder.iou_token.weight"] = torch.randn(1, 2, generator=g).half()
    locations = iter(["cuda:1", "mps"])
    original = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: next(locations)
    try:
        path = os.path.join(out_dir, "cuda.pth")
        torch.save({"model_state_dict": sd}, path)
    finally:
        torch.serialization.location_tag = original
    try:
        torch.load(path)
        raise SystemExit("cuda.pth: torch.load without map_location should fail on a CPU-only torch")
    except RuntimeError:
        pass
    back = torch.load(path, map_location="cpu")
    expected["cuda.pth"] = {"tensors": facts(back["model_state_dict"]), "locations": ["cuda:1", "mps"]}


class Hostile:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def hostile(out_dir, expected):
    sd = {"w": torch.zeros(2)}
    torch.save({"model_state_dict": sd, "payload": Hostile(os.system, "echo pwned")},
               os.path.join(out_dir, "hostile.pth"))
    torch.save({"model_state_dict": sd, "payload": Hostile(eval, "1+1")},
               os.path.join(out_dir, "hostile_eval.pth"))
    expected["hostile.pth"] = {"global": f"{os.system.__module__}.system"}
    expected["hostile_eval.pth"] = {"global": "builtins.eval"}


def rewritten(src, dst, old, new):
    """A copy of the archive `src` whose data.pkl has `old` replaced by `new` (once), the other
    records kept as they are (zipfile writes them stored, with fresh CRCs)."""
    import zipfile
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                if data.count(old) != 1:
                    raise SystemExit(f"{src}: {old!r} occurs {data.count(old)} times in data.pkl")
                data = data.replace(old, new)
            zout.writestr(info.filename, data)


def bad_views(out_dir, expected):
    """A size that reaches past its storage (4 floats: size 4 → 40), and a storage whose
    announced numel (4 → 5) does not match its record."""
    src = os.path.join(out_dir, "_tmp_views.pth")
    torch.save({"model_state_dict": {"w": torch.zeros(4)}}, src)
    # The size tuple (4,) is BININT1 4, TUPLE1; the storage numel is BININT1 4 then TUPLE (after
    # the location string 'cpu').
    rewritten(src, os.path.join(out_dir, "bad_view.pth"), b"K\x04\x85", b"K(\x85")
    rewritten(src, os.path.join(out_dir, "bad_storage.pth"), b"cpuq\x08K\x04t", b"cpuq\x08K\x05t")
    os.remove(src)
    for name in ("bad_view.pth", "bad_storage.pth"):
        try:
            torch.load(os.path.join(out_dir, name))
            raise SystemExit(f"{name}: torch.load should refuse it")
        except RuntimeError as e:
            expected[name] = {"torch_says": str(e).splitlines()[0]}


def big_endian(out_dir, expected):
    """As saved on a big-endian machine: byteorder record "big", every element's bytes
    reversed (one dtype here, float32). torch.load byte-swaps it back."""
    import zipfile
    g = torch.Generator().manual_seed(SEED + 3)
    sd = collections.OrderedDict(w=torch.randn(2, 3, generator=g), b=torch.randn(3, generator=g))
    src = os.path.join(out_dir, "_tmp_be.pth")
    torch.save({"model_state_dict": sd}, src)
    dst = os.path.join(out_dir, "big_endian.pth")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, dtype="<f4").astype(">f4").tobytes()
            zout.writestr(info.filename, data)
    os.remove(src)
    back = torch.load(dst)
    if not all(torch.equal(back["model_state_dict"][k], sd[k]) for k in sd):
        raise SystemExit("big_endian.pth: torch.load does not read the values back")
    expected["big_endian.pth"] = {"tensors": facts(back["model_state_dict"])}


def legacy(out_dir, expected):
    torch.save({"model_state_dict": {"w": torch.zeros(2)}}, os.path.join(out_dir, "legacy.pth"),
               _use_new_zipfile_serialization=False)


def torchscript(out_dir, expected):
    m = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(m, os.path.join(out_dir, "torchscript.pt"))


def full(path):
    from medim.models.sam_med3d import build_sam3D_vit_b_ori
    torch.manual_seed(SEED)
    model = build_sam3D_vit_b_ori()
    sd = model.state_dict()
    args = argparse.Namespace(task_name="random_full", model_type="vit_b_ori", img_size=128)
    torch.save({"epoch": 0, "model_state_dict": sd, "args": args}, path)
    with open(path + ".json", "w") as f:
        json.dump({"shapes": shapes(sd),
                   "sums": {k: float(t.double().sum()) for k, t in sd.items()}}, f)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(sd)} tensors")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--full", help="also write a full-size random SAM-Med3D ViT-B here")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    expected = collections.OrderedDict()
    for make in (distributed, dataparallel, key_sets, cuda, hostile, bad_views, big_endian, legacy,
                 torchscript):
        make(a.out_dir, expected)
    from medim.models.sam_med3d import build_sam3D_vit_b_ori
    torch.manual_seed(SEED)
    expected["sam_med3d_vit_b_shapes"] = shapes(build_sam3D_vit_b_ori().state_dict())
    with open(os.path.join(a.out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    if a.full:
        full(a.full)


if __name__ == "__main__":
    sys.exit(main())

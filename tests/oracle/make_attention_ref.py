"""Reference for tests/model_attention_ref.rs: one self-attention transformer block and one
cross-attention block, written with plain PyTorch (F.scaled_dot_product_attention), with fixed
random weights. Writes tests/data/attention_ref.safetensors (weights, inputs, outputs; float32).

Names mirror crates/sam3d-engine/src/model/layers.rs: block.{norm1,attn.to_qkv,attn.to_out,norm2,mlp.mlp.0,mlp.mlp.2}
and xblock.{norm1,self_attn.*,norm2,cross_attn.{to_q,to_kv,to_out},norm3,mlp.mlp.*}.

Run once (the output is committed):
  PYTHONPATH=/root/.cache/sam3d-studio/torch-2.13.0 /tmp/peers/bin/python tests/oracle/make_attention_ref.py
"""
import json
import pathlib
import struct

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
D, H, N, M, B, HID, EPS = 16, 2, 5, 7, 2, 32, 1e-6
W = {}


def lin(name, i, o):
    W[name + ".weight"] = torch.randn(o, i) / i ** 0.5
    W[name + ".bias"] = torch.randn(o) * 0.1


def ln(name):
    W[name + ".weight"] = 1.0 + 0.1 * torch.randn(D)
    W[name + ".bias"] = 0.1 * torch.randn(D)


def apply_lin(name, x):
    return F.linear(x, W[name + ".weight"], W[name + ".bias"])


def apply_ln(name, x):
    return F.layer_norm(x, (D,), W[name + ".weight"], W[name + ".bias"], eps=EPS)


def self_attn(p, x):
    b, n, d = x.shape
    qkv = apply_lin(p + ".to_qkv", x).reshape(b, n, 3, H, d // H).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    return apply_lin(p + ".to_out", o.transpose(1, 2).reshape(b, n, d))


def cross_attn(p, x, ctx):
    b, n, d = x.shape
    m = ctx.shape[1]
    q = apply_lin(p + ".to_q", x).reshape(b, n, H, d // H).transpose(1, 2)
    kv = apply_lin(p + ".to_kv", ctx).reshape(b, m, 2, H, d // H).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(q, kv[0], kv[1])
    return apply_lin(p + ".to_out", o.transpose(1, 2).reshape(b, n, d))


def mlp(p, x):
    return apply_lin(p + ".mlp.2", F.gelu(apply_lin(p + ".mlp.0", x), approximate="tanh"))


for p in ["block"]:
    ln(p + ".norm1"); lin(p + ".attn.to_qkv", D, 3 * D); lin(p + ".attn.to_out", D, D)
    ln(p + ".norm2"); lin(p + ".mlp.mlp.0", D, HID); lin(p + ".mlp.mlp.2", HID, D)
p = "xblock"
ln(p + ".norm1"); lin(p + ".self_attn.to_qkv", D, 3 * D); lin(p + ".self_attn.to_out", D, D)
ln(p + ".norm2"); lin(p + ".cross_attn.to_q", D, D); lin(p + ".cross_attn.to_kv", D, 2 * D)
lin(p + ".cross_attn.to_out", D, D); ln(p + ".norm3"); lin(p + ".mlp.mlp.0", D, HID); lin(p + ".mlp.mlp.2", HID, D)

x = torch.randn(B, N, D)
ctx = torch.randn(B, M, D)
with torch.no_grad():
    h = x + self_attn("block.attn", apply_ln("block.norm1", x))
    y_block = h + mlp("block.mlp", apply_ln("block.norm2", h))
    h = x + self_attn("xblock.self_attn", apply_ln("xblock.norm1", x))
    h = h + cross_attn("xblock.cross_attn", apply_ln("xblock.norm2", h), ctx)
    y_xblock = h + mlp("xblock.mlp", apply_ln("xblock.norm3", h))

out = dict(W)
out.update({"input.x": x, "input.ctx": ctx, "output.block": y_block, "output.xblock": y_xblock})

# safetensors by hand (8-byte little-endian header length, JSON header, raw little-endian data).
header, blobs, off = {}, [], 0
for name in sorted(out):
    t = out[name].contiguous().to(torch.float32)
    raw = t.numpy().astype("<f4").tobytes()
    header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
    blobs.append(raw)
    off += len(raw)
header["__metadata__"] = {"torch": torch.__version__, "heads": str(H), "ln_eps": str(EPS)}
hb = json.dumps(header, separators=(",", ":")).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
dst = pathlib.Path(__file__).resolve().parent.parent / "data" / "attention_ref.safetensors"
dst.write_bytes(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
print(f"wrote {dst} ({dst.stat().st_size} bytes), torch {torch.__version__}")

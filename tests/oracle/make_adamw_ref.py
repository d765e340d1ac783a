"""AdamW reference for the training loop's optimiser (crates/sam3d-engine/src/engine/train.rs).

PyTorch's own torch.optim.AdamW runs five steps on two parameters (a 2x3 matrix with weight
decay, a 3-vector without: the training loop decays only parameters of two or more dimensions),
with fixed gradients, a learning rate that changes each step (as the warm-up and cosine schedule
does) and one step's gradients scaled by 0.5 (as clipping and accumulation do). Writes
tests/data/oracle/adamw.json: the start, the gradients and PyTorch's parameters after each step.

Run (torch from the project's libtorch cache, or any torch):
    PYTHONPATH=~/.cache/sam3d-studio/torch-2.13.0 python3 tests/oracle/make_adamw_ref.py
"""
import json
import pathlib

import torch

torch.manual_seed(0)
w = torch.randn(2, 3, dtype=torch.float64)
b = torch.randn(3, dtype=torch.float64)
start = {"w": w.tolist(), "b": b.tolist()}
steps = []
lrs = [1e-2, 2e-2, 3e-2, 2.5e-2, 1e-2]
scales = [1.0, 1.0, 0.5, 1.0, 1.0]
grads = [(torch.randn(2, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)) for _ in lrs]
wp = torch.nn.Parameter(w.clone())
bp = torch.nn.Parameter(b.clone())
wd = 0.1
opt = torch.optim.AdamW([{"params": [wp], "weight_decay": wd}, {"params": [bp], "weight_decay": 0.0}],
                        lr=lrs[0], betas=(0.9, 0.999), eps=1e-8)
for (gw, gb), lr, sc in zip(grads, lrs, scales):
    for g in opt.param_groups:
        g["lr"] = lr
    wp.grad = gw * sc
    bp.grad = gb * sc
    opt.step()
    steps.append({"lr": lr, "scale": sc, "grad_w": gw.tolist(), "grad_b": gb.tolist(),
                  "w": wp.detach().tolist(), "b": bp.detach().tolist()})
out = {"torch": torch.__version__, "weight_decay": wd, "start": start, "steps": steps}
path = pathlib.Path(__file__).resolve().parents[1] / "data" / "oracle" / "adamw.json"
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(out, indent=1))
print(f"wrote {path}")

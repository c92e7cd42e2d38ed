#!/usr/bin/env python3
"""Writes the fixture of a UNet with diffusers' `resnet_time_scale_shift: "scale_shift"`.

A small UNet (../shared/bench/torch_reference.py's networks) whose every
ResnetBlock2D takes the time embedding as diffusers' "scale_shift" does
(time_emb_proj to 2·C; scale, shift = chunk(2); norm2(h) · (1 + scale) + shift),
written here after diffusers' models/resnet.py (the reference has only the
"default" bias), with seeded random weights. In float64 it computes one forward
and the gradient of mean((out − target)²) and writes a diffusers folder:

  OUT/config.json, OUT/diffusion_pytorch_model.safetensors   (float32 weights)
  OUT/golden.safetensors: sample [2,3,8,8], t [2] I32, context [2,5,16],
                          target [2,3,8,8], out [2,3,8,8], loss [1],
                          grad.<name> for every time_emb_proj and norm2 parameter

Usage: python3 make-scale-shift-fixture.py OUT_DIR [SHARED_DIR]
"""
import json, os, sys, types, importlib.util
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save
from small_unet import SMALL_UNET_CONFIG

shared = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "shared")
spec = importlib.util.spec_from_file_location("ref", os.path.join(shared, "bench", "torch_reference.py"))
ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)


def scale_shift_forward(self, x, temb):
    # diffusers ResnetBlock2D.forward with time_embedding_norm == "scale_shift"
    h = self.conv1(F.silu(self.norm1(x)))
    temb = self.time_emb_proj(F.silu(temb))[:, :, None, None]
    time_scale, time_shift = torch.chunk(temb, 2, dim=1)
    h = self.norm2(h)
    h = h * (1 + time_scale) + time_shift
    h = self.conv2(F.silu(h))
    if self.conv_shortcut is not None:
        x = self.conv_shortcut(x)
    return x + h


cfg = {**SMALL_UNET_CONFIG, "resnet_time_scale_shift": "scale_shift"}
torch.manual_seed(7)
torch.set_default_dtype(torch.float64)
unet = ref.UNet2DConditionModel(cfg)
resnets = [m for m in unet.modules() if isinstance(m, ref.ResnetBlock2D)]
for m in resnets:
    cout = m.conv1.out_channels
    m.time_emb_proj = nn.Linear(m.time_emb_proj.in_features, 2 * cout)
    m.forward = types.MethodType(scale_shift_forward, m)
with torch.no_grad():  # scales well away from 0 and GroupNorms away from identity, so every term is seen
    for name, p in unet.named_parameters():
        if "norm" in name: p.add_(0.1 * torch.randn_like(p))
        if "time_emb_proj" in name: p.mul_(3.0)
_time_proj = unet.time_proj.forward
unet.time_proj.forward = lambda t: _time_proj(t).double()

context = torch.randn(2, 5, cfg["cross_attention_dim"])
sample = torch.randn(2, 3, 8, 8)
target = torch.randn(2, 3, 8, 8)
t = torch.tensor([30, 800])
out = unet(sample, t, context)
loss = ((out - target) ** 2).mean()
loss.backward()
grads = {f"grad.{n}": p.grad for n, p in unet.named_parameters() if "time_emb_proj" in n or "norm2" in n}

os.makedirs(sys.argv[1], exist_ok=True)
with open(os.path.join(sys.argv[1], "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
save(os.path.join(sys.argv[1], "diffusion_pytorch_model.safetensors"), dict(unet.state_dict()))
save(os.path.join(sys.argv[1], "golden.safetensors"), {
    "sample": sample, "t": t.int(), "context": context, "target": target, "out": out,
    "loss": loss.reshape(1), **grads,
})
print(f"out |mean| {out.abs().mean().item():.4f}; loss {loss.item():.6f}; {len(resnets)} resnets; {len(grads)} gradients; wrote {sys.argv[1]}")

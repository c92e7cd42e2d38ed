#!/usr/bin/env python3
"""Writes the gradient fixture of one training step of the shapes-s networks.

Loads the parity fixture's weights (../shared/fixtures/shapes-s-parity) into
../shared/bench/torch_reference.py's networks, runs the loss of a training step
with the text encoder trainable, loss = mean((unet(x_t, t, text(ids)) - target)^2)
on fixed inputs, and saves in float32 (computed in float64):

  inputs:  input_ids [2,16] I32, x_t [2,3,32,32], t [2] I32, target [2,3,32,32], loss []
  grad_norm/<param>  [] for every UNet and text-encoder parameter (text: "text_encoder.<name>")
  grad/<param>       the full gradient of the text encoder's parameters and of every
                     attention's to_k / to_v / to_out.0 weight (cross-attention inputs
                     and the way back to the text encoder)

Usage: python3 make-grad-fixture.py OUT.safetensors [SHARED_DIR]
"""
import json, os, struct, sys, importlib.util
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save

shared = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "shared")
spec = importlib.util.spec_from_file_location("ref", os.path.join(shared, "bench", "torch_reference.py"))
ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
fixture = os.path.join(shared, "fixtures", "shapes-s-parity")

DT = {"F32": torch.float32, "I32": torch.int32}

def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n)); data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=DT[v["dtype"]]).reshape(v["shape"]).clone()
        out[k] = t.double() if t.dtype == torch.float32 else t
    return out

ucfg = json.load(open(os.path.join(fixture, "unet", "config.json")))
tcfg = json.load(open(os.path.join(fixture, "text_encoder", "config.json")))
torch.set_default_dtype(torch.float64)  # float64 throughout, the time projection included
unet, text = ref.UNet2DConditionModel(ucfg), ref.CLIPTextModel(tcfg)
unet.load_state_dict(load(os.path.join(fixture, "unet", "diffusion_pytorch_model.safetensors")))
text.load_state_dict(load(os.path.join(fixture, "text_encoder", "model.safetensors")))
unet, text = unet.double(), text.double()
# The reference's timestep projection computes in float32 (as diffusers'); carry it on in float64.
_time_proj = unet.time_proj.forward
unet.time_proj.forward = lambda t: _time_proj(t).double()
gold = load(os.path.join(fixture, "golden.safetensors"))
ids = gold["input_ids"].long()
g = torch.Generator().manual_seed(11)
x0 = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
noise = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
t = torch.tensor([120, 730])
abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[t].view(2, 1, 1, 1)
xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
target = abar.sqrt() * noise - (1 - abar).sqrt() * x0  # v-prediction
loss = ((unet(xt, t, text(ids)) - target) ** 2).mean()
loss.backward()

out = {"input_ids": ids.int(), "x_t": xt, "t": t.int(), "target": target, "loss": loss.detach()}
for prefix, model in (("", unet), ("text_encoder.", text)):
    for name, p in model.named_parameters():
        out[f"grad_norm/{prefix}{name}"] = p.grad.norm()
        if prefix or any(name.endswith(s) for s in ("to_k.weight", "to_v.weight", "to_out.0.weight")):
            out[f"grad/{prefix}{name}"] = p.grad
save(sys.argv[1], out)
print(f"loss {loss.item():.6f}; {sum(1 for k in out if k.startswith('grad_norm/'))} parameters; wrote {sys.argv[1]}")

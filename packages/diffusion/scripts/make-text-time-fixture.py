#!/usr/bin/env python3
"""Writes the fixture of a UNet with diffusers' `addition_embed_type: "text"`.

A small UNet (../shared/bench/torch_reference.py's networks) plus diffusers'
TextTimeEmbedding / AttentionPooling, written here after diffusers'
models/embeddings.py (the reference has no add_embedding), with seeded random
weights; computes one forward in float64 and writes a diffusers folder:

  OUT/config.json, OUT/diffusion_pytorch_model.safetensors   (float32 weights)
  OUT/golden.safetensors: sample [2,3,8,8], t [2] I32, context [2,5,16],
                          pooled [2,64] (add_embedding's output), out [2,3,8,8]

Usage: python3 make-text-time-fixture.py OUT_DIR [SHARED_DIR]
"""
import json, math, os, sys, importlib.util
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save
from small_unet import SMALL_UNET_CONFIG

shared = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "shared")
spec = importlib.util.spec_from_file_location("ref", os.path.join(shared, "bench", "torch_reference.py"))
ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)


class AttentionPooling(nn.Module):
    def __init__(self, num_heads, embed_dim):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.num_heads = num_heads
        self.dim_per_head = embed_dim // num_heads

    def forward(self, x):
        bs, length, width = x.size()

        def shape(x):
            x = x.view(bs, -1, self.num_heads, self.dim_per_head).transpose(1, 2)
            return x.reshape(bs * self.num_heads, -1, self.dim_per_head).transpose(1, 2)

        class_token = x.mean(dim=1, keepdim=True) + self.positional_embedding
        x = torch.cat([class_token, x], dim=1)
        q, k, v = shape(self.q_proj(class_token)), shape(self.k_proj(x)), shape(self.v_proj(x))
        scale = 1 / math.sqrt(math.sqrt(self.dim_per_head))
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
        a = torch.einsum("bts,bcs->bct", weight, v)
        return a.reshape(bs, -1, 1).transpose(1, 2)[:, 0, :]


class TextTimeEmbedding(nn.Module):
    def __init__(self, encoder_dim, time_embed_dim, num_heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(encoder_dim)
        self.pool = AttentionPooling(num_heads, encoder_dim)
        self.proj = nn.Linear(encoder_dim, time_embed_dim)
        self.norm2 = nn.LayerNorm(time_embed_dim)

    def forward(self, h):
        return self.norm2(self.proj(self.pool(self.norm1(h))))


cfg = {**SMALL_UNET_CONFIG, "addition_embed_type": "text", "addition_embed_type_num_heads": 4}
torch.manual_seed(5)
torch.set_default_dtype(torch.float64)
unet = ref.UNet2DConditionModel(cfg)
unet.add_embedding = TextTimeEmbedding(cfg["cross_attention_dim"], cfg["block_out_channels"][0] * 4, cfg["addition_embed_type_num_heads"])
with torch.no_grad():  # LayerNorms away from identity, so their affine parameters are checked too
    for name, p in unet.named_parameters():
        if "norm" in name: p.add_(0.1 * torch.randn_like(p))
_time_proj = unet.time_proj.forward
unet.time_proj.forward = lambda t: _time_proj(t).double()

context = torch.randn(2, 5, cfg["cross_attention_dim"])
# diffusers: emb = time_embedding(t_emb) + add_embedding(encoder_hidden_states)
_time_embedding = unet.time_embedding.forward
unet.time_embedding.forward = lambda e: _time_embedding(e) + unet.add_embedding(context)
sample = torch.randn(2, 3, 8, 8)
t = torch.tensor([30, 800])
with torch.no_grad():
    out = unet(sample, t, context)
    pooled = unet.add_embedding(context)

os.makedirs(sys.argv[1], exist_ok=True)
with open(os.path.join(sys.argv[1], "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
save(os.path.join(sys.argv[1], "diffusion_pytorch_model.safetensors"), dict(unet.state_dict()))
save(os.path.join(sys.argv[1], "golden.safetensors"), {"sample": sample, "t": t.int(), "context": context, "pooled": pooled, "out": out})
print(f"out |mean| {out.abs().mean().item():.4f}; {len(unet.state_dict())} tensors; wrote {sys.argv[1]}")

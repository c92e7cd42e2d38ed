"""PyTorch reference for rescaleNoiseCfg: diffusers' rescale_noise_cfg
(pipelines/stable_diffusion/pipeline_stable_diffusion.py) on fixed inputs, float64.

    /usr/bin/python3 scripts/make-guidance-rescale-fixture.py
writes test/fixtures/guidance-rescale.json. Layout does not matter: the
standard deviations are over every dimension but the batch.
"""
import json
import os

import torch

torch.manual_seed(0)
conditional = torch.randn(2, 4, 4, 3, dtype=torch.float64)
unconditional = torch.randn(2, 4, 4, 3, dtype=torch.float64) * 0.5
guided = unconditional + 7.5 * (conditional - unconditional)


def rescale_noise_cfg(noise_cfg, noise_pred_text, guidance_rescale):
    # diffusers' formula: torch.std (unbiased) over all but the batch dimension.
    std_text = noise_pred_text.std(dim=list(range(1, noise_pred_text.ndim)), keepdim=True)
    std_cfg = noise_cfg.std(dim=list(range(1, noise_cfg.ndim)), keepdim=True)
    rescaled = noise_cfg * (std_text / std_cfg)
    return guidance_rescale * rescaled + (1 - guidance_rescale) * noise_cfg


out = {
    "shape": list(guided.shape),
    "guided": guided.flatten().tolist(),
    "conditional": conditional.flatten().tolist(),
    "cases": [{"guidance_rescale": phi, "expected": rescale_noise_cfg(guided, conditional, phi).flatten().tolist()} for phi in (0.0, 0.7, 1.0)],
}
path = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "guidance-rescale.json")
with open(path + ".tmp", "w") as f:
    json.dump(out, f)
os.replace(path + ".tmp", path)
print("wrote", os.path.normpath(path))

"""The small UNet config the fixture scripts share (8×8 samples, two levels, cross-attention at the second)."""

SMALL_UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel", "sample_size": 8, "in_channels": 3, "out_channels": 3,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "block_out_channels": [16, 32], "layers_per_block": 1,
    "attention_head_dim": 2, "cross_attention_dim": 16, "norm_num_groups": 4, "norm_eps": 1e-5, "act_fn": "silu",
    "flip_sin_to_cos": True, "freq_shift": 0, "use_linear_projection": True, "transformer_layers_per_block": 1,
}

"""CodeFormer (Zhou et al., NeurIPS 2022), written for facerestore so that the public `.pth`
weights users already keep load strictly and run in our PyTorch backend.

Shape of the network: a VQGAN encoder takes the 512 px face to a 16x16 grid of 256-d features;
a transformer predicts, for each grid cell, which of 1024 codebook entries the clean face would
use; the codebook features go through the VQGAN generator back to 512 px. The fidelity weight
`w` (0..1) mixes in the encoder's features at 32-256 px through SFT blocks: 0 trusts the
codebook (quality), 1 the input (fidelity).

Parameter names follow the published layout (`encoder.blocks.N`, `generator.blocks.N`,
`ft_layers.N`, `fuse_convs_dict.32`, ...); parity with the reference implementation on PyPI
(`codeformer-pip`) is tested in `tests/test_byo_models.py`. CodeFormer's weights are under the
S-Lab License 1.0: non-commercial use only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

CHANNEL_MULTIPLIERS = (1, 2, 2, 4, 4, 8)  # x64 features at 512, 256, 128, 64, 32, 16 px
ATTENTION_AT = 16  # px: the grid the transformer works on
CODEBOOK_SIZE = 1024
CODE_DIM = 256
FUSED_SIZES = ("32", "64", "128", "256")
# Block index (in encoder.blocks / generator.blocks) whose output is tapped / fused, per size.
ENCODER_TAP = {"256": 5, "128": 8, "64": 11, "32": 14}
GENERATOR_FUSE = {"32": 9, "64": 12, "128": 15, "256": 18}


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2, self.conv2 = group_norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_out = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.conv_out is None else self.conv_out(x))


class SpatialAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        q, k, v = (f(normed).flatten(2).transpose(1, 2) for f in (self.q, self.k, self.v))  # (B, HW, C)
        attended = F.softmax(q @ k.transpose(1, 2) * c**-0.5, dim=-1) @ v
        return x + self.proj_out(attended.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # pad right and bottom only, as trained


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def encoder_blocks(nf: int = 64, image_size: int = 512) -> nn.ModuleList:
    blocks: list[nn.Module] = [nn.Conv2d(3, nf, 3, padding=1)]
    size, ch = image_size, nf
    for level, multiplier in enumerate(CHANNEL_MULTIPLIERS):
        for _ in range(2):
            blocks.append(ResBlock(ch, nf * multiplier))
            ch = nf * multiplier
            if size == ATTENTION_AT:
                blocks.append(SpatialAttention(ch))
        if level < len(CHANNEL_MULTIPLIERS) - 1:
            blocks.append(Downsample(ch))
            size //= 2
    blocks += [
        ResBlock(ch, ch),
        SpatialAttention(ch),
        ResBlock(ch, ch),
        group_norm(ch),
        nn.Conv2d(ch, CODE_DIM, 3, padding=1),
    ]
    return nn.ModuleList(blocks)


def generator_blocks(nf: int = 64) -> nn.ModuleList:
    ch = nf * CHANNEL_MULTIPLIERS[-1]
    blocks: list[nn.Module] = [
        nn.Conv2d(CODE_DIM, ch, 3, padding=1),
        ResBlock(ch, ch),
        SpatialAttention(ch),
        ResBlock(ch, ch),
    ]
    size = ATTENTION_AT
    for level in reversed(range(len(CHANNEL_MULTIPLIERS))):
        for _ in range(2):
            blocks.append(ResBlock(ch, nf * CHANNEL_MULTIPLIERS[level]))
            ch = nf * CHANNEL_MULTIPLIERS[level]
            if size == ATTENTION_AT:
                blocks.append(SpatialAttention(ch))
        if level > 0:
            blocks.append(Upsample(ch))
            size *= 2
    blocks += [group_norm(ch), nn.Conv2d(ch, 3, 3, padding=1)]
    return nn.ModuleList(blocks)


class Codebook(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(CODEBOOK_SIZE, CODE_DIM)


class TransformerLayer(nn.Module):
    """Pre-norm self-attention and MLP; the position embedding is added to queries and keys."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads)
        self.linear1, self.linear2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        normed = self.norm1(x)
        x = x + self.self_attn(normed + position, normed + position, normed, need_weights=False)[0]
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class FeatureFusion(nn.Module):
    """Spatial feature transform: encoder features modulate the generator's, scaled by `w`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * channels, channels)
        self.scale = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(channels, channels, 3, padding=1)
        )
        self.shift = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, encoded: torch.Tensor, decoded: torch.Tensor, w: float) -> torch.Tensor:
        condition = self.encode_enc(torch.cat([encoded, decoded], dim=1))
        return decoded + w * (decoded * self.scale(condition) + self.shift(condition))


def match_statistics(features: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-channel mean and standard deviation of `reference` given to `features` (AdaIN): the
    codebook's features take the input's colour and illumination."""

    def stats(t: torch.Tensor):
        flat = t.flatten(2)
        return flat.mean(2)[..., None, None], (flat.var(2) + eps).sqrt()[..., None, None]

    mean, std = stats(features)
    ref_mean, ref_std = stats(reference)
    return (features - mean) / std * ref_std + ref_mean


class CodeFormer(nn.Module):
    """(N, 3, 512, 512) in [-1, 1] -> the same, restored. `fidelity` is CodeFormer's `w`."""

    def __init__(self, dim: int = 512, heads: int = 8, layers: int = 9, nf: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.blocks = encoder_blocks(nf)
        self.quantize = Codebook()
        self.generator = nn.Module()
        self.generator.blocks = generator_blocks(nf)
        grid = ATTENTION_AT * ATTENTION_AT
        self.position_emb = nn.Parameter(torch.zeros(grid, dim))
        self.feat_emb = nn.Linear(CODE_DIM, dim)
        self.ft_layers = nn.Sequential(*[TransformerLayer(dim, heads, 2 * dim) for _ in range(layers)])
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, CODEBOOK_SIZE, bias=False))
        channels = {"32": 4 * nf, "64": 4 * nf, "128": 2 * nf, "256": 2 * nf}
        self.fuse_convs_dict = nn.ModuleDict({size: FeatureFusion(channels[size]) for size in FUSED_SIZES})

    def forward(self, x: torch.Tensor, fidelity: float = 0.5) -> torch.Tensor:
        taps = {}
        tap_at = {index: size for size, index in ENCODER_TAP.items()}
        for index, block in enumerate(self.encoder.blocks):
            x = block(x)
            if index in tap_at:
                taps[tap_at[index]] = x
        low_quality = x  # (N, 256, 16, 16)

        tokens = self.feat_emb(low_quality.flatten(2).permute(2, 0, 1))  # (256 cells, N, dim)
        position = self.position_emb[:, None, :]
        for layer in self.ft_layers:
            tokens = layer(tokens, position)
        codes = self.idx_pred_layer(tokens).argmax(-1).transpose(0, 1)  # (N, 256 cells)
        quantised = self.quantize.embedding(codes).transpose(1, 2).reshape(low_quality.shape)
        x = match_statistics(quantised, low_quality)

        fuse_at = {index: size for size, index in GENERATOR_FUSE.items()}
        for index, block in enumerate(self.generator.blocks):
            x = block(x)
            if index in fuse_at and fidelity > 0:
                x = self.fuse_convs_dict[fuse_at[index]](taps[fuse_at[index]], x, fidelity)
        return x

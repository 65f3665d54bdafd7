"""GFPGAN v1.3 / v1.4 ("clean" architecture, no custom CUDA ops), written for this project from
the published design (Wang et al., "Towards Real-World Blind Face Restoration with Generative
Facial Prior", CVPR 2021): a U-Net encoder whose deepest features give StyleGAN2 latents, and
whose decoder features give per-level scale and shift maps (spatial feature transform) applied
to half of the StyleGAN2 decoder's channels.

Parameter names follow the official key layout, so a studio's own `GFPGANv1.3.pth` /
`GFPGANv1.4.pth` (`params_ema`) loads strictly. Inputs are 512x512 FFHQ-aligned RGB in [-1, 1].

Unlike the reference inference, the decoder's noise inputs are the stored noise maps, not fresh
random noise per call: random noise would make every frame's skin texture different (flicker),
and the same input would not give the same output twice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _resample(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class NormStyleCode(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per input channel by a style vector, then (optionally)
    normalised per output channel; one grouped convolution runs the whole batch."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, demodulate=True, resample=None):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel = in_ch, out_ch, kernel
        self.demodulate, self.resample = demodulate, resample
        self.modulation = nn.Linear(style_dim, in_ch, bias=True)
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel) / math.sqrt(in_ch * kernel**2))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        weight = self.weight * self.modulation(style).view(b, 1, c, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, self.out_ch, 1, 1, 1)
        weight = weight.view(b * self.out_ch, c, self.kernel, self.kernel)
        if self.resample == "up":
            x = _resample(x, 2.0)
        h, w = x.shape[2:]
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, padding=self.kernel // 2, groups=b)
        return out.view(b, self.out_ch, *out.shape[2:])


class StyleConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, style_dim: int, resample=None) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, True, resample)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.modulated_conv(x, style) * 2**0.5  # the official weights expect this gain
        out = out + self.weight * noise + self.bias
        return F.leaky_relu(out, 0.2)


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            out = out + (_resample(skip, 2.0) if self.upsample else skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.repeat(batch, 1, 1, 1)


def _channels(multiplier: float, narrow: float) -> dict[int, int]:
    wide = {4: 512, 8: 512, 16: 512, 32: 512}
    rest = {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {k: int(v * narrow) for k, v in wide.items()} | {k: int(v * multiplier * narrow) for k, v in rest.items()}


class StyleDecoder(nn.Module):
    """StyleGAN2 generator with spatial feature transforms on half the channels of each level."""

    def __init__(self, out_size: int, style_dim: int, num_mlp: int, multiplier: float) -> None:
        super().__init__()
        channels = _channels(multiplier, 1.0)
        layers: list[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            layers += [nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2, True)]
        self.style_mlp = nn.Sequential(*layers)  # unused with latent inputs; kept for the key layout
        self.constant_input = ConstantInput(channels[4], 4)
        self.style_conv1 = StyleConv(channels[4], channels[4], style_dim)
        self.to_rgb1 = ToRGB(channels[4], style_dim, upsample=False)
        self.log_size = int(math.log2(out_size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.noises = nn.Module()
        for index in range(self.num_layers):
            side = 2 ** ((index + 5) // 2)
            self.noises.register_buffer(f"noise{index}", torch.randn(1, 1, side, side))
        self.style_convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        in_ch = channels[4]
        for level in range(3, self.log_size + 1):
            out_ch = channels[2**level]
            self.style_convs.append(StyleConv(in_ch, out_ch, style_dim, resample="up"))
            self.style_convs.append(StyleConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch

    def forward(self, latent: torch.Tensor, conditions: list[torch.Tensor]) -> torch.Tensor:
        noise = [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]
        out = self.style_conv1(self.constant_input(latent.shape[0]), latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(
            self.style_convs[::2], self.style_convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv1(out, latent[:, i], noise1)
            if i < len(conditions):
                same, modulated = torch.split(out, out.size(1) // 2, dim=1)
                out = torch.cat([same, modulated * conditions[i - 1] + conditions[i]], dim=1)
            out = conv2(out, latent[:, i + 1], noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, factor: float) -> None:
        super().__init__()
        self.factor = factor
        self.conv1 = nn.Conv2d(in_ch, in_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _resample(F.leaky_relu(self.conv1(x), 0.2), self.factor)
        out = F.leaky_relu(self.conv2(out), 0.2)
        return out + self.skip(_resample(x, self.factor))


class GFPGAN(nn.Module):
    """GFPGANv1Clean with the v1.3 / v1.4 settings (512 px, channel multiplier 2, one latent per
    layer, SFT on half the channels)."""

    def __init__(self, out_size: int = 512, style_dim: int = 512, multiplier: float = 2, num_mlp: int = 8) -> None:
        super().__init__()
        self.style_dim = style_dim
        self.log_size = int(math.log2(out_size))
        channels = _channels(multiplier, 0.5)  # the U-Net is half as wide as the decoder
        self.conv_body_first = nn.Conv2d(3, channels[out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_ch = channels[out_size]
        for level in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_ch, channels[2 ** (level - 1)], 0.5))
            in_ch = channels[2 ** (level - 1)]
        self.final_conv = nn.Conv2d(in_ch, channels[4], 3, 1, 1)
        self.conv_body_up = nn.ModuleList()
        in_ch = channels[4]
        for level in range(3, self.log_size + 1):
            self.conv_body_up.append(ResBlock(in_ch, channels[2**level], 2.0))
            in_ch = channels[2**level]
        # Intermediate RGB heads are training-only; kept so official weights load strictly.
        self.toRGB = nn.ModuleList(nn.Conv2d(channels[2**level], 3, 1) for level in range(3, self.log_size + 1))
        self.final_linear = nn.Linear(channels[4] * 16, (self.log_size * 2 - 2) * style_dim)
        self.stylegan_decoder = StyleDecoder(out_size, style_dim, num_mlp, multiplier)

        def sft_head(ch: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.LeakyReLU(0.2, True), nn.Conv2d(ch, ch, 3, 1, 1))

        self.condition_scale = nn.ModuleList(sft_head(channels[2**level]) for level in range(3, self.log_size + 1))
        self.condition_shift = nn.ModuleList(sft_head(channels[2**level]) for level in range(3, self.log_size + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 512, 512) in [-1, 1] -> the same shape, unclamped."""
        feat = F.leaky_relu(self.conv_body_first(x), 0.2)
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = F.leaky_relu(self.final_conv(feat), 0.2)
        latent = self.final_linear(feat.flatten(1)).view(feat.size(0), -1, self.style_dim)
        conditions = []
        for skip, up, scale, shift in zip(skips, self.conv_body_up, self.condition_scale, self.condition_shift):
            feat = up(feat + skip)
            conditions += [scale(feat), shift(feat)]
        return self.stylegan_decoder(latent, conditions)

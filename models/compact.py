"""A compact x4 restorer: a plain stack of 3x3 convolutions with PReLU, a pixel shuffle, and the
nearest-upsampled input added back (the SRVGGNetCompact design of Real-ESRGAN's video models).

Written for this project from the published architecture (Wang et al., Real-ESRGAN 2021).
Module names follow the official key layout (``body.N``) so its published weights load
strictly. About 40x cheaper than RRDBNet per pixel, which is what makes training it on face
crops feasible on a CPU and restoring many faces per frame cheap on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CompactNet(nn.Module):
    def __init__(self, num_feat: int = 64, num_conv: int = 16, upscale: int = 4) -> None:
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        # The network only learns the residual over a nearest-neighbour upscale.
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")

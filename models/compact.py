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
    """`frames` > 1: a window restorer. Its input is the face's crop followed by its aligned
    neighbours' (3 channels each, `models.flow.window_input`); only the first convolution
    sees them, and the residual is added to the centre crop."""

    def __init__(self, num_feat: int = 64, num_conv: int = 16, upscale: int = 4, frames: int = 1) -> None:
        super().__init__()
        self.upscale = upscale
        self.frames = frames
        layers: list[nn.Module] = [nn.Conv2d(3 * frames, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
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
        return self.upsampler(out) + F.interpolate(x[:, :3], scale_factor=self.upscale, mode="nearest")


def widened_to_window(net: CompactNet, frames: int) -> CompactNet:
    """`net` as a window restorer of `frames` frames that starts as exactly `net` on the centre
    crop: the first convolution's weights for the neighbours' channels start at zero, so
    training only adds what the neighbours are worth. (Starting from `net` on the window's mean,
    with a 10x learning rate on the first convolution, scored 0.006 dB lower on the bench suite.)"""
    first = net.body[0]
    wide = CompactNet(first.out_channels, (len(net.body) - 3) // 2, net.upscale, frames)
    state = net.state_dict()
    weight = state["body.0.weight"]
    extra = weight.new_zeros(weight.shape[0], 3 * (frames - 1), *weight.shape[2:])
    state["body.0.weight"] = torch.cat([weight, extra], dim=1)
    wide.load_state_dict(state, strict=True)
    return wide


class FaceResolutionNet(nn.Module):
    """A x1 face restorer that works at the face's own resolution: a 2x pixel-unshuffle folds
    every input pixel into channels (nothing is thrown away), the compact convolution stack runs
    at half resolution (a quarter of the cost), and a pixel shuffle unfolds its residual back
    onto the input. Large faces keep their detail instead of being shrunk to fit a x4 network's
    input; cost still follows face area. Side lengths must be even.

    The last convolution starts at zero, so the untrained network is the identity: training
    only ever adds a correction to the plate."""

    def __init__(self, num_feat: int = 64, num_conv: int = 12) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(12, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        # He initialisation for PReLU: with PyTorch's default the activations fade 10x over the
        # stack (measured 0.21 -> 0.017) and training from scratch barely moves.
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)
        layers.append(nn.Conv2d(num_feat, 12, 3, 1, 1))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.ModuleList(layers)
        self.unshuffle = nn.PixelUnshuffle(2)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.unshuffle(x)
        for layer in self.body:
            out = layer(out)
        return x + self.shuffle(out)

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


def deepened(net: CompactNet) -> CompactNet:
    """`net` with twice its convolutions, that starts as exactly `net`: after each of its body
    convolutions (and PReLU) comes a new one that is the identity (a Dirac kernel, zero bias, a
    PReLU of slope 1), so training only adds what the depth is worth. The stack then sees 67 px
    around each pixel instead of 35, at twice the cost."""
    first = net.body[0]
    num_conv = (len(net.body) - 3) // 2
    deep = CompactNet(first.out_channels, 2 * num_conv, net.upscale, net.frames)
    old, new = list(net.body), list(deep.body)
    with torch.no_grad():
        mapping = [(0, 0), (1, 1)]  # first convolution and its PReLU
        for i in range(num_conv):
            conv, prelu = 2 + 2 * i, 3 + 2 * i
            mapping += [(conv, 2 + 4 * i), (prelu, 3 + 4 * i)]
            nn.init.dirac_(new[4 + 4 * i].weight)
            nn.init.zeros_(new[4 + 4 * i].bias)
            nn.init.ones_(new[5 + 4 * i].weight)
        mapping.append((len(old) - 1, len(new) - 1))
        for source, target in mapping:
            new[target].load_state_dict(old[source].state_dict())
    return deep


def deepened_original_layers(deep: CompactNet) -> list[int]:
    """Indices in `deep.body` of the layers `deepened` took from the original network (its
    first convolution and PReLU, each convolution and PReLU of the stack, the last convolution);
    the others are the new identity layers."""
    num_conv = (len(deep.body) - 3) // 4
    return [0, 1, *(k for i in range(num_conv) for k in (2 + 4 * i, 3 + 4 * i)), len(deep.body) - 1]


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


class ContextCompactNet(CompactNet):
    """A compact window restorer that also sees the whole face. The plain stack sees 35 px around
    each pixel: enough for texture, too little to tell an eye from a nostril. A small encoder
    (strided convolutions to 1/8 of the input, about 5 % of the stack's cost) reads the face's
    layout, a decoder brings it back to the input's grid, and a 1x1 convolution adds it to the
    stack's features halfway down. That convolution starts at zero, so a network made from a
    trained CompactNet (`with_context`) starts as exactly that network."""

    def __init__(
        self,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        frames: int = 3,
        widths: tuple[int, int, int] = (32, 64, 128),
    ) -> None:
        super().__init__(num_feat, num_conv, upscale, frames)
        c1, c2, c3 = widths
        # Added after the PReLU of body convolution `inject_after` (halfway down the stack).
        self.inject_after = 2 * (num_conv // 2) + 1

        def block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.PReLU(num_parameters=c_out)]

        self.down1 = nn.Sequential(*block(3 * frames, c1, 2), *block(c1, c1))
        self.down2 = nn.Sequential(*block(c1, c2, 2), *block(c2, c2))
        self.down3 = nn.Sequential(*block(c2, c3, 2), *block(c3, c3), *block(c3, c3), *block(c3, c3))
        self.up2 = nn.Sequential(*block(c2 + c3, c2))
        self.up1 = nn.Sequential(*block(c1 + c2, c1))
        self.inject = nn.Conv2d(c1, num_feat, 1)
        for module in (*self.down1, *self.down2, *self.down3, *self.up2, *self.up1):
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.inject.weight)
        nn.init.zeros_(self.inject.bias)

    def context(self, whole: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The encoder's features of the whole face (`whole`: the crop at CONTEXT_SIDE, see
        `context_input`), sampled onto a `size` grid placed by `theta` (affine, normalised
        coordinates, as `affine_grid` takes them): the crop itself, or in training a patch of it."""
        d1 = self.down1(whole)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        u2 = self.up2(torch.cat([d2, F.interpolate(d3, size=d2.shape[-2:], mode="bilinear")], dim=1))
        u1 = self.up1(torch.cat([d1, F.interpolate(u2, size=d1.shape[-2:], mode="bilinear")], dim=1))
        grid = F.affine_grid(theta, [theta.shape[0], u1.shape[1], *size], align_corners=False)
        return self.inject(F.grid_sample(u1, grid, mode="bilinear", padding_mode="border", align_corners=False))

    def forward(
        self, x: torch.Tensor, whole: torch.Tensor | None = None, theta: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`x`: the whole crop (what the node gives); training passes a patch of it with the
        whole crop's `context_input` and where the patch lies in it (`patch_theta`)."""
        if whole is None:
            whole, theta = context_input(x), IDENTITY_THETA.to(x).expand(x.shape[0], 2, 3)
        out = x
        for index, layer in enumerate(self.body):
            out = layer(out)
            if index == self.inject_after:
                out = out + self.context(whole, theta, x.shape[-2:])
        return self.upsampler(out) + F.interpolate(x[:, :3], scale_factor=self.upscale, mode="nearest")


# The context encoder reads the whole face at this side whatever the crop's size (32-256 px), so
# its features mean the same part of the face at every size, and it costs the same for all.
CONTEXT_SIDE = 64
IDENTITY_THETA = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])


def context_input(x: torch.Tensor) -> torch.Tensor:
    """The whole crop (N, C, H, W) at CONTEXT_SIDE square, low-passed as it is reduced."""
    return F.interpolate(x, size=(CONTEXT_SIDE, CONTEXT_SIDE), mode="bilinear", align_corners=False, antialias=True)


def patch_theta(top: int, left: int, patch: int, side: int) -> torch.Tensor:
    """Where a `patch` px square at (top, left) lies in a `side` px crop, as `affine_grid`'s
    theta (normalised coordinates, pixel centres: align_corners=False)."""
    scale = patch / side
    return torch.tensor(
        [[scale, 0.0, (patch + 2 * left) / side - 1.0], [0.0, scale, (patch + 2 * top) / side - 1.0]]
    )


def with_context(net: CompactNet) -> ContextCompactNet:
    """`net` (a trained window restorer) with a context encoder that starts silent."""
    first = net.body[0]
    wide = ContextCompactNet(first.out_channels, (len(net.body) - 3) // 2, net.upscale, net.frames)
    missing, unexpected = wide.load_state_dict(net.state_dict(), strict=False)
    if unexpected or any(key.startswith("body.") for key in missing):
        raise ValueError(f"with_context: the network does not fit ({unexpected or missing})")
    return wide

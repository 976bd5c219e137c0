"""MobileNetV2 (torchvision, width 1.0, output stride 32) returning the 9 SparseMask taps.

Taps are taken before activation (METHODS.md §5): the stem and the final 1x1 conv after their BN, the
bottleneck stages at their (linear) outputs. The decoder applies ReLU6 to each tap it uses.

A derived network that takes no deep tap keeps the encoder only up to the deepest tap it uses
(``deepest_tap``): the layers beyond would be dead weight, which trace-based counters (fvcore) and ONNX
export drop anyway, so truncating keeps parameter counts, MAC counts and runtimes consistent.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from terralite.errors import TerraLiteError

# torchvision ``features`` index of the last block producing each tap, shallow → deep: the stem, the bottleneck
# stages 0..6 (t, c, n, s table of the paper) and the final 1x1 conv
_TAP_ENDS = (0, 1, 3, 6, 10, 13, 16, 17, 18)
NUM_TAPS = len(_TAP_ENDS)


def num_blocks(deepest_tap: int) -> int:
    """How many torchvision ``features`` blocks an encoder reaching tap ``deepest_tap`` keeps."""
    return _TAP_ENDS[NUM_TAPS - 1 - deepest_tap] + 1


class MobileNetV2Encoder(nn.Module):
    """``forward(x) -> [tap0, ..., tap8]`` deep → shallow (see :mod:`.topology` for channels/strides);
    taps deeper than ``deepest_tap`` are not computed (None) and their layers not built.

    ``in_channels`` other than 3 get a fresh first conv. ``weights`` is an optional path to ImageNet
    weights of torchvision's ``mobilenet_v2`` (a full state dict, its ``features.*`` part, or a checkpoint
    dict holding one under ``state_dict``), loaded with ``weights_only=True``; nothing is downloaded.
    """

    def __init__(self, in_channels: int = 3, weights: str | Path | None = None, deepest_tap: int = 0):
        super().__init__()
        if not 0 <= deepest_tap < NUM_TAPS:
            raise ValueError(f"deepest_tap must be in 0..{NUM_TAPS - 1}, got {deepest_tap}")
        self.in_channels = in_channels
        self.deepest_tap = deepest_tap
        self.features = torchvision.models.mobilenet_v2(weights=None).features
        if weights is not None:
            self._load_weights(Path(weights))
        if in_channels != 3:
            self._adapt_first_conv(in_channels)
        self.features = self.features[: num_blocks(deepest_tap)]

    def _load_weights(self, path: Path) -> None:
        if not path.is_file():
            raise TerraLiteError(f"encoder weights file {path} does not exist; give the path of torchvision "
                                 "mobilenet_v2 ImageNet weights (a .pth state dict) or build without encoder weights")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for foreign files
            raise TerraLiteError(f"encoder weights file {path} is not a readable state dict ({type(exc).__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise TerraLiteError(f"encoder weights file {path} does not hold a state dict")
        if any(k.startswith("features.") for k in state):
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        missing, unexpected = self.features.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise TerraLiteError(f"encoder weights file {path} does not match torchvision mobilenet_v2 "
                                 f"(missing {len(missing)} keys e.g. {missing[:2]}, unexpected {len(unexpected)} e.g. {unexpected[:2]})")

    @torch.no_grad()
    def _adapt_first_conv(self, in_channels: int) -> None:
        """Replace the stem conv for ``in_channels`` bands, keeping the (possibly pretrained) RGB filters.

        The first ``min(3, in_channels)`` input channels copy the existing filters; extra bands start from
        the same Kaiming init torchvision uses, so that pretrained RGB behaviour is kept on the RGB bands.
        """
        old = self.features[0][0]
        new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        nn.init.kaiming_normal_(new.weight, mode="fan_out")
        keep = min(3, in_channels)
        new.weight[:, :keep] = old.weight[:, :keep]
        self.features[0][0] = new

    def forward(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        stem = self.features[0]
        x = stem[1](stem[0](x))  # (B, 32, H/2, W/2), before ReLU6
        taps: list[torch.Tensor | None] = [x]
        x = torch.nn.functional.relu6(x)  # not the in-place module: the tap must stay pre-activation
        for start, end in zip(_TAP_ENDS[:-2], _TAP_ENDS[1:-1]):
            if end >= len(self.features):
                break
            for block in self.features[start + 1:end + 1]:
                x = block(x)
            taps.append(x)
        if len(self.features) > _TAP_ENDS[-1]:
            last = self.features[_TAP_ENDS[-1]]
            taps.append(last[1](last[0](x)))  # (B, 1280, H/32, W/32), before ReLU6
        taps += [None] * (NUM_TAPS - len(taps))
        return taps[::-1]

"""MobileNetV2 (width 1.0, output stride 32) as the official SparseMask builds it, returning the 9 taps.

The official MobileNetV2 differs from torchvision's in one place (METHODS.md §5): its first bottleneck
(expansion t = 1) keeps the 1x1 expansion conv (32 → 32, BN, ReLU6) before the depthwise conv, where
torchvision's drops it. This encoder is torchvision's ``mobilenet_v2().features`` with that conv put back, so
that a derived network has the original's parameter and MAC counts (+1,088 parameters, +0.285 GMACs at
1024x1024 over torchvision's). In ``features[1].conv`` the expansion is index 0 and torchvision's layers
follow one index later (torchvision ``1.conv.K`` is our ``1.conv.K+1``).

torchvision weights still fit every other layer: :func:`load_torchvision_weights` loads a user's
``mobilenet_v2`` state dict and reports what the file did not hold (the expansion conv), which it sets to the
identity (exact in eval mode: the block's input is a ReLU6 output, so ReLU6(BN(x)) = x with the BN's running
statistics at mean 0, variance 1 − eps), so the pretrained encoder computes what torchvision's does.
Checkpoints saved before this encoder existed (torchvision's layout) are migrated the same way when loaded
(:meth:`MobileNetV2Encoder.load_state_dict` through a pre-hook): their networks give the same outputs.

Taps are taken before activation (METHODS.md §5): the stem and the final 1x1 conv after their BN, the
bottleneck stages at their (linear) outputs. The decoder applies ReLU6 to each tap it uses.

A derived network that takes no deep tap keeps the encoder only up to the deepest tap it uses
(``deepest_tap``): the layers beyond would be dead weight, which trace-based counters (fvcore) and ONNX
export drop anyway, so truncating keeps parameter counts, MAC counts and runtimes consistent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
import torch.nn.functional as F
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.ops import Conv2dNormActivation

from terralite.errors import TerraLiteError

log = logging.getLogger(__name__)

# ``features`` index of the last block producing each tap, shallow → deep: the stem, the bottleneck
# stages 0..6 (t, c, n, s table of the paper) and the final 1x1 conv
_TAP_ENDS = (0, 1, 3, 6, 10, 13, 16, 17, 18)
NUM_TAPS = len(_TAP_ENDS)
#: Prefix (inside ``features``) of the expansion conv the original keeps and torchvision's weights lack.
EXPANSION_PREFIX = "1.conv.0."
_FIRST_BLOCK = "1.conv."


def num_blocks(deepest_tap: int) -> int:
    """How many ``features`` blocks an encoder reaching tap ``deepest_tap`` keeps."""
    return _TAP_ENDS[NUM_TAPS - 1 - deepest_tap] + 1


def original_mobilenet_v2_features() -> nn.Sequential:
    """torchvision's ``mobilenet_v2(weights=None).features`` with the first bottleneck's expansion conv
    (1x1 32 → 32, BN, ReLU6) put back, initialised as torchvision initialises its convs."""
    features = torchvision.models.mobilenet_v2(weights=None).features
    block = features[1]  # InvertedResidual(32 → 16, t=1): [dw 3x3 ConvBNReLU6, 1x1 conv, BN]
    hidden = block.conv[0][0].in_channels
    expansion = Conv2dNormActivation(hidden, hidden, kernel_size=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
    nn.init.kaiming_normal_(expansion[0].weight, mode="fan_out")
    block.conv = nn.Sequential(expansion, *block.conv)
    return features


def _is_torchvision_layout(state: dict, prefix: str) -> bool:
    """True when ``state`` (keys under ``prefix``) has torchvision's first bottleneck: depthwise conv first."""
    first = state.get(f"{prefix}{EXPANSION_PREFIX}0.weight")
    return first is not None and first.ndim == 4 and first.shape[1] == 1


@torch.no_grad()
def _identity_expansion(features: nn.Sequential) -> dict[str, torch.Tensor]:
    """State of an expansion conv that passes its (ReLU6-output, so non-negative) input through unchanged in eval."""
    conv, bn = features[1].conv[0][0], features[1].conv[0][1]
    weight = torch.eye(conv.out_channels, dtype=conv.weight.dtype)[:, :, None, None]  # (32, 32, 1, 1)
    return {f"{EXPANSION_PREFIX}0.weight": weight,
            f"{EXPANSION_PREFIX}1.weight": torch.ones_like(bn.weight), f"{EXPANSION_PREFIX}1.bias": torch.zeros_like(bn.bias),
            f"{EXPANSION_PREFIX}1.running_mean": torch.zeros_like(bn.running_mean),
            f"{EXPANSION_PREFIX}1.running_var": torch.full_like(bn.running_var, 1.0 - bn.eps),
            f"{EXPANSION_PREFIX}1.num_batches_tracked": torch.zeros_like(bn.num_batches_tracked)}


def torchvision_to_original(state: dict, features: nn.Sequential, prefix: str = "") -> list[str]:
    """Rewrite, in place, the first bottleneck of a torchvision-layout ``features`` state dict (keys under
    ``prefix``) into the original layout: torchvision's ``1.conv.K`` becomes ``1.conv.K+1`` and the
    expansion conv (absent from the file) is set to the identity. Returns the keys that were filled in."""
    first = f"{prefix}{_FIRST_BLOCK}"
    for key in sorted((k for k in state if k.startswith(first)), key=lambda k: -int(k[len(first):].split(".")[0])):
        index, rest = key[len(first):].split(".", 1)
        state[f"{first}{int(index) + 1}.{rest}"] = state.pop(key)
    filled = {prefix + k: v.to(device=state[f"{first}1.0.weight"].device) for k, v in _identity_expansion(features).items()}
    state.update(filled)
    return list(filled)


def read_torchvision_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``features.*`` part of a torchvision ``mobilenet_v2`` weights file (a full state dict, its
    ``features.*`` part, or a checkpoint holding one under ``state_dict``), keys without ``features.``."""
    path = Path(path)
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
    return dict(state)


def load_torchvision_weights(features: nn.Sequential, path: str | Path) -> list[str]:
    """Load torchvision ``mobilenet_v2`` weights from ``path`` into original-layout ``features`` (see the module
    docstring) and return the ``features`` keys the file did not hold (set to the identity expansion); a file
    already in the original layout loads whole and returns ``[]``. Any other mismatch is an error naming the file.
    """
    state = read_torchvision_weights(path)
    not_loaded = torchvision_to_original(state, features) if _is_torchvision_layout(state, "") else []
    expected = features.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        raise TerraLiteError(f"encoder weights file {path} does not match torchvision mobilenet_v2 "
                             f"(missing {len(missing)} keys e.g. {missing[:2]}, unexpected {len(unexpected)} e.g. {unexpected[:2]}, "
                             f"{len(mismatched)} of another shape e.g. {mismatched[:2]})")
    features.load_state_dict(state)
    if not_loaded:
        log.warning("encoder weights %s: torchvision's mobilenet_v2 has no first-bottleneck expansion conv; "
                    "loaded every other layer, set features.%s* (%d tensors) to the identity", path,
                    EXPANSION_PREFIX, len(not_loaded))
    return ["features." + k for k in not_loaded]


class MobileNetV2Encoder(nn.Module):
    """``forward(x) -> [tap0, ..., tap8]`` deep → shallow (see :mod:`.topology` for channels/strides);
    taps deeper than ``deepest_tap`` are not computed (None) and their layers not built.

    ``in_channels`` other than 3 get a fresh first conv. ``weights`` is an optional path to ImageNet
    weights of torchvision's ``mobilenet_v2`` (see :func:`load_torchvision_weights`), loaded with
    ``weights_only=True``; nothing is downloaded. ``not_loaded`` lists the encoder's keys the file did not
    hold (the expansion conv, set to the identity); empty without a file.
    """

    def __init__(self, in_channels: int = 3, weights: str | Path | None = None, deepest_tap: int = 0):
        super().__init__()
        if not 0 <= deepest_tap < NUM_TAPS:
            raise ValueError(f"deepest_tap must be in 0..{NUM_TAPS - 1}, got {deepest_tap}")
        self.in_channels = in_channels
        self.deepest_tap = deepest_tap
        self.features = original_mobilenet_v2_features()
        self.not_loaded: list[str] = []
        if weights is not None:
            self.not_loaded = load_torchvision_weights(self.features, weights)
        if in_channels != 3:
            self._adapt_first_conv(in_channels)
        self.features = self.features[: num_blocks(deepest_tap)]
        self.register_load_state_dict_pre_hook(self._migrate_torchvision_layout)

    @staticmethod
    def _migrate_torchvision_layout(module, state_dict, prefix, *args) -> None:
        """Checkpoints saved before the encoder kept the original's expansion conv hold torchvision's layout:
        rewrite them to this one (outputs unchanged in eval, see the module docstring)."""
        if _is_torchvision_layout(state_dict, prefix + "features."):
            torchvision_to_original(state_dict, module.features, prefix + "features.")
            log.warning("state dict in the old torchvision layout of the SparseMask encoder (saved before the original's "
                        "first-bottleneck expansion conv was built): migrated, %sfeatures.%s* set to the identity; "
                        "outputs are unchanged", prefix, EXPANSION_PREFIX)

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

    def forward(self, x: torch.Tensor, folded: dict | None = None) -> list[torch.Tensor | None]:
        """The taps, deep → shallow. ``folded`` (eval only, from :meth:`folded_weights`): every BatchNorm folded
        into the conv before it and ReLU6 applied in place — the same values with about a third less eager work on
        a CPU, where BatchNorm and ReLU6 otherwise each read and write every feature map once more (ONNX Runtime
        fuses them itself)."""
        def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
            return bn(conv(x)) if folded is None else _conv(conv, folded[conv], x)

        stem = self.features[0]
        x = conv_bn(stem[0], stem[1], x)  # (B, 32, H/2, W/2), before ReLU6
        taps: list[torch.Tensor | None] = [x]
        x = F.relu6(x)  # not in place: the tap must stay pre-activation
        for start, end in zip(_TAP_ENDS[:-2], _TAP_ENDS[1:-1]):
            if end >= len(self.features):
                break
            for block in self.features[start + 1:end + 1]:
                x = block(x) if folded is None else _inverted_residual_folded(block, x, folded)
            taps.append(x)
        if len(self.features) > _TAP_ENDS[-1]:
            last = self.features[_TAP_ENDS[-1]]
            taps.append(conv_bn(last[0], last[1], x))  # (B, 1280, H/32, W/32), before ReLU6
        taps += [None] * (NUM_TAPS - len(taps))
        return taps[::-1]

    def folded_weights(self) -> dict[nn.Conv2d, tuple[torch.Tensor, torch.Tensor]]:
        """``{conv: (weight, bias)}`` with the eval-mode BatchNorm after each conv folded in."""
        pairs = [(m[0], m[1]) for m in self.features.modules() if isinstance(m, Conv2dNormActivation)]
        pairs += [(block.conv[-2], block.conv[-1]) for block in self.features if isinstance(block, InvertedResidual)]
        return {conv: fold_batchnorm(conv, bn) for conv, bn in pairs}


def batchnorm_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` (C,) with ``bn(y) == y * scale + shift`` per channel in eval mode."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of the one convolution that computes ``bn(conv(x))`` in eval mode."""
    scale, bias = batchnorm_affine(bn)
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale[:, None, None, None], bias


def _conv(conv: nn.Conv2d, weights: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, weights[0], weights[1], conv.stride, conv.padding, conv.dilation, conv.groups)


def _has_fused_conv() -> bool:
    """oneDNN's convolution with a fused element-wise op (the kernel PyTorch's own compiler emits on CPUs)."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):
        return False


_FUSED_CONV = _has_fused_conv()


def eager_only() -> bool:
    """True in a plain eager call, False while an exporter or compiler traces the forward (they take graph ops)."""
    return not (torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def _conv_relu6(conv: nn.Conv2d, weights: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``relu6(conv(x))``: on a CPU in float32 one oneDNN call with the clamp fused (a third faster for a
    depthwise 3x3 at 256x256 than conv then an in-place clamp, which reads and writes the map once more)."""
    if _FUSED_CONV and x.device.type == "cpu" and x.dtype == torch.float32 and eager_only():
        return torch.ops.mkldnn._convolution_pointwise(x, weights[0], weights[1], list(conv.padding), list(conv.stride),
                                                       list(conv.dilation), conv.groups, "hardtanh", [0.0, 6.0], "")
    return _conv(conv, weights, x).clamp_(0.0, 6.0)


def _inverted_residual_folded(block: InvertedResidual, x: torch.Tensor, folded: dict) -> torch.Tensor:
    """torchvision's ``InvertedResidual.forward`` in eval mode with folded BatchNorms and ReLU6 fused or in place:
    ``block.conv`` is [ConvBNReLU6 (expansion), ConvBNReLU6 (depthwise), Conv2d, BatchNorm2d (linear projection)]."""
    layers = list(block.conv)
    y = x
    for layer in layers[:-2]:  # Conv2dNormActivation: conv, BN, ReLU6
        y = _conv_relu6(layer[0], folded[layer[0]], y)
    y = _conv(layers[-2], folded[layers[-2]], y)
    return y.add_(x) if block.use_res_connect else y

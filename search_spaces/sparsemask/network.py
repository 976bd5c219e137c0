"""The derived SparseMask network an architecture describes (METHODS.md §5, "SparseMask derived network").

Only the kept 1x1 convs exist, one BN per live stage, no gates:

- each kept input: ReLU6 → 1x1 conv (no bias) to 64 ch → bilinear resize (align_corners=True) to the stage
  size, skipped when the sizes are equal; the stage sums them and applies its BN;
- a stage without inputs has no parameters (the clean-up rules guarantee nobody takes its output);
- head: ReLU6 → 1x1 conv with bias to the classes at stride 2 → bilinear ×2 to the input size (inside the
  network, as the architecture's ``final_upsample: "bilinear_x2"`` says; counted in GMACs).

The encoder stops at the deepest tap the architecture uses (nothing deeper is built or run). Pretrained
encoder weights are an argument of building, not part of the architecture.

Parameter names: ``encoder.*`` (MobileNetV2), ``decoder.*`` and ``head.*``; :meth:`SparseMaskNet.decoder_parameters`
gives the decoder + head parameters for the SparseMask recipe's 10x decoder learning rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from terralite.search_spaces.sparsemask.arch import arch_to_mask, validate_arch
from terralite.search_spaces.sparsemask.encoder import MobileNetV2Encoder, batchnorm_affine, eager_only
from terralite.search_spaces.sparsemask.topology import KINDS, NUM_STAGES, TAP, UP, deepest_tap, input_channels, input_name, stage_hw, stage_name
from terralite.errors import TerraLiteError


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with align_corners=True (the official decoder's), skipped when already that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def init_weights(module: nn.Module) -> None:
    """The official init: Kaiming-normal (fan_out) convs, zero biases, BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SparseDecoderStage(nn.Module):
    """One decoder stage: the kept inputs' 1x1 convs (keyed ``tapJ`` / ``upK``) and one BN."""

    def __init__(self, inputs: list[tuple[int, int]], decoder_channels: int):
        super().__init__()
        self.inputs = list(inputs)
        self.convs = nn.ModuleDict({input_name(kind, idx): nn.Conv2d(input_channels(kind, idx, decoder_channels), decoder_channels, 1, bias=False)
                                    for kind, idx in self.inputs})
        self.bn = nn.BatchNorm2d(decoder_channels)

    def forward(self, features: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        out = None
        for name, conv in self.convs.items():
            y = resize_to(conv(features[name]), size)
            out = y if out is None else out + y
        return self.bn(out)

    def folded(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Eval-mode BN folded into the convs: ``({input: weight (64, C_in, 1, 1)}, bias (64,))`` with
        ``bn(sum_i resize(conv_i(x_i))) == sum_i resize(conv2d(x_i, w_i)) + bias`` (BN is per-channel affine, a
        1x1 conv and a bilinear resize are linear, and a resize keeps a constant map constant)."""
        scale, bias = batchnorm_affine(self.bn)
        return {name: conv.weight * scale[:, None, None, None] for name, conv in self.convs.items()}, bias


class SparseMaskNet(nn.Module):
    """MobileNetV2 encoder + sparse decoder + head; ``forward(x) -> logits (B, classes, H, W)``.

    ``H`` and ``W`` must be divisible by 32. ``encoder_weights`` is an optional torchvision ``mobilenet_v2``
    ImageNet weights file for the encoder (see :class:`~.encoder.MobileNetV2Encoder`).
    """

    def __init__(self, arch: dict, in_channels: int = 3, num_classes: int = 8, encoder_weights: str | Path | None = None):
        super().__init__()
        self.arch = validate_arch(arch)
        mask = arch_to_mask(self.arch)
        channels = self.arch["decoder_channels"]
        # torchvision already initialises the encoder the same way (or the weights file replaces it)
        self.encoder = MobileNetV2Encoder(in_channels, weights=encoder_weights, deepest_tap=deepest_tap(mask))
        self.decoder = nn.ModuleDict({stage_name(s): SparseDecoderStage(
            [(kind, idx) for kind in (TAP, UP) for idx in range(s + 1) if mask[s, idx, kind]], channels)
            for s in range(NUM_STAGES) if mask[s].any()})
        self.head = nn.Conv2d(channels, num_classes, 1, bias=True)
        self.uses_pool = bool(mask[:, 0, UP].any())
        # the taps some stage reads: only those get their ReLU6 (a pass over a full-size map each)
        self.read_taps = {input_name(TAP, idx) for s in range(NUM_STAGES) for idx in range(s + 1) if mask[s, idx, TAP]}
        init_weights(self.decoder)
        init_weights(self.head)

    #: Eager eval runs the folded decoder; the profiler clears this to count the stated structure.
    fold_eval = True

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters outside the encoder (decoder stages and head): the ones trained at 10x learning rate."""
        yield from self.decoder.parameters()
        yield from self.head.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        # The folded eval path is for inference. Traced forwards (fvcore's counts, the TorchScript ONNX exporter) see
        # the network as the architecture states it: its parameters and MACs are what the counts and the JSON promise.
        # The torch.export-based ONNX exporter takes the folded path (ONNX Runtime gains from the stacked convs and
        # the sums before one resize), without the eager-only kernels and cache (``eager_only``).
        folded = not self.training and self.fold_eval and not torch.jit.is_tracing()
        if folded:
            # NHWC: oneDNN's convolutions and the bilinear resizes run vectorised over channels (eval only:
            # training keeps the default layout its recipe was measured with)
            x = x.contiguous(memory_format=torch.channels_last)
        weights = self._folded_weights() if folded else {"encoder": None}
        taps = self.encoder(x, folded=weights["encoder"])
        # ReLU6 once per feature: the official applies it per connection, which is the same value
        features = {input_name(TAP, j): F.relu6(t) for j, t in enumerate(taps)
                    if t is not None and input_name(TAP, j) in self.read_taps}
        if self.uses_pool:
            features["up0"] = F.relu6(F.adaptive_avg_pool2d(taps[0], 1))  # (B, 1280, 1, 1)
        if folded:
            last = self._decode_folded(features, height, width, weights["decoder"])
        else:
            last = self._decode(features, height, width)  # the head's input, "up9": (B, 64, H/2, W/2)
        logits = self.head(last).contiguous()  # (B, classes, H/2, W/2), back to NCHW before the 4x larger resize
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=True)

    def _decode(self, features: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
        """The stages as the architecture states them (training: BN on batch statistics)."""
        for s in range(NUM_STAGES):
            if stage_name(s) in self.decoder:
                out = self.decoder[stage_name(s)](features, stage_hw(s, height, width))
                features[input_name(UP, s + 1)] = F.relu6(out)  # "up9" (stage 8) is the head's ReLU6 input
        return features[input_name(UP, NUM_STAGES)]

    def _folded_weights(self) -> dict:
        """The folded convs of the eval path (encoder and decoder). Without gradients they are kept and computed
        again only when a parameter or buffer changed (an optimiser step, ``load_state_dict``, a move to another
        device or dtype): folding on every call cost about a tenth of an eager 1024 px forward."""
        def fold() -> dict:
            return {"encoder": self.encoder.folded_weights(),
                    "decoder": {name: stage.folded() for name, stage in self.decoder.items()}}

        if torch.is_grad_enabled() or not eager_only():  # differentiated, or exported: the folds stay in the graph
            return fold()
        key = tuple((t.data_ptr(), t._version) for t in (*self.parameters(), *self.buffers()))
        if getattr(self, "_folded_cache", (None,))[0] != key:
            self._folded_cache = (key, fold())
        return self._folded_cache[1]

    def _decode_folded(self, features: dict[str, torch.Tensor], height: int, width: int, folded: dict) -> torch.Tensor:
        """The same values as :meth:`_decode` in eval mode, with less work: BN folded into the convs
        (:meth:`SparseDecoderStage.folded`); the convs of every stage that read one encoder tap run as one
        convolution (their weights stacked); inputs of one size are summed before a single resize."""
        from_taps: dict[tuple[str, str], torch.Tensor] = {}  # (stage, tap) -> that stage's conv of that tap
        for tap in features:
            if not tap.startswith(KINDS[TAP]):
                continue
            readers = [name for name, (weights, _) in folded.items() if tap in weights]
            if readers:
                y = F.conv2d(features[tap], torch.cat([folded[name][0][tap] for name in readers]))
                from_taps.update(zip(((name, tap) for name in readers), y.split(self.arch["decoder_channels"], dim=1)))
        for s in range(NUM_STAGES):
            name = stage_name(s)
            if name not in folded:
                continue
            weights, bias = folded[name]
            by_size: dict[tuple[int, int], torch.Tensor] = {}  # input size -> sum of the conv outputs of that size
            for source, weight in weights.items():
                y = from_taps[(name, source)] if (name, source) in from_taps else F.conv2d(features[source], weight)
                size = tuple(y.shape[-2:])
                # in place: every y is a fresh conv output (or this stage's own slice of the stacked one)
                by_size[size] = y if size not in by_size else by_size[size].add_(y)
            out = None
            for y in by_size.values():
                y = resize_to(y, stage_hw(s, height, width))
                out = y if out is None else out.add_(y)
            features[input_name(UP, s + 1)] = out.add_(bias[None, :, None, None]).clamp_(0.0, 6.0)  # + BN shift, ReLU6
        return features[input_name(UP, NUM_STAGES)]


def build(arch: dict, in_channels: int = 3, num_classes: int = 8, encoder_weights: str | Path | None = None) -> SparseMaskNet:
    """The derived network of ``arch`` (validated first; errors name the offending field), its encoder
    loaded from ``encoder_weights`` when given."""
    return SparseMaskNet(arch, in_channels=in_channels, num_classes=num_classes, encoder_weights=encoder_weights)


def build_from_spec(spec: dict) -> SparseMaskNet:
    """Model-kind builder for ``{"kind": "sparsemask", "arch": {...}, "in_channels", "num_classes"}`` (and a
    transient ``pretrained`` encoder weights file, see :func:`terralite.models.build_model`)."""
    if "arch" not in spec:
        raise TerraLiteError("a sparsemask model spec needs an 'arch' field (the kept connections per stage); "
                             "write one with `terralite search sparsemask` or see search_spaces/sparsemask/arch.py")
    return build(spec["arch"], in_channels=spec.get("in_channels", 3), num_classes=spec.get("num_classes", 8),
                 encoder_weights=spec.get("pretrained"))


# ``build_model(spec, pretrained=FILE)`` hands FILE over as the spec's ``pretrained`` field: the encoder's weights.
build_from_spec.pretrained_weights = "torchvision mobilenet_v2 ImageNet weights (a .pth state dict) for the encoder"

"""The baseline model zoo: hand-designed segmentation networks, built without downloading weights.

Every network is registered in :data:`BASELINES` under a short name (``unet-resnet34``) as a builder
``f(in_channels, num_classes) -> nn.Module``. :func:`build_baseline` is the ``baseline`` model kind of
:data:`terralite.models.MODEL_KINDS`: ``{"kind": "baseline", "name": "unet-resnet34", "in_channels": 3,
"num_classes": 8}``, optionally with ``"weights": "path/to/state_dict.pt"`` (a bare state dict, or any
file with a ``state_dict`` entry such as a TerraLite checkpoint; loaded with ``weights_only=True``) or
``"pretrained"`` (set by ``build_model(spec, pretrained=...)``: the network's or its encoder's weights,
such as torchvision's ImageNet files).

Output contract: in eval mode every network returns logits ``(B, num_classes, H, W)`` at the input size.
Networks that predict at a lower resolution or return a dict are wrapped in :class:`LogitsAtInputSize`,
so the final upsampling is part of the network (and of its MACs and latency), as it is at deployment.

Encoders are built with ``encoder_weights=None`` (smp) / ``weights=None`` (torchvision): initialising a
network never touches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from terralite.errors import TerraLiteError
from terralite.registry import Registry

BASELINES = Registry("baseline")
"""name → builder ``f(in_channels: int, num_classes: int) -> nn.Module``."""


class LogitsAtInputSize(nn.Module):
    """Make a network honour the output contract: a tensor of logits at the input's height and width.

    Unwraps dict outputs (torchvision's ``{"out": ...}``) and upsamples bilinearly when the network
    predicts at a lower resolution.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if isinstance(out, dict):
            out = out["out"]
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out  # (B, num_classes, H, W)


def _smp(arch: str, encoder: str, **kwargs) -> Callable[[int, int], nn.Module]:
    def build(in_channels: int, num_classes: int) -> nn.Module:
        import segmentation_models_pytorch as smp

        return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=num_classes, **kwargs)

    build.__doc__ = f"segmentation_models_pytorch {arch}, encoder {encoder}, random init."
    return build


def _lraspp_mobilenetv3(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision LR-ASPP MobileNetV3-Large, random init; the stem conv is rebuilt for other band counts."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    if in_channels != 3:
        stem = net.backbone["0"][0]  # Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        net.backbone["0"][0] = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
    return LogitsAtInputSize(net)


for _name, _builder in {
    "unet-vgg11": _smp("Unet", "vgg11"),
    "unet-resnet18": _smp("Unet", "resnet18"),
    "unet-resnet34": _smp("Unet", "resnet34"),
    "unet-efficientnet-b4": _smp("Unet", "efficientnet-b4"),
    "unet-mobilenetv2": _smp("Unet", "mobilenet_v2"),
    "deeplabv3-resnet50": _smp("DeepLabV3", "resnet50"),
    "deeplabv3plus-resnet50": _smp("DeepLabV3Plus", "resnet50"),
    "segformer-mitb0": _smp("Segformer", "mit_b0"),
    # smp's default 256-channel decoder: the OEM paper's SegFormer (81.97 M parameters with 8 classes)
    "segformer-mitb5": _smp("Segformer", "mit_b5"),
    # the SegFormer paper's 768-channel all-MLP decoder for B1-B5: another network (84.60 M), named so
    "segformer-mitb5-d768": _smp("Segformer", "mit_b5", decoder_segmentation_channels=768),
    "upernet-convnext-tiny": _smp("UPerNet", "tu-convnext_tiny"),
    "lraspp-mobilenetv3": _lraspp_mobilenetv3,
}.items():
    BASELINES.register(_name, _builder)


def _read_state_dict(path: str | Path, what: str, fix: str) -> dict:
    """The state dict in ``path``: a bare one, or the ``state_dict`` entry of a checkpoint (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise TerraLiteError(f"{what} {path} does not exist; {fix}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or damaged files
        raise TerraLiteError(f"{what} {path} is not a readable state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise TerraLiteError(f"{what} {path} holds no state dict; save one with torch.save(model.state_dict(), path)")
    return state


def _fit(module: nn.Module, state: dict) -> tuple[list[str], list[str], list[str]]:
    """Keys of ``module`` missing from ``state``, keys of ``state`` it lacks, keys of another shape."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    return missing, unexpected, mismatched


def _load_weights(model: nn.Module, path: str | Path, name: str) -> None:
    """Load a state dict of the whole network (the spec's ``weights`` field)."""
    state = _read_state_dict(path, "weights file", f"fix the 'weights' field of the spec of baseline {name!r}")
    missing, unexpected, mismatched = _fit(model, state)
    # Checked here rather than by load_state_dict: smp models drop mismatched tensors with only a warning.
    if missing or unexpected or mismatched:
        raise TerraLiteError(
            f"weights file {path} does not fit baseline {name!r}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}), {len(mismatched)} of another shape "
            f"(e.g. {mismatched[:3]}); check the model name, in_channels and num_classes"
        )
    model.load_state_dict(state)


def _encoder_of(model: nn.Module) -> nn.Module:
    """The encoder of a zoo network: smp's ``encoder``, or the torchvision LR-ASPP backbone."""
    if hasattr(model, "encoder"):
        return model.encoder
    return model.net.backbone  # LogitsAtInputSize(LRASPP)


#: Keys of an ImageNet classifier's head, ignored when its file initialises an encoder.
CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.")


def _load_pretrained(model: nn.Module, path: str | Path, name: str) -> None:
    """Initialise from a user's weights file: a state dict of the whole network, or of its encoder as the
    encoder's library saves it (e.g. torchvision's ``resnet34`` ImageNet file for ``unet-resnet34``; its
    classifier keys are ignored)."""
    state = _read_state_dict(path, "pretrained weights file", f"baseline {name!r} expects {build_baseline.pretrained_weights}")
    if not any(_fit(model, state)):
        model.load_state_dict(state)
        return
    encoder = _encoder_of(model)
    # torchvision classifiers store their convolutions under ``features.``; LR-ASPP's backbone is that module
    for candidate in (state, {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}):
        missing, unexpected, mismatched = _fit(encoder, candidate)
        # only the classifier an ImageNet file carries may be left over (a deeper encoder's blocks may not)
        if not missing and not mismatched and all(k.startswith(CLASSIFIER_PREFIXES) for k in unexpected):
            encoder.load_state_dict({k: candidate[k] for k in encoder.state_dict()})
            return
    missing, unexpected, mismatched = _fit(encoder, state)
    unexpected = [k for k in unexpected if not k.startswith(CLASSIFIER_PREFIXES)]
    raise TerraLiteError(
        f"pretrained weights file {path} fits neither baseline {name!r} nor its encoder: {len(missing)} encoder keys "
        f"missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(mismatched)} of "
        f"another shape (e.g. {mismatched[:3]}); give the ImageNet "
        "weights of the encoder the name says, or a state dict of this network (same in_channels and num_classes)"
    )


def build_baseline(spec: dict) -> nn.Module:
    """Build the baseline a spec names (the ``baseline`` model kind); unknown names list the valid ones."""
    name = spec.get("name")
    if not isinstance(name, str):
        raise TerraLiteError(f"baseline spec needs a 'name' field; valid names: {', '.join(BASELINES.names())}")
    model = BASELINES.get(name)(spec.get("in_channels", 3), spec.get("num_classes", 8))
    if spec.get("weights"):
        _load_weights(model, spec["weights"], name)
    if spec.get("pretrained"):
        _load_pretrained(model, spec["pretrained"], name)
    return model


build_baseline.pretrained_weights = ("a state dict of the network or of its encoder (e.g. torchvision's ImageNet "
                                     "resnet34 .pth for unet-resnet34)")

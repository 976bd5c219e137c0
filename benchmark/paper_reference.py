"""The OpenEarthMap paper's own figures (METHODS §3), as data: the targets our numbers are compared with.

Two tables. :data:`PAPER_BASELINES` is Table 3 (hand-designed baselines: params and hook-counted FLOPs as the
paper states them, mIoU with flip TTA on the test split); :data:`PAPER_SEARCHED` is the table of the lightweight
searched networks (thop multiply-accumulates at 1024x1024, FPS on the authors' GPU). Each row names the zoo entry
that builds the same network where the zoo has one (``zoo_name``), so a profile or a leaderboard can print the
paper's figure beside ours with the counter each side used. Conditions travel with the rows
(:data:`PAPER_CONDITIONS`): the paper's FPS were taken on a P100/1080Ti-class GPU, so they are reference marks,
never comparable with a measurement on another device.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table. ``gflops`` are the paper's own count (see ``counter``); None where not given."""

    method: str
    backbone: str
    params_m: float
    gflops: float
    counter: str
    miou_tta: float
    zoo_name: str | None = None
    trial: int | None = None
    miou: float | None = None
    fps: float | None = None
    fps_tta: float | None = None
    note: str = ""

    @property
    def label(self) -> str:
        trial = f" #{self.trial}" if self.trial is not None else ""
        return f"{self.method} {self.backbone}{trial} (paper)".replace("  ", " ")


PAPER_CONDITIONS = {
    "dataset": "OpenEarthMap test split, 8 classes",
    "input_size": 1024,
    "fps_device": "P100/1080Ti-class GPU (authors' machine)",
    "fps_runtime": "TensorRT 5 or eager PyTorch (as the original codes time)",
    "tta": "identity + horizontal flip, logits summed",
}

_HOOK = "paper (hook-based counter)"
_THOP = "paper (thop MACs, 1024x1024)"

PAPER_BASELINES: tuple[PaperRow, ...] = (
    PaperRow("U-Net", "VGG-11", 18.26, 233.33, _HOOK, 64.97, zoo_name="unet-vgg11"),
    PaperRow("U-Net", "ResNet-34", 24.44, 126.68, _HOOK, 65.43, zoo_name="unet-resnet34"),
    PaperRow("U-Net", "EfficientNet-B4", 20.30, 45.47, _HOOK, 68.20, zoo_name="unet-efficientnet-b4",
             note="the paper's hook count misses the encoder's functional convolutions; fvcore gives about 75.8 GMACs"),
    PaperRow("U-NetFormer", "ResNeXt101", 192.71, 769.25, _HOOK, 68.37),
    PaperRow("FT-U-NetFormer", "Swin-B", 95.98, 498.37, _HOOK, 69.13),
    PaperRow("DeepLabV3", "ResNet-50", 68.14, 269.76, _HOOK, 63.16,
             note="not the zoo's deeplabv3-resnet50 (smp's, 39.64 M with 8 classes): the paper's count is that of "
                  "another implementation (not identified here); no zoo entry builds it"),
    PaperRow("HRNet", "W48", 65.89, 94.06, _HOOK, 63.07),
    PaperRow("UPerNet", "Swin-B", 59.94, 236.08, _HOOK, 66.09),
    PaperRow("SegFormer", "MiT-B5", 81.97, 51.86, _HOOK, 64.01, zoo_name="segformer-mitb5",
             note="smp's default 256-channel decoder (segformer-mitb5-d768 is the SegFormer paper's 768-channel one); "
                  "the paper's FLOPs for SegFormer were counted at a smaller input than 1024"),
    PaperRow("UPerNet", "ConvNeXt", 122.1, 292.42, _HOOK, 61.93,
             note="not the zoo's upernet-convnext-tiny (37.05 M with 8 classes): a larger ConvNeXt; no zoo entry builds it"),
    PaperRow("K-Net", "Swin-B", 246.97, 419.51, _HOOK, 66.11),
)

PAPER_SEARCHED: tuple[PaperRow, ...] = (
    PaperRow("SparseMask", "", 2.96, 10.28, _THOP, 60.21, trial=1, miou=58.23, fps=51.2, fps_tta=25.9),
    PaperRow("SparseMask", "", 3.10, 10.39, _THOP, 60.00, trial=2, miou=58.06, fps=57.2, fps_tta=26.4),
    PaperRow("FasterSeg", "", 2.23, 14.58, _THOP, 58.35, trial=1, miou=57.55, fps=143.2, fps_tta=74.8),
    PaperRow("FasterSeg", "", 3.47, 15.37, _THOP, 59.41, trial=2, miou=58.51, fps=171.3, fps_tta=89.5),
)


def paper_row_for(zoo_name: str) -> PaperRow | None:
    """The Table 3 row of the network the zoo builds under ``zoo_name``, or None if the paper does not list it."""
    return next((row for row in PAPER_BASELINES if row.zoo_name == zoo_name), None)

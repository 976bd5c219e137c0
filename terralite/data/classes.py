"""OpenEarthMap classes: names, ids, colours and the raw-label → training-id mapping.

Raw labels on disk: 0 = unknown/no-data, 1..8 = the classes below. Networks train on ids 0..7
(raw value - 1); unknown (and any value outside 1..8) becomes :data:`IGNORE_INDEX`.
"""

from __future__ import annotations

import numpy as np

#: The 8 OpenEarthMap classes in label order (raw label value = index + 1).
CLASS_NAMES: tuple[str, ...] = (
    "bareland",
    "rangeland",
    "developed space",
    "road",
    "tree",
    "water",
    "agriculture land",
    "building",
)
NUM_CLASSES = len(CLASS_NAMES)
#: Training id of pixels ignored by losses and metrics (raw label 0 and anything outside 1..8).
IGNORE_INDEX = 255
#: Name of raw label 0.
UNKNOWN_NAME = "unknown"
#: Name of every raw label value 0..8.
LABEL_NAMES: tuple[str, ...] = (UNKNOWN_NAME, *CLASS_NAMES)

#: Raw label value → RGB colour of the official OpenEarthMap palette (0 = unknown is black).
PALETTE: dict[int, tuple[int, int, int]] = {
    0: (0x00, 0x00, 0x00),
    1: (0x80, 0x00, 0x00),
    2: (0x00, 0xFF, 0x24),
    3: (0x94, 0x94, 0x94),
    4: (0xFF, 0xFF, 0xFF),
    5: (0x22, 0x61, 0x26),
    6: (0x00, 0x45, 0xFF),
    7: (0x4B, 0xB5, 0x49),
    8: (0xDE, 0x1F, 0x07),
}

#: RGB colour per training id 0..7 (the palette without unknown).
TRAIN_PALETTE: tuple[tuple[int, int, int], ...] = tuple(PALETTE[i] for i in range(1, NUM_CLASSES + 1))


def default_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """``count`` distinct, deterministic RGB colours for classes without an official palette."""
    colours = []
    for i in range(count):
        hue = (i * 0.618033988749895) % 1.0  # golden-ratio steps spread hues evenly
        sector, frac = divmod(hue * 6, 1)
        v, p, q, t = 230, 40, round(40 + 190 * (1 - frac)), round(40 + 190 * frac)
        colours.append([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][int(sector)])
    return tuple(colours)


# 256-entry lookup table: raw uint8 label → training id.
_TRAIN_ID_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
_TRAIN_ID_LUT[1 : NUM_CLASSES + 1] = np.arange(NUM_CLASSES)


def label_to_train_id(label: np.ndarray) -> np.ndarray:
    """Map raw labels (any integer array) to int64 training ids 0..7, everything else to IGNORE_INDEX."""
    label = np.asarray(label)
    if label.dtype == np.uint8:
        return _TRAIN_ID_LUT[label]
    out = np.full(label.shape, IGNORE_INDEX, dtype=np.int64)
    valid = (label >= 1) & (label <= NUM_CLASSES)
    out[valid] = label[valid].astype(np.int64) - 1
    return out


def train_id_to_label(train_id: np.ndarray) -> np.ndarray:
    """Inverse of :func:`label_to_train_id`: training ids 0..7 → raw uint8 labels 1..8, ignore → 0."""
    train_id = np.asarray(train_id)
    out = np.zeros(train_id.shape, dtype=np.uint8)
    valid = (train_id >= 0) & (train_id < NUM_CLASSES)
    out[valid] = (train_id[valid] + 1).astype(np.uint8)
    return out


def colorize(label: np.ndarray) -> np.ndarray:
    """Raw label map (H, W) → RGB image (H, W, 3) uint8 in the OpenEarthMap palette (unknown values black)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for value, rgb in PALETTE.items():
        lut[value] = rgb
    return lut[np.asarray(label).astype(np.uint8)]

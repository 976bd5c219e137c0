"""Procedural land-cover scenes in the OpenEarthMap release layout: the embedded default dataset.

Each tile is a small landscape with the 8 OEM classes in plausible arrangements — rangeland background,
field parcels with crop rows, bare patches, a lake or river, a road grid, developed space around the roads
of an urban zone, building footprints along the roads, tree clumps — and a few unknown (label 0) pixels.
Colour, texture and noise depend on the class, with deliberate overlaps (dark roofs vs. asphalt, light roofs
vs. concrete, ploughed fields vs. bare soil) so that the task is learnable but not trivial. Tiles too small
to hold every class get a small patch of each missing one.

Everything is drawn with numpy from ``default_rng([seed, tile])``, and GeoTIFFs are written with
deterministic creation options: the same seed gives byte-identical files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from terralite.atomic import write_text_atomic
from terralite.data.raster import write_geotiff
from terralite.errors import TerraLiteError

UNKNOWN, BARE, RANGE, DEVELOPED, ROAD, TREE, WATER, AGRI, BUILDING = range(9)

# Per class (raw label order 0..8): base RGB colour and texture amplitudes
# (per-pixel noise, fine blobs ~3 px, medium blobs ~8 px, coarse blobs ~48 px), in grey levels.
_COLOUR = np.array([
    [0, 0, 0],          # unknown (overwritten by the underlying class unless it is a no-data strip)
    [168, 142, 112],    # bareland: sandy soil
    [118, 134, 84],     # rangeland: olive grass
    [150, 147, 140],    # developed space: concrete, yards
    [104, 104, 108],    # road: asphalt
    [48, 84, 46],       # tree: dark crowns
    [38, 68, 98],       # water
    [140, 165, 88],     # agriculture land (each field gets its own crop colour below)
    [170, 90, 70],      # building (each roof gets its own colour below)
], dtype=np.float32)
_TEXTURE = np.array([
    [0, 0, 0, 0],
    [5, 4, 8, 14],      # bare: coarse undulation
    [8, 6, 9, 10],      # rangeland: mottled
    [6, 3, 4, 6],       # developed: fairly flat
    [4, 1, 1, 3],       # road: smooth
    [7, 22, 10, 6],     # tree: strong crown/shadow texture
    [2, 1, 2, 5],       # water: very smooth
    [5, 3, 4, 6],       # agriculture: plus crop rows
    [4, 2, 1, 1],       # building: flat roofs
], dtype=np.float32)
_CROPS = np.array([[140, 170, 82], [192, 176, 112], [122, 98, 72], [104, 140, 70]], dtype=np.float32)
_ROOFS = np.array([[176, 84, 64], [204, 202, 196], [96, 96, 102], [150, 122, 100], [120, 60, 50]], dtype=np.float32)

REGION_NAMES = ("alderbrook", "brindlemoor", "corriedale", "dunmarsh")
#: Ground sampling distance of the synthetic tiles, in degrees (about 0.5 m at the equator).
PIXEL_DEGREES = 4.5e-6


@dataclass(frozen=True)
class RegionStyle:
    """What makes one region look different from another (a mild domain shift)."""

    tint: tuple[float, float, float]  # per-channel gain
    urban: float  # share of the tile that is urban (roads get developed space and buildings)
    fields: float  # probability that a rural parcel is farmed
    origin: tuple[float, float]  # (lon, lat) of the region's top-left corner


_STYLES = (
    RegionStyle((1.00, 1.00, 1.00), 0.55, 0.55, (8.6800, 50.7800)),
    RegionStyle((1.06, 1.00, 0.92), 0.35, 0.70, (-3.1900, 40.4100)),
    RegionStyle((0.94, 1.00, 1.06), 0.70, 0.40, (139.7000, 35.6900)),
    RegionStyle((1.03, 0.97, 0.97), 0.45, 0.60, (-47.9300, -15.7800)),
)


def value_noise(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field with features about ``cell`` px wide, roughly N(0, 0.5²) (float32)."""
    h, w = shape
    gh, gw = int(h / cell) + 3, int(w / cell) + 3
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32) / cell + rng.random()
    xs = np.arange(w, dtype=np.float32) / cell + rng.random()
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = ys - y0, xs - x0
    fy, fx = (fy * fy * (3 - 2 * fy))[:, None], fx * fx * (3 - 2 * fx)  # smoothstep
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _disc(mask: np.ndarray, cy: float, cx: float, r: float) -> None:
    """Set a filled disc in ``mask`` (clipped at the borders)."""
    h, w = mask.shape
    y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 1)
    x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    mask[y0:y1, x0:x1] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def generate_scene(size: int, rng: np.random.Generator, style: RegionStyle = _STYLES[0]) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image uint8 (3, size, size), label uint8 (size, size))`` with raw labels 0..8."""
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    label = np.full((s, s), RANGE, dtype=np.uint8)
    colour = _COLOUR[label].copy()  # (H, W, 3), per-pixel base colour; fields and roofs override it
    extra = np.zeros((s, s), dtype=np.float32)  # per-pixel brightness pattern (crop rows, shadows)
    zoning = value_noise((s, s), max(s / 2.5, 24), rng)
    urban = zoning > np.quantile(zoning, 1 - float(np.clip(style.urban + rng.normal(0, 0.15), 0.1, 0.9)))

    # field parcels in the rural part: a jittered grid of rectangles, each farmed with its own crop and row direction
    cuts_y = _cuts(s, rng, 28, 80)
    cuts_x = _cuts(s, rng, 28, 80)
    for (y0, y1) in zip(cuts_y[:-1], cuts_y[1:]):
        for (x0, x1) in zip(cuts_x[:-1], cuts_x[1:]):
            rural = not urban[(y0 + y1) // 2, (x0 + x1) // 2]
            if rural and rng.random() < style.fields and min(y1 - y0, x1 - x0) > 8:
                m = 2  # field margins stay rangeland (hedges/paths)
                ys, xs = slice(y0 + m, y1 - m), slice(x0 + m, x1 - m)
                label[ys, xs] = AGRI
                colour[ys, xs] = _CROPS[rng.integers(len(_CROPS))] + rng.normal(0, 6, 3)
                theta = rng.random() * np.pi
                period = rng.uniform(3.0, 7.0)
                rows = np.sin(2 * np.pi * (xx[ys, xs] * np.cos(theta) + yy[ys, xs] * np.sin(theta)) / period)
                extra[ys, xs] += rng.uniform(6, 14) * rows

    # bare patches: the highest bumps of a smooth field
    bump = value_noise((s, s), 14, rng)
    bare = bump > 0.85
    label[bare] = BARE
    colour[bare] = _COLOUR[BARE]

    # water: a lake (distorted ellipse) or a meandering river
    wobble = value_noise((s, s), 10, rng) * 0.35
    if rng.random() < 0.5:
        cy, cx = rng.uniform(0.2, 0.8, 2) * s
        ry, rx = rng.uniform(0.07, 0.16, 2) * s + 3
        water = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1 + wobble * 2
    else:
        along, across = (xx, yy) if rng.random() < 0.5 else (yy, xx)
        centre = rng.uniform(0.2, 0.8) * s + rng.uniform(0.04, 0.1) * s * np.sin(2 * np.pi * along / rng.uniform(0.6, 1.4) / s + rng.random() * 6.3)
        water = np.abs(across - centre) < rng.uniform(0.02, 0.05) * s + 2 + wobble * 4
    label[water] = WATER
    colour[water] = _COLOUR[WATER]

    # roads: a grid of straight roads (at least one each way); developed space near the roads of the urban zone
    n_roads = max(1, int(round(s / 160)))
    road_y = _road_positions(s, n_roads + int(rng.integers(0, 2)), rng)
    road_x = _road_positions(s, n_roads + int(rng.integers(0, 2)), rng)
    half = rng.uniform(1.5, 3.0)
    dist = np.full((s, s), np.inf, dtype=np.float32)
    for r in road_y:
        dist = np.minimum(dist, np.abs(yy - r))
    for r in road_x:
        dist = np.minimum(dist, np.abs(xx - r))
    road = dist <= half
    developed = (dist <= half + rng.uniform(14, 24)) & urban & ~road & ~water
    label[developed] = DEVELOPED
    colour[developed] = _COLOUR[DEVELOPED]
    label[road] = ROAD  # roads cross rivers on bridges
    colour[road] = _COLOUR[ROAD]
    if rng.random() < 0.5:  # dashed lane markings on some tiles' roads
        extra[(dist <= 0.5) & ((yy + xx).astype(np.int64) % 10 < 5)] += 60

    # buildings along the roads inside developed space, with a shadow on their south-east side
    for horizontal, positions in ((True, road_y), (False, road_x)):
        for r in positions:
            for side in (-1, 1):
                t = rng.uniform(0, 12)
                while t < s:
                    depth, length = rng.uniform(6, 16), rng.uniform(6, 18)
                    setback = half + rng.uniform(2, 5)
                    a0, a1 = (r + setback, r + setback + depth) if side > 0 else (r - setback - depth, r - setback)
                    b0, b1 = t, t + length
                    y0, y1, x0, x1 = (a0, a1, b0, b1) if horizontal else (b0, b1, a0, a1)
                    y0, y1, x0, x1 = (int(np.clip(v, 0, s)) for v in (y0, y1, x0, x1))
                    t += length + rng.uniform(3, 12)
                    if y1 - y0 < 3 or x1 - x0 < 3:
                        continue
                    block = label[y0:y1, x0:x1]
                    if np.all(block == DEVELOPED) and rng.random() < 0.8:
                        block[:] = BUILDING
                        colour[y0:y1, x0:x1] = _ROOFS[rng.integers(len(_ROOFS))] + rng.normal(0, 8, 3)
                        extra[y1:min(s, y1 + 2), x0 + 2:min(s, x1 + 2)] -= 35  # shadow (stays developed space)

    # tree clumps: clusters of overlapping crowns on open ground
    trees = np.zeros((s, s), dtype=bool)
    for _ in range(int(rng.integers(2, 4)) + s * s // 6000):
        cy, cx = rng.uniform(0, s, 2)
        spread = rng.uniform(4, 16)
        for _ in range(int(rng.integers(4, 16))):
            _disc(trees, cy + rng.normal(0, spread), cx + rng.normal(0, spread), rng.uniform(2.5, 6.0))
    open_ground = np.isin(label, (RANGE, DEVELOPED, BARE, AGRI))
    trees &= open_ground
    label[trees] = TREE
    colour[trees] = _COLOUR[TREE]
    surface = label.copy()  # what the ground is, before some of it is marked unknown

    # unknown pixels: a few unlabelled specks, and sometimes a no-data strip (black) along one edge
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.integers(0, s, 2)
        label[cy:cy + int(rng.integers(2, 6)), cx:cx + int(rng.integers(2, 6))] = UNKNOWN
    no_data = np.zeros((s, s), dtype=bool)
    if rng.random() < 0.3:
        width = int(rng.integers(1, max(2, s // 32)))
        no_data[[np.s_[:width, :], np.s_[-width:, :], np.s_[:, :width], np.s_[:, -width:]][int(rng.integers(4))]] = True
        label[no_data] = UNKNOWN
    _ensure_every_class(label, colour, rng)
    surface = np.where(label == UNKNOWN, surface, label)

    # texture and noise by class, then the region's tint and a per-tile light level and gradient
    textures = np.stack([rng.standard_normal((s, s)).astype(np.float32), value_noise((s, s), 2.5, rng),
                         value_noise((s, s), 8, rng), value_noise((s, s), 48, rng)])  # (4, H, W)
    amps = _TEXTURE[surface]  # (H, W, 4)
    brightness = np.einsum("hwk,khw->hw", amps, textures) + extra
    gain = np.asarray(style.tint, dtype=np.float32) * rng.uniform(0.9, 1.1)
    gradient = 1 + 0.08 * ((xx / s - 0.5) * rng.normal() + (yy / s - 0.5) * rng.normal())
    image = (colour + brightness[..., None]) * gain * gradient[..., None]
    image += rng.normal(0, 3, image.shape).astype(np.float32)  # sensor noise, per channel
    image[no_data & (label == UNKNOWN)] = 0

    image = np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return np.ascontiguousarray(image), label


def _ensure_every_class(label: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> None:
    """Small tiles can miss a class; add a small patch of each missing one, in distinct cells of a 3x3 grid."""
    missing = [c for c in range(1, 9) if not (label == c).any()]
    if not missing:
        return
    s = label.shape[0]
    cell = s // 3
    side = max(3, min(cell - 2, s // 10))
    for c, slot in zip(missing, rng.permutation(9)):
        y0 = (slot // 3) * cell + int(rng.integers(0, cell - side + 1))
        x0 = (slot % 3) * cell + int(rng.integers(0, cell - side + 1))
        label[y0:y0 + side, x0:x0 + side] = c
        colour[y0:y0 + side, x0:x0 + side] = _CROPS[0] if c == AGRI else _ROOFS[0] if c == BUILDING else _COLOUR[c]


def _cuts(size: int, rng: np.random.Generator, low: int, high: int) -> list[int]:
    """Sorted cut positions 0 = c0 < c1 < ... = size with gaps in [low, high) (the last gap may be shorter)."""
    cuts = [0]
    while cuts[-1] < size:
        cuts.append(min(size, cuts[-1] + int(rng.integers(low, high))))
    return cuts


def _road_positions(size: int, count: int, rng: np.random.Generator) -> list[float]:
    """``count`` road positions spread over the tile (one per equal slot, jittered inside it)."""
    slot = size / count
    return [slot * (i + rng.uniform(0.25, 0.75)) for i in range(count)]


def _split_counts(tiles: int) -> tuple[int, int, int]:
    """About 70/15/15 train/val/test, at least one tile in each split when there are three or more."""
    if tiles < 3:
        return tiles, 0, 0
    val = max(1, round(tiles * 0.15))
    test = max(1, round(tiles * 0.15))
    return tiles - val - test, val, test


def generate_dataset(out: str | os.PathLike, tiles: int = 24, size: int = 256, seed: int = 0,
                     regions: int | None = None) -> Path:
    """Write a synthetic OpenEarthMap-layout dataset into ``out`` and return its root.

    ``tiles`` tiles of ``size`` x ``size`` px are spread over ``regions`` regions (default: 2, or 3 from
    12 tiles), written as ``<out>/<region>/images|labels/<region>_<n>.tif`` (uint8 RGB images, uint8 label
    rasters, EPSG:4326, about 0.5 m pixels; odd regions band-interleaved like some OEM tiles), with split
    lists ``train.txt``/``val.txt``/``test.txt`` (about 70/15/15 %, shuffled with the seed). ``out`` must be new,
    empty or an earlier synthetic dataset (marked by :func:`terralite.output_guard.claim_folder`).
    """
    if tiles < 1:
        raise TerraLiteError(f"tiles must be at least 1, got {tiles}")
    if size < 32:
        raise TerraLiteError(f"size must be at least 32 px, got {size}")
    if regions is None:
        regions = 3 if tiles >= 12 else min(2, tiles)
    if not 1 <= regions <= len(REGION_NAMES):
        raise TerraLiteError(f"regions must be between 1 and {len(REGION_NAMES)}, got {regions}")
    from terralite.output_guard import claim_folder

    # a folder holding another dataset (or anything this command did not write) is refused, never rewritten
    out = claim_folder(out, "data synth", "dataset folder")

    names = []
    per_region = [0] * regions
    for tile in range(tiles):
        r = tile % regions
        region, style = REGION_NAMES[r], _STYLES[r]
        index = per_region[r]
        per_region[r] += 1
        name = f"{region}_{index + 1}.tif"
        image, label = generate_scene(size, np.random.default_rng([seed, tile]), style)
        # tiles of a region lie side by side in rows of 8
        lon = style.origin[0] + (index % 8) * size * PIXEL_DEGREES
        lat = style.origin[1] - (index // 8) * size * PIXEL_DEGREES
        transform = Affine(PIXEL_DEGREES, 0.0, lon, 0.0, -PIXEL_DEGREES, lat)
        for sub in ("images", "labels"):
            (out / region / sub).mkdir(parents=True, exist_ok=True)
        write_geotiff(out / region / "images" / name, image, crs="EPSG:4326", transform=transform,
                      interleave="band" if r % 2 else "pixel")
        write_geotiff(out / region / "labels" / name, label, crs="EPSG:4326", transform=transform)
        names.append(name)

    order = np.random.default_rng([seed, tiles, 1]).permutation(tiles)
    n_train, n_val, _ = _split_counts(tiles)
    splits = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    for split, members in splits.items():
        # official lists end without a trailing newline; readers must cope
        write_text_atomic(out / f"{split}.txt", "\n".join(names[i] for i in sorted(members)))
    return out

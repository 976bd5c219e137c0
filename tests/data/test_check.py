import shutil

import numpy as np
import pytest
import rasterio

from terralite.data.check import Problem, check_dataset, require_sound_dataset
from terralite.data.raster import write_geotiff
from terralite.errors import TerraLiteError


def test_sound_dataset_has_no_problems(synthetic_root):
    assert check_dataset(synthetic_root) == []
    assert check_dataset(synthetic_root, "train") == []
    require_sound_dataset(synthetic_root, "train")


def _rewrite(path, change):
    with rasterio.open(path) as src:
        array, crs, transform = src.read(), src.crs, src.transform
    array, transform = change(array, transform)
    write_geotiff(path, array, crs=crs, transform=transform)


def _truncate(image, label):
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    return image


def _three_band_label(image, label):
    shutil.copyfile(image, label)
    return label


def _label_other_size(image, label):
    _rewrite(label, lambda a, t: (a[:, :40, :], t))
    return label


def _label_value_12(image, label):
    def change(a, t):
        a = a.copy()
        a[0, 3, 3] = 12
        return a, t
    _rewrite(label, change)
    return label


def _label_shifted(image, label):
    _rewrite(label, lambda a, t: (a, t @ t.translation(5, 0)))
    return label


def _missing(image, label):
    image.unlink()
    return image


def _four_band_image(image, label):
    _rewrite(image, lambda a, t: (np.concatenate([a, a[:1]]), t))
    return image


def _not_a_raster(image, label):
    label.write_text("hello")
    return label


@pytest.mark.parametrize("breaker, message", [
    (_truncate, "corrupt or truncated"),
    (_three_band_label, "label has 3 bands; it must be single-band"),
    (_label_other_size, "label is 64x40 px but its image"),
    (_label_value_12, "label values outside 0..8: 12"),
    (_label_shifted, "georeferencing differs from its image"),
    (_missing, "listed in train.txt but missing"),
    (_four_band_image, "image has 4 bands but the other images have 3"),
    (_not_a_raster, "cannot open raster"),
])
def test_each_broken_copy_names_the_file(synthetic_root, tmp_path, breaker, message):
    from terralite.data.openearthmap import list_samples

    root = tmp_path / "oem"
    shutil.copytree(synthetic_root, root)
    image, label = list_samples(root, "train")[0][2]
    broken = breaker(image, label)
    problems = check_dataset(root)
    assert any(p.path == broken and message in p.message for p in problems), problems
    assert all(isinstance(p, Problem) for p in problems)
    with pytest.raises(TerraLiteError, match=rf"split 'train' of dataset .* has \d problem\(s\): .*{broken.name}"):
        require_sound_dataset(root, "train")
    # the broken file is in the train split only
    assert check_dataset(root, "val") == []


def test_missing_root_and_lists(tmp_path):
    assert check_dataset(tmp_path / "nope")[0].message == "dataset folder does not exist"
    assert "no split lists" in check_dataset(tmp_path)[0].message
    problems = check_dataset(tmp_path, "train")
    assert problems[0].path == tmp_path / "train.txt" and "does not exist" in problems[0].message

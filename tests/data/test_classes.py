import numpy as np

from terralite.data.classes import (CLASS_NAMES, IGNORE_INDEX, LABEL_NAMES, NUM_CLASSES, PALETTE, colorize,
                                    label_to_train_id, train_id_to_label)


def test_names_palette_and_constants():
    assert CLASS_NAMES == ("bareland", "rangeland", "developed space", "road", "tree", "water",
                           "agriculture land", "building")
    assert NUM_CLASSES == 8 and IGNORE_INDEX == 255
    assert LABEL_NAMES[0] == "unknown" and LABEL_NAMES[1:] == CLASS_NAMES
    assert sorted(PALETTE) == list(range(9))
    assert PALETTE[2] == (0x00, 0xFF, 0x24) and PALETTE[8] == (0xDE, 0x1F, 0x07) and PALETTE[0] == (0, 0, 0)


def test_label_mapping_both_ways():
    raw = np.arange(12, dtype=np.uint8).reshape(3, 4)
    ids = label_to_train_id(raw)
    assert ids.dtype == np.int64
    assert ids.ravel().tolist() == [255, 0, 1, 2, 3, 4, 5, 6, 7, 255, 255, 255]
    assert label_to_train_id(raw.astype(np.int32)).tolist() == ids.tolist()
    back = train_id_to_label(ids)
    assert back.ravel().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0]


def test_colorize_uses_palette():
    rgb = colorize(np.array([[0, 4], [6, 8]], dtype=np.uint8))
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 1]) == (255, 255, 255) and tuple(rgb[1, 0]) == PALETTE[6]

import pytest
import torch
from torch.utils.data import Dataset

from terralite.engine.loader import ResumableSampler, SeededDataset, build_loader


def test_sampler_is_epoch_seeded_and_resumable():
    sampler = ResumableSampler(10, shuffle=True, seed=1)
    sampler.set_epoch(0)
    first = [i for _, i in sampler]
    assert sorted(first) == list(range(10)) and first == [i for _, i in sampler]
    sampler.set_epoch(1)
    assert [i for _, i in sampler] != first
    sampler.set_epoch(0)
    sampler.set_start(4)
    assert len(sampler) == 6 and [i for _, i in sampler] == first[4:]
    assert len(sampler) == 10  # the offset applies to one pass only


def test_shards_form_the_single_process_global_batches():
    single = [i for _, i in ResumableSampler(8, seed=5)]
    shards = [[i for _, i in ResumableSampler(8, seed=5, rank=r, world_size=2)] for r in range(2)]
    # per-rank batch 2 on 2 ranks == global batch 4 of one process
    for step in range(2):
        together = shards[0][2 * step:2 * step + 2] + shards[1][2 * step:2 * step + 2]
        assert sorted(together) == sorted(single[4 * step:4 * step + 4])
    odd = [ResumableSampler(7, seed=0, rank=r, world_size=2).shard() for r in range(2)]
    assert len(odd[0]) == len(odd[1]) == 4  # padded so ranks take the same number of steps


class RandomItems(Dataset):
    """Each item draws from the generator its 'augmentation' uses."""

    def __init__(self, generator):
        self.generator = generator

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return torch.tensor([index]), torch.rand(1, generator=self.generator)


def _draws(workers, start=0):
    g = torch.Generator()
    loader = build_loader(RandomItems(g), 2, shuffle=True, seed=3, num_workers=workers, generator=g)
    loader.sampler.set_epoch(2)
    loader.sampler.set_start(start)
    return {int(i): float(v) for idx, val in loader for i, v in zip(idx.flatten(), val.flatten())}


def test_augmentation_draws_do_not_depend_on_workers_or_resume():
    full = _draws(0)
    assert len(full) == 6
    assert _draws(2) == full
    resumed = _draws(0, start=4)
    assert len(resumed) == 2 and all(full[k] == v for k, v in resumed.items())


def test_seeded_dataset_accepts_plain_indices():
    g = torch.Generator()
    ds = SeededDataset(RandomItems(g), g, seed=0)
    assert torch.equal(ds[3][1], ds[(0, 3)][1])
    with pytest.raises(ValueError):
        ResumableSampler(4, rank=2, world_size=2)

"""Data loaders that are reproducible, resumable mid-epoch, shardable across ranks, and keep a GPU fed.

Two pieces make a killed-and-resumed run see exactly the samples and augmentations of an uninterrupted one:

- :class:`ResumableSampler` orders the samples of an epoch from ``(seed, epoch)`` alone, shards them across
  ranks like ``DistributedSampler`` (rank ``r`` takes every ``world_size``-th index, so the ranks' batches
  together form the same global batches as one process), and can start part-way through an epoch. It yields
  ``(epoch, index)`` keys.
- :class:`SeededDataset` turns a key into a sample after seeding the generator the dataset's random transforms
  draw from with ``(seed, epoch, index)``. Augmentations therefore depend on neither the worker that loads
  the sample nor what was loaded before it — the number of workers does not change the data.
"""

from __future__ import annotations

import os
import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

SampleKey = tuple[int, int]  # (epoch, index into the dataset)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A deterministic 63-bit seed for one sample of one epoch."""
    return ((seed * 1_000_003 + epoch) * 1_000_033 + index) % (2**63 - 1)


class ResumableSampler(Sampler[SampleKey]):
    """Epoch-seeded, rank-sharded sample order that can resume part-way through an epoch.

    ``set_epoch(e)`` picks the epoch; ``set_start(n)`` skips the first ``n`` samples of this rank's share for
    the next pass only (used on resume: ``n`` = batches done × batch size).
    """

    def __init__(self, num_samples: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        self.start = start

    def shard(self) -> list[int]:
        """This rank's indices for the current epoch, in order."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 7919 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        if self.world_size > 1:
            if self.drop_last:
                order = order[: len(order) - len(order) % self.world_size]
            elif len(order) % self.world_size:
                # pad by repeating the first samples so every rank takes the same number of steps
                order += order[: self.world_size - len(order) % self.world_size]
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[SampleKey]:
        shard = self.shard()[self.start :]
        self.start = 0  # a resume offset applies to one pass only
        return iter([(self.epoch, index) for index in shard])

    def __len__(self) -> int:
        return max(0, len(self.shard()) - self.start)


class SeededDataset(Dataset):
    """Wrap ``dataset``: item ``(epoch, index)`` is ``dataset[index]`` with ``generator`` seeded per sample.

    ``generator`` must be the one the dataset's random transforms draw from (``None`` when they have none).
    A plain integer index means epoch 0.
    """

    def __init__(self, dataset: Dataset, generator: torch.Generator | None = None, seed: int = 0):
        self.dataset = dataset
        self.generator = generator
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey | int):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if self.generator is not None:
            self.generator.manual_seed(sample_seed(self.seed, epoch, index))
        return self.dataset[index]


def default_workers(device: torch.device | str, world_size: int = 1) -> int:
    """0 on the CPU (the trainer itself needs the cores); on a GPU, the cores shared among ranks, at most 8."""
    if torch.device(device).type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // max(world_size, 1) - 1))


def _seed_worker(worker_id: int) -> None:
    # Seed numpy/random in each worker from torch's per-worker seed, for any transform that uses them.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    num_workers: int | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset`` with a :class:`ResumableSampler` (``loader.sampler``).

    ``generator``: the generator the dataset's random transforms draw from; it is reseeded per sample so
    that augmentations are reproducible (see the module docstring). ``num_workers=None`` picks
    :func:`default_workers`. On CUDA, memory is pinned, workers persist across epochs and prefetch 4 batches.
    Call ``loader.sampler.set_epoch(epoch)`` before each epoch.
    """
    workers = default_workers(device, world_size) if num_workers is None else num_workers
    on_gpu = torch.device(device).type == "cuda"
    sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
    loader_generator = torch.Generator()
    loader_generator.manual_seed(seed)
    return DataLoader(
        SeededDataset(dataset, generator, seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=on_gpu,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 and on_gpu else None,
        drop_last=drop_last,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=loader_generator,
    )

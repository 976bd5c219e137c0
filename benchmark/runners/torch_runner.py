"""Eager (or compiled) PyTorch: the paper protocol is the default (fp32, eager, NCHW)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from terralite.benchmark.runners.base import PRECISIONS, Runner
from terralite.errors import TerraLiteError


class TorchRunner(Runner):
    """PyTorch runner.

    Options: ``precision`` fp16/bf16 (weights and input cast, no autocast — as deployed),
    ``channels_last`` (NHWC memory format), ``compile`` (``torch.compile``, compiled when the runner is built),
    ``cuda_graphs`` (the whole TTA call captured into a CUDA graph when the runner is built, then replayed; GPU only).
    """

    name = "torch"
    precisions = ("fp32", "fp16", "bf16")

    def __init__(self, model: nn.Module, *, channels_last: bool = False, compile: bool = False, cuda_graphs: bool = False, **conditions):
        super().__init__(model, **conditions)
        if cuda_graphs and self.device.type != "cuda":
            raise TerraLiteError("CUDA graphs need --device cuda; drop the cuda_graphs option on the CPU")
        self.channels_last = channels_last
        self.compile = compile
        self.cuda_graphs = cuda_graphs
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # a copy: casting and moving a module is in place, and the caller's model must stay as it was
        self.net = copy.deepcopy(self.model).to(self.device, PRECISIONS[self.precision]).to(memory_format=memory_format)
        if compile:
            self.net = torch.compile(self.net)
        # compile / capture now, so that no timed call (even with --warmup 0) pays for it
        with torch.no_grad():
            if cuda_graphs:
                self._capture(self.make_input())
            elif compile:
                self(self.make_input())

    @property
    def label(self) -> str:
        options = [name for name, on in (("channels_last", self.channels_last), ("compile", self.compile), ("cudagraphs", self.cuda_graphs)) if on]
        return "+".join([self.name, *options])

    @property
    def input_dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    def make_input(self, seed: int = 0) -> torch.Tensor:
        x = super().make_input(seed)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda_graphs:
            return super().__call__(x)
        self._static_in.copy_(x)
        self._graph.replay()
        return self._static_out

    def _capture(self, x: torch.Tensor) -> None:
        # Warm up on a side stream first, as CUDA graph capture requires (cuDNN picks its kernels there).
        self._static_in = x.clone()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                super().__call__(self._static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = super().__call__(self._static_in)

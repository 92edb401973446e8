"""Test-wide settings: one torch thread per test process.

Our test models are tiny; with several threads, small matmuls spend most of their time waiting
for OpenMP workers whenever the machine is busy (observed: 20 ms per 16x16 matmul under load)."""

import torch

torch.set_num_threads(1)

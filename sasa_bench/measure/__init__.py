"""Everything that runs a model or a kernel under a timer: the measurements and their probes.

timing.py   wall time of repeated steps (CUDA events on GPUs), thread CPU time, statistics
memory.py   peak memory: of a region (allocator, host RSS) and of one call (tensor bytes)
power.py    NVML sampling: power, energy, clocks, throttling
model.py    one measurement of a model: BenchConfig -> Record (OOM retried at half the batch)
sweep.py    many measurements, each in its own subprocess, records appended as they finish
layers.py   measured time and peak memory of each layer of a forward pass
kernels.py  the attention backends at a network's stage shapes, beside a 3x3 conv
"""

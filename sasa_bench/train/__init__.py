"""Training and evaluation: data -> loaders -> epochs -> checkpoints and records.

datasets.py     data specs (digits, mnist5k, cifar10:PATH, imagefolder:PATH), read, checked
loaders.py      seeded, sharded batches with augmentation
config.py       TrainConfig and the named recipes (small, paper)
optim.py        optimizer, warm-up + cosine schedule, weight EMA
loop.py         one training epoch, one evaluation pass
checkpoint.py   atomic checkpoints with RNG states
distributed.py  torchrun / DistributedDataParallel (NCCL on GPUs, gloo on CPU)
trainer.py      a run: resume, epochs, log, final Record(kind="train")
evaluation.py   a checkpoint on a test split: Record(kind="eval")
progress.py     progress bars of epochs and steps
setup.py        the model fitted to the data, built and placed
runs.py         a run started by another command (a report): one call, one record
"""

from sasa_bench.train.config import RECIPES, TrainConfig, make_config
from sasa_bench.train.datasets import DataError, Dataset, open_dataset
from sasa_bench.train.evaluation import evaluate_checkpoint
from sasa_bench.train.setup import fit_to_data
from sasa_bench.train.trainer import train

__all__ = [
    "RECIPES",
    "DataError",
    "Dataset",
    "TrainConfig",
    "evaluate_checkpoint",
    "fit_to_data",
    "make_config",
    "open_dataset",
    "train",
]

"""A stand-in for `python -m sasa_bench.measure.sweep RESULT` that misbehaves by batch size,
so that tests see what a real Slurm makes of a task that dies or is cancelled:

- batch 1: writes an ok record at once (no model is built: the point is the Slurm path);
  batch 4 does so after 3 s;
- batch 2: kills the Slurm task that started it (SIGKILL to its parent), as a crash would;
- batch 3: cancels its own Slurm job with scancel, then waits to be killed.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sasa_bench.measure.model import BenchConfig
from sasa_bench.measure.sweep import placeholder
from sasa_bench.records import environment

config = BenchConfig.from_dict(json.loads(sys.stdin.read()))
record = placeholder(config)
record.env = environment(config.device)
if config.batch_size in (1, 4):
    time.sleep(3 if config.batch_size == 4 else 0)
    record.status, record.error = "ok", None
    record.metrics = {
        "batch_size": config.batch_size,
        "median_ms": 1.0,
        "images_per_s": 1000.0,
        "spread": 0.0,
    }
    Path(sys.argv[1]).write_text(record.to_json())
elif config.batch_size == 2:
    os.kill(os.getppid(), signal.SIGKILL)
elif config.batch_size == 3:
    job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    subprocess.run(["scancel", job], check=True)
    time.sleep(120)

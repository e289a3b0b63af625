"""Work on a Slurm cluster: sweeps as job arrays, trainings across nodes (docs/cluster.md).

`slurm` submits, follows and collects jobs through submitit (the way this field's code bases
reach Slurm: DeiT, DETR, DINO, ConvNeXt); `tasks` holds what runs on the nodes.
"""

"""Layers, each beside its analytic cost: the SASA layer, the stems, and the cost types.

cost.py   LayerCost and ModelCost (FLOPs = 2 x MACs), the cost of conv, batch norm, linear
sasa.py   SASA2d, the paper's attention layer (Eq. 3), with plain keyword options
stem.py   the conv stem and the paper's attention stems
"""

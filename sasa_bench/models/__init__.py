"""Model families as data: frozen specs, the presets and their name grammar, one generic net.

spec.py      ModelSpec and AttentionSpec
registry.py  presets, `parse_model("sasa50:k=9")`, `with_options`, canonical names
resnet.py    the block plan, the generic ResNet built from it, and `model_cost(spec)`
"""

"""Analysis helpers behind ``tools/analysis/`` and ``tools/deployment/``.

* :mod:`.models`: build a model from a config file, a ``type=`` dict or a timm name;
* :mod:`.erf`: effective receptive field (RepLKNet's method);
* :mod:`.flops`: FLOPs / parameters with mmengine's counter, mmlk's op included;
* :mod:`.throughput`: latency / images per second of training vs merged forms;
* :mod:`.feature_maps`: RepNeXt per-branch feature maps;
* :mod:`.export`: ONNX export with a check against PyTorch;
* :mod:`.seg_vis`: segmentation result pictures.

Nothing here is imported by ``import mmlk``: the tools import what they need (matplotlib, onnx, ...).
"""

"""Helpers shared by the test modules: small architectures, BN randomisation, error measure, host scaffolding.

Family-specific expectations (documented key layouts, parameter counts) stay in the family's test module.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

# Small variants exercising every code path, fast on 2 CPU cores.
REPLKNET_TINY = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 2, 1], channels=[16, 32, 32, 64],
                     small_kernel=3, dw_ratio=1, ffn_ratio=2)
# XL-like: no small kernel, dw_ratio 1.5.
REPLKNET_TINY_XL = dict(large_kernel_sizes=[9, 9, 9, 7], layers=[1, 1, 1, 1], channels=[16, 16, 32, 32],
                        small_kernel=None, dw_ratio=1.5, ffn_ratio=2)
# All "large" kernels below the large-kernel-op threshold: plain nn.Conv2d path.
REPLKNET_TINY_SMALLK = dict(large_kernel_sizes=[5, 5, 5, 5], layers=[1, 1, 1, 1], channels=[8, 16, 16, 32],
                            small_kernel=3, dw_ratio=2, ffn_ratio=2)
# The real 31B kernels (31/29/27/13) at tiny width: inputs smaller than the kernels.
REPLKNET_TINY_31 = dict(large_kernel_sizes=[31, 29, 27, 13], layers=[1, 1, 1, 1], channels=[8, 8, 16, 16],
                        small_kernel=5, dw_ratio=1, ffn_ratio=2)
REPNEXT_TINY = dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 2, 1])
# A Dilated Reparam Block at 13 and at 7, plain 3x3 blocks, an identity (kernel 0) block.
UNIREPLKNET_TINY = dict(depths=[1, 1, 3, 1], dims=[16, 32, 48, 64], kernel_sizes=[[3], [13], [13, 3, 0], [7]])

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


def randomise_bn(model: nn.Module, seed: int = 0, *, mean_std: float = 0.5,
                 var_range: Tuple[float, float] = (0.25, 1.75), affine: bool = True,
                 conv_bias: bool = False) -> None:
    """Non-trivial BN running statistics (and affine parameters), so that merging is a real test.

    Per BN, in module order: running_mean ~ N(0, mean_std), running_var ~ U(var_range), then (with ``affine``)
    weight ~ U(0.5, 1.5) and bias ~ N(0, 0.3). ``conv_bias`` also gives every biased ``nn.Conv2d`` a
    N(0, 0.3) bias, so folds of conv biases are exercised too.
    """
    gen = torch.Generator().manual_seed(seed)
    low, high = var_range
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * mean_std)
                m.running_var.copy_(torch.rand(n, generator=gen) * (high - low) + low)
                if affine and m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.3)
            elif conv_bias and isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest absolute difference relative to the reference's largest magnitude."""
    return ((a.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-12)).item()


def merged_outputs(model: nn.Module, x: torch.Tensor, **switch_kwargs):
    """(training-form output, merged output) of ``model`` on ``x`` in eval mode; ``model`` stays merged."""
    model.eval()
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy(**switch_kwargs)
        return ref, model(x)


def expected_hw(h: int, w: int, stage: int) -> Tuple[int, int]:
    """Spatial size of a stage's map: both families halve (rounding up) twice in the stem, then once per stage."""
    for _ in range(stage + 2):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


# ----------------------------------------------------------------------------- host libraries
def ranged_images(n: int, size: int) -> List[torch.Tensor]:
    """``n`` uint8 images in [0, 255], as the host data preprocessors receive them."""
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8) for _ in range(n)]


def optim_wrapper(model: nn.Module, lr: float = 0.01):
    from mmengine.optim import OptimWrapper
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=lr))


def seg_data(num_classes: int, n: int = 2, size: int = 64) -> dict:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(n):
        s = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, size, size)))
        samples.append(s)
    return dict(inputs=ranged_images(n, size), data_samples=samples)


def build_segmentor(backbone: dict, decode_head: dict, neck: Optional[dict] = None,
                    auxiliary_head: Optional[dict] = None) -> nn.Module:
    """An mmseg EncoderDecoder on 64 px inputs, built from mmseg's scope."""
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = dict(type='EncoderDecoder',
               data_preprocessor=dict(type='SegDataPreProcessor', mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                      bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(64, 64)),
               backbone=backbone, decode_head=decode_head, train_cfg=dict(), test_cfg=dict(mode='whole'))
    if neck is not None:
        cfg['neck'] = neck
    if auxiliary_head is not None:
        cfg['auxiliary_head'] = auxiliary_head
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(ConfigDict(cfg))  # mmseg reads test_cfg.mode as an attribute


def train_and_predict(model: nn.Module, data: dict, lr: float = 0.01) -> Tuple[Dict, list]:
    """One host train_step, then test_step on the same data in eval mode: (losses, predictions)."""
    model.train()
    losses = model.train_step(data, optim_wrapper(model, lr))
    model.eval()
    with torch.no_grad():
        preds = model.test_step(data)
    return losses, preds


def det_data(n: int = 2, size: int = 64) -> dict:
    """Two boxes with masks per image (classes 0 and 2) on ``size`` px uint8 images."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    samples = []
    for i in range(n):
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0),
                                        img_id=i))
        masks = np.zeros((2, size, size), dtype=np.uint8)
        masks[0, 4:30, 6:40] = 1
        masks[1, 30:60, 20:50] = 1
        s.gt_instances = InstanceData(bboxes=torch.tensor([[6., 4., 40., 30.], [20., 30., 50., 60.]]),
                                      labels=torch.tensor([0, 2]), masks=BitmapMasks(masks, size, size))
        samples.append(s)
    return dict(inputs=ranged_images(n, size), data_samples=samples)


def build_mask_detector(config: str, backbone: dict, in_channels: Sequence[int], width: int = 32,
                        classes: int = 3) -> nn.Module:
    """An mmdet detector from one of mmdet's own configs (relative to its ``.mim/configs``), narrowed to
    ``width`` channels and ``classes`` classes, on the given backbone. Works for Mask and Cascade Mask R-CNN."""
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', config)).model
    cfg.backbone = backbone
    cfg.neck.in_channels = list(in_channels)
    cfg.neck.out_channels = width
    cfg.rpn_head.in_channels = cfg.rpn_head.feat_channels = width
    roi = cfg.roi_head
    roi.bbox_roi_extractor.out_channels = width
    roi.mask_roi_extractor.out_channels = width
    bbox_heads = roi.bbox_head if isinstance(roi.bbox_head, list) else [roi.bbox_head]
    for head in bbox_heads:
        head.in_channels, head.fc_out_channels, head.num_classes = width, 64, classes
    roi.mask_head.in_channels = roi.mask_head.conv_out_channels = width
    roi.mask_head.num_classes = classes
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


# ----------------------------------------------------------------------------- shipped downstream configs
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# One block per stage: the backbones of the real tools/train.py runs of the shipped configs.
REPLKNET_TINY_RUN = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 1, 1], channels=[16, 32, 64, 128],
                         small_kernel=3, dw_ratio=1, ffn_ratio=2)
REPNEXT_TINY_RUN = dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1])


def config_ids(paths: Sequence[str]) -> List[str]:
    return [osp.basename(p)[:-3] for p in paths]


def checkpoint_names() -> set:
    """The entry names of the repository's checkpoints.yaml (empty without the file)."""
    path = osp.join(REPO, 'checkpoints.yaml')
    if not osp.isfile(path):
        return set()
    import yaml
    with open(path) as f:
        data = yaml.safe_load(f)
    return {entry['name'] for entry in data.get('checkpoints', [])}


def build_full_size(cfg, scope: str) -> nn.Module:
    """Build ``cfg.model`` in the host's scope without pretrained weights, SyncBN -> BN on a CPU."""
    import importlib

    from mmengine.registry import init_default_scope

    from mmlk.engine.host_config import replace_syncbn_without_cuda
    cfg.model.backbone.pop('init_cfg', None)
    replace_syncbn_without_cuda(cfg)
    init_default_scope(scope)
    return importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)


def published_widths(backbone: nn.Module, arch: str) -> List[int]:
    """The stage widths of a named variant, from the backbone class's own table."""
    settings = type(backbone).arch_settings
    widths = settings[arch if arch in settings else arch.lower()]
    return list(widths.get('channels', widths.get('embed_dims')))


def cfg_option(key: str, value) -> str:
    """One ``--cfg-options`` item in the syntax mmengine's DictAction parses."""
    text = repr(value).replace(' ', '').replace("'", '')
    return f'{key}={text}'


def arch_options(arch: Dict) -> List[str]:
    # `_delete_` replaces the config's arch string by the dict instead of merging into it
    return ['model.backbone.arch._delete_=True'] + [cfg_option(f'model.backbone.arch.{k}', v)
                                                    for k, v in arch.items()]


class FlowLogs(list):
    """The output of each command of a flow (:func:`run_flow`), in order; ``codes``: their exit codes."""
    codes: List[int]


def run_flow(*commands: Sequence[str], cwd: str = REPO, timeout: int = 600, env: Optional[Dict[str, str]] = None,
             step_env: Optional[Sequence[Optional[Dict[str, str]]]] = None, expect_ok: bool = True) -> FlowLogs:
    """Run tool command lines (``[script, *args]``, what a user types after ``python``) one after another in ONE
    subprocess (``tests/_tool_flow.py``: each runs as ``__main__``; one interpreter start and host-library
    import per flow); the output of each command, in order.

    ``env`` replaces the subprocess's environment (default: this one, one OpenMP thread, this checkout first on
    ``PYTHONPATH``); ``step_env[i]`` is added before command ``i``. With ``expect_ok`` every command must exit
    0; otherwise the flow stops at the first failing one, and the outputs returned end with that one's.
    """
    import os
    import re
    import subprocess
    import sys
    if env is None:
        env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    env = dict(env, PYTHONUNBUFFERED='1')
    steps = [dict(argv=list(c), env=dict((step_env or [None] * len(commands))[i] or {}))
             for i, c in enumerate(commands)]
    import json
    out = subprocess.run([sys.executable, osp.join(REPO, 'tests', '_tool_flow.py'), json.dumps(steps)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=cwd,
                         env=env)
    parts = re.split(r'^@@tool-flow step \d+@@\n', out.stdout, flags=re.M)
    logs = FlowLogs(parts[1:] if len(parts) > 1 else [out.stdout])
    logs.codes = [int(c) for c in re.findall(r'^@@tool-flow rc \d+=(-?\d+)@@$', out.stdout, flags=re.M)]
    codes = logs.codes
    if expect_ok:
        assert out.returncode == 0 and len(codes) == len(commands), \
            f'step {len(codes) - 1} of {commands[max(0, len(codes) - 1)][:1]} failed:\n{out.stdout[-4000:]}'
    return logs


def run_tool(args: Sequence[str], timeout: int = 300) -> str:
    """Run a repository tool (``tools/train.py`` ...) in a subprocess; its output, asserting success."""
    return run_flow(args, timeout=timeout)[0]

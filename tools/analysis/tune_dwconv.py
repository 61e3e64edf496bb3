"""Tune the large-kernel depthwise convolutions of a config's backbone ahead of time, on this machine.

Builds ``cfg.model.backbone`` (or ``cfg.model`` when it is a backbone), runs one training step's forward and
backward (and an inference forward) on a random input of the config's size, and lets ``impl='auto'`` time
every large-kernel layer's problem. The choices land in the per-machine tuning cache
(``$MMLK_CACHE_DIR/dwconv_tune/``, default ``~/.cache/mmlk``), which later runs (training, testing, every rank
of a distributed run) read instead of timing again.

Examples::

    python tools/analysis/tune_dwconv.py configs/replknet/upernet_replknet-31b_in1k-pre_64xb2-40k_ade20k-512x512.py
    python tools/analysis/tune_dwconv.py configs/replknet/replknet-31b_32xb64_in1k-224.py --batch 2 --channels-last
    python tools/analysis/tune_dwconv.py CONFIG --size 224 --dtype bfloat16 --device cuda
"""
import argparse
import os
import os.path as osp
import sys
import time
from typing import Optional, Sequence, Tuple

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def _find_size(cfg) -> Tuple[int, int]:
    """The training input size the config uses (crop size / RandomResizedCrop scale), else 224."""
    for key in ('crop_size', 'img_size', 'input_size'):
        v = cfg.get(key)
        if v:
            return (v, v) if isinstance(v, int) else tuple(v)[:2]
    pipeline = (cfg.get('train_dataloader') or {}).get('dataset', {}).get('pipeline', []) or []
    for t in pipeline:
        for key in ('crop_size', 'scale'):
            v = t.get(key) if isinstance(t, dict) else None
            if isinstance(v, int):
                return v, v
            if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
                return tuple(v)
    return 224, 224


def _batch(cfg) -> int:
    return int((cfg.get('train_dataloader') or {}).get('batch_size', 2) or 2)


def build_backbone(cfg):
    from mmlk.registry import MODELS
    model_cfg = cfg.model
    backbone_cfg = model_cfg.get('backbone', model_cfg)
    backbone_cfg = dict(backbone_cfg)
    backbone_cfg['type'] = backbone_cfg['type'] if '.' in backbone_cfg['type'] else 'mmlk.' + backbone_cfg['type']
    backbone_cfg.pop('init_cfg', None)  # random weights suffice for timing; never download anything
    return MODELS.build(backbone_cfg)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--size', type=int, nargs='+', help='input H [W] (default: from the config, else 224)')
    p.add_argument('--batch', type=int, help="batch per device (default: the config's train batch size)")
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16', 'float16'],
                   help='autocast dtype for the step (float32: none)')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--threads', type=int, help='torch.set_num_threads (CPU; part of the cache key)')
    args = p.parse_args(argv)
    if os.environ.get('MMLK_DWCONV_TUNE', '1').strip().lower() in ('0', 'false', 'off', 'no'):
        raise SystemExit('MMLK_DWCONV_TUNE=0 switches tuning off; unset it to tune')
    if args.threads:
        torch.set_num_threads(args.threads)
    import mmlk  # noqa: F401  (before loading the config: makes `mmlk::` base configs resolvable)
    from mmengine.config import Config
    from mmlk.ops import LargeKernelDWConv2d, _tune

    cfg = Config.fromfile(args.config)
    h, w = (args.size * 2)[:2] if args.size else _find_size(cfg)
    n = args.batch or _batch(cfg)
    model = build_backbone(cfg).to(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    layers = [m for m in model.modules() if isinstance(m, LargeKernelDWConv2d)]
    for m in layers:
        m.impl = 'auto'
    x = torch.randn(n, 3, h, w, device=args.device).contiguous(memory_format=fmt)
    tuner = _tune.get_tuner()
    t0 = time.perf_counter()
    amp = torch.autocast(args.device, dtype=getattr(torch, args.dtype), enabled=args.dtype != 'float32')
    model.train()
    with amp:
        out = model(x)
        out = out if isinstance(out, (tuple, list)) else (out,)
        loss = sum(o.float().mean() for o in out)
    loss.backward()
    model.eval()
    with torch.no_grad(), amp:
        model(x)
    wall = time.perf_counter() - t0
    print(f'{len(layers)} large-kernel layers in {type(model).__name__}, input {n}x3x{h}x{w} '
          f'({"channels_last" if args.channels_last else "NCHW"}, {args.dtype}, {args.device}, '
          f'{torch.get_num_threads()} threads)')
    print(f'tuning took {tuner.tuning_seconds:.2f} s (whole step incl. tuning {wall:.2f} s); cache: '
          f'{tuner.cache_path(x.device)}')
    for key, choice in sorted(tuner._mem.items()):  # noqa: SLF001 - the tool reports the tuner's own state
        print(f'  {key}: ' + ', '.join(f'{p}={choice[p]}' for p in _tune.PASSES if p in choice))


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""Train any mmlk or host-library config (mmpretrain, mmsegmentation, mmdetection) with mmengine.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]] [--amp] [--auto-scale-lr]
                          [--cfg-options key=value ...] [--launcher {none,pytorch,slurm}]

The config's ``default_scope`` decides which host library's conventions apply. On a machine without
CUDA, SyncBN is replaced by BN (logged), so published configs run on a CPU unchanged. As in the host
libraries, the learning rate is scaled to the run's global batch only with ``--auto-scale-lr``; a run whose
global batch differs from the config's ``auto_scale_lr.base_batch_size`` is told so at WARNING.
"""
import argparse
import logging
import os
import os.path as osp
import sys

# Run from a source checkout without installing: make `import mmlk` find the package next to tools/.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model (mmpretrain / mmseg / mmdet config)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where to save logs and checkpoints '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CHECKPOINT',
                        help='resume training: from CHECKPOINT, or, without a value, from the latest '
                        'checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (fp16 on CUDA, bf16 on CPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual global batch size '
                        '(uses the config\'s auto_scale_lr.base_batch_size)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_iters=10')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    import mmlk  # noqa: F401  (registers mmlk's classes before the config is built)
    from mmengine.logging import print_log
    from mmengine.runner import Runner

    from mmlk.engine.host_config import (apply_amp, apply_resume, apply_rng_state_hook, global_batch_warning,
                                init_cpu_distributed, launcher_world_size, prepare_config)
    from mmlk.checkpoint import CheckpointError

    cfg = prepare_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    apply_resume(cfg, args.resume)
    # Checkpoints carry every rank's RNG states, so a resumed run repeats the uninterrupted one.
    apply_rng_state_hook(cfg)
    if args.amp:
        apply_amp(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    warning = global_batch_warning(cfg, launcher_world_size(args.launcher))
    if warning:
        print_log(f'mmlk: {warning}', logger='current', level=logging.WARNING)
    # (--resume / load_from are read with weights_only=True whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says:
    # `import mmlk` installs mmlk's checking loaders, see mmlk/checkpoint/mmengine_compat.py)
    init_cpu_distributed(cfg, args.launcher)
    try:
        runner = Runner.from_cfg(cfg)
        runner.train()
    except CheckpointError as e:  # the message names the file and what to do
        raise SystemExit(f'error: {e}') from e


if __name__ == '__main__':
    main()

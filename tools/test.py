#!/usr/bin/env python
"""Evaluate a checkpoint with any mmlk or host-library config.

    python tools/test.py CONFIG CHECKPOINT [--eval mIoU | bbox segm | accuracy] [--work-dir DIR]
                         [--show-dir DIR] [--cfg-options key=value ...] [--launcher ...]

``--eval`` takes the metric names of the upstream (mmseg 0.x / mmdet 2.x / mmcls) READMEs and maps
them onto the config's test evaluator. Metrics (for segmentation the per-class IoU table) are printed.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a checkpoint (mmpretrain / mmseg / mmdet config)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (a path; pretrained names go in init_cfg)')
    parser.add_argument('--eval', nargs='+', metavar='METRIC',
                        help='metrics: mIoU/mDice/mFscore (mmseg), bbox/segm/proposal (mmdet), '
                        'accuracy/precision/recall/f1_score (mmpretrain)')
    parser.add_argument('--work-dir', help='where to write the evaluation log')
    parser.add_argument('--show-dir', help='save painted predictions to this directory')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    import mmlk  # noqa: F401
    from mmengine.runner import Runner

    from mmlk.apis import allow_mmengine_checkpoint_globals
    from mmlk.apis.host import (apply_dataloader_defaults, apply_eval, apply_show_dir, init_host_scope,
                                init_cpu_distributed, load_config, adapt_to_cpu)

    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    init_host_scope(cfg)
    adapt_to_cpu(cfg)
    apply_dataloader_defaults(cfg)
    apply_eval(cfg, args.eval)
    apply_show_dir(cfg, args.show_dir, args.show)
    # The checkpoint is loaded strictly below, not through `load_from` (mmengine loads that with
    # strict=False, so a file for another model or an unconverted upstream file would be evaluated
    # with random weights and report a meaningless metric).
    cfg.load_from = None
    # The backbone must not fetch its ImageNet weights: the checkpoint under test replaces them.
    if isinstance(cfg.model.get('backbone'), dict):
        cfg.model.backbone.pop('init_cfg', None)
    allow_mmengine_checkpoint_globals()
    init_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg)
    try:
        runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
    except RuntimeError as err:
        raise SystemExit(
            f'error: {args.checkpoint} does not fit the model of {args.config}:\n{str(err)[:2000]}\n'
            'If it is an upstream release (official RepLKNet/RepNeXt classifier, mmseg 0.x or mmdet 2.x '
            'checkpoint), convert it first with tools/model_converters/convert_cls_to_mmpretrain.py or '
            'tools/model_converters/convert_downstream.py.') from None
    metrics = runner.test()
    print('\n'.join(f'{k}: {v}' for k, v in metrics.items()))
    return metrics


if __name__ == '__main__':
    main()

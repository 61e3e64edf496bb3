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


def checkpoint_mismatch(model, path: str, max_listed: int = 8) -> str:
    """Describe how the checkpoint's ``state_dict`` differs from ``model``'s ('' when it fits)."""
    from mmengine.runner.checkpoint import _load_checkpoint
    checkpoint = _load_checkpoint(path, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    # The model's load-time key conversions (e.g. a training-form RepNeXt head loading into the merged one,
    # as mmpretrain's reparameterize_model.py leaves it) apply before the keys are compared.
    for prefix, module in model.named_modules():
        for hook in module._load_state_dict_pre_hooks.values():
            hook(state, f'{prefix}.' if prefix else '', {}, True, [], [], [])
    from mmlk.models.weights.keys import compare_state_dict
    missing, unexpected, mismatched = compare_state_dict(model.state_dict(), state)
    missing, unexpected, shapes = sorted(missing), sorted(unexpected), sorted(k for k, _, _ in mismatched)
    lines = []
    for title, keys in (('missing', missing), ('unexpected', unexpected), ('shape mismatch', shapes)):
        if keys:
            more = f' (+{len(keys) - max_listed} more)' if len(keys) > max_listed else ''
            lines.append(f'  {len(keys)} {title} keys: {", ".join(keys[:max_listed])}{more}')
    return '\n'.join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import mmlk  # noqa: F401
    from mmengine.runner import Runner

    from mmlk.engine.host_config import apply_eval, apply_show_dir, init_cpu_distributed, prepare_config
    from mmlk.checkpoint import CheckpointError

    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    cfg = prepare_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    apply_eval(cfg, args.eval)
    apply_show_dir(cfg, args.show_dir, args.show)
    cfg.load_from = args.checkpoint
    # The backbone must not fetch its ImageNet weights: the checkpoint under test replaces them.
    if isinstance(cfg.model.get('backbone'), dict):
        cfg.model.backbone.pop('init_cfg', None)
    init_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg)
    # mmengine loads `load_from` with strict=False: a file for another model, or an unconverted
    # upstream file, would be evaluated with random weights and report a meaningless metric. Check
    # the keys first (the Runner then loads it in its usual order, after hooks such as EMA set up).
    try:
        problem = checkpoint_mismatch(getattr(runner.model, 'module', runner.model), args.checkpoint)
    except CheckpointError as e:  # empty, truncated, not a checkpoint, or unsafe: one line saying so
        raise SystemExit(f'error: {e}') from e
    if problem:
        raise SystemExit(
            f'error: {args.checkpoint} does not fit the model of {args.config}:\n{problem}\n'
            'If it is an upstream release (official RepLKNet/RepNeXt classifier, mmseg 0.x or mmdet 2.x '
            'checkpoint), convert it first with tools/model_converters/convert_cls_to_mmpretrain.py or '
            'tools/model_converters/convert_downstream.py.')
    metrics = runner.test()
    print('\n'.join(f'{k}: {v}' for k, v in metrics.items()))
    return metrics


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""mmlk's main job: train and evaluate RepLKNet + UperNet on a generated ADE20K-layout dataset, on CPU.

    python tools/demo.py [--config CONFIG] [--work-dir DIR] [--data-root DIR] [--max-iters N]

1. writes a deterministic mini dataset in the ADE20K folder layout (``mmlk.datasets.mini``);
2. evaluates the *untrained* model (``tools/test.py ... --eval mIoU``) as the baseline;
3. trains with ``tools/train.py``;
4. evaluates the trained checkpoint with ``tools/test.py ... --eval mIoU`` (per-class IoU table);
and prints both mIoUs. Every step is the command a user would type, run as a subprocess.
"""
import argparse
import os
import os.path as osp
import re
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(REPO, 'configs', 'demo', 'upernet_replknet-mini_1xb8-300it_ade20k-mini-128x128.py')


def run(cmd, capture: bool = False) -> str:
    """Run a command, echoing it and streaming its output; return the output when ``capture``."""
    print('\n$ ' + ' '.join(cmd), flush=True)
    env = dict(os.environ)
    # The demo's convolutions are small: a second OpenMP thread buys little on an idle machine and,
    # on a busy one, spinning at barriers makes a step several times slower. Override if you like.
    env.setdefault('OMP_NUM_THREADS', '1')
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env=env)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        if capture:
            lines.append(line)
    if proc.wait() != 0:
        raise SystemExit(f'demo: command failed with exit code {proc.returncode}: {" ".join(cmd)}')
    return ''.join(lines)


def miou_from(output: str) -> float:
    found = re.findall(r'^mIoU: ([0-9.]+)$', output, flags=re.M)
    if not found:
        raise SystemExit('demo: tools/test.py printed no mIoU')
    return float(found[-1])


def save_untrained_checkpoint(config: str, path: str) -> None:
    """Save the freshly initialised model, the baseline any training must beat."""
    sys.path.insert(0, REPO)
    import torch
    from mmengine.registry import MODELS, init_default_scope

    import mmlk  # noqa: F401
    from mmlk.apis.host import adapt_to_cpu, load_config
    cfg = load_config(config)
    adapt_to_cpu(cfg)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': model.state_dict(), 'meta': {'note': 'untrained baseline'}}, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'demo'))
    parser.add_argument('--data-root', default=osp.join(REPO, 'data', 'ade20k_mini'))
    parser.add_argument('--max-iters', type=int, default=None, help='override the config\'s iterations')
    args = parser.parse_args()
    start = time.time()
    py = sys.executable
    opts = [f'train_dataloader.dataset.data_root={args.data_root}',
            f'val_dataloader.dataset.data_root={args.data_root}',
            f'test_dataloader.dataset.data_root={args.data_root}']
    train_opts = list(opts)
    if args.max_iters:
        train_opts += [f'train_cfg.max_iters={args.max_iters}', f'train_cfg.val_interval={args.max_iters}',
                       f'default_hooks.checkpoint.interval={args.max_iters}',
                       f'param_scheduler.1.end={args.max_iters}']

    run([py, '-m', 'mmlk.datasets.mini', 'ade20k', '--out', args.data_root,
         '--num-train', '320', '--num-val', '64', '--size', '128'])

    untrained = osp.join(args.work_dir, 'untrained.pth')
    save_untrained_checkpoint(args.config, untrained)
    base = miou_from(run([py, 'tools/test.py', args.config, untrained, '--eval', 'mIoU',
                          '--work-dir', osp.join(args.work_dir, 'untrained_eval'), '--cfg-options'] + opts,
                         capture=True))

    run([py, 'tools/train.py', args.config, '--work-dir', args.work_dir, '--cfg-options'] + train_opts)
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        trained = f.read().strip()
    final = miou_from(run([py, 'tools/test.py', args.config, trained, '--eval', 'mIoU',
                           '--work-dir', osp.join(args.work_dir, 'trained_eval'), '--cfg-options'] + opts,
                          capture=True))

    print('\n' + '=' * 60)
    print(f'mmlk demo: RepLKNet + UperNet on mini ADE20K ({args.data_root})')
    print(f'  untrained model mIoU: {base:6.2f}')
    print(f'  trained model   mIoU: {final:6.2f}   (checkpoint {trained})')
    print(f'  wall time: {time.time() - start:.0f} s')
    print('=' * 60)
    if final < base + 20:
        raise SystemExit('demo: training did not raise mIoU by 20 points over the untrained model')


if __name__ == '__main__':
    main()

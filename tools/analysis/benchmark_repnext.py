"""Benchmark RepNeXt's merged training path against branch-by-branch computation.

RepNeXt's depthwise branch groups (``conv_s``: 4 branches, ``conv_m``: 7 convs) carry no per-branch
norm, so ``merge_branches=True`` computes each group as ONE convolution with a kernel built from the
branch parameters on every call. This script times full training steps (forward, backward, SGD step)
of both forms on identical weights and inputs, interleaving the two so that load from other processes
affects both alike, and reports medians and their ratio. ``--mode deploy`` instead times inference of
upstream's fused form (block norms kept) against mmlk's default merged form (block norms folded).

Example::

    python tools/analysis/benchmark_repnext.py --arch m3 --batch-size 2 --img-size 224 --repeats 7
    python tools/analysis/benchmark_repnext.py --mode deploy --batch-size 1 --threads 1
"""
import argparse
import copy
import os
import shlex
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch
import torch.nn as nn


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='m3', help='RepNeXt arch (m0..m5). Default: m3')
    parser.add_argument('--batch-size', type=int, default=2, help='images per step. Default: 2')
    parser.add_argument('--img-size', type=int, default=224, help='square input size. Default: 224')
    parser.add_argument('--repeats', type=int, default=7, help='timed steps per form. Default: 7')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps per form. Default: 2')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: leave as is)')
    parser.add_argument('--channels-last', action='store_true', help='run in channels_last memory format')
    parser.add_argument('--device', default='cpu', help='torch device. Default: cpu')
    parser.add_argument('--mode', choices=('train', 'deploy'), default='train',
                        help="train: merged vs branch-by-branch training steps (default); deploy: inference of "
                             "upstream's fused form vs mmlk's fully merged form (block norms folded too)")
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def make_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        outs = model(x)
        loss = sum(o.float().square().mean() for o in outs)
        loss.backward()
        optimizer.step()
        if x.device.type == 'cuda':
            torch.cuda.synchronize()

    return step


def make_infer(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            model(x)
        if x.device.type == 'cuda':
            torch.cuda.synchronize()

    return step


def main() -> None:
    args = parse_args()
    import mmlk  # noqa: F401  (registers the models)
    from mmlk.models.repnext.model import RepNeXt

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device).to(memory_format=fmt)
    if args.mode == 'train':
        names = ('branch-by-branch', 'merged')
        branch = RepNeXt(args.arch, merge_branches=False).to(device, memory_format=fmt)
        merged = RepNeXt(args.arch, merge_branches=True).to(device, memory_format=fmt)
        merged.load_state_dict(copy.deepcopy(branch.state_dict()))
        branch.train()
        merged.train()
        steps = {names[0]: make_step(branch, x), names[1]: make_step(merged, x)}
    else:
        names = ('upstream-fused', 'fully-merged')
        trained = RepNeXt(args.arch).state_dict()
        models = []
        for fold in (False, True):
            model = RepNeXt(args.arch, fold_block_norm=fold).eval()
            model.load_state_dict(trained)
            model.switch_to_deploy()
            models.append(model.to(device, memory_format=fmt))
        steps = {name: make_infer(model, x) for name, model in zip(names, models)}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():  # interleaved: background load hits both forms alike
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f'command: python {" ".join(shlex.quote(a) for a in sys.argv)}')
    print(f'torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, '
          f'RepNeXt-{args.arch.upper()}, batch {args.batch_size}, {args.img_size}x{args.img_size}, '
          f'{"channels_last" if args.channels_last else "NCHW"}, {args.repeats} timed steps after '
          f'{args.warmup} warm-up steps')
    if hasattr(os, 'getloadavg'):
        print('system load average (1/5/15 min) at the end: ' + ', '.join(f'{v:.2f}' for v in os.getloadavg()))
    for name, t in times.items():
        print(f'{name:>17}: median {med[name] * 1e3:8.1f} ms/step  (min {min(t) * 1e3:.1f}, '
              f'max {max(t) * 1e3:.1f})')
    print(f'speed-up ({names[0]} / {names[1]}): {med[names[0]] / med[names[1]]:.2f}x')


if __name__ == '__main__':
    main()

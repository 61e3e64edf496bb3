#!/usr/bin/env python
"""mmlk's main job: train and evaluate RepLKNet + UperNet on a generated ADE20K-layout dataset, on CPU.

    python tools/demo.py [--config CONFIG] [--work-dir DIR] [--data-root DIR] [--max-iters N] [--verbose]

1. writes a deterministic mini dataset in the ADE20K folder layout (``mmlk.synthetic``);
2. evaluates the *untrained* model (``tools/test.py ... --eval mIoU``) as the baseline;
3. trains with ``tools/train.py`` (one progress bar with the loss on the console);
4. evaluates the trained checkpoint with ``tools/test.py ... --eval mIoU`` (per-class IoU table);
5. draws a few validation predictions (input | ground truth | prediction) and the trained backbone's
   effective receptive field (``tools/analysis/erf.py``'s method), and prints their paths.

Every step is the command a user would type, run as a subprocess; their full logs go to
``<work dir>/logs/`` (``--verbose`` streams them to the console as well), and so do the Python warnings of
the host libraries imported by the demo itself (``logs/demo_warnings.log``).
"""
import argparse
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(REPO, 'configs', 'demo', 'upernet_replknet-mini_1xb8-300it_ade20k-mini-128x128.py')
ITER_RE = re.compile(r'Iter\(train\)\s*\[\s*(\d+)/(\d+)\]')
LOSS_RE = re.compile(r'\bloss: ([0-9.eE+-]+)')


def run(cmd: List[str], log_path: str, verbose: bool = False, bar=None) -> str:
    """Run ``cmd`` with its output in ``log_path``; returns the output.

    With ``bar`` (a tqdm bar or a :class:`LineProgress`), mmengine's ``Iter(train) [i/N] ... loss: x`` lines
    move the bar instead of being printed.
    """
    env = dict(os.environ)
    # The demo's convolutions are small: a second OpenMP thread buys little on an idle machine and,
    # on a busy one, spinning at barriers makes a step several times slower. Override if you like.
    env.setdefault('OMP_NUM_THREADS', '1')
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    lines = []
    with open(log_path, 'w') as log:
        log.write('$ ' + ' '.join(cmd) + '\n')
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                env=env)
        for line in proc.stdout:
            log.write(line)
            log.flush()
            lines.append(line)
            if verbose:
                sys.stdout.write(line)
            if bar is not None:
                found = ITER_RE.search(line)
                if found:
                    bar.total = int(found.group(2))
                    loss = LOSS_RE.search(line)
                    if loss:
                        bar.set_postfix(loss=f'{float(loss.group(1)):.3f}')
                    bar.update(int(found.group(1)) - bar.n)
    if proc.wait() != 0:
        tail = ''.join(lines[-15:])
        raise SystemExit(f'{tail}\ndemo: command failed with exit code {proc.returncode}: {" ".join(cmd)}\n'
                         f'full log: {log_path}')
    return ''.join(lines)


class LineProgress:
    """The part of tqdm's interface :func:`run` uses, printing a plain line at every quarter of the run instead of
    redrawing a bar (for a console that is not a terminal)."""

    def __init__(self, total: int, disable: bool = False) -> None:
        self.total, self.n, self.disable = total, 0, disable
        self._postfix, self._printed = '', 0

    def update(self, steps: int) -> None:
        self.n += steps
        quarter = 4 * self.n // max(self.total, 1)
        if not self.disable and quarter > self._printed:
            self._printed = quarter
            print(f'      train: {self.n}/{self.total} iterations{self._postfix}', flush=True)

    def set_postfix(self, loss: str) -> None:
        self._postfix = f', loss {loss}'

    def __enter__(self) -> 'LineProgress':
        return self

    def __exit__(self, *exc) -> None:
        return None


def send_warnings_to(log_path: str) -> None:
    """Python warnings raised in this process (the host libraries' deprecation and User warnings when the pictures
    are drawn) go to ``log_path`` instead of the console, which keeps the demo's own lines only."""
    import warnings
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    stream = open(log_path, 'a', buffering=1)  # noqa: SIM115 - open for the life of the process

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show


def miou_from(output: str) -> float:
    found = re.findall(r'^mIoU: ([0-9.]+)$', output, flags=re.M)
    if not found:
        raise SystemExit('demo: tools/test.py printed no mIoU')
    return float(found[-1])


def class_table_from(output: str) -> str:
    """The per-class IoU table mmseg's IoUMetric logs after 'per class results:'."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.rstrip().endswith('per class results:'):
            table = []
            for row in lines[i + 1:]:
                if not row.startswith(('+', '|')):
                    if table:
                        break
                    continue
                table.append(row)
            return '\n'.join(table)
    return '(per-class table not found in the log)'


def save_untrained_checkpoint(config: str, path: str) -> None:
    """Save the freshly initialised model, the baseline any training must beat."""
    import torch

    from mmlk.analysis.models import build_from_spec
    torch.manual_seed(0)
    model = build_from_spec(config).model
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': model.state_dict(), 'meta': {'note': 'untrained baseline'}}, path)


def draw_results(config: str, checkpoint: str, opts: List[str], out_dir: str, num_images: int = 4,
                 erf_size: int = 256) -> Tuple[List[str], Dict]:
    """Prediction panels of the first validation images and the trained backbone's ERF heatmap."""
    import numpy as np
    from mmengine.config import DictAction

    from mmlk.analysis.erf import analyze, compute_erf, load_image, save_heatmap
    from mmlk.analysis.models import build_from_spec, last_stage_fn
    from mmlk.analysis.seg_vis import save_predictions
    # The same key=value overrides the subprocesses got, parsed the way their --cfg-options are.
    opt_parser = argparse.ArgumentParser()
    opt_parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg_options = opt_parser.parse_args(['--cfg-options'] + opts).cfg_options
    built = build_from_spec(config, checkpoint, cfg_options=cfg_options)
    paths = save_predictions(built, out_dir, num_images)

    # ERF of the trained backbone on validation images (the method of tools/analysis/erf.py).
    from mmengine.registry import DATASETS
    dataset = DATASETS.build(built.cfg.test_dataloader.dataset)
    images = [dataset.get_data_info(i)['img_path'] for i in range(min(16, len(dataset)))]
    for p in built.model.parameters():
        p.requires_grad_(False)
    batches = (load_image(p, erf_size, built.mean, built.std)[None] for p in images)
    matrix, used = compute_erf(last_stage_fn(built), batches, progress=False)
    np.save(osp.join(out_dir, 'erf_trained.npy'), matrix)
    ratios = analyze(matrix)
    erf_png = save_heatmap(matrix, osp.join(out_dir, 'erf_trained.png'),
                           title=f'trained backbone ERF ({used} val images, {erf_size}px)')
    return paths + [erf_png], ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'demo'))
    parser.add_argument('--data-root', default=osp.join(REPO, 'data', 'ade20k_mini'))
    parser.add_argument('--max-iters', type=int, default=None, help='override the config\'s iterations')
    parser.add_argument('--num-train', type=int, default=320, help='training images to generate')
    parser.add_argument('--num-val', type=int, default=64, help='validation images to generate')
    parser.add_argument('--min-gain', type=float, default=20., help='fail unless training adds this much mIoU')
    parser.add_argument('--verbose', action='store_true', help='stream every step\'s full log to the console')
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from tqdm import tqdm

    start = time.time()
    py = sys.executable
    logs = osp.join(args.work_dir, 'logs')
    if not args.verbose:
        send_warnings_to(osp.join(logs, 'demo_warnings.log'))
    vis_dir = osp.join(args.work_dir, 'vis')
    opts = [f'train_dataloader.dataset.data_root={args.data_root}',
            f'val_dataloader.dataset.data_root={args.data_root}',
            f'test_dataloader.dataset.data_root={args.data_root}']
    # Log every 10 iterations so the console bar moves smoothly (the log file gets them all).
    train_opts = list(opts) + ['default_hooks.logger.interval=10']
    if args.max_iters:
        train_opts += [f'train_cfg.max_iters={args.max_iters}', f'train_cfg.val_interval={args.max_iters}',
                       f'default_hooks.checkpoint.interval={args.max_iters}',
                       f'param_scheduler.1.end={args.max_iters}']
        # keep the warm-up (50 of 300 iterations) a sixth of the run, so a short run has a valid schedule
        warmup = max(1, min(50, args.max_iters // 6))
        train_opts += [f'param_scheduler.0.end={warmup}', f'param_scheduler.1.begin={warmup}']

    print('=' * 72)
    print('mmlk demo: UperNet + a CPU-sized RepLKNet, trained and evaluated on mini ADE20K')
    print(f'  config:   {osp.relpath(args.config, REPO)}')
    print(f'  work dir: {args.work_dir}  (full logs in logs/)')
    print('=' * 72, flush=True)

    run([py, '-m', 'mmlk.synthetic', 'ade20k', '--out', args.data_root, '--num-train', str(args.num_train),
         '--num-val', str(args.num_val), '--size', '128'], osp.join(logs, 'dataset.log'), args.verbose)
    print(f'[1/5] dataset: {args.data_root} ({args.num_train} train / {args.num_val} val images, 128 px)',
          flush=True)

    untrained = osp.join(args.work_dir, 'untrained.pth')
    save_untrained_checkpoint(args.config, untrained)
    base = miou_from(run([py, 'tools/test.py', args.config, untrained, '--eval', 'mIoU',
                          '--work-dir', osp.join(args.work_dir, 'untrained_eval'), '--cfg-options'] + opts,
                         osp.join(logs, 'test_untrained.log'), args.verbose))
    print(f'[2/5] untrained model: mIoU {base:.2f}', flush=True)

    print('[3/5] training (tools/train.py)', flush=True)
    if sys.stdout.isatty():
        progress = tqdm(total=args.max_iters or 300, desc='      train', unit='it', dynamic_ncols=True,
                        mininterval=1, disable=args.verbose)
    else:  # a log file or a pipe (CI, `make demo | tee`): redrawing a bar with '\r' would make one huge line
        progress = LineProgress(total=args.max_iters or 300, disable=args.verbose)
    with progress as bar:
        run([py, 'tools/train.py', args.config, '--work-dir', args.work_dir, '--cfg-options'] + train_opts,
            osp.join(logs, 'train.log'), args.verbose, bar=bar)
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        trained = f.read().strip()
    output = run([py, 'tools/test.py', args.config, trained, '--eval', 'mIoU',
                  '--work-dir', osp.join(args.work_dir, 'trained_eval'), '--cfg-options'] + opts,
                 osp.join(logs, 'test_trained.log'), args.verbose)
    final = miou_from(output)
    print('[4/5] trained model, per-class results on the validation set:')
    print(class_table_from(output), flush=True)

    try:
        pictures, ratios = draw_results(args.config, trained, opts, vis_dir)
    except Exception as exc:  # noqa: BLE001 - the pictures must not cost the trained model's result
        # The trained checkpoint and both mIoUs are the main result; a picture failure is reported
        # (tests/test_analysis_tools.py fails on it) but does not hide them.
        print(f'[5/5] pictures FAILED: {type(exc).__name__}: {exc}\n'
              f'      rerun: python tools/analysis/erf.py compute {args.config} --checkpoint {trained}')
    else:
        print('[5/5] pictures:')
        for path in pictures:
            print(f'      {path}')
        erf = ', '.join(f'{t * 100:.0f}%: {r:.3f}' for t, (_, r) in ratios.items())
        print(f'      ERF high-contribution area ratios ({erf})')

    print('=' * 72)
    print(f'  untrained model mIoU: {base:6.2f}')
    print(f'  trained model   mIoU: {final:6.2f}   (checkpoint {trained})')
    print(f'  wall time: {time.time() - start:.0f} s')
    print('=' * 72)
    if final < base + args.min_gain:
        raise SystemExit(f'demo: training did not raise mIoU by {args.min_gain:g} points over the untrained model')


if __name__ == '__main__':
    main()

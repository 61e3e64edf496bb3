"""Inference latency and throughput of a model in several forms (training vs merged, layouts, dtypes).

Each variant is timed on the same random batch: ``warmup`` untimed calls (oneDNN / cuDNN pick their
kernels and allocate workspaces then), then ``repeats`` timed calls; the reported figure is the
median, which ignores the occasional call slowed by another process on a shared machine. Variants
are timed round-robin inside each repeat, so a slow phase of the machine hits all of them alike.
"""
import copy
import itertools
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn as nn

FORMS = ('train', 'merged')
LAYOUTS = ('nchw', 'channels_last')
DTYPES = ('fp32', 'bf16')


@dataclass
class Variant:
    """One timed configuration."""

    form: str
    layout: str
    dtype: str

    @property
    def name(self) -> str:
        return f'{self.form}/{self.layout}/{self.dtype}'


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _runner(model: nn.Module, x: torch.Tensor, variant: Variant) -> Callable[[], None]:
    """A no-argument closure that runs one forward of ``variant``."""
    if variant.layout == 'channels_last':
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = (torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)
                if variant.dtype == 'bf16' else nullcontext())

    def run() -> None:
        with torch.inference_mode(), autocast:
            model(x)
    return run


def benchmark(make_model: Callable[[str], nn.Module], input_shape: Sequence[int], device: torch.device,
              forms: Sequence[str] = FORMS, layouts: Sequence[str] = LAYOUTS, dtypes: Sequence[str] = DTYPES,
              warmup: int = 2, repeats: int = 5, progress: bool = True) -> List[Dict]:
    """Time every combination; returns one dict per variant with ``ms`` (median per batch) and ``img_s``.

    Args:
        make_model: ``form -> module`` taking one image tensor (``'train'`` or ``'merged'``).
        input_shape: (N, C, H, W) of the batch.
        device: Where to run.
    """
    from tqdm import tqdm
    if device.type == 'cpu' and 'bf16' in dtypes and not _cpu_bf16_ok():
        dtypes = [d for d in dtypes if d != 'bf16']
    x = torch.randn(*input_shape, device=device)
    variants = [Variant(f, l, d) for f, l, d in itertools.product(forms, layouts, dtypes)]
    models = {f: make_model(f).to(device).eval() for f in forms}
    runners = {v.name: _runner(copy.deepcopy(models[v.form]) if v.layout == 'channels_last' else models[v.form],
                               x, v) for v in variants}
    times: Dict[str, List[float]] = {v.name: [] for v in variants}
    bar = tqdm(total=len(variants) * (warmup + repeats), desc='timing', unit='call', disable=not progress,
               dynamic_ncols=True)
    for name, run in runners.items():
        for _ in range(warmup):
            run()
            bar.update()
        _sync(device)
    for _ in range(repeats):
        for name, run in runners.items():
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            bar.update()
    bar.close()
    n = input_shape[0]
    results = []
    for v in variants:
        ms = statistics.median(times[v.name]) * 1e3
        results.append(dict(form=v.form, layout=v.layout, dtype=v.dtype, ms=ms, img_s=n * 1e3 / ms,
                            spread_ms=(min(times[v.name]) * 1e3, max(times[v.name]) * 1e3)))
    return results


def _cpu_bf16_ok() -> bool:
    """bf16 autocast on CPU runs everywhere, but is only worth timing where it does not raise."""
    try:
        with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
            torch.nn.functional.conv2d(torch.randn(1, 2, 4, 4), torch.randn(2, 2, 1, 1))
        return True
    except RuntimeError:
        return False


def format_table(results: List[Dict]) -> str:
    lines = ['| form | layout | dtype | ms / batch (median) | images/s | min-max ms |', '|---|---|---|---|---|---|']
    for r in results:
        lines.append(f'| {r["form"]} | {r["layout"]} | {r["dtype"]} | {r["ms"]:.2f} | {r["img_s"]:.2f} | '
                     f'{r["spread_ms"][0]:.2f}-{r["spread_ms"][1]:.2f} |')
    return '\n'.join(lines)

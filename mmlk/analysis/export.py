"""ONNX export of a merged model and a numerical check of the exported graph against PyTorch.

The check runs the ``.onnx`` file with onnxruntime when it is installed (fast, what deployments use),
otherwise with onnx's pure-Python reference evaluator (slow on large inputs, but needs nothing more).
"""
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .models import eval_mode


def flatten_outputs(out) -> List[torch.Tensor]:
    """Tensors of a (nested) tuple/list/dict output, in order (the order ONNX gives them)."""
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        flat = []
        for item in out:
            flat += flatten_outputs(item)
        return flat
    return []


def export(module: nn.Module, x: torch.Tensor, path: str, opset: int = 18, dynamic_batch: bool = True) -> str:
    """Export ``module(x)`` to ``path``; returns the exporter used (``'dynamo'`` or ``'torchscript'``).

    torch's dynamo exporter is tried first; models it cannot capture (data-dependent Python in a host
    library's head) fall back to the TorchScript exporter. mmlk's large-kernel op becomes a plain
    ``Conv`` node either way. With ``dynamic_batch`` (the default) the batch axis of the input and of every
    output is symbolic (``batch``), so one file serves any batch size.
    """
    module = eval_mode(module)
    errors = []
    output_names = None
    if dynamic_batch and x.shape[0] == 1:
        # an example of batch 1 would be specialised to 1 by the exporters: trace with 2, run with any
        x = torch.cat([x, x])
    if dynamic_batch:
        with torch.no_grad():
            output_names = [f'output_{i}' for i in range(len(flatten_outputs(module(x))))]
    for dynamo in (True, False):
        kwargs = {}
        if dynamic_batch and dynamo:
            kwargs['dynamic_shapes'] = ({0: torch.export.Dim('batch', min=1, max=4096)}, )
        elif dynamic_batch:
            kwargs['dynamic_axes'] = {name: {0: 'batch'} for name in ['input'] + output_names}
        try:
            with torch.no_grad():
                torch.onnx.export(module, (x, ), path, dynamo=dynamo, input_names=['input'], opset_version=opset,
                                  output_names=output_names, **kwargs)
            return 'dynamo' if dynamo else 'torchscript'
        except Exception as exc:  # noqa: BLE001 - every exporter failure is reported together below
            errors.append(f'{"dynamo" if dynamo else "torchscript"} exporter: {type(exc).__name__}: '
                          f'{str(exc).splitlines()[0] if str(exc) else ""}')
    hint = ' (a model whose outputs depend on the batch size in Python: export with dynamic_batch=False / ' \
           '--static-batch)' if dynamic_batch else ''
    raise RuntimeError('ONNX export failed' + hint + ':\n  ' + '\n  '.join(errors))


def run_onnx(path: str, x: np.ndarray) -> Tuple[List[np.ndarray], str]:
    """Run the exported graph on ``x``; returns (outputs, runtime name)."""
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
        name = sess.get_inputs()[0].name
        return [np.asarray(o) for o in sess.run(None, {name: x})], f'onnxruntime {ort.__version__}'
    from onnx.reference import ReferenceEvaluator
    ref = ReferenceEvaluator(path)
    return [np.asarray(o) for o in ref.run(None, {'input': x})], 'onnx.reference'


def compare(expected: Sequence[torch.Tensor], got: Sequence[np.ndarray]) -> List[Dict]:
    """Per output: shape, max abs(diff) and max abs(diff) relative to max abs(expected)."""
    if len(expected) != len(got):
        raise RuntimeError(f'the ONNX graph returns {len(got)} outputs, PyTorch {len(expected)}')
    rows = []
    for e, g in zip(expected, got):
        e = e.detach().float().cpu().numpy()
        if e.shape != g.shape:
            raise RuntimeError(f'output shape differs: PyTorch {e.shape}, ONNX {g.shape}')
        diff = float(np.abs(e - g).max()) if e.size else 0.
        scale = float(np.abs(e).max()) if e.size else 0.
        rows.append(dict(shape=tuple(e.shape), max_abs=diff, rel=diff / scale if scale else diff))
    return rows


def export_and_check(module: nn.Module, input_shape: Sequence[int], path: str, tolerance: float = 1e-4,
                     seed: int = 0, dynamic_batch: bool = True) -> Dict:
    """Export ``module`` and check it on a random input of ``input_shape``.

    With ``dynamic_batch`` the graph is exported with a symbolic batch axis and checked at the given batch size
    and at that size + 2 (``checked_batches`` in the result); a model that cannot be exported so is exported
    with a fixed batch instead, the reason in ``static_batch_reason``.

    Raises:
        RuntimeError: when any output differs by more than ``tolerance`` relative to its largest value.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_shape, generator=gen)
    start = time.perf_counter()
    static_reason = None
    try:
        exporter = export(module, x, path, dynamic_batch=dynamic_batch)
    except RuntimeError as exc:
        if not dynamic_batch:
            raise
        # a graph whose Python depends on the batch size (e.g. a host head's per-image loop) still exports
        # with the batch fixed: keep that, and say why the batch axis is static
        static_reason, dynamic_batch = str(exc), False
        exporter = export(module, x, path, dynamic_batch=False)
    export_s = time.perf_counter() - start
    batches = [input_shape[0], input_shape[0] + 2] if dynamic_batch else [input_shape[0]]
    rows, runtime, run_s = [], '', 0.
    for i, n in enumerate(batches):
        xb = x if i == 0 else torch.randn(n, *input_shape[1:], generator=gen)
        with torch.no_grad():
            expected = flatten_outputs(module(xb))
        start = time.perf_counter()
        got, runtime = run_onnx(path, xb.numpy())
        run_s += time.perf_counter() - start
        rows += compare(expected, got)
    worst = max(r['rel'] for r in rows)
    result = dict(path=path, exporter=exporter, runtime=runtime, outputs=rows, worst_rel=worst,
                  export_s=export_s, run_s=run_s, checked_batches=batches, static_batch_reason=static_reason)
    if worst > tolerance:
        raise RuntimeError(f'the exported graph differs from PyTorch: max relative error {worst:.2e} > '
                           f'{tolerance:.0e} ({rows})')
    return result

"""FLOPs and parameters of any model at a given input size, with mmengine's jit-trace counter.

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` (fvcore's method: trace the model, count every
supported aten op) counts one fused multiply-add as one FLOP, as the RepLKNet / RepNeXt papers and
mmcv's counter did, and also counts the functional ops a module-hook counter misses (upsampling in
UperNet, matmuls). Two additions make it count mmlk models correctly:

* ``mmlk::dwconv2d`` (mmlk's large-kernel depthwise op, which appears as one node when the model is
  traced through ``torch.library``) is counted as the depthwise convolution it computes, whatever route
  (FFT, DFT-GEMM, Triton) runs it;
* the training form is counted as it runs (both branches of every re-parameterisable block plus their
  BNs), the merged form after ``switch_to_deploy()`` - the two numbers the papers publish.

The traced forward pass runs for real (jit tracing cannot run convolutions on the ``meta`` device in
torch 2.14: the shape checks see traced tensors), in channels_last, where the large depthwise kernels
are fastest on CPU; counting UperNet RepLKNet-31B at 2048x512 takes about a minute on two cores.
"""
import math
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .models import eval_mode


def _shape(value) -> Optional[List[int]]:
    from mmengine.analysis.jit_handles import get_shape
    return get_shape(value)


def dwconv_flop_handle(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``mmlk::dwconv2d(x, weight, bias, ...)``: one per output element per kernel tap."""
    out_shape = _shape(outputs[0])
    w_shape = _shape(inputs[1])
    if out_shape is None or w_shape is None:
        return 0
    return int(math.prod(out_shape) * w_shape[-2] * w_shape[-1])


#: extra op handles registered with the analyzer (names as they appear in a traced graph)
EXTRA_HANDLES = {
    'mmlk::dwconv2d': dwconv_flop_handle,
}


def count(module: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> Dict[str, Any]:
    """FLOPs (MACs) and parameters of ``module(*inputs)``.

    Returns a dict with ``flops`` (total), ``params``, ``by_module`` (FLOPs of each top-level child),
    ``by_operator`` (FLOPs per op type) and ``unsupported`` (op names the counter skipped, with counts).
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count
    analyzer = FlopAnalyzer(module, inputs)
    for name, handle in EXTRA_HANDLES.items():
        analyzer.set_op_handle(name, handle)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    total = analyzer.total()
    by_module = {k: v for k, v in analyzer.by_module().items() if k and k.count('.') <= 1}
    return dict(flops=total, params=parameter_count(module)[''], by_module=by_module,
                by_operator=dict(analyzer.by_operator()), unsupported=dict(Counter(analyzer.unsupported_ops())))


def count_model(tensor_module: nn.Module, input_shape: Tuple[int, ...], device: str = 'cpu') -> Dict[str, Any]:
    """Count a model that takes one image tensor of ``input_shape`` (N, C, H, W) on ``device``."""
    module = eval_mode(tensor_module.to(device))
    x = torch.zeros(input_shape, device=device)
    if len(input_shape) == 4:
        # Same counts in either layout; channels_last only makes the traced forward faster.
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return count(module, (x, ))


def fmt(number: float, unit: str = 'G') -> str:
    scale = {'G': 1e9, 'M': 1e6, 'T': 1e12}[unit]
    return f'{number / scale:.2f}{unit}'

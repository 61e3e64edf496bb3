"""'auto' route selection for the CPU from the measured crossover table.

The table (``dwconv_cpu_table.json`` next to this file) is written by
``tools/analysis/benchmark_dwconv.py --write-table``. Each entry is one measured shape with the median
time of every route for each pass (``fwd``, ``gx`` = input gradient, ``gw`` = weight gradient); the
route kept for a pass is the fastest measured one. Shapes not in the table take the entry nearest in
(kernel height, kernel width, map height, map width, batch) on a log scale; if none is close, they take
the plain aten route in the input's own layout, i.e. exactly what ``F.conv2d`` would do, so 'auto' never
guesses its way into a path slower than PyTorch.
"""
import json
import math
import os.path as osp
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

TABLE_PATH = osp.join(osp.dirname(osp.abspath(__file__)), 'dwconv_cpu_table.json')
PASSES = ('fwd', 'gx', 'gw')
# Largest log-distance (sum over the five keys) at which a measured entry is trusted for a new shape:
# about a factor 1.5 in one of them.
_MAX_DISTANCE = math.log(1.5)
# A route must beat the best plain-aten layout by this factor to be preferred (guards against noise).
MARGIN = 1.05


@lru_cache(maxsize=None)
def load_table(path: str = TABLE_PATH) -> Tuple[dict, ...]:
    if not osp.exists(path):
        return ()
    with open(path) as f:
        data = json.load(f)
    return tuple(data.get('entries', ()))


def best_route(times: Dict[str, float], margin: float = MARGIN) -> str:
    """Fastest route of one pass, but only if it beats the best plain-aten layout by ``margin``.

    ``times`` maps route -> median seconds and must contain 'nchw' and 'cl' (the two layouts of
    ``F.conv2d``).
    """
    base = min(('nchw', 'cl'), key=lambda r: times.get(r, math.inf))
    best = min(times, key=times.get)
    if best != base and times[best] * margin > times[base]:
        return base
    return best


def _distance(entry: dict, key: Tuple[int, int, int, int, int]) -> float:
    ek = (entry['kh'], entry['kw'], entry['h'], entry['w'], entry['n'])
    d = 0.0
    for i, (a, b) in enumerate(zip(key, ek)):
        # batch size moves crossovers much less than kernel or map size does
        weight = 0.25 if i == 4 else 1.0
        d += weight * abs(math.log(a) - math.log(b))
    return d


def select_routes(kh: int, kw: int, h: int, w: int, n: int, channels_last: bool,
                  entries: Optional[List[dict]] = None) -> Tuple[str, str, str]:
    """(forward, input-grad, weight-grad) routes for a CPU call of this shape."""
    default = 'cl' if channels_last else 'nchw'
    table = load_table() if entries is None else entries
    if not table:
        return default, default, default
    key = (kh, kw, h, w, max(n, 1))
    entry = min(table, key=lambda e: _distance(e, key))
    if _distance(entry, key) > _MAX_DISTANCE:
        return default, default, default
    return tuple(entry['route'][p] for p in PASSES)  # type: ignore[return-value]

"""'auto' route selection for the CPU from the measured crossover table.

The table (``dwconv_cpu_table.json`` next to this file) is written by
``tools/analysis/benchmark_dwconv.py --write-table``. Each entry is one measured shape with, for NCHW and
for channels_last inputs, the median time of every route for each pass (``fwd``, ``gx`` = input gradient,
``gw`` = weight gradient); the route kept for a pass is the fastest one if it clearly beats ``F.conv2d``
in the input's own layout (:func:`best_route`), else that plain route. Shapes not in the table take the entry nearest in
(kernel height, kernel width, map height, map width, batch) on a log scale; if none is close, they take
the plain aten route in the input's own layout, i.e. exactly what ``F.conv2d`` would do, so 'auto' never
guesses its way into a path slower than PyTorch.
"""
import json
import math
import os.path as osp
from functools import lru_cache
from typing import Dict, Optional, Tuple

from . import route_table

TABLE_PATH = osp.join(osp.dirname(osp.abspath(__file__)), 'dwconv_cpu_table.json')
PASSES = ('fwd', 'gx', 'gw')
# Largest log-distance (summed over kernel height/width, map height/width and 1/4 of batch) at which a
# measured entry is trusted for a new shape.
_MAX_DISTANCE = math.log(2.5)
# A route must beat F.conv2d in the input's own layout by this factor and this many seconds to replace it
# (tables measured on a loaded shared machine showed 10-20% swings between runs, hence 25%).
MARGIN = 1.25
MIN_GAIN = 5e-4


@lru_cache(maxsize=None)
def load_table(path: str = TABLE_PATH) -> Tuple[dict, ...]:
    if not osp.exists(path):
        return ()
    with open(path) as f:
        data = json.load(f)
    return tuple(data.get('entries', ()))


def best_route(times: Dict[str, float], native: str = 'nchw', margin: float = MARGIN,
               min_gain: float = MIN_GAIN) -> str:
    """Route to use for one pass, given median times measured on inputs in the ``native`` layout.

    ``times`` maps route -> median seconds and contains 'nchw' and 'cl' (``F.conv2d`` in each layout,
    the non-native one including the layout conversions). Another route replaces the native one only if
    it is faster by the factor ``margin`` and by at least ``min_gain`` seconds: for sub-millisecond convs,
    timing noise on a shared machine is larger than anything a switch could win.
    """
    best = min(times, key=times.get)
    if best == native:
        return native
    if times[best] * margin <= times[native] and times[native] - times[best] >= min_gain:
        return best
    return native


def _distance(entry: dict, key: Tuple[int, int, int, int, int]) -> float:
    ek = (entry['kh'], entry['kw'], entry['h'], entry['w'], entry['n'])
    d = 0.0
    for i, (a, b) in enumerate(zip(key, ek)):
        # batch size moves crossovers much less than kernel or map size does
        weight = 0.25 if i == 4 else 1.0
        d += weight * abs(math.log(a) - math.log(b))
    return d


def nearest_entry(kh: int, kw: int, h: int, w: int, n: int, c: int = 0,
                  entries: Optional[Tuple[dict, ...]] = None) -> Optional[dict]:
    """The measured entry closest to this shape, or None if none is within the trust distance."""
    table = load_table() if entries is None else entries
    if not table:
        return None
    key = (kh, kw, h, w, max(n, 1))

    def score(e: dict) -> float:
        # channel count only breaks ties between entries of the same geometry
        return _distance(e, key) + (0.01 * abs(math.log(max(c, 1) / e.get('c', 1))) if c else 0.0)

    entry = min(table, key=score)
    return entry if _distance(entry, key) <= _MAX_DISTANCE else None


@lru_cache(maxsize=4096)
def select_routes(kh: int, kw: int, h: int, w: int, n: int, channels_last: bool,
                  c: int = 0) -> Tuple[str, str, str]:
    """(forward, input-grad, weight-grad) routes for a CPU call of this shape."""
    layout = 'cl' if channels_last else 'nchw'
    entry = nearest_entry(kh, kw, h, w, n, c)
    if entry is None:
        return layout, layout, layout
    routes = entry.get('route', {}).get(layout)
    if not isinstance(routes, dict):  # a table from an older format: trust nothing in it
        return layout, layout, layout
    return tuple(_known(routes.get(p), p, layout) for p in PASSES)  # type: ignore[return-value]


def _known(name: object, pass_name: str, layout: str) -> str:
    """A table's route for one pass if this installation has it and it implements the pass, else ``layout``
    (a table written with a route that was later removed must not break the op)."""
    if isinstance(name, str) and route_table.has(name) and pass_name in route_table.get(name).passes:
        return name
    return layout

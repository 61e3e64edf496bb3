"""Runtime autotuning of the depthwise-convolution routes, per machine (like ``cudnn.benchmark``).

A dispatch table measured on one CPU is wrong on another (oneDNN's kernels, the ISA, the thread count and the
dtype all move the crossovers), and on CUDA the Triton kernels must be timed against cuDNN rather than trusted.
So, for each problem ``(device, dtype, layout, N, C, H, W, kh, kw)`` and each pass (``fwd``, ``gx`` = input
gradient, ``gw`` = weight gradient), ``impl='auto'`` times the eligible routes once, F.conv2d's own route in the
input's layout included, keeps the fastest and caches the choice:

* in memory, for the process;
* on disk, in a small JSON file per machine: ``$MMLK_CACHE_DIR`` (default ``$XDG_CACHE_HOME/mmlk`` or
  ``~/.cache/mmlk``) ``/dwconv_tune/<machine hash>.json``. The machine key holds the CPU model, its ISA flags,
  ``torch.get_num_threads()`` and the torch version, or the GPU name, compute capability, CUDA / driver and
  triton versions. The file is written atomically (temporary file + ``os.replace``); an unreadable file is
  ignored with a warning and rewritten.

Rules:

* ``MMLK_DWCONV_TUNE=0`` switches tuning off: 'auto' then uses the shipped table (CPU) or cuDNN (CUDA).
* Nothing is timed while torch.compile / torch.export / FX / TorchScript trace, nor during CUDA-graph capture:
  there the choices already made (memory or disk) or the shipped table are used.
* In a distributed run (``torch.distributed`` initialised, world size > 1) rank 0 decides, from its caches or by
  timing, and broadcasts its choice to every rank (``broadcast_object_list``), so all ranks run the same routes.
  This is one collective per new problem, so every rank must meet new shapes in the same order (true for a DDP
  forward with fixed-size crops); runs whose ranks see different shapes should tune ahead of time
  (``tools/analysis/tune_dwconv.py CONFIG`` fills the disk cache) or set ``MMLK_DWCONV_TUNE=0``.
* Cost is bounded: routes that the shipped table measured as hopeless (``HOPELESS`` times the best) are not
  timed; a route whose first call is ``HOPELESS`` times slower than the best so far gets no further samples;
  routes 1.5x behind the leader stop being sampled; sampling stops after ``PASS_BUDGET_S`` once every contender
  has two samples, and after ``MAX_REPS`` rounds in any case.
* A route replaces F.conv2d's own only when it is faster by ``MARGIN`` and ``MIN_GAIN_S`` (noise guard): 'auto' never
  picks a route measured slower than F.conv2d in the same layout and dtype. A win by less than ``CONFIRM_BELOW`` is
  timed again head to head and must hold on the median and on the fastest sample.
* F.conv2d's own route is timed as PyTorch's autograd runs it (bare ``F.conv2d`` / one ``convolution_backward``),
  the other routes through :mod:`mmlk.ops._executor` with the overhead they will have (the eager autograd Function,
  with autograd recording for a training problem's forward), so a route must beat F.conv2d's real cost.
"""
import hashlib
import json
import os
import os.path as osp
import platform
import statistics
import tempfile
import threading
import time
import warnings
from functools import lru_cache
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from . import _dispatch, _executor, route_table

PASSES = ('fwd', 'gx', 'gw')
ENV_TUNE = 'MMLK_DWCONV_TUNE'
ENV_CACHE_DIR = 'MMLK_CACHE_DIR'
CACHE_VERSION = 1
# A route keeps being sampled only while it is within this factor of the best one so far; the shipped table's
# times prune routes beyond this factor before any timing.
HOPELESS = 4.0
MAX_REPS = 15
PASS_BUDGET_S = 0.2
SLOW_S = 0.05
# A route must beat F.conv2d in the input's layout by 10% and 0.1 ms to replace it: on a shared 2-core machine
# (load 6-7) round-robin medians of sub-5 ms passes still swung by 20-40%, and a wrong choice is cached for good,
# while the wins that matter (Fourier weight gradients, bf16 without native kernels) are 2-100x.
MARGIN = 1.10
MIN_GAIN_S = 1e-4
# A win by less than this factor is timed again, head to head with the native route (CONFIRM_REPS samples each,
# alternating; it must win by the rule above on the median and on the fastest sample) before it is kept: at the 0.3-5 ms scale one round-robin round can still crown a route that
# loses on the next measurement (seen on a quiet 2-core machine: a 0.82x choice), and a choice is cached for good.
CONFIRM_BELOW = 2.0
CONFIRM_REPS = 7

# Timer(fn) -> seconds for one call; tests replace it (``set_timer``) to make choices deterministic.
Timer = Callable[[Callable[[], object], torch.device], float]


def enabled() -> bool:
    """Whether runtime tuning is on (``MMLK_DWCONV_TUNE`` unset or not one of 0/false/off/no)."""
    return os.environ.get(ENV_TUNE, '1').strip().lower() not in ('0', 'false', 'off', 'no')


def cache_dir() -> str:
    base = os.environ.get(ENV_CACHE_DIR)
    if not base:
        base = osp.join(os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache'), 'mmlk')
    return osp.join(base, 'dwconv_tune')


# ----------------------------------------------------------------------------------------------
# machine and problem keys
# ----------------------------------------------------------------------------------------------
# ISA flags that decide which oneDNN / MKL kernels run (the full flag list also holds irrelevant bits that
# differ between VMs of the same CPU).
_ISA_FLAGS = ('avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16',
              'avx512_fp16', 'amx_bf16', 'amx_tile', 'amx_fp16', 'asimd', 'sve', 'sve2', 'bf16', 'fphp')


def _cpu_info() -> Tuple[str, List[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, val = line.partition(':')
                key = key.strip()
                if key == 'model name' and model in ('', platform.processor(), platform.machine()):
                    model = val.strip()
                elif key in ('flags', 'Features') and not flags:
                    flags = val.split()
    except OSError:
        pass
    return model, sorted(set(flags) & set(_ISA_FLAGS))


def machine_key(device: torch.device) -> Dict[str, object]:
    """What the measured speed of a route depends on, beyond the problem itself."""
    key: Dict[str, object] = {'torch': torch.__version__, 'device': device.type}
    if device.type == 'cuda':
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        key.update(gpu=props.name, capability=f'{props.major}.{props.minor}', cuda=torch.version.cuda,
                   driver=_cuda_driver(), cudnn=torch.backends.cudnn.version(), triton=_triton_version())
    else:
        model, flags = _cpu_info()
        key.update(cpu=model, isa=flags, threads=torch.get_num_threads())
    return key


@lru_cache(maxsize=64)
def _machine_file(device_type: str, index: Optional[int], threads: int) -> str:
    """File name of the machine's cache (memoised: /proc/cpuinfo is not re-read on every lookup)."""
    key = machine_key(torch.device(device_type, index) if index is not None else torch.device(device_type))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f'{device_type}-{digest}.json'


def _cuda_driver() -> Optional[int]:
    try:
        return int(torch._C._cuda_getDriverVersion())  # noqa: SLF001 - no public accessor in torch
    except Exception:  # noqa: BLE001 - older/other builds: the CUDA runtime version still keys the cache
        return None


def _triton_version() -> Optional[str]:
    try:
        import triton
        return triton.__version__
    except Exception:  # noqa: BLE001 - triton missing or broken: the Triton route is not eligible anyway
        return None


def problem_key(x: torch.Tensor, weight: torch.Tensor) -> str:
    layout = _executor.native(x)
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    return f'{x.device.type}|{str(x.dtype).replace("torch.", "")}|{layout}|{n}x{c}x{h}x{w}|k{kh}x{kw}'


# ----------------------------------------------------------------------------------------------
# routes
# ----------------------------------------------------------------------------------------------
def candidates(x: torch.Tensor) -> Tuple[str, ...]:
    """Routes 'auto' may time for tensors like ``x``: registered for its device type, able to run on it, and
    passing the route's own check (e.g. Triton's one-time self-check)."""
    out = []
    for name in route_table.names(x.device.type):
        route = route_table.get(name)
        if route.supports(x) is None and route.auto_ok(x):
            out.append(name)
    return tuple(out)


def pass_candidates(pass_name: str, eligible: Sequence[str]) -> List[str]:
    """The routes worth timing for one pass: those of ``eligible`` that implement it."""
    return [r for r in eligible if pass_name in route_table.get(r).passes]


def _pass_fn(pass_name: str, route: str, x: torch.Tensor, weight: torch.Tensor,
             grad: torch.Tensor, probe_scale: float = 1.0) -> Callable[[], object]:
    """A closure running one pass through one route on synthetic tensors, the way the op will run it.

    The native route (aten in the input's layout) runs as PyTorch's own autograd runs it when every pass is
    aten's: ``F.conv2d``, or one ``convolution_backward`` call for the pass. Any other route runs through the
    executor with the overhead it will have: the forward through the eager autograd Function (with autograd
    recording when ``x`` requires grad, as in training), the gradients through the one backward executor (kernel
    flips, layout copies, the non-finite check). On sub-millisecond passes these overheads decide.
    The closure carries ``route``, ``pass_name`` and ``probe_scale`` (> 1 for a reduced probe of the problem)
    attributes, so an injected timer can tell what it times.
    """
    routes = (route, route, route)
    xd, wd = x.detach(), weight.detach()  # the gradient passes run on tensors that record nothing
    if route == _executor.native(x):
        mask = {'fwd': None, 'gx': (True, False, False), 'gw': (False, True, False)}[pass_name]
        if mask is None:
            fn = lambda: _executor.plain(x, weight, None)  # noqa: E731
        else:
            fn = lambda: _executor.aten_backward(grad, xd, wd, mask)  # noqa: E731
    elif pass_name == 'fwd':
        fn = lambda: _executor.EagerDWConv.apply(x, weight, None, routes)  # noqa: E731
    else:
        need_x = pass_name == 'gx'
        fn = lambda: _executor.backward(grad, xd, wd, routes, need_x, not need_x)  # noqa: E731
    fn.route, fn.pass_name, fn.probe_scale = route, pass_name, probe_scale  # type: ignore[attr-defined]
    return fn


def wall_timer(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of ``fn`` (CUDA events on a GPU, the wall clock on CPU)."""
    if device.type == 'cuda':
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _prior(x: torch.Tensor, weight: torch.Tensor, layout: str) -> Dict[str, Dict[str, float]]:
    """The shipped table's times for the nearest measured shape (CPU only), as a pruning prior."""
    if x.device.type != 'cpu':
        return {}
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    entry = _dispatch.nearest_entry(kh, kw, h, w, n, c)
    times = (entry or {}).get('times', {}).get(layout)
    return times if isinstance(times, dict) else {}


def choose(times: Dict[str, float], native: str, margin: float = MARGIN, min_gain: float = MIN_GAIN_S) -> str:
    """The route to keep for one pass: the fastest, unless it does not clearly beat the native route."""
    if native not in times:
        return min(times, key=times.get)
    best = min(times, key=times.get)
    if best != native and times[best] * margin <= times[native] and times[native] - times[best] >= min_gain:
        return best
    return native


# ----------------------------------------------------------------------------------------------
# the tuner
# ----------------------------------------------------------------------------------------------
class Tuner:
    """Times routes per problem and pass, with an in-memory and an on-disk cache (one per machine)."""

    def __init__(self, timer: Optional[Timer] = None) -> None:
        self.timer: Timer = timer or wall_timer
        self._lock = threading.RLock()
        self._mem: Dict[str, Dict[str, str]] = {}
        self._disk: Dict[str, Dict[str, Dict[str, object]]] = {}  # path -> entries read from / written to disk
        self._warned: set = set()
        self.tuning_seconds = 0.0  # total time spent timing routes in this process (reported by the tools)

    # -- disk cache ------------------------------------------------------------------------------
    def cache_path(self, device: torch.device) -> str:
        return osp.join(cache_dir(), _machine_file(device.type, device.index, torch.get_num_threads()))

    def _load(self, path: str) -> Dict[str, Dict[str, object]]:
        if path in self._disk:
            return self._disk[path]
        entries: Dict[str, Dict[str, object]] = {}
        if osp.exists(path):
            try:
                with open(path) as f:
                    data = json.load(f)
                if not isinstance(data, dict) or data.get('version') != CACHE_VERSION or \
                        not isinstance(data.get('entries'), dict):
                    raise ValueError('not a version-%d dwconv tuning cache' % CACHE_VERSION)
                for k, v in data['entries'].items():
                    if isinstance(v, dict) and all(isinstance(v.get(p, {}), dict) for p in PASSES):
                        entries[k] = v
            except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
                if path not in self._warned:
                    self._warned.add(path)
                    warnings.warn(f'mmlk dwconv tuning cache {path} is unreadable ({e}); ignoring it, it will be '
                                  'rewritten', RuntimeWarning)
                entries = {}
        self._disk[path] = entries
        return entries

    def _save(self, path: str, device: torch.device) -> None:
        """Merge this process's entries into the file (other processes may have added theirs) atomically."""
        mine = self._disk.get(path, {})
        self._disk.pop(path, None)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # a corrupt file was already reported once
            merged = dict(self._load(path))
        for k, v in mine.items():
            merged.setdefault(k, {}).update(v)
        self._disk[path] = merged
        data = {'version': CACHE_VERSION, 'machine': machine_key(device), 'entries': merged}
        try:
            os.makedirs(osp.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.json', dir=osp.dirname(path))
            with os.fdopen(fd, 'w') as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as e:  # a read-only home must not break training: keep the in-memory choice
            if ('save', path) not in self._warned:
                self._warned.add(('save', path))
                warnings.warn(f'mmlk dwconv tuning cache {path} cannot be written ({e}); choices stay in memory',
                              RuntimeWarning)

    # -- lookups ---------------------------------------------------------------------------------
    def cached(self, x: torch.Tensor, weight: torch.Tensor, passes: Iterable[str]) -> Dict[str, str]:
        """Choices already known (memory, then disk) for these passes; no timing."""
        key = problem_key(x, weight)
        with self._lock:
            known = dict(self._mem.get(key, {}))
            missing = [p for p in passes if p not in known]
            if missing and not (_distributed() and torch.distributed.get_rank() != 0):
                disk = self._load(self.cache_path(x.device)).get(key, {})
                for p in missing:
                    route = disk.get(p, {}).get('route') if isinstance(disk.get(p), dict) else None
                    if isinstance(route, str):
                        known[p] = route
                if known:
                    self._mem.setdefault(key, {}).update(known)
            return known

    def routes(self, x: torch.Tensor, weight: torch.Tensor, passes: Sequence[str],
               eligible: Sequence[str]) -> Dict[str, str]:
        """Chosen route per pass, timing the passes not cached yet (agreed across ranks when distributed)."""
        key = problem_key(x, weight)
        if _distributed():
            # only rank 0 looks at its caches and times; the others keep what it sends in memory, so that
            # later lookups (e.g. the custom op's) agree with it too
            chosen = _broadcast_from_rank0(lambda: self._routes_local(x, weight, passes, eligible), key)
            with self._lock:
                self._mem.setdefault(key, {}).update(chosen)
            return chosen
        return self._routes_local(x, weight, passes, eligible)

    def _routes_local(self, x: torch.Tensor, weight: torch.Tensor, passes: Sequence[str],
                      eligible: Sequence[str]) -> Dict[str, str]:
        with self._lock:
            known = self.cached(x, weight, passes)
            missing = [p for p in passes if p not in known]
            if not missing:
                return {p: known[p] for p in passes}
            key = problem_key(x, weight)
            path = self.cache_path(x.device)
            results = self.measure(x, weight, missing, eligible)
            entry = self._load(path).setdefault(key, {})
            for p, (route, times) in results.items():
                known[p] = route
                entry[p] = {'route': route, 'ms': {r: round(t * 1e3, 4) for r, t in times.items()}}
            self._mem.setdefault(key, {}).update(known)
            self._save(path, x.device)
            return {p: known[p] for p in passes}

    # -- timing ----------------------------------------------------------------------------------
    def measure(self, x: torch.Tensor, weight: torch.Tensor, passes: Sequence[str],
                eligible: Sequence[str]) -> Dict[str, Tuple[str, Dict[str, float]]]:
        """Time every eligible route of each pass on synthetic tensors shaped like ``x`` / ``weight``."""
        layout = _executor.native(x)
        fmt = torch.channels_last if layout == 'cl' else torch.contiguous_format
        gen = torch.Generator(device='cpu').manual_seed(0)
        # synthetic data: the user's tensors must not be touched, and the timing must not depend on them
        xs = torch.randn(x.shape, generator=gen).to(device=x.device, dtype=x.dtype).contiguous(memory_format=fmt)
        gs = torch.randn(x.shape, generator=gen).to(device=x.device, dtype=x.dtype).contiguous(memory_format=fmt)
        ws = (torch.randn(weight.shape, generator=gen) * 0.05).to(device=x.device, dtype=x.dtype)
        prior = _prior(x, weight, layout)
        out: Dict[str, Tuple[str, Dict[str, float]]] = {}
        t_start = time.perf_counter()
        # Probes: the aten routes' cost grows linearly with N * C, so a slice of one image and 1/16 of the
        # channels predicts a full call at 1/16 (or less) of its cost. A route predicted HOPELESS times slower
        # than the best so far is never run at full size: in bf16 on a CPU without native bf16 kernels, one full
        # call of an aten route can take seconds.
        n, c = x.shape[:2]
        cp = max(1, c // 16)
        probe_scale = (n * c) / cp
        probe = x.device.type == 'cpu' and probe_scale >= 8
        if probe:
            xp, gp = xs[:1, :cp].contiguous(memory_format=fmt), gs[:1, :cp].contiguous(memory_format=fmt)
            wp = ws[:cp].contiguous()
        # A training problem (gradients among the passes) runs its forward with autograd recording: that is
        # part of what the eager Function costs there, and of what F.conv2d costs too.
        training = any(p != 'fwd' for p in passes)
        xs, ws = xs.requires_grad_(training), ws.requires_grad_(training)
        if probe:
            xp, wp = xp.requires_grad_(training), wp.requires_grad_(training)
        with torch.no_grad(), _autocast_off(x.device.type):
            for p in passes:
                routes = self._order(pass_candidates(p, eligible), prior.get(p, {}), layout)
                if x.device.type == 'cpu' and x.dtype != torch.float32:
                    # the table's times are fp32; the Fourier routes compute in fp32 whatever the input dtype,
                    # so they are the predictable ones to time first
                    routes = sorted(routes, key=lambda r: not route_table.get(r).fp32_maths)
                probes = {r: (_pass_fn(p, r, xp, wp, gp, probe_scale), probe_scale) for r in routes
                          if probe and route_table.get(r).probe}
                fns = {r: _pass_fn(p, r, xs, ws, gs) for r in routes}
                with torch.set_grad_enabled(training and p == 'fwd'):
                    times = self._time_routes(fns, x.device, probes)
                    choice = choose(times, layout)
                    if choice != layout and layout in times and times[layout] < CONFIRM_BELOW * times[choice]:
                        median, fastest = self._head_to_head({choice: fns[choice], layout: fns[layout]}, x.device)
                        times = {**times, **median}
                        # kept only if it wins on the median AND on the fastest sample: load from other processes
                        # only ever adds time, so a route that is not faster at its best is not faster
                        choice = choose(median, layout) if choose(fastest, layout) == choice else layout
                out[p] = (choice, times)
        self.tuning_seconds += time.perf_counter() - t_start
        return out

    @staticmethod
    def _order(eligible: Sequence[str], prior: Dict[str, float], native: str) -> List[str]:
        """Eligible routes: the native one, then the table's fastest first; routes the table found hopeless are
        dropped.

        The prior is only trusted by a wide factor: it was measured on another machine (and in fp32). The native
        route (F.conv2d's own) is always kept: it is the baseline the op must never lose to, and another machine's
        table can find it hopeless where it is the fastest here (AVX2 table, AVX-512 CPU).
        """
        usable = {r: t for r, t in prior.items() if r in eligible and isinstance(t, (int, float)) and t > 0}
        if not usable:
            return [native] + [r for r in eligible if r != native]
        best = min(usable.values())
        keep = [r for r in eligible if r == native or r not in usable or usable[r] <= HOPELESS * best]
        # Native first: timed later, its first call (oneDNN primitive creation, tens of ms) could exceed HOPELESS
        # times the best so far and mark it hopeless on one cold sample; first, that call is its warm-up.
        ranked = sorted((r for r in keep if r != native), key=lambda r: usable.get(r, float('inf')))
        return ([native] if native in keep else []) + ranked

    def _time_routes(self, fns: Dict[str, Callable[[], object]], device: torch.device,
                     probes: Optional[Dict[str, Tuple[Callable[[], object], float]]] = None) -> Dict[str, float]:
        """Median seconds per route: one warm-up call each, then round-robin samples within a budget.

        Round-robin sampling makes load from other processes hit every route alike; sub-millisecond routes
        get more samples (up to ``MAX_REPS``) so that a few-percent difference is not decided by one outlier.
        """
        samples: Dict[str, List[float]] = {}
        hopeless: Dict[str, bool] = {}
        best = float('inf')
        for r, fn in fns.items():
            if probes and r in probes and best < float('inf'):
                pfn, scale = probes[r]
                try:
                    self.timer(pfn, device)  # warm-up (primitive creation)
                    predicted = self.timer(pfn, device) * scale
                except Exception:  # noqa: BLE001 - judged by the full-size call below
                    predicted = 0.0
                if predicted > HOPELESS * best:
                    samples[r], hopeless[r] = [predicted], True  # never run at full size
                    continue
            try:
                if device.type == 'cuda':
                    # Triton compiles and autotunes its block sizes on the first call (seconds): keep that out
                    # of the comparison, or the pruning below would discard the route. GPU calls are cheap.
                    fn()
                # on CPU the first call is timed as is (a hopeless aten route can take a second; it runs once)
                first = self.timer(fn, device)
            except Exception as e:  # noqa: BLE001 - a route that fails here is simply not eligible
                warnings.warn(f'mmlk dwconv tuning: route {r!r} failed ({type(e).__name__}: {e}); skipping it',
                              RuntimeWarning)
                continue
            # a hopeless route keeps its one call; a slow call (SLOW_S) is dominated by the work itself and
            # counts as a sample; a fast one was a warm-up (plans, caches) and is discarded
            samples[r] = [first] if first > HOPELESS * best or first > SLOW_S else []
            hopeless[r] = first > HOPELESS * best
            best = min(best, first)
        live = [r for r in samples if not hopeless[r]]
        t0 = time.perf_counter()
        for _ in range(MAX_REPS):
            have = min(len(samples[r]) for r in live) if live else MAX_REPS
            elapsed = time.perf_counter() - t0
            if have >= MAX_REPS or (have >= 2 and elapsed > PASS_BUDGET_S):
                break
            for r in live:
                samples[r].append(self.timer(fns[r], device))
            if have + 1 >= 2:
                # drop routes that clearly lost, keep sampling the contenders
                lead = min(statistics.median(samples[r]) for r in live)
                live = [r for r in live if statistics.median(samples[r]) <= 1.5 * lead]
                if len(live) <= 1:
                    break
        return {r: statistics.median(v) for r, v in samples.items() if v}

    def _head_to_head(self, fns: Dict[str, Callable[[], object]],
                      device: torch.device) -> Tuple[Dict[str, float], Dict[str, float]]:
        """Median and fastest seconds of each route over ``CONFIRM_REPS`` alternating samples (the order flips
        every round, so neither route always runs on the other's warm caches)."""
        names = list(fns)
        samples: Dict[str, List[float]] = {r: [] for r in names}
        for i in range(CONFIRM_REPS):
            for r in (names if i % 2 == 0 else names[::-1]):
                samples[r].append(self.timer(fns[r], device))
        return ({r: statistics.median(v) for r, v in samples.items()}, {r: min(v) for r, v in samples.items()})

    def clear(self) -> None:
        """Forget in-memory choices (the disk cache stays)."""
        with self._lock:
            self._mem.clear()
            self._disk.clear()


class _autocast_off:
    """Context manager disabling autocast on one device type (timings are per dtype, done as given)."""

    def __init__(self, device_type: str) -> None:
        self.ctx = torch.autocast(device_type if device_type in ('cpu', 'cuda') else 'cpu', enabled=False)

    def __enter__(self):
        return self.ctx.__enter__()

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


# ----------------------------------------------------------------------------------------------
# distributed agreement
# ----------------------------------------------------------------------------------------------
def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _broadcast_from_rank0(decide: Callable[[], Dict[str, str]], key: str) -> Dict[str, str]:
    """Rank 0 decides, every rank receives (one collective per new problem; all ranks must take part)."""
    dist = torch.distributed
    payload: List[object] = [(key, decide()) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(payload, src=0)
    rkey, routes = payload[0]  # type: ignore[misc]
    if rkey != key:
        raise RuntimeError(
            f'mmlk dwconv tuning: rank {dist.get_rank()} tunes {key} while rank 0 tunes {rkey}; ranks meet '
            'different shapes, so they cannot agree on routes by broadcast. Tune ahead of time '
            '(tools/analysis/tune_dwconv.py) or set MMLK_DWCONV_TUNE=0.')
    return dict(routes)


# ----------------------------------------------------------------------------------------------
# process-wide instance
# ----------------------------------------------------------------------------------------------
_TUNER = Tuner()


def get_tuner() -> Tuner:
    return _TUNER


def set_timer(timer: Optional[Timer]) -> None:
    """Replace the timer (tests inject fake timings); ``None`` restores the wall-clock timer."""
    _TUNER.timer = timer or wall_timer


def _fx_symbolic_tracing() -> bool:
    from torch.fx import _symbolic_trace as st
    # newer torch: is_fx_symbolic_tracing (is_fx_tracing warns that it also covers export); older: is_fx_tracing
    fn = getattr(st, 'is_fx_symbolic_tracing', None) or getattr(st, 'is_fx_tracing', None)
    return bool(fn()) if fn is not None else False


def may_time() -> bool:
    """Whether timing is allowed right now (eager code outside tracing, scripting and graph capture)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if _fx_symbolic_tracing():
        return False
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        try:
            if torch.cuda.is_current_stream_capturing():
                return False
        except RuntimeError:  # pragma: no cover - no current CUDA context
            pass
    return True

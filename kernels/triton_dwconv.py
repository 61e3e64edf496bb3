"""Triton kernels for the large-kernel depthwise 'same' convolution (stride 1, dilation 1, odd kernels).

Imported as ``mmlk.kernels.triton_dwconv`` by the ``triton`` route (``mmlk/ops/routes/triton.py``), which holds
the launch helpers; the kernels live here so that they ship as sources.

Design (RepLKNet, Ding et al., CVPR 2022, argue that a depthwise large kernel is memory-bound and needs an
implicit-GEMM style kernel rather than im2col):

* tensors are addressed through their strides, so NHWC (channels_last) inputs give channel-contiguous,
  coalesced tiles; NCHW works too, only slower;
* all sums are accumulated in fp32 whatever the storage dtype (fp32 / fp16 / bf16);
* the tap loops start and stop where a tile's taps leave the zero padding, so a 31x31 kernel on a 7x7 map
  runs only the 13x13 taps that can ever touch data;
* the weight gradient is a split reduction: one program per (tap, channel block, image x row chunk)
  writes an fp32 partial sum, and the partials are added afterwards, so no atomics are needed and the
  result is deterministic.
"""
import triton
import triton.language as tl


@triton.jit
def dwconv2d_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, H, W, C, KH, KW,
                        sxn, sxh, sxw, sxc, syn, syh, syw, syc,
                        HAS_BIAS: tl.constexpr, FLIP: tl.constexpr,
                        BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """y[n, h, w, c] = sum_{u, v} x[n, h + u - KH//2, w + v - KW//2, c] * k[u, v, c] (+ bias[c]).

    ``w_ptr`` holds the kernel as a (KH * KW, C) matrix (tap-major, channel-contiguous). With ``FLIP`` the
    kernel is read rotated by 180 degrees, which turns the forward kernel into the input gradient.
    """
    pid_hw = tl.program_id(0)
    n = tl.program_id(1)
    pid_c = tl.program_id(2)
    n_wb = tl.cdiv(W, BLOCK_W)
    h0 = (pid_hw // n_wb) * BLOCK_H
    w0 = (pid_hw % n_wb) * BLOCK_W
    pix = tl.arange(0, BLOCK_H * BLOCK_W)
    oh = h0 + pix // BLOCK_W
    ow = w0 + pix % BLOCK_W
    cc = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cc < C
    ph = KH // 2
    pw = KW // 2
    # Only taps for which some row / column of this tile reads inside the map.
    u_lo = ph - h0 - BLOCK_H + 1
    u_lo = tl.where(u_lo > 0, u_lo, 0)
    u_hi = H + ph - h0
    u_hi = tl.where(u_hi < KH, u_hi, KH)
    v_lo = pw - w0 - BLOCK_W + 1
    v_lo = tl.where(v_lo > 0, v_lo, 0)
    v_hi = W + pw - w0
    v_hi = tl.where(v_hi < KW, v_hi, KW)
    acc = tl.zeros((BLOCK_H * BLOCK_W, BLOCK_C), dtype=tl.float32)
    x_base = x_ptr + n * sxn
    for u in range(u_lo, u_hi):
        ih = oh + (u - ph)
        hmask = (ih >= 0) & (ih < H)
        for v in range(v_lo, v_hi):
            iw = ow + (v - pw)
            m = hmask & (iw >= 0) & (iw < W)
            xv = tl.load(x_base + ih[:, None] * sxh + iw[:, None] * sxw + cc[None, :] * sxc,
                         mask=m[:, None] & cmask[None, :], other=0.0)
            if FLIP:
                tap = (KH - 1 - u) * KW + (KW - 1 - v)
            else:
                tap = u * KW + v
            wv = tl.load(w_ptr + tap * C + cc, mask=cmask, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    if HAS_BIAS:
        bv = tl.load(b_ptr + cc, mask=cmask, other=0.0)
        acc += bv.to(tl.float32)[None, :]
    omask = (oh < H) & (ow < W)
    tl.store(y_ptr + n * syn + oh[:, None] * syh + ow[:, None] * syw + cc[None, :] * syc,
             acc.to(y_ptr.dtype.element_ty), mask=omask[:, None] & cmask[None, :])


@triton.jit
def dwconv2d_wgrad_kernel(x_ptr, g_ptr, part_ptr, H, W, C, KH, KW, ROWS_PER_SPLIT, SPLITS_H,
                          sxn, sxh, sxw, sxc, sgn, sgh, sgw, sgc,
                          BLOCK_W: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_C: tl.constexpr):
    """Partial weight gradient: part[s, u * KW + v, c] = sum over the rows of split ``s`` of
    g[n, h, w, c] * x[n, h + u - KH//2, w + v - KW//2, c].

    One program owns one kernel row ``u``, a block of ``BLOCK_V`` kernel columns and ``BLOCK_C`` channels,
    so each output-gradient tile is loaded once for ``BLOCK_V`` taps (the shifted input tiles overlap and
    come from L1). Split ``s`` covers image ``s // SPLITS_H`` and output rows
    ``[(s % SPLITS_H) * ROWS_PER_SPLIT, ...)``; rows and columns whose shifted input lies entirely in the
    zero padding are never visited.
    """
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    split = tl.program_id(2)
    n_vb = tl.cdiv(KW, BLOCK_V)
    u = pid_t // n_vb
    v0 = (pid_t % n_vb) * BLOCK_V
    ph = KH // 2
    pw = KW // 2
    n = split // SPLITS_H
    r0 = (split % SPLITS_H) * ROWS_PER_SPLIT
    r1 = r0 + ROWS_PER_SPLIT
    # valid output rows: 0 <= h + u - ph < H, within this split
    h_lo = ph - u
    h_lo = tl.where(h_lo > r0, h_lo, r0)
    h_hi = H + ph - u
    h_hi = tl.where(h_hi < r1, h_hi, r1)
    h_hi = tl.where(h_hi < H, h_hi, H)
    # output columns that read inside the map for at least one tap of the block
    w_lo = pw - (v0 + BLOCK_V - 1)
    w_lo = tl.where(w_lo > 0, w_lo, 0)
    w_hi = W + pw - v0
    w_hi = tl.where(w_hi < W, w_hi, W)
    vv = v0 + tl.arange(0, BLOCK_V)
    vmask = vv < KW
    cc = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cc < C
    acc = tl.zeros((BLOCK_V, BLOCK_C), dtype=tl.float32)
    for h in range(h_lo, h_hi):
        g_row = g_ptr + n * sgn + h * sgh
        x_row = x_ptr + n * sxn + (h + u - ph) * sxh
        for w0 in range(w_lo, w_hi, BLOCK_W):
            ow = w0 + tl.arange(0, BLOCK_W)
            wmask = ow < w_hi
            gv = tl.load(g_row + ow[:, None] * sgw + cc[None, :] * sgc,
                         mask=wmask[:, None] & cmask[None, :], other=0.0)
            iw = ow[:, None] + vv[None, :] - pw  # (BLOCK_W, BLOCK_V)
            m2 = wmask[:, None] & vmask[None, :] & (iw >= 0) & (iw < W)
            xv = tl.load(x_row + iw[:, :, None] * sxw + cc[None, None, :] * sxc,
                         mask=m2[:, :, None] & cmask[None, None, :], other=0.0)
            acc += tl.sum(gv.to(tl.float32)[:, None, :] * xv.to(tl.float32), axis=0)
    offs = (split * KH * KW + u * KW + vv)[:, None] * C + cc[None, :]
    tl.store(part_ptr + offs, acc, mask=vmask[:, None] & cmask[None, :])


# ----------------------------------------------------------------------------------------------
# autotuned entry points (CUDA). Under TRITON_INTERPRET=1 the launchers use the plain kernels with one
# fixed configuration instead (the autotuner times with CUDA events), and the tests run every configuration
# listed here through the interpreter for correctness.
# ----------------------------------------------------------------------------------------------
def fwd_configs():
    """Forward / input-gradient tiles: pixels x channels per program, warps and pipeline stages.

    Channels-last tiles want wide channel blocks (coalesced loads); NCHW tiles want wide pixel rows. Few
    configurations on purpose: each one is compiled per dtype and layout and timed per shape.
    """
    cfgs = []
    for bh, bw, bc, warps, stages in ((1, 16, 32, 4, 2), (2, 8, 32, 4, 2), (4, 8, 32, 4, 3), (4, 16, 32, 8, 3),
                                      (2, 16, 64, 8, 2), (1, 8, 128, 8, 2), (4, 32, 8, 4, 2), (8, 32, 4, 4, 2)):
        cfgs.append(triton.Config({'BLOCK_H': bh, 'BLOCK_W': bw, 'BLOCK_C': bc}, num_warps=warps,
                                  num_stages=stages))
    return cfgs


def wgrad_configs():
    """Weight-gradient tiles: output columns per step, kernel columns and channels per program."""
    cfgs = []
    for bw, bv, bc, warps, stages in ((8, 16, 32, 4, 2), (8, 8, 32, 4, 2), (16, 8, 32, 4, 2), (4, 16, 64, 8, 2),
                                      (8, 16, 16, 4, 3), (16, 16, 32, 8, 2)):
        cfgs.append(triton.Config({'BLOCK_W': bw, 'BLOCK_V': bv, 'BLOCK_C': bc}, num_warps=warps,
                                  num_stages=stages))
    return cfgs


def _bench(fn, quantiles=None):
    # short timing per configuration: the tuning of a whole model must stay in seconds
    import triton.testing
    return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)


def _autotune(configs, key):
    import inspect
    kwargs = dict(configs=configs, key=key)
    if 'do_bench' in inspect.signature(triton.autotune).parameters:
        kwargs['do_bench'] = _bench
    return triton.autotune(**kwargs)


# The layout enters the key through the channel stride (1 for channels_last); FLIP separates the forward from
# the input gradient, which read the kernel differently.
dwconv2d_fwd_tuned = _autotune(fwd_configs(), ['H', 'W', 'C', 'KH', 'KW', 'sxc', 'FLIP'])(dwconv2d_fwd_kernel)
dwconv2d_wgrad_tuned = _autotune(wgrad_configs(), ['H', 'W', 'C', 'KH', 'KW', 'sxc'])(dwconv2d_wgrad_kernel)

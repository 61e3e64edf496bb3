"""Route ``dft``: the Fourier algorithm with every 1-D transform done as a GEMM with a pruned DFT matrix.

Exact sizes ``P = H + k // 2`` (no smooth-size padding), only the H x W inputs read and outputs produced, and
MKL's (c)gemm running near peak: this wins on mid-sized maps, where batched small FFTs are dominated by
per-transform overhead.
"""
from functools import lru_cache

import torch

from .. import _fourier
from ..route_table import register


@lru_cache(maxsize=256)
def _dft_mats(h: int, w: int, p_h: int, p_w: int, dtype: torch.dtype, device: str):
    """``fw`` (w, 2 * pf) forward real DFT along W, (re, im) interleaved, for the w non-zero inputs;
    ``fh_t`` (h, p_h) forward complex DFT along H, transposed; ``gh_t`` (p_h, h) inverse along H keeping the
    first h outputs; ``gw`` (2 * pf, w) inverse real DFT along W keeping the first w outputs."""
    f64 = torch.float64
    pf = p_w // 2 + 1
    ang_w = 2 * torch.pi * torch.outer(torch.arange(w, dtype=f64), torch.arange(pf, dtype=f64)) / p_w
    fw = torch.stack((torch.cos(ang_w), -torch.sin(ang_w)), dim=-1).reshape(w, 2 * pf)
    ang_h = 2 * torch.pi * torch.outer(torch.arange(h, dtype=f64), torch.arange(p_h, dtype=f64)) / p_h
    fh_t = torch.polar(torch.ones_like(ang_h), -ang_h)
    gh_t = torch.polar(torch.ones_like(ang_h), ang_h).t().contiguous() / p_h
    gw = _fourier.inverse_real_dft(p_w, torch.arange(w, dtype=f64))
    cdt = dtype.to_complex()
    return (fw.to(device=device, dtype=dtype), fh_t.to(device=device, dtype=cdt), gh_t.to(device=device, dtype=cdt),
            gw.to(device=device, dtype=dtype))


class DFTPlan(_fourier.Plan):

    def __init__(self, h: int, w: int, kh: int, kw: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__(h, w, kh, kw, dtype, device)
        self.p_h, self.p_w = h + kh // 2, w + kw // 2
        self.fw, self.fh_t, self.gh_t, self.gw = _dft_mats(h, w, self.p_h, self.p_w, dtype, str(device))

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        *lead, h, w = x.shape
        pf = self.p_f
        a = torch.matmul(x.reshape(-1, w), self.fw)  # (B*H, 2*pf)
        a = torch.view_as_complex(a.view(-1, h, pf, 2)).transpose(1, 2).contiguous()  # (B, pf, H)
        a = torch.matmul(a.view(-1, h), self.fh_t)  # (B*pf, P_h)
        return a.view(*lead, pf, self.p_h)

    def inverse(self, spec: torch.Tensor) -> torch.Tensor:
        *lead, pf, p_h = spec.shape
        a = torch.matmul(spec.reshape(-1, p_h), self.gh_t)  # (B*pf, H)
        a = a.view(-1, pf, self.h).transpose(1, 2).contiguous()  # (B, H, pf)
        y = torch.matmul(torch.view_as_real(a).reshape(-1, 2 * pf), self.gw)  # (B*H, W)
        return y.view(*lead, self.h, self.w)

    def chunk(self, n: int, c: int) -> int:
        per_channel = n * self.p_f * max(self.p_h, self.h) * 8 * 2
        return max(1, min(c, _fourier.CHUNK_BYTES // max(per_channel, 1)))


ROUTE = register(_fourier.make_route('dft', 50, DFTPlan))

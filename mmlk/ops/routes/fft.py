"""Route ``fft``: the Fourier algorithm with separable real FFTs at 2/3/5-smooth transform sizes.

Wins where maps are large (56x56 with K=31: the weight gradient ~80x faster than oneDNN's on the reference
machine, shared docs section 5); MKL's per-transform overhead makes it lose on small maps, where ``dft`` wins.
"""
from functools import lru_cache
from typing import Tuple

import torch

from .. import _fourier
from ..route_table import register


@lru_cache(maxsize=None)
def smooth_size(n: int, even: bool = False) -> int:
    """Smallest integer >= ``n`` whose only prime factors are 2, 3 and 5 (optionally even)."""
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1 and (not even or m % 2 == 0):
            return m
        m += 1


def fft_sizes(h: int, w: int, kh: int, kw: int) -> Tuple[int, int]:
    """Transform sizes with no wrap-around on the kept outputs of all three passes (even along W: rfft)."""
    return smooth_size(h + kh // 2), smooth_size(w + kw // 2, even=True)


class FFTPlan(_fourier.Plan):
    # at smooth sizes a full inverse FFT along H beats a GEMM at the kh lags once kh is more than a few taps
    lags_by_fft = True

    def __init__(self, h: int, w: int, kh: int, kw: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__(h, w, kh, kw, dtype, device)
        self.p_h, self.p_w = fft_sizes(h, w, kh, kw)

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Two 1-D passes with a transpose in between: MKL's strided transform along H is several times slower
        than a contiguous one, and the first pass only touches the H real rows, not the padded P_h."""
        a = torch.fft.rfft(x, n=self.p_w, dim=-1)
        *lead, h, pf = a.shape
        # transpose and zero-pad along H in one strided copy (instead of a copy, then a padded copy)
        buf = a.new_empty((*lead, pf, self.p_h))
        buf[..., :h] = a.transpose(-1, -2)
        buf[..., h:] = 0
        return torch.fft.fft(buf, dim=-1)

    def inverse(self, spec: torch.Tensor) -> torch.Tensor:
        a = torch.fft.ifft(spec, dim=-1)[..., :self.h]
        a = a.transpose(-1, -2).contiguous()
        return torch.fft.irfft(a, n=self.p_w, dim=-1)[..., :self.w]

    def chunk(self, n: int, c: int) -> int:
        per_channel = n * self.p_h * self.p_f * 8
        return max(1, min(c, _fourier.CHUNK_BYTES // max(per_channel, 1)))


ROUTE = register(_fourier.make_route('fft', 40, FFTPlan))

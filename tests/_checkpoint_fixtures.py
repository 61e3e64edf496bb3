"""Fixture checkpoints in every upstream format, built from the key layouts in shared/docs/REFERENCE.md.

Written independently of mmlk's module names: the keys come from the documented official layouts, so a
renamed mmlk module makes the loading tests fail instead of hiding behind itself. Small arch dicts keep
the tensors tiny; ``device='meta'`` builds full-size variants without memory (for key counts / shapes).
"""
import argparse
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

# Small RepLKNet: 4 stages, one (RepLKBlock, ConvFFN) pair each, kernels with a real small branch.
TINY_LK = dict(channels=(16, 32, 32, 64), layers=(1, 1, 1, 1), kernels=(9, 7, 7, 5), small_kernel=3,
               dw_ratio=1, ffn_ratio=2)
TINY_LK_ARCH = dict(large_kernel_sizes=list(TINY_LK['kernels']), layers=list(TINY_LK['layers']),
                    channels=list(TINY_LK['channels']), small_kernel=3, dw_ratio=1, ffn_ratio=2)
# Small RepNeXt: widths divisible by 4 and doubling per stage.
TINY_NX = dict(channels=(16, 32, 64, 128), depths=(1, 1, 2, 1))
TINY_NX_ARCH = dict(embed_dims=list(TINY_NX['channels']), depths=list(TINY_NX['depths']), mlp_ratio=2)


class _Maker:
    def __init__(self, seed: int, device: str) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.device = device
        self.sd: 'OrderedDict[str, torch.Tensor]' = OrderedDict()

    def t(self, key: str, shape: Sequence[int], kind: str = 'w') -> None:
        if self.device == 'meta':
            self.sd[key] = torch.empty(tuple(shape), device='meta')
            return
        if kind == 'var':
            val = torch.rand(tuple(shape), generator=self.gen) + 0.5
        elif kind == 'count':
            val = torch.tensor(7)
        else:
            val = torch.randn(tuple(shape), generator=self.gen) * 0.2
        self.sd[key] = val

    def bn(self, p: str, c: int) -> None:
        self.t(f'{p}.weight', (c, ))
        self.t(f'{p}.bias', (c, ))
        self.t(f'{p}.running_mean', (c, ))
        self.t(f'{p}.running_var', (c, ), 'var')
        if self.device == 'meta':
            self.sd[f'{p}.num_batches_tracked'] = torch.empty((), dtype=torch.long, device='meta')
        else:
            self.sd[f'{p}.num_batches_tracked'] = torch.tensor(7)

    def conv_bn(self, p: str, cout: int, cin_per_group: int, k: int, bn: str = 'bn') -> None:
        self.t(f'{p}.conv.weight', (cout, cin_per_group, k, k))
        self.bn(f'{p}.{bn}', cout)


def replknet_official(channels=TINY_LK['channels'], layers=TINY_LK['layers'], kernels=TINY_LK['kernels'],
                      small_kernel: Optional[int] = TINY_LK['small_kernel'], dw_ratio: float = 1,
                      ffn_ratio: int = 2, num_classes: int = 10, stage_norms: bool = False, seed: int = 0,
                      device: str = 'cpu') -> 'OrderedDict[str, torch.Tensor]':
    """The official RepLKNet training-form state dict (REFERENCE section 1 key layout)."""
    m = _Maker(seed, device)
    c0 = channels[0]
    m.conv_bn('stem.0', c0, 3, 3)
    m.conv_bn('stem.1', c0, 1, 3)
    m.conv_bn('stem.2', c0, c0, 1)
    m.conv_bn('stem.3', c0, 1, 3)
    for i, (c, n, k) in enumerate(zip(channels, layers, kernels)):
        cdw, cff = int(c * dw_ratio), int(c * ffn_ratio)
        for j in range(n):
            p = f'stages.{i}.blocks.{2 * j}'
            m.bn(f'{p}.prelkb_bn', c)
            m.conv_bn(f'{p}.pw1', cdw, c, 1)
            m.conv_bn(f'{p}.large_kernel.lkb_origin', cdw, 1, k)
            if small_kernel:
                m.conv_bn(f'{p}.large_kernel.small_conv', cdw, 1, small_kernel)
            m.conv_bn(f'{p}.pw2', c, cdw, 1)
            p = f'stages.{i}.blocks.{2 * j + 1}'
            m.bn(f'{p}.preffn_bn', c)
            m.conv_bn(f'{p}.pw1', cff, c, 1)
            m.conv_bn(f'{p}.pw2', c, cff, 1)
        if stage_norms:
            m.bn(f'stages.{i}.norm', c)
        if i < len(channels) - 1:
            m.conv_bn(f'transitions.{i}.0', channels[i + 1], c, 1)
            m.conv_bn(f'transitions.{i}.1', channels[i + 1], 1, 3)
    if num_classes:
        m.bn('norm', channels[-1])
        m.t('head.weight', (num_classes, channels[-1]))
        m.t('head.bias', (num_classes, ))
    return m.sd


def _dw(m: _Maker, p: str, c: int, kh: int, kw: int, bias: bool) -> None:
    m.t(f'{p}.weight', (c, 1, kh, kw))
    if bias:
        m.t(f'{p}.bias', (c, ))


def _rep_s(m: _Maker, p: str, c: int, stride: int) -> None:
    _dw(m, f'{p}.conv_3_3', c, 3, 3, True)
    _dw(m, f'{p}.conv_3_w', c, 1, 3, stride == 1)
    _dw(m, f'{p}.conv_3_h', c, 3, 1, stride == 1)
    _dw(m, f'{p}.conv_2_2', c, 2, 2, True)


def _rep_m(m: _Maker, p: str, c: int) -> None:
    _dw(m, f'{p}.conv_7_7', c, 7, 7, True)
    _dw(m, f'{p}.conv_5_3', c, 5, 3, True)
    _dw(m, f'{p}.conv_3_5', c, 3, 5, True)
    for name, kh, kw in (('conv_7_w', 1, 7), ('conv_7_h', 7, 1), ('conv_5_w', 1, 5), ('conv_5_h', 5, 1)):
        _dw(m, f'{p}.{name}', c, kh, kw, False)


def _convnorm(m: _Maker, p: str, cout: int, cin: int, k: int) -> None:
    m.t(f'{p}.conv.weight', (cout, cin, k, k))
    m.bn(f'{p}.norm', cout)


def repnext_official(channels=TINY_NX['channels'], depths=TINY_NX['depths'], num_classes: int = 10,
                     seed: int = 0, device: str = 'cpu') -> 'OrderedDict[str, torch.Tensor]':
    """The official RepNeXt training-form state dict (REFERENCE section 2 key layout)."""
    m = _Maker(seed, device)
    c0 = channels[0]
    _convnorm(m, 'stem.stem.0', c0 // 2, 3, 3)
    _convnorm(m, 'stem.stem.2', c0, c0 // 2, 3)
    for i, (c, d) in enumerate(zip(channels, depths)):
        if i > 0:
            p = f'stages.{i}.downsample'
            cin = channels[i - 1]
            _rep_s(m, f'{p}.token_mixer.conv_s', cin, 2)
            _rep_m(m, f'{p}.token_mixer.conv_m', cin)
            m.bn(f'{p}.norm', c)
            _convnorm(m, f'{p}.channel_mixer.0', 2 * c, c, 1)
            _convnorm(m, f'{p}.channel_mixer.2', c, 2 * c, 1)
        for j in range(d):
            p = f'stages.{i}.blocks.{j}'
            q = c // 4
            _rep_s(m, f'{p}.token_mixer.conv_s', q, 1)
            _rep_m(m, f'{p}.token_mixer.conv_m', q)
            _dw(m, f'{p}.token_mixer.conv_l.0', q, 1, 11, True)
            _dw(m, f'{p}.token_mixer.conv_l.1', q, 11, 1, True)
            m.bn(f'{p}.norm', c)
            _convnorm(m, f'{p}.channel_mixer.0', 2 * c, c, 1)
            _convnorm(m, f'{p}.channel_mixer.2', c, 2 * c, 1)
    if num_classes:
        for h in ('head', 'head_dist'):
            m.bn(f'head.{h}.norm', channels[-1])
            m.t(f'head.{h}.linear.weight', (num_classes, channels[-1]))
            m.t(f'head.{h}.linear.bias', (num_classes, ))
    return m.sd


def to_mmpretrain(official: Dict[str, torch.Tensor]) -> dict:
    """mmpretrain's RepLKNet classifier layout (REFERENCE: backbone., stages.3.norm, head.fc)."""
    sd = OrderedDict()
    for k, v in official.items():
        if k.startswith('norm.'):
            sd['backbone.stages.3.norm.' + k[5:]] = v
        elif k.startswith('head.'):
            sd['head.fc.' + k[5:]] = v
        else:
            sd['backbone.' + k] = v
    return {'meta': {'mmcls_version': '1.0.0rc5'}, 'state_dict': sd}


def to_mmseg0x(backbone: Dict[str, torch.Tensor], num_classes: int = 150) -> dict:
    """An mmcv 1.x (mmseg 0.x) UperNet-style checkpoint: meta + state_dict + optimizer."""
    sd = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
    gen = torch.Generator().manual_seed(3)
    sd['decode_head.conv_seg.weight'] = torch.randn(num_classes, 16, 1, 1, generator=gen)
    sd['decode_head.conv_seg.bias'] = torch.zeros(num_classes)
    sd['decode_head.fpn_bottleneck.conv.weight'] = torch.randn(16, 64, 3, 3, generator=gen)
    sd['auxiliary_head.conv_seg.weight'] = torch.randn(num_classes, 8, 1, 1, generator=gen)
    meta = dict(mmseg_version='0.20.2', mmcv_version='1.4.0', iter=160000,
                CLASSES=tuple(f'c{i}' for i in range(num_classes)),
                PALETTE=[[i, i, i] for i in range(num_classes)], config='model = dict(...)')
    return {'meta': meta, 'state_dict': sd, 'optimizer': {'state': {}, 'param_groups': [{'lr': 0.0}]}}


def deit_style(state: Dict[str, torch.Tensor]) -> dict:
    """RepNeXt's training-script checkpoint: model + optimizer + epoch + args (argparse.Namespace)."""
    return {'model': state, 'optimizer': {'state': {}, 'param_groups': []}, 'epoch': 299,
            'args': argparse.Namespace(model='repnext_m3', lr=0.004, input_size=224)}


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def module_from_state(state: Dict[str, torch.Tensor]) -> nn.Module:
    """A module tree whose state_dict() is exactly ``state`` (for TorchScript fixtures)."""
    root = _Holder()
    for key, value in state.items():
        *path, leaf = key.split('.')
        mod = root
        for p in path:
            if p not in mod._modules:
                mod.add_module(p, _Holder())
            mod = mod._modules[p]
        if value.is_floating_point() and 'running' not in leaf:
            mod.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
        else:
            mod.register_buffer(leaf, value.clone())
    return root


class FileServer:
    """Threaded HTTP server on 127.0.0.1 serving bytes, with Range support and failure modes.

    ``files``: url path -> bytes. ``cut``: url path -> byte count after which the first response is cut.
    Every request is recorded in ``requests`` as (path, Range header). The server stops itself after
    ``lifetime`` seconds even if a test forgets to stop it.
    """

    def __init__(self, lifetime: float = 90.0) -> None:
        self.files: Dict[str, bytes] = {}
        self.cut: Dict[str, int] = {}
        self.content_type: Dict[str, str] = {}
        self.slow: Dict[str, float] = {}  # url path -> seconds to spread the body over
        self.no_length = set()  # url paths answered without Content-Length (body ends when the socket closes)
        self.endless = set()  # url paths streaming zeros without Content-Length until the client hangs up
        self.wrong_range = set()  # url paths answering a Range request with the file from byte 0 (206)
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                rng = self.headers.get('Range')
                server.requests.append((self.path, rng))
                if self.path in server.endless:
                    self.send_response(200)
                    self.send_header('Content-Type', 'application/octet-stream')
                    self.end_headers()
                    self.close_connection = True
                    try:
                        while True:
                            self.wfile.write(bytes(1 << 16))
                    except OSError:
                        return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and rng.startswith('bytes='):
                    start = int(rng[6:].split('-')[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header('Content-Range', f'bytes */{len(data)}')
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
                    if self.path in server.wrong_range:
                        start = 0  # claims the asked range, sends the file from its start
                else:
                    self.send_response(200)
                body = data[start:]
                if self.path in server.no_length:
                    self.close_connection = True
                else:
                    self.send_header('Content-Length', str(len(body)))
                self.send_header('Content-Type', server.content_type.get(self.path, 'application/octet-stream'))
                self.end_headers()
                limit = server.cut.pop(self.path, None)
                if limit is not None:
                    self.wfile.write(body[:limit])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                seconds = server.slow.get(self.path)
                if seconds:
                    step = max(1, len(body) // 10)
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i:i + step])
                        self.wfile.flush()
                        time.sleep(seconds / 10)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.timer = threading.Timer(lifetime, self.stop)
        self.timer.daemon = True

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.httpd.server_address[1]}'

    def start(self) -> 'FileServer':
        self.thread.start()
        self.timer.start()
        return self

    def stop(self) -> None:
        self.timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------- registry and cache
def write_registry(tmp_path, monkeypatch, entries: Sequence[dict]) -> None:
    """A checkpoints.yaml of ``entries`` (each completed with neutral values) made current through
    MMLK_CHECKPOINTS_YAML."""
    import yaml
    base = dict(arch='replknet', variant='tiny', task='classification', dataset='ImageNet-1k', pretraining=None,
                resolution=224, mean=[1, 1, 1], std=[1, 1, 1], num_classes=10, metric=None,
                config='configs/x.py', format='replknet-official', form='train', file_name=None, sha256=None,
                source=None)
    full = []
    for e in entries:
        d = dict(base)
        d.update(e)
        d['download'] = {**dict(github_release=None, google_drive_id=None, baidu=None, openmmlab=None),
                         **e.get('download', {})}
        full.append(d)
    path = tmp_path / 'checkpoints.yaml'
    path.write_text(yaml.safe_dump(dict(version=1, checkpoints=full)))
    monkeypatch.setenv('MMLK_CHECKPOINTS_YAML', str(path))


def cache_files(cache) -> list:
    """Every file in the cache (relative paths), except the inter-process locks."""
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob('*') if p.is_file() and '.locks' not in p.parts)

"""Issue #11: no wrong file ever loads, no download or archive runs away, the entry points never run code.

Each test reproduces one failure of the audit (it failed before the fix). Files are tiny fixtures from
tests/_checkpoint_fixtures.py, served by a local HTTP server on 127.0.0.1.
"""
import os
import os.path as osp
import pickle
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile

import pytest
import torch

import _checkpoint_fixtures as F
from mmlk.checkpoint import CheckpointError, resolve_checkpoint, sha256sum
from mmlk.models.weights import read_state_dict

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / 'cache'
    monkeypatch.setenv('MMLK_CACHE_DIR', str(d))
    for var in ('MMLK_OFFLINE', 'MMLK_DOWNLOAD_MAX_BYTES', 'MMLK_DOWNLOAD_STALL_TIMEOUT'):
        monkeypatch.delenv(var, raising=False)
    return d


@pytest.fixture
def server():
    srv = F.FileServer(lifetime=90).start()
    yield srv
    srv.stop()


def _bytes(obj, tmp_path, legacy=False, name='src.pth'):
    path = tmp_path / name
    torch.save(obj, str(path), _use_new_zipfile_serialization=not legacy)
    return path.read_bytes()


def _evil(marker):
    class Evil:
        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))
    return Evil()


# ------------------------------------------------------------------ 1. the cache is keyed by source
def test_same_file_name_from_two_urls_are_two_files(tmp_path, cache, server):
    a = _bytes({'w': torch.zeros(3)}, tmp_path, name='a.pth')
    b = _bytes({'w': torch.ones(3)}, tmp_path, name='b.pth')
    server.files['/a/x/good.pth'] = a
    server.files['/b/y/good.pth'] = b
    path_a, _ = resolve_checkpoint(server.url + '/a/x/good.pth', progress=False)
    path_b, _ = resolve_checkpoint(server.url + '/b/y/good.pth', progress=False)
    assert path_a != path_b and osp.basename(path_a) == osp.basename(path_b) == 'good.pth'
    assert open(path_a, 'rb').read() == a and open(path_b, 'rb').read() == b
    assert ('/b/y/good.pth', None) in server.requests


def test_registry_entries_sharing_a_file_name_do_not_collide(tmp_path, monkeypatch, cache, server):
    server.files['/1/model.pth'] = _bytes({'w': torch.zeros(3)}, tmp_path, name='1.pth')
    server.files['/2/model.pth'] = _bytes({'w': torch.ones(3)}, tmp_path, name='2.pth')
    F.write_registry(tmp_path, monkeypatch, [
        dict(name='one', file_name='model.pth', download=dict(github_release=server.url + '/1/model.pth')),
        dict(name='two', file_name='model.pth', download=dict(github_release=server.url + '/2/model.pth'))])
    p1, _ = resolve_checkpoint('one', progress=False)
    p2, _ = resolve_checkpoint('two', progress=False)
    assert p1 != p2
    assert torch.equal(torch.load(p1, weights_only=True)['w'], torch.zeros(3))
    assert torch.equal(torch.load(p2, weights_only=True)['w'], torch.ones(3))


# ------------------------------------------------------------------ 2. validate before pinning
def test_truncated_legacy_download_without_length_is_never_pinned(tmp_path, monkeypatch, cache, server):
    data = _bytes(F.replknet_official(), tmp_path, legacy=True)
    server.files['/legacy.pth'] = data
    server.no_length.add('/legacy.pth')
    server.cut['/legacy.pth'] = len(data) // 2
    F.write_registry(tmp_path, monkeypatch, [dict(name='leg', file_name='legacy.pth',
                                           download=dict(github_release=server.url + '/legacy.pth'))])
    with pytest.raises(CheckpointError, match='truncated'):
        resolve_checkpoint('leg', progress=False)
    assert F.cache_files(cache) == []  # nothing kept, nothing pinned
    path, _ = resolve_checkpoint('leg', progress=False)  # the next attempt fetches it whole
    assert open(path, 'rb').read() == data
    assert open(path + '.sha256').read().strip() == sha256sum(path)


def test_server_answering_a_range_with_other_bytes_restarts(tmp_path, monkeypatch, cache, server):
    data = _bytes(F.replknet_official(), tmp_path)
    server.files['/tiny.pth'] = data
    server.cut['/tiny.pth'] = 5000
    F.write_registry(tmp_path, monkeypatch, [dict(name='tiny', file_name='tiny.pth',
                                           download=dict(github_release=server.url + '/tiny.pth'))])
    with pytest.raises(CheckpointError, match='interrupted'):
        resolve_checkpoint('tiny', progress=False)
    server.wrong_range.add('/tiny.pth')
    path, _ = resolve_checkpoint('tiny', progress=False)
    assert open(path, 'rb').read() == data
    assert server.requests[-2:] == [('/tiny.pth', 'bytes=5000-'), ('/tiny.pth', None)]


def test_resumed_piece_of_another_file_is_refetched_not_pinned(tmp_path, monkeypatch, cache, server):
    old = _bytes({'w': torch.zeros(4096)}, tmp_path, name='old.pth')
    new = _bytes({'w': torch.ones(4096)}, tmp_path, name='new.pth')
    assert len(old) == len(new)
    server.files['/m.pth'] = old
    server.cut['/m.pth'] = len(old) // 2
    F.write_registry(tmp_path, monkeypatch, [dict(name='m', file_name='m.pth',
                                           download=dict(github_release=server.url + '/m.pth'))])
    with pytest.raises(CheckpointError, match='interrupted'):
        resolve_checkpoint('m', progress=False)
    server.files['/m.pth'] = new  # the release was replaced between the two attempts
    path, _ = resolve_checkpoint('m', progress=False)
    assert open(path, 'rb').read() == new
    assert open(path + '.sha256').read().strip() == sha256sum(path)


# ------------------------------------------------------------------ 3. zip CRCs on read
def _flip_bit_in_largest_member(path):
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    with open(path, 'r+b') as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), 'little'), int.from_bytes(f.read(2), 'little')
        pos = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(pos)
        byte = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([byte ^ 0x10]))


def test_one_flipped_bit_in_a_local_zip_is_refused_everywhere(tmp_path):
    path = str(tmp_path / 'official.pth')
    torch.save(F.replknet_official(num_classes=10), path)
    _flip_bit_in_largest_member(path)
    with pytest.raises(CheckpointError, match='CRC'):
        read_state_dict(path)
    from mmlk.models.weights.convert import convert_classification
    with pytest.raises(CheckpointError, match='CRC'):
        convert_classification(path, str(tmp_path / 'out.pth'))
    from tools.model_converters.reparameterize import main as reparameterize
    with pytest.raises(ValueError, match='CRC'):
        reparameterize([path, str(tmp_path / 'deploy.pth'), '--no-verify'])
    assert not (tmp_path / 'out.pth').exists() and not (tmp_path / 'deploy.pth').exists()


# ------------------------------------------------------------------ 4. file:// and names
def test_file_url_is_read_in_place_never_copied(tmp_path, cache):
    path = tmp_path / 'local.pth'
    torch.save({'w': torch.zeros(2)}, str(path))
    got, entry = resolve_checkpoint(path.as_uri())
    assert got == str(path) and entry is None
    assert F.cache_files(cache) == []
    with pytest.raises(CheckpointError, match='not a regular file'):
        resolve_checkpoint('file:///dev/zero')
    assert F.cache_files(cache) == []


def test_registry_file_name_cannot_leave_the_cache(tmp_path, monkeypatch, cache, server):
    server.files['/e.pth'] = _bytes({'w': torch.zeros(2)}, tmp_path)
    F.write_registry(tmp_path, monkeypatch, [
        dict(name='escape', file_name='../../escaped.pth', download=dict(github_release=server.url + '/e.pth')),
        dict(name='../up', file_name='ok.pth', download=dict(github_release=server.url + '/e.pth'))])
    for name in ('escape', '../up'):
        with pytest.raises(CheckpointError, match='plain file name'):
            resolve_checkpoint(name, progress=False)
    assert not list(tmp_path.rglob('escaped.pth')) and F.cache_files(cache) == []
    assert server.requests == []


# ------------------------------------------------------------------ 5. archive members checked before reading
def _torchscript(tmp_path):
    path = str(tmp_path / 'fused.pt')
    torch.jit.script(F.module_from_state({'w': torch.ones(2)})).save(path)
    return path


def _replace_member(src, dst, suffix, data, compress):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for item in zin.infolist():
            if item.filename.endswith(suffix):
                zout.writestr(item.filename, data, compress_type=compress)
            else:
                zout.writestr(item, zin.read(item.filename))


def test_torchscript_member_sizes_are_checked_before_reading(tmp_path):
    good = _torchscript(tmp_path)
    stored = str(tmp_path / 'stored.pt')
    _replace_member(good, stored, '/data/0', bytes(8 << 20), zipfile.ZIP_STORED)
    with pytest.raises(CheckpointError, match='declares 8388608 bytes, but its tensors need 8'):
        read_state_dict(stored)
    bomb = str(tmp_path / 'bomb.pt')
    _replace_member(good, bomb, '/data/0', bytes(80 << 20), zipfile.ZIP_DEFLATED)
    assert osp.getsize(bomb) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match='inflates'):
            read_state_dict(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


# ------------------------------------------------------------------ 6. size and time limits
def test_endless_download_stops_at_the_limit(tmp_path, monkeypatch, cache, server):
    server.endless.add('/zero.pth')
    with pytest.raises(CheckpointError, match='exceeded 1048576 bytes'):
        resolve_checkpoint(server.url + '/zero.pth', progress=False, max_bytes=1 << 20)
    monkeypatch.setenv('MMLK_DOWNLOAD_MAX_BYTES', str(2 << 20))
    with pytest.raises(CheckpointError, match='MMLK_DOWNLOAD_MAX_BYTES'):
        resolve_checkpoint(server.url + '/zero.pth', progress=False)
    assert F.cache_files(cache) == []


def test_size_from_the_registry_bounds_the_download(tmp_path, monkeypatch, cache, server):
    data = _bytes({'w': torch.zeros(64)}, tmp_path)
    server.files['/s.pth'] = data
    F.write_registry(tmp_path, monkeypatch, [dict(name='s', file_name='s.pth', size=len(data) - 1,
                                           download=dict(github_release=server.url + '/s.pth'))])
    with pytest.raises(CheckpointError, match='announces'):
        resolve_checkpoint('s', progress=False)
    server.no_length.add('/s.pth')  # without a Content-Length the bytes themselves are counted
    with pytest.raises(CheckpointError, match='exceeded'):
        resolve_checkpoint('s', progress=False)
    assert F.cache_files(cache) == []


def test_trickling_server_stalls_and_the_cli_takes_the_options(tmp_path, monkeypatch, cache, server, capsys):
    from mmlk.__main__ import main
    server.files['/slow.pth'] = _bytes({'w': torch.zeros(4096)}, tmp_path)
    server.slow['/slow.pth'] = 20.0  # a tenth of the file every 2 s
    F.write_registry(tmp_path, monkeypatch, [dict(name='slow', file_name='slow.pth',
                                           download=dict(github_release=server.url + '/slow.pth'))])
    start = time.monotonic()
    assert main(['download', 'slow', '--no-progress', '--stall-timeout', '0.5']) == 1
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert 'stalled' in err and '--stall-timeout' in err
    assert F.cache_files(cache) == ['slow/slow.pth.part']  # kept for a later resume
    assert main(['download', 'slow', '--no-progress', '--max-size', '100']) == 1
    assert 'more than the download limit of 100 bytes' in capsys.readouterr().err


# ------------------------------------------------------------------ 7. the entry points never run code
def test_mmengine_loading_through_the_tools_is_weights_only(tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

    from mmlk.checkpoint.safe_load import install_safe_checkpoint_loader
    marker = tmp_path / 'pwned'
    evil = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'hook': _evil(marker)}}, evil)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    saved = dict(CheckpointLoader._schemes)
    try:
        install_safe_checkpoint_loader()
        with pytest.raises(CheckpointError, match='refusing to load'):
            _load_checkpoint(evil, map_location='cpu')
        empty = tmp_path / 'empty.pth'
        empty.write_bytes(b'')
        with pytest.raises(CheckpointError, match='is empty'):
            _load_checkpoint(str(empty), map_location='cpu')
    finally:
        CheckpointLoader._schemes = saved
    assert not marker.exists()


@pytest.mark.slow
def test_test_tool_refuses_code_even_when_torch_is_told_to_run_it(mini_ade20k, tmp_path):
    marker = tmp_path / 'pwned'
    evil = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'hook': _evil(marker)}}, evil)
    demo = osp.join(REPO, 'configs', 'demo', 'upernet_replknet-mini_1xb8-300it_ade20k-mini-128x128.py')
    out = subprocess.run([sys.executable, 'tools/test.py', demo, evil, '--work-dir', str(tmp_path / 'w'),
                          '--cfg-options'] + [f'{k}.dataset.data_root={mini_ade20k}' for k in
                                              ('train_dataloader', 'val_dataloader', 'test_dataloader')],
                         capture_output=True, text=True, cwd=REPO, timeout=300,
                         env={**os.environ, 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD': '1'})
    assert out.returncode != 0 and 'refusing to load' in out.stderr, out.stderr[-2000:]
    assert 'Traceback' not in out.stderr
    assert not marker.exists()


def test_reparameterize_has_no_unsafe_load(tmp_path, capsys):
    from tools.model_converters.reparameterize import main as reparameterize
    marker = tmp_path / 'pwned'
    evil = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _evil(marker)}, evil)
    with pytest.raises(SystemExit):
        reparameterize([evil, str(tmp_path / 'out.pth'), '--unsafe-load'])
    assert 'unrecognized arguments: --unsafe-load' in capsys.readouterr().err
    with pytest.raises(ValueError, match='refusing to load'):
        reparameterize([evil, str(tmp_path / 'out.pth')])
    assert not marker.exists()


# ------------------------------------------------------------------ 12. messages that say what the file is
@pytest.mark.parametrize('content, message', [
    (b'\x00\x13\xfe' * 50, 'not a PyTorch checkpoint \\(unknown format'),
    (b'<!DOCTYPE html><html><body>Sign in</body></html>', 'HTML page'),
    (b'hello world\n', 'text file .*hello world'),
    (b'', 'is empty'),
])
def test_not_a_checkpoint_is_named_for_what_it_is(tmp_path, content, message):
    path = tmp_path / 'x.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as exc:
        read_state_dict(str(path))
    assert 'running code' not in str(exc.value) and '\n' not in str(exc.value)


def test_directory_as_output_or_cache_path(tmp_path, monkeypatch, cache, server):
    from mmlk.models.weights.convert import convert_classification
    src = str(tmp_path / 'official.pth')
    torch.save(F.replknet_official(num_classes=10), src)
    (tmp_path / 'outdir').mkdir()
    with pytest.raises(CheckpointError, match='is a directory'):
        convert_classification(src, str(tmp_path / 'outdir'), overwrite=True)
    server.files['/d.pth'] = open(src, 'rb').read()
    F.write_registry(tmp_path, monkeypatch, [dict(name='d', file_name='d.pth',
                                           download=dict(github_release=server.url + '/d.pth'))])
    (cache / 'd' / 'd.pth').mkdir(parents=True)
    with pytest.raises(CheckpointError, match='is a directory'):
        resolve_checkpoint('d', progress=False)
    assert F.cache_files(cache) == [] and server.requests == []


# ------------------------------------------------------------------ 15. temporaries of killed writers
_SLOW_SAVE = '''
import sys, time, torch
sys.path.insert(0, {repo!r})
from mmlk.checkpoint.atomic import atomic_save

class Slow:
    def __reduce__(self):
        print('writing', flush=True)
        time.sleep(60)
        return (int, (0, ))

atomic_save({{'big': torch.zeros(1 << 18), 'slow': Slow()}}, {dst!r})
'''


@pytest.mark.slow
def test_temporaries_of_a_killed_converter_are_removed_by_the_next_run(tmp_path):
    from mmlk.checkpoint.atomic import atomic_save
    dst = str(tmp_path / 'out.pth')
    proc = subprocess.Popen([sys.executable, '-c', _SLOW_SAVE.format(repo=REPO, dst=dst)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == 'writing'
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = [p for p in os.listdir(tmp_path) if p != 'out.pth']
    assert len(left) == 1 and left[0].startswith('.out.pth.tmp-'), left
    # Leftovers of earlier mmlk versions' naming are cleaned up too.
    (tmp_path / f'out.pth.tmp-{proc.pid}').write_bytes(b'x')
    (tmp_path / '.out.pth.k2j3h4.tmp').write_bytes(b'x')
    atomic_save({'w': torch.ones(1)}, dst)
    assert os.listdir(tmp_path) == ['out.pth']
    assert torch.equal(torch.load(dst, weights_only=True)['w'], torch.ones(1))


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    from mmlk.checkpoint.atomic import atomic_save, temporary_path
    dst = str(tmp_path / 'out.pth')
    live = temporary_path(dst).replace(f'-{os.getpid()}', f'-{os.getppid()}')  # our parent is alive
    open(live, 'wb').close()
    atomic_save({'w': torch.ones(1)}, dst)
    assert osp.exists(live)


def test_pickle_of_plain_data_is_not_called_code(tmp_path):
    """A legacy pickle of allowed data loads; only files asking for globals are refused as code."""
    path = tmp_path / 'plain.pth'
    with open(path, 'wb') as f:
        pickle.dump({'a': 1}, f, protocol=2)
    with pytest.raises(CheckpointError) as exc:
        read_state_dict(str(path))
    assert 'running code' not in str(exc.value)

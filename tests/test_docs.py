"""The documentation: generated pages in sync with checkpoints.yaml, the README's snippets run, the site builds.

Snippet convention: every fenced block whose info string is exactly ``python`` in README.md and
docs/get_started.md is executed, the blocks of one file in order in one namespace (a later block may use
names an earlier one defined), on the tiny inputs the snippets themselves use. A block that needs a download,
a GPU or a long run is fenced as ```` ```python illustrative ```` (renders as Python everywhere, GitHub and
Sphinx read only the first word) and is not run; the text around it should say why.
"""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SNIPPET_FILES = ('README.md', 'docs/get_started.md')
FENCE = re.compile(r'^```([^\n`]*)\n(.*?)^```[ \t]*$', re.M | re.S)


def _generator():
    import importlib.util
    spec = importlib.util.spec_from_file_location('generate_model_zoo',
                                                  osp.join(REPO, 'tools', 'misc', 'generate_model_zoo.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _entries():
    with open(osp.join(REPO, 'checkpoints.yaml')) as f:
        return yaml.safe_load(f)['checkpoints']


def python_blocks(rel):
    with open(osp.join(REPO, rel)) as f:
        text = f.read()
    return [body for info, body in FENCE.findall(text) if info.strip() == 'python']


def test_generated_pages_are_committed_and_current(tmp_path):
    gen = _generator()
    assert gen.main(['--out', str(tmp_path)]) == 0
    files = gen.generated_files(REPO)
    archs = {e['arch'] for e in _entries()}
    assert {f'configs/{a}/README.md' for a in archs} | {'docs/model_zoo.md'} == set(files)
    for rel in files:
        with open(tmp_path / rel) as f:
            fresh = f.read()
        committed = osp.join(REPO, rel)
        assert osp.isfile(committed), f'{rel} is missing: run python tools/misc/generate_model_zoo.py'
        with open(committed) as f:
            assert f.read() == fresh, f'{rel} disagrees with checkpoints.yaml: run python tools/misc/generate_model_zoo.py'


def test_model_zoo_names_every_checkpoint():
    with open(osp.join(REPO, 'docs', 'model_zoo.md')) as f:
        page = f.read()
    for e in _entries():
        assert f'`{e["name"]}`' in page, e['name']
        if e.get('sha256'):
            assert e['sha256'] in page, e['name']
    for arch in {e['arch'] for e in _entries()}:
        with open(osp.join(REPO, 'configs', arch, 'README.md')) as f:
            readme = f.read()
        for e in (e for e in _entries() if e['arch'] == arch):
            assert f'`{e["name"]}`' in readme, (arch, e['name'])
        assert '## Citation' in readme and '## Abstract' in readme


def test_unknown_family_names_the_file_to_add(tmp_path):
    gen = _generator()
    (tmp_path / 'docs' / 'families').mkdir(parents=True)
    (tmp_path / 'checkpoints.yaml').write_text(yaml.safe_dump({'checkpoints': [dict(_entries()[0], arch='newfam')]}))
    with pytest.raises(SystemExit, match='docs/families/newfam.yaml'):
        gen.generated_files(str(tmp_path))


def test_readme_is_short_and_starts_with_the_two_commands():
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    assert len(text.splitlines()) <= 200
    first = FENCE.search(text).group(2).splitlines()
    assert [line.split()[1] for line in first[:2]] == ['demo', 'test']
    assert '/tmp/' not in text


def test_readme_zoo_table_counts_what_checkpoints_yaml_holds():
    """The README's "released checkpoints" column is hand-written: it must equal checkpoints.yaml per family."""
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    table = text[text.index('## Model zoo'):]
    rows = re.findall(r'^\| \[(\w+)\]\(docs/(\w+)\.md\) \|.*\| (\d+) \|$', table, re.M)
    counts = {}
    for entry in _entries():
        counts[entry['arch']] = counts.get(entry['arch'], 0) + 1
    assert {page: int(n) for _, page, n in rows} == counts, rows


@pytest.mark.parametrize('rel', SNIPPET_FILES)
def test_python_snippets_run(rel, monkeypatch, tmp_path):
    blocks = python_blocks(rel)
    if rel == 'README.md':
        assert len(blocks) >= 4, 'the README quick start lost its snippets'
    monkeypatch.chdir(tmp_path)  # a snippet that writes a file writes it here
    namespace = {'__name__': '__snippet__'}
    for i, body in enumerate(blocks):
        code = compile(body, f'{rel}[python block {i + 1}]', 'exec')
        exec(code, namespace)  # noqa: S102 - the documentation's own examples


@pytest.mark.slow
def test_sphinx_build_is_strict_and_complete(tmp_path):
    out = tmp_path / 'html'
    cmd = [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-n', '-q', '-b', 'html',
           osp.join(REPO, 'docs'), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, f'sphinx-build failed (make docs shows the same):\n{proc.stdout}\n{proc.stderr}'
    pages = ('index', 'get_started', 'model_zoo', 'replknet', 'repnext', 'configs', 'checkpoints', 'host_tools',
             'analysis', 'op', 'architecture', 'api')
    for page in pages:
        assert (out / f'{page}.html').is_file(), page
    zoo = (out / 'model_zoo.html').read_text()
    for e in _entries():
        assert e['name'] in zoo, e['name']
    api = (out / 'api.html').read_text()
    for name in ('RepLKNet', 'RepNeXt', 'dwconv2d', 'LargeKernelDWConv2d', 'load_pretrained'):
        assert f'id="mmlk.' in api and name in api, name
    for img in os.listdir(osp.join(REPO, 'docs', 'images')):
        if img.endswith('.png'):
            assert (out / '_images' / img).is_file(), f'{img} is not shown on any page'

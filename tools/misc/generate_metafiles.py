#!/usr/bin/env python
"""Regenerate ``configs/*/metafile.yml`` and ``model-index.yml`` from ``checkpoints.yaml``.

    python tools/misc/generate_metafiles.py [--check]

``mim search mmlk`` lists the models these files describe. ``--check`` writes nothing and exits 1 when
a committed file differs from what ``checkpoints.yaml`` gives (the test suite runs the same check).
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true', help='only report files that are out of date')
    args = parser.parse_args(argv)
    # Loaded by path: the generator needs only PyYAML, not the whole package (torch, mmengine, mmcv).
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmlk_metafile', osp.join(REPO, 'mmlk', 'utils', 'metafile.py'))
    metafile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(metafile)
    generated_files = metafile.generated_files
    stale = []
    for rel, text in generated_files(REPO).items():
        path = osp.join(REPO, rel)
        current = open(path).read() if osp.isfile(path) else None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            with open(path, 'w') as f:
                f.write(text)
    verb = 'out of date' if args.check else 'written'
    print('\n'.join(f'{verb}: {rel}' for rel in stale) or 'all metafiles up to date')
    return 1 if args.check and stale else 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""Fetch released weights ahead of time: ``python tools/download_checkpoint.py NAME [NAME ...]``.

Same as ``python -m mmlk download``: names come from checkpoints.yaml (``python -m mmlk list``); files go
to ``$MMLK_CACHE_DIR`` (default ``~/.cache/mmlk/checkpoints``), resumable and sha256-verified.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmlk.__main__ import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(['download'] + sys.argv[1:]))

"""Writing a mini dataset safely: build in a temporary sibling folder, then rename into place.

A half-written dataset never appears under the requested name, an existing folder that is not the
same mini dataset is never touched, and asking for the same dataset twice reuses the first copy.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Dict

MARKER = '.mmlk_mini_dataset.json'


def build_dataset(out_dir: str, spec: Dict, writer: Callable[[str], Dict]) -> Dict:
    """Create ``out_dir`` with ``writer(tmp_dir)`` unless the same dataset is already there.

    Args:
        out_dir: Destination folder. It must not exist, be empty, or hold this exact mini dataset.
        spec: What identifies the dataset (layout, sizes, seed, generator version); stored in a marker.
        writer: Writes the dataset into the folder it is given and returns a summary dict.

    Returns:
        The summary (read back from the marker when the dataset was already there).
    """
    out_dir = osp.abspath(out_dir)
    marker = osp.join(out_dir, MARKER)
    if osp.isdir(out_dir) and os.listdir(out_dir):
        if osp.isfile(marker):
            with open(marker) as f:
                saved = json.load(f)
            if saved.get('spec') == spec:
                return saved['summary']
            raise FileExistsError(
                f'{out_dir} holds a different mini dataset ({saved.get("spec")}); '
                'pass another --out folder or delete this one first')
        raise FileExistsError(f'{out_dir} exists and is not an mmlk mini dataset; '
                              'refusing to write into it. Pass an empty or new --out folder.')
    parent = osp.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.partial-' + osp.basename(out_dir) + '-', dir=parent)
    try:
        summary = writer(tmp)
        with open(osp.join(tmp, MARKER), 'w') as f:
            json.dump(dict(spec=spec, summary=summary), f, indent=2)
        if osp.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary

"""``python -m mmlk``: command-line access to the released weights.

    python -m mmlk list [--arch replknet|repnext] [--task TASK]
    python -m mmlk download NAME [NAME ...] [--cache-dir DIR] [--no-progress] [--max-size BYTES]
                            [--stall-timeout SECONDS]
    python -m mmlk info NAME

``download`` fetches into the cache used by ``init_cfg=dict(type='Pretrained', checkpoint=NAME)``
(``$MMLK_CACHE_DIR``, default ``~/.cache/mmlk/checkpoints``) and verifies the sha256. Files published
only on Google Drive / Baidu cannot be fetched by a program: the command prints where to get them by hand
and where to put them.
"""
import argparse
import sys
from typing import List, Optional


def _metric(entry: dict) -> str:
    metric = entry.get('metric') or {}
    return ' '.join(f'{k}={v}' for k, v in metric.items()) or '-'


def _where(entry: dict) -> str:
    dl = entry.get('download') or {}
    if dl.get('github_release'):
        return 'github'
    if dl.get('huggingface'):
        return 'huggingface'
    if dl.get('openmmlab'):
        return 'openmmlab'
    return 'manual (drive/baidu)'


def cmd_list(args: argparse.Namespace) -> int:
    from mmlk.checkpoint.catalog import list_checkpoints
    rows = [e for e in list_checkpoints()
            if (not args.arch or e['arch'] == args.arch) and (not args.task or e['task'] == args.task)]
    width = max([len(e['name']) for e in rows] + [4])
    print(f'{"name":<{width}}  {"variant":<7} {"task":<22} {"form":<6} {"format":<19} {"source":<20} metric')
    for e in rows:
        print(f'{e["name"]:<{width}}  {str(e["variant"]):<7} {e["task"]:<22} {e["form"]:<6} {e["format"]:<19} '
              f'{_where(e):<20} {_metric(e)}')
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import yaml
    from mmlk.checkpoint.catalog import get_entry
    entry = get_entry(args.name)
    if entry is None:
        print(f'unknown checkpoint name {args.name!r}; see `python -m mmlk list`', file=sys.stderr)
        return 1
    print(yaml.safe_dump(entry, sort_keys=False, width=120), end='')
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from mmlk.checkpoint import CheckpointError, resolve_checkpoint
    status = 0
    for name in args.names:
        try:
            path, _ = resolve_checkpoint(name, cache_dir=args.cache_dir, download=True,
                                         progress=not args.no_progress, max_bytes=args.max_size,
                                         stall_timeout=args.stall_timeout)
        except CheckpointError as e:
            print(f'{name}: {e}', file=sys.stderr)
            status = 1
            continue
        print(path)
    return status


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f'must be a positive number of bytes, got {text}')
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f'must be a positive number of seconds, got {text}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m mmlk', description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('list', help='list the released checkpoints (checkpoints.yaml)')
    from mmlk.models import FAMILIES
    p.add_argument('--arch', choices=[family.family for family in FAMILIES])
    p.add_argument('--task')
    p.set_defaults(func=cmd_list)
    p = sub.add_parser('info', help='print one checkpoints.yaml entry')
    p.add_argument('name')
    p.set_defaults(func=cmd_info)
    p = sub.add_parser('download', help='fetch checkpoints into the cache and verify them')
    p.add_argument('names', nargs='+', metavar='NAME')
    p.add_argument('--cache-dir', default=None, help='defaults to $MMLK_CACHE_DIR or ~/.cache/mmlk/checkpoints')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--max-size', type=_positive_int, default=None, metavar='BYTES',
                   help='size limit when neither checkpoints.yaml nor the server states the size '
                   '(default $MMLK_DOWNLOAD_MAX_BYTES or 4 GiB)')
    p.add_argument('--stall-timeout', type=_positive_float, default=None, metavar='SECONDS',
                   help='stop a download that receives less than 64 KiB in this many seconds; a rerun '
                   'resumes it (default $MMLK_DOWNLOAD_STALL_TIMEOUT or 60)')
    p.set_defaults(func=cmd_download)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())

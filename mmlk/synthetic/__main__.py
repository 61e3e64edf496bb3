"""``python -m mmlk.synthetic LAYOUT --out DIR``: write a mini dataset (see the package docstring)."""
import argparse
import json
import sys

from . import LAYOUTS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='python -m mmlk.synthetic', description=__doc__)
    parser.add_argument('layout', choices=sorted(LAYOUTS), help='dataset folder layout to write')
    parser.add_argument('--out', required=True, help='dataset root to create (must be new or empty)')
    parser.add_argument('--num-train', type=int, default=None, help='training images')
    parser.add_argument('--num-val', type=int, default=None, help='validation images')
    parser.add_argument('--size', type=int, default=None, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    kwargs = {k: v for k, v in dict(num_train=args.num_train, num_val=args.num_val, size=args.size,
                                     seed=args.seed).items() if v is not None}
    try:
        summary = LAYOUTS[args.layout](args.out, **kwargs)
    except (FileExistsError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())

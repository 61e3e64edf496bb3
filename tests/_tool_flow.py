"""Run several tool command lines in ONE Python process: ``python tests/_tool_flow.py STEPS_JSON``.

A flow such as ``train.py`` -> ``train.py --resume`` -> ``test.py`` is what a user types as separate commands;
each command still runs as its own ``__main__`` (``runpy``, with its own ``sys.argv``), but the interpreter
start and the host libraries' import (several seconds each on 2 cores) are paid once per flow instead of once
per command. Used by :func:`_helpers.run_flow`.

``STEPS_JSON`` is a list of ``{"argv": [script, *args], "env": {...}}``; ``env`` entries are set before the
step runs (and stay for the later ones). Before each step a marker line ``@@tool-flow step I@@`` is printed,
after it ``@@tool-flow rc I=CODE@@``; the flow stops at the first step whose code is not 0.
"""
import json
import os
import runpy
import sys
import time
import traceback


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # SystemExit('message') prints the message and exits with 1
    return 1


def main(steps) -> int:
    last_start = 0.0
    for i, step in enumerate(steps):
        # mmengine names a run (its logger, message hub, visualizer instances) by config name and start time to
        # the second: two runs of one config started within the same second would share those instances
        time.sleep(max(0.0, last_start + 1.05 - time.time()))
        last_start = time.time()
        os.environ.update(step.get('env', {}))
        print(f'@@tool-flow step {i}@@', flush=True)
        sys.argv = list(step['argv'])
        # as `python SCRIPT` does: the script's folder first on the path (host tools import their siblings)
        sys.path.insert(0, os.path.dirname(os.path.abspath(step['argv'][0])))
        try:
            runpy.run_path(step['argv'][0], run_name='__main__')
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:  # noqa: BLE001 - reported like an uncaught exception of the command
            traceback.print_exc()
            code = 1
        finally:
            sys.path.pop(0)
        sys.stdout.flush()
        sys.stderr.flush()
        print(f'@@tool-flow rc {i}={code}@@', flush=True)
        if code != 0:
            return code
    return 0


if __name__ == '__main__':
    sys.exit(main(json.loads(sys.argv[1])))

#!/usr/bin/env bash
# Idempotent set-up of mmlk's development environment in ./.venv.
#
# - installs the versions pinned in requirements/constraints.txt;
# - builds mmcv 2.1.0 WITH its compiled ops from the PyPI sdist (torch >= 2.10 needs C++20, mmcv's
#   setup.py hard-codes older standards) and caches the wheel outside the repository, keyed by the
#   mmcv, torch and Python versions, so it is built once per machine;
# - installs mmlk in editable mode and verifies what silently goes wrong (mmcv without ops, a host
#   library that does not import).
# A second run on a set-up machine only re-verifies: the install steps are skipped while the stamp
# (a hash of every file that decides what is installed) is unchanged.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv="$repo/.venv"
py="$venv/bin/python"
constraints="$repo/requirements/constraints.txt"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

pin() {  # pin NAME -> the version in constraints.txt (first '==' entry)
    sed -n "s/^$1==\([^ ]*\).*/\1/p" "$constraints" | head -n 1
}

if [ ! -x "$py" ]; then
    log "creating virtual environment in $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed; install python3-venv and re-run"
fi

stamp_file="$venv/.mmlk-setup-stamp"
stamp=$(cat "$constraints" requirements/runtime.txt requirements/tests.txt setup.py tools/setup_env.sh \
        | sha256sum | cut -d' ' -f1)

pip_install() { "$py" -m pip install --disable-pip-version-check -q -c "$constraints" "$@"; }

build_mmcv_wheel() {  # build_mmcv_wheel CACHE_DIR
    local cache_dir=$1 work
    work=$(mktemp -d)
    # Leave nothing half-built behind: the cache only ever receives a finished, checked wheel.
    trap 'rm -rf "$work"' EXIT
    log "building mmcv $mmcv_version with ops from source (about 15 min on 2 cores, once per machine)"
    "$py" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
        "mmcv==$mmcv_version" -d "$work/sdist"
    tar -xzf "$work"/sdist/mmcv-*.tar.gz -C "$work"
    local src
    src=$(echo "$work"/mmcv-"$mmcv_version")
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes -std=c++14 / c++17.
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    # Build isolation must stay off: an isolated build sees no torch and silently drops the ops.
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "$py" -m pip wheel --disable-pip-version-check -q \
        --no-build-isolation --no-deps -w "$work/wheel" "$src"
    local whl
    whl=$(ls "$work"/wheel/mmcv-*.whl) || die "the mmcv build produced no wheel"
    # (Not `zipfile -l | grep -q`: under pipefail grep's early exit breaks the pipe and fails the check.)
    if ! "$py" -c 'import sys, zipfile; sys.exit(not any(n.startswith("mmcv/_ext") for n in zipfile.ZipFile(sys.argv[1]).namelist()))' "$whl"; then
        die "the mmcv wheel was built WITHOUT compiled ops (no mmcv/_ext); check that torch is installed in $venv and build isolation is off"
    fi
    mkdir -p "$cache_dir"
    cp "$whl" "$cache_dir/.partial.whl"
    mv "$cache_dir/.partial.whl" "$cache_dir/$(basename "$whl")"   # atomic within one directory
    rm -rf "$work"
    trap - EXIT
}

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
    log "environment is up to date (stamp matches); verifying only"
else
    log "installing torch $(pin torch), torchvision $(pin torchvision) and build tools"
    pip_install "torch==$(pin torch)" "torchvision==$(pin torchvision)" "setuptools<80" wheel ninja

    mmcv_version=$(pin mmcv)
    torch_version=$(pin torch)
    pyver=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    cache_dir="${MMLK_WHEEL_CACHE:-$HOME/.cache/mmlk/wheels}/mmcv-${mmcv_version}_torch-${torch_version}_${pyver}"
    if ! ls "$cache_dir"/mmcv-*.whl >/dev/null 2>&1; then
        build_mmcv_wheel "$cache_dir"
    else
        log "reusing cached mmcv wheel from $cache_dir"
    fi
    pip_install "$(ls "$cache_dir"/mmcv-*.whl | head -n 1)"

    log "installing mmengine, mmdet, mmsegmentation, mmpretrain, timm and test tools"
    pip_install -r requirements/runtime.txt -r requirements/tests.txt
    # openmim without its dependencies (`mim search` needs only model-index/pandas/tabulate, in tests.txt):
    # its opendatalab -> openxlab chain pins setuptools 60, requests 2.28 and tqdm 4.65 over the environment.
    pip_install --no-deps "openmim==$(pin openmim)"
    log "installing mmlk (editable)"
    pip_install --no-build-isolation --no-deps -e .
    echo "$stamp" > "$stamp_file"
fi

# Verify what silently goes wrong.
if ! "$py" -c 'import mmcv.ops' 2>/dev/null; then
    rm -f "$stamp_file"
    die "mmcv is installed without its compiled ops ('import mmcv.ops' fails). Delete the cached wheel under ${MMLK_WHEEL_CACHE:-$HOME/.cache/mmlk/wheels} and re-run tools/setup_env.sh to rebuild it."
fi
"$py" - <<'EOF' || { rm -f "$stamp_file"; die "a host library does not import; see the traceback above"; }
import importlib
for name in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'timm', 'mmlk'):
    mod = importlib.import_module(name)
    print(f'[setup]   {name:<11} {getattr(mod, "__version__", "?")}')
EOF
log "ready: activate with 'source .venv/bin/activate'"

#!/usr/bin/env bash
# Idempotent set-up of mmlk's development environment in ./.venv.
#
# - installs the versions pinned in requirements/constraints.txt;
# - builds mmcv 2.1.0 WITH its compiled ops from the PyPI sdist (torch >= 2.10 needs C++20, mmcv's
#   setup.py hard-codes older standards) and caches the wheel outside the repository, keyed by the
#   mmcv, torch and Python versions and the CUDA version ('cpu' without a GPU), so it is built once per
#   machine; with a CUDA GPU and nvcc present the CUDA ops are built too (for the GPU's architecture);
#   a GPU without nvcc stops with instructions (MMLK_MMCV_CPU_ONLY=1 installs CPU-only ops anyway);
# - installs mmlk in editable mode and verifies what silently goes wrong (mmcv without ops, a host
#   library that does not import).
# A second run on a set-up machine only re-verifies: the install steps are skipped while the stamp
# (a hash of every file that decides what is installed) is unchanged.
#
# The console gets one line per step; pip's and the build's output go to the log file below (a machine whose
# pip configuration names package locations that do not exist makes pip print a warning per location and
# package). On a failure the log's last lines are shown with what to do.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv="$repo/.venv"
py="$venv/bin/python"
constraints="$repo/requirements/constraints.txt"

setup_log="$repo/work_dirs/logs/setup_env.log"
mkdir -p "$(dirname "$setup_log")"
printf '# tools/setup_env.sh, %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" > "$setup_log"

log() { printf '[setup] %s\n' "$*"; printf '[setup] %s\n' "$*" >> "$setup_log"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; printf '[setup] ERROR: %s\n' "$*" >> "$setup_log"; exit 1; }
# quietly CMD...: run CMD with its output in the log; on failure show the log's last lines and stop.
quietly() {
    printf '$ %s\n' "$*" >> "$setup_log"
    local rc=0
    "$@" >> "$setup_log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        printf '[setup] FAILED (exit %s): %s\n' "$rc" "$*" >&2
        printf '[setup] last lines of %s:\n' "$setup_log" >&2
        # (pip's warnings about configured package locations that do not exist would crowd out the error)
        grep -v -e '^\[setup\]' -e 'is ignored: it is neither a file nor a directory' "$setup_log" \
            | tail -n 25 | sed 's/^/    /' >&2 || true
        printf '[setup] what to do: read the error above (full output in %s), fix its cause (network, disk space,\n' \
            "$setup_log" >&2
        printf '[setup]   a compiler, a package pin in requirements/) and re-run tools/setup_env.sh (or make setup)\n' >&2
        exit "$rc"
    fi
}
log "full output of pip and the build: ${setup_log#"$repo"/}"

pin() {  # pin NAME -> the version in constraints.txt (first '==' entry)
    sed -n "s/^$1==\([^ ]*\).*/\1/p" "$constraints" | head -n 1
}

if [ ! -x "$py" ]; then
    log "creating virtual environment in $venv"
    python3 -m venv "$venv" >> "$setup_log" 2>&1 || die "python3 -m venv failed; install python3-venv and re-run"
fi

# mmcv's compiled ops: CPU-only unless a CUDA GPU is present. Detection (mmdet's RoIAlign, NMS, ...) on a GPU needs
# mmcv's CUDA ops, which must be compiled with nvcc; segmentation and classification do not use them.
gpu_present() {
    { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; } || [ -e /dev/nvidia0 ]
}
find_nvcc() {
    if command -v nvcc >/dev/null 2>&1; then command -v nvcc
    elif [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then echo "$CUDA_HOME/bin/nvcc"
    elif [ -x /usr/local/cuda/bin/nvcc ]; then echo /usr/local/cuda/bin/nvcc
    fi
}
cuda_tag=cpu
if [ "${MMLK_MMCV_CPU_ONLY:-0}" != 1 ] && gpu_present; then
    nvcc_bin=$(find_nvcc)
    if [ -z "$nvcc_bin" ]; then
        die "a CUDA GPU is present but nvcc (the CUDA toolkit compiler) is not found. Object detection on the GPU
    needs mmcv's CUDA ops (RoIAlign, NMS, ...), which are compiled from source here. Install the CUDA toolkit
    matching torch's CUDA version ($("$py" -c 'import torch; print(torch.version.cuda)' 2>/dev/null || echo '?')),
    e.g. the 'cuda-toolkit' package of NVIDIA's repository or a conda 'cuda-nvcc', put nvcc on PATH (or set
    CUDA_HOME) and re-run. Segmentation and classification do not need these ops: to install without them, re-run
    with MMLK_MMCV_CPU_ONLY=1."
    fi
    cuda_version=$("$nvcc_bin" --version | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' | head -n 1)
    cuda_tag="cu${cuda_version:-unknown}"
    export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$nvcc_bin")")}"
fi

stamp_file="$venv/.mmlk-setup-stamp"
stamp=$( (cat "$constraints" requirements/runtime.txt requirements/tests.txt requirements/docs.txt setup.py tools/setup_env.sh; \
          echo "$cuda_tag") | sha256sum | cut -d' ' -f1)

# Packages are installed by uv (pinned in constraints.txt, bootstrapped with the venv's pip): it installs in
# parallel and links files from its cache (~/.cache/uv) instead of unpacking every wheel again, so a fresh
# clone's set-up takes seconds instead of a minute and a half for the same pinned versions. uv does not read
# pip's configuration; uv_index_args hands it the package locations pip is configured with (those that exist),
# first, so that a release lying on this machine's disk is taken from there rather than downloaded.
uv_index_args() {
    "$py" -m pip config list 2>/dev/null | "$py" -c '
import os, shlex, sys
from urllib.parse import urlparse
from urllib.request import url2pathname
keys = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links"}
found = {}
for line in sys.stdin:
    name, _, value = line.strip().partition("=")
    key = name.rsplit(".", 1)[-1]
    if key in keys:
        found[key] = (shlex.split(value) or [""])[0].split()  # later scopes (env) override earlier ones
for key, flag in keys.items():
    for loc in found.get(key, []):
        path = url2pathname(urlparse(loc).path) if loc.startswith("file:") else loc
        if "://" in loc and not loc.startswith("file:") or os.path.exists(path):
            print(flag, loc)
'
}
pip_install() {
    local args=()
    read -r -a args <<< "$(uv_index_args | tr '\n' ' ')"
    # unsafe-best-match: pip's rule (the best version from any location), not uv's first-location-only default
    quietly "$venv/bin/uv" pip install --python "$py" -q --index-strategy unsafe-best-match \
        ${args[@]+"${args[@]}"} -c "$constraints" "$@"
}
# compile_site: byte-compile site-packages on every core (uv, like `pip --no-compile`, leaves it to us), leaving out
# what no mmlk command imports (the test suites shipped inside packages, e.g. pandas', scipy's, sympy's).
compile_site() {
    local site
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    printf '$ python -m compileall -q -j 0 -x ... %s\n' "$site" >> "$setup_log"
    # Not `quietly`: a few files are not meant for this Python (torch ships a py312-only test helper), which pip's
    # own compilation skips too; they are listed in the log and compileall's exit status 1 is not an error.
    "$py" -m compileall -q -j 0 -x '/tests?/' "$site" >> "$setup_log" 2>&1 || true
}

build_mmcv_wheel() {  # build_mmcv_wheel CACHE_DIR
    local cache_dir=$1 work
    # A global, not a local: the EXIT trap runs after `set -e` has unwound the function, where a
    # local would be unset (and `set -u` would fail the trap itself, leaving the directory behind).
    mmcv_build_dir=$(mktemp -d)
    work=$mmcv_build_dir
    # Leave nothing half-built behind: the cache only ever receives a finished, checked wheel.
    trap 'rm -rf "${mmcv_build_dir:-}"' EXIT
    log "building mmcv $mmcv_version with ops from source (about 15 min on 2 cores, once per machine)"
    quietly "$py" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
        "mmcv==$mmcv_version" -d "$work/sdist"
    tar -xzf "$work"/sdist/mmcv-*.tar.gz -C "$work"
    local src
    src=$(echo "$work"/mmcv-"$mmcv_version")
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes -std=c++14 / c++17.
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    # Build isolation must stay off: an isolated build sees no torch and silently drops the ops.
    local cuda_env=()
    if [ "$cuda_tag" != cpu ]; then
        # compile the CUDA kernels for this machine's GPU(s) only (all architectures would take hours)
        local arch
        arch=$("$py" -c 'import torch; print(";".join(sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})))')
        log "building mmcv's CUDA ops with $(basename "$nvcc_bin") ($cuda_tag) for compute capability $arch"
        cuda_env=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=$arch" "CUDA_HOME=$CUDA_HOME")
    fi
    quietly env ${cuda_env[@]+"${cuda_env[@]}"} MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "$py" -m pip wheel --disable-pip-version-check -q \
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
    log "installing uv $(pin uv), the package installer"
    quietly "$py" -m pip install --disable-pip-version-check -q "uv==$(pin uv)"
    log "installing torch $(pin torch), torchvision $(pin torchvision) and build tools"
    pip_install "torch==$(pin torch)" "torchvision==$(pin torchvision)" "setuptools<80" wheel ninja

    mmcv_version=$(pin mmcv)
    torch_version=$(pin torch)
    pyver=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    cache_dir="${MMLK_WHEEL_CACHE:-$HOME/.cache/mmlk/wheels}/mmcv-${mmcv_version}_torch-${torch_version}_${pyver}_${cuda_tag}"
    legacy_dir="${cache_dir%_cpu}"  # wheels cached before the key had a CUDA tag were all CPU builds
    if [ "$cuda_tag" = cpu ] && ! ls "$cache_dir"/mmcv-*.whl >/dev/null 2>&1 \
            && ls "$legacy_dir"/mmcv-*.whl >/dev/null 2>&1; then
        cache_dir=$legacy_dir
    fi
    if ! ls "$cache_dir"/mmcv-*.whl >/dev/null 2>&1; then
        build_mmcv_wheel "$cache_dir"
    else
        log "reusing cached mmcv wheel from $cache_dir"
    fi
    log "installing mmcv, mmengine, mmdet, mmsegmentation, mmpretrain, timm, test and docs tools"
    pip_install "$(ls "$cache_dir"/mmcv-*.whl | head -n 1)" \
        -r requirements/runtime.txt -r requirements/tests.txt -r requirements/docs.txt
    # openmim without its declared dependencies; what it imports (model-index, pandas, tabulate, click, colorama,
    # requests + urllib3/charset-normalizer/certifi/idna, rich) is pinned in tests.txt / constraints.txt:
    # its opendatalab -> openxlab chain pins setuptools 60, requests 2.28 and tqdm 4.65 over the environment.
    pip_install --no-deps "openmim==$(pin openmim)"
    log "installing mmlk (editable)"
    pip_install --no-build-isolation --no-deps -e .
    log "byte-compiling the installed packages"
    compile_site
    echo "$stamp" > "$stamp_file"
fi

# Verify what silently goes wrong (one interpreter: torch is imported once).
verify_rc=0
verified=$("$py" - 2>>"$setup_log" <<'EOF'
import importlib
import sys
try:
    import mmcv.ops  # noqa: F401
except Exception as exc:  # noqa: BLE001 - reported with the fix below
    print(f'mmcv.ops: {type(exc).__name__}: {exc}', file=sys.stderr)
    sys.exit(3)
versions = []
for name in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'timm', 'mmlk'):
    mod = importlib.import_module(name)
    versions.append(f'{name} {getattr(mod, "__version__", "?")}')
print(', '.join(versions))
EOF
) || verify_rc=$?
if [ "$verify_rc" != 0 ]; then
    rm -f "$stamp_file"
    if [ "$verify_rc" = 3 ]; then
        die "mmcv is installed without its compiled ops ('import mmcv.ops' fails). Delete the cached wheel under ${MMLK_WHEEL_CACHE:-$HOME/.cache/mmlk/wheels} and re-run tools/setup_env.sh to rebuild it."
    fi
    tail -n 15 "$setup_log" | sed 's/^/    /' >&2
    die "a host library does not import; see the traceback above (full log: $setup_log)"
fi
if [ "$cuda_tag" != cpu ] && ! "$py" -c 'import torch
from mmcv.ops import nms
b = torch.tensor([[0., 0., 1., 1.]], device="cuda")
nms(b, torch.ones(1, device="cuda"), 0.5)' >>"$setup_log" 2>&1; then
    rm -f "$stamp_file"
    die "mmcv's ops do not run on the GPU (built without CUDA?). Delete the cached wheel under ${MMLK_WHEEL_CACHE:-$HOME/.cache/mmlk/wheels} (the *_${cuda_tag} directory) and re-run tools/setup_env.sh."
fi
log "verified: $verified"
log "ready: activate with 'source .venv/bin/activate'"

#!/usr/bin/env bash
# Install MMDetection 3.3.0 with a compiled mmcv 2.1.0 into a Python environment.
#
# mmdet 3.3.0 needs mmcv>=2.0.0rc4,<2.2.0 with compiled ops. mmcv 2.1.0 ships
# only as a source distribution, and its setup.py forces -std=c++14/-std=c++17
# while current torch headers need C++20. This script builds the mmcv wheel
# once from the sdist with the flags raised to -std=c++20, caches it outside
# the repository (keyed by mmcv, torch and Python version), installs the
# package's `mmdet` extra against that wheel under the project's constraints,
# and checks that `mmcv.ops` loads and runs.
#
# Usage: tools/install_mmdet.sh [--force-rebuild]
# Environment:
#   PYTHON            interpreter of the target environment (default: .venv/bin/python)
#   MTMNV3_WHEEL_CACHE  wheel cache (default: ${XDG_CACHE_HOME:-$HOME/.cache}/mtmnv3/wheels)
#   MAX_JOBS          parallel compile jobs for the mmcv build (default: 2)
set -euo pipefail

MMCV_VERSION=2.1.0
MMDET_VERSION=3.3.0

cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
CONSTRAINTS=$REPO/requirements/constraints.txt
CACHE_ROOT=${MTMNV3_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mtmnv3/wheels}
FORCE_REBUILD=0

die() {
    echo "install_mmdet: ERROR: $*" >&2
    exit 1
}
log() { echo "install_mmdet: $*"; }

for arg in "$@"; do
    case $arg in
        --force-rebuild) FORCE_REBUILD=1 ;;
        -h | --help)
            sed -n '2,17p' "$0"
            exit 0
            ;;
        *) die "unknown argument '$arg' (expected --force-rebuild)" ;;
    esac
done

[ -x "$PY" ] || die "no Python interpreter at '$PY' (run 'make install' first or set PYTHON=...)"
[ -f "$CONSTRAINTS" ] || die "constraints file '$CONSTRAINTS' not found"

# Verifies the installed stack; prints nothing on success.
verify() {
    "$PY" - "$MMCV_VERSION" "$MMDET_VERSION" <<'EOF'
import sys

import torch

import mmcv
import mmdet
from mmcv.ops import nms

want_mmcv, want_mmdet = sys.argv[1], sys.argv[2]
if mmcv.__version__ != want_mmcv or mmdet.__version__ != want_mmdet:
    sys.exit(f"found mmcv {mmcv.__version__}, mmdet {mmdet.__version__}; want {want_mmcv}, {want_mmdet}")
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
if keep.tolist() != [0, 2]:
    sys.exit(f"mmcv.ops.nms returned {keep.tolist()}, expected [0, 2]")
import mmdet.models  # noqa: F401,E402  (fails when mmcv has no compiled ops)
EOF
}

if [ "$FORCE_REBUILD" = 0 ] && verify >/dev/null 2>&1; then
    log "mmdet $MMDET_VERSION with compiled mmcv $MMCV_VERSION already works"
    exit 0
fi

TAG=$("$PY" -c 'import sys, torch; v = torch.__version__.split("+")[0]; print(f"torch{v}-cp{sys.version_info[0]}{sys.version_info[1]}")') ||
    die "cannot import torch with '$PY'"
WHEEL_DIR=$CACHE_ROOT/$TAG
mkdir -p "$WHEEL_DIR" || die "cannot create wheel cache '$WHEEL_DIR'"
WHEEL=$(find "$WHEEL_DIR" -maxdepth 1 -name "mmcv-$MMCV_VERSION-*.whl" | head -n 1)
if [ "$FORCE_REBUILD" = 1 ] && [ -n "$WHEEL" ]; then
    rm -f "$WHEEL"
    WHEEL=
fi

if [ -z "$WHEEL" ]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    BUILD_LOG=$WORK/build.log
    START=$(date +%s)
    log "building mmcv $MMCV_VERSION from source for $TAG (about 9 minutes on 2 cores)"

    # Build tools in a private directory: the build imports pkg_resources
    # (removed from setuptools 70+) and uses bdist_wheel from `wheel`; the
    # target environment's own setuptools is left alone.
    "$PY" -m pip install --quiet --target "$WORK/buildtools" "setuptools<70" wheel ninja \
        >"$BUILD_LOG" 2>&1 || { tail -n 20 "$BUILD_LOG" >&2; die "could not install build tools (setuptools<70, wheel, ninja)"; }
    # pip reads the sdist's metadata by running its setup.py, which needs the build tools too.
    PYTHONPATH="$WORK/buildtools${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pip download --quiet --no-deps \
        --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$WORK/sdist" \
        >>"$BUILD_LOG" 2>&1 || { tail -n 20 "$BUILD_LOG" >&2; die "could not download the mmcv $MMCV_VERSION sdist"; }
    tar -xzf "$WORK"/sdist/mmcv-"$MMCV_VERSION".tar.gz -C "$WORK" || die "could not unpack the mmcv sdist"
    SRC=$WORK/mmcv-$MMCV_VERSION
    [ -f "$SRC/setup.py" ] || die "unexpected sdist layout: no $SRC/setup.py"

    # The C++20 fix: torch >= 2.10 headers need C++20; mmcv's setup.py pins 14/17.
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    if grep -q -e '-std=c++14' -e '-std=c++17' "$SRC/setup.py" || ! grep -q -e '-std=c++20' "$SRC/setup.py"; then
        die "could not patch the C++ standard in mmcv's setup.py (sdist layout changed?)"
    fi


    if ! PATH="$WORK/buildtools/bin:$PATH" PYTHONPATH="$WORK/buildtools${PYTHONPATH:+:$PYTHONPATH}" \
        MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" \
        "$PY" -m pip wheel --no-deps --no-build-isolation -w "$WORK/wheel" "$SRC" >>"$BUILD_LOG" 2>&1; then
        tail -n 40 "$BUILD_LOG" >&2
        die "the mmcv $MMCV_VERSION build failed (log tail above); nothing was cached"
    fi
    BUILT=$(find "$WORK/wheel" -maxdepth 1 -name "mmcv-$MMCV_VERSION-*.whl" | head -n 1)
    [ -n "$BUILT" ] || die "the mmcv build produced no wheel; nothing was cached"
    # Copy next to the cache entry, then rename: the cache never holds a partial wheel.
    NAME=$(basename "$BUILT")
    cp "$BUILT" "$WHEEL_DIR/.$NAME.partial" || die "could not write to the wheel cache '$WHEEL_DIR'"
    mv "$WHEEL_DIR/.$NAME.partial" "$WHEEL_DIR/$NAME"
    WHEEL=$WHEEL_DIR/$NAME
    log "built and cached $WHEEL in $(($(date +%s) - START)) s"
else
    log "using cached $WHEEL"
fi

# The extra's pins resolve against the cached wheel (--only-binary keeps pip
# from picking the sdist again); everything else stays under the constraints.
"$PY" -m pip install --quiet --progress-bar off -c "$CONSTRAINTS" \
    --find-links "$WHEEL_DIR" --only-binary mmcv -e "$REPO[mmdet]" ||
    die "pip could not install the mmdet extra with the cached mmcv wheel $WHEEL"

if ! err=$(verify 2>&1); then
    echo "$err" | tail -n 20 >&2
    die "mmdet/mmcv installed but the check failed (mmcv.ops must load and run nms)"
fi
log "mmdet $MMDET_VERSION with compiled mmcv $MMCV_VERSION works"

#!/usr/bin/env bash
# Create or update the project's virtual environment (what `make setup` runs; `make test` and `make demo` call it).
#
#   1. .venv with `python3 -m venv` (CPython 3.11: the ROS 2 wheels are cp311 builds)
#   2. pip install -r requirements.txt (torch, the ROS 2 Kilted wheels, the message generators, ...)
#   3. the messages, CMake configure/build/install into .venv: vendor/vision_msgs (the vision_msgs interface,
#      which has no PyPI wheel; a ROS 2 install uses its own) and the hle_ros messages from msg/*.msg
#      (-DHLE_MSGS_ONLY=ON)
#   4. pip install -e . (hle_core, hle_ros and the `hle` command, editable)
#
# Idempotent: a stamp in .venv holds a hash of every input of these steps; when it matches (and the packages
# import) nothing is reinstalled. Environment: HLE_VENV (default .venv), HLE_PYTHON (default python3),
# HLE_SETUP_FORCE=1 to redo every step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(realpath -m "${HLE_VENV:-$ROOT/.venv}")"
PYTHON="${HLE_PYTHON:-python3}"
PY="$VENV/bin/python"
STAMP="$VENV/.hle_setup.stamp"
LOG="$VENV/hle_setup.log"
BUILD="$ROOT/build/venv-msgs"
BUILD_VISION="$ROOT/build/venv-vision-msgs"
START=$SECONDS

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# Run a step with its output in $LOG; on failure show the end of the log.
run_logged() {
  local what="$1"; shift
  local t0=$SECONDS
  log "$what ..."
  printf '\n===== %s: %s\n' "$what" "$*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    die "$what failed (full log: $LOG)"
  fi
  log "$what: done in $((SECONDS - t0)) s"
}

# The installed environment works when the source packages (this checkout) and the generated messages import as
# one hle_ros package, from any working directory (run from / so that the checkout is not on sys.path as '').
check_imports() {
  (cd / && "$PY" - "$ROOT") <<'PYEOF'
import os, sys
import hle_core, hle_ros, hle_ros.msg
from hle_ros.msg import PanopticInstance, PanopticSegmentation
from vision_msgs.msg import Detection2DArray, LabelInfo
src = os.path.join(sys.argv[1], "hle_ros", "__init__.py")
if hle_ros.__file__ is None or not os.path.exists(src) or not os.path.samefile(hle_ros.__file__, src):
    sys.exit(f"hle_ros is imported from {hle_ros.__file__}, expected {src}")
PYEOF
}

inputs_hash() {
  cd "$ROOT"
  cat requirements.txt requirements-nodeps.txt CMakeLists.txt package.xml setup.py msg/*.msg scripts/setup_env.sh \
    cmake/*.cmake vendor/vision_msgs/CMakeLists.txt vendor/vision_msgs/package.xml vendor/vision_msgs/msg/*.msg |
    sha256sum | cut -d' ' -f1
}

cd "$ROOT"
mkdir -p "$ROOT/build"
# One setup at a time per checkout (make test in two terminals).
exec 9>"$ROOT/build/.setup.lock"
flock 9

HASH="$(inputs_hash)"

# ---- fast path: nothing changed since the last complete setup -----------------------------------------------
if [[ "${HLE_SETUP_FORCE:-0}" != 1 && -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  if check_imports 2>/dev/null; then
    log "environment up to date ($VENV)"
    exit 0
  fi
  log "stamp matches but hle_core / hle_ros / hle_ros.msg / vision_msgs.msg do not import as installed: setting up again"
fi

# ---- tools --------------------------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (need CPython 3.11; set HLE_PYTHON)"
command -v cmake >/dev/null || die "cmake not found (Debian: apt-get install cmake)"
command -v c++ >/dev/null || command -v g++ >/dev/null || die "no C++ compiler (Debian: apt-get install g++)"
command -v make >/dev/null || die "make not found (Debian: apt-get install make)"

# ---- 1. virtual environment ---------------------------------------------------------------------------------
if [[ ! -x "$PY" ]]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
    die "$("$PYTHON" --version 2>&1) found; the ROS 2 wheels need CPython 3.11 (set HLE_PYTHON)"
  log "creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (Debian's system Python: apt-get install python3-venv)"
  : >"$LOG"
  log "log of the steps below: $LOG"
  run_logged "upgrading pip" "$PY" -m pip install --progress-bar off --upgrade pip wheel
else
  : >"$LOG"                                   # the log holds this run only
  log "log of the steps below: $LOG"
fi
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  die "$VENV runs $("$PY" --version 2>&1); the ROS 2 wheels need CPython 3.11: remove $VENV and run again"
# colcon run from this directory must not mistake the venv's ROS packages (share/*/package.xml) for sources.
touch "$VENV/COLCON_IGNORE" "$ROOT/build/COLCON_IGNORE"
rm -f "$STAMP"

# ---- 2. Python requirements ---------------------------------------------------------------------------------
if [[ ! -d "$VENV/lib/python3.11/site-packages/torch" ]]; then
  log "first install of torch + ROS 2 wheels: about 6 GB into the venv, 2-3 minutes"
fi
run_logged "pip install -r requirements.txt" "$PY" -m pip install --progress-bar off -r requirements.txt
run_logged "pip install --no-deps -r requirements-nodeps.txt" \
  "$PY" -m pip install --progress-bar off --no-deps -r requirements-nodeps.txt

# ---- 3. messages (rosidl via CMake, against the wheels) -----------------------------------------------------
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# A build tree configured for another checkout (a moved or copied tree) cannot be reused.
for _tree in "$BUILD:$ROOT" "$BUILD_VISION:$ROOT/vendor/vision_msgs"; do
  _dir="${_tree%%:*}"; _src="${_tree#*:}"
  if [[ -f "$_dir/CMakeCache.txt" ]] &&
     ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$_src" "$_dir/CMakeCache.txt"; then
    log "removing $_dir (configured for another source directory)"
    rm -rf "$_dir"
  fi
done
# vision_msgs first: the same `from vision_msgs.msg import Detection2DArray` as on a ROS 2 install.
run_logged "cmake configure (vendor/vision_msgs -> vision_msgs.msg)" \
  cmake -S "$ROOT/vendor/vision_msgs" -B "$BUILD_VISION" \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
    -DHLE_WHEEL_FIX="$ROOT/cmake/hle_fix_wheel_python_include_dirs.cmake" \
    -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
run_logged "cmake build (vision_msgs)" cmake --build "$BUILD_VISION" --parallel "$(nproc)"
run_logged "cmake install (vision_msgs) into $VENV" cmake --install "$BUILD_VISION"
run_logged "cmake configure (msg/*.msg -> hle_ros.msg)" \
  cmake -S "$ROOT" -B "$BUILD" \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" -DHLE_MSGS_ONLY=ON \
    -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
run_logged "cmake build" cmake --build "$BUILD" --parallel "$(nproc)"
run_logged "cmake install into $VENV" cmake --install "$BUILD"

# ---- 4. the project itself, editable ------------------------------------------------------------------------
# compat mode puts the checkout on sys.path through a .pth file, so the source hle_ros package and the
# generated hle_ros/msg in site-packages merge (hle_ros/__init__.py extends __path__).
run_logged "pip install -e . (hle_core, hle_ros, the hle command)" \
  "$PY" -m pip install --no-deps --no-build-isolation --config-settings editable_mode=compat -e "$ROOT"

# ---- check and stamp ----------------------------------------------------------------------------------------
check_imports ||
  die "the installed environment does not import hle_core, hle_ros.msg and vision_msgs.msg (see $LOG)"
[[ -x "$VENV/bin/hle" ]] || die "the hle command was not installed into $VENV/bin"
echo "$HASH" >"$STAMP"
log "environment ready in $((SECONDS - START)) s: $VENV (hle_core, hle_ros.msg, hle command)"

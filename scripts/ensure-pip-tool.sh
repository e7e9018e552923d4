#!/usr/bin/env bash
# ensure-pip-tool.sh PACKAGE VERSION COMMAND OVERRIDE_VAR: prints the path of COMMAND from PyPI's
# PACKAGE==VERSION, installing it into a venv under target/tools/PACKAGE-VERSION when it is not
# there yet; $OVERRIDE_VAR, when set to an executable, is used instead. Exits non-zero with what
# to do. The ensure-<tool>.sh scripts that pin a PyPI tool call it.
set -euo pipefail
package=$1 version=$2 command=$3 override=$4
if [ -n "${!override:-}" ] && [ -x "${!override}" ]; then echo "${!override}"; exit 0; fi
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CARGO_TARGET_DIR:-$root/target}/tools/$package-$version"
bin="$venv/bin/$command"
# `.installed` is written last, so an interrupted install is started again.
if [ -x "$bin" ] && [ -f "$venv/.installed" ]; then echo "$bin"; exit 0; fi
python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "$command needs python3 (3.9+) with venv and pip; install it, or point $override at a $command $version" >&2
  exit 1
fi
echo "installing $package $version into $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version" >&2
touch "$venv/.installed"
echo "$bin"

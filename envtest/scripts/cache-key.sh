#!/usr/bin/env bash
# Prints a short hash that keys a binary cache folder: the names and contents of every file
# under the given paths (files or folders, relative to the repository root; a path written
# `!path` is left out), this script itself, and whatever the caller writes on stdin (its build
# flags, the Go version). Any change to a pinned go.mod/go.sum, a build script or a flag gives
# a new key, so a stale binary is never reused.
#
# Usage: printf '%s\n' "$flags" | cache-key.sh envtest/go '!envtest/go/helm' envtest/scripts/x.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
include=(envtest/scripts/cache-key.sh)
prune=()
for path in "$@"; do
  if [[ $path == '!'* ]]; then
    prune+=(-path "${path#!}" -prune -o)
  else
    include+=("$path")
  fi
done
{
  # Names are hashed with the contents (sha256sum prints both), so a renamed file counts.
  find "${include[@]}" "${prune[@]}" -type f -print0 | LC_ALL=C sort -z -u | xargs -0 sha256sum
  cat
} | sha256sum | cut -c1-16

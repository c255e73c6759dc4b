#!/usr/bin/env bash
# Report how full a directory's file system is; the last line is the result.
directory="${1:-/}"
warn_at="${2:-90}"

set -euo pipefail
used=$(df --output=pcent "$directory" | tail -n 1 | tr -dc '0-9')
echo "file system of $directory is ${used}% full" >&2
if [ "$used" -ge "$warn_at" ]; then
  echo "warning"
else
  echo "ok"
fi

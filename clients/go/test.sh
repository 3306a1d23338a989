#!/usr/bin/env bash
# Runs the Go client's tests; the integration tests use the kamid and kamictl built by
# `swift build` unless KAMID / KAMICTL say otherwise.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export KAMID="${KAMID:-$repo/.build/debug/kamid}"
export KAMICTL="${KAMICTL:-$repo/.build/debug/kamictl}"
cd "$here"
go vet ./...
go test -count=1 "$@" ./...

#!/usr/bin/env bash
# Build the Go SDK WAIT anchor plugin (and its latency client).
#
#   bench/go_sdk_wait/build.sh [OUT [CLIENT_OUT]]
#
# OUT         plugin binary   (default: bench/go_sdk_wait/bin/go_sdk_wait)
# CLIENT_OUT  measuring client (default: <dir of OUT>/go_sdk_wait_client)
#
# Exit codes: 0 built, 3 Go toolchain missing or too old (callers treat this
# as "skip the Go anchor"), anything else: build failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v go >/dev/null 2>&1; then
    echo "go not found; skipping Go SDK anchor" >&2
    exit 3
fi

# The SDK (piped-plugin-sdk-go v0.4.0) needs Go >= 1.25. Do not let the go
# command fetch a newer toolchain on its own.
export GOTOOLCHAIN=local
gover="$(go env GOVERSION 2>/dev/null || true)"   # e.g. go1.26.8
minor="$(printf '%s' "$gover" | sed -n 's/^go1\.\([0-9][0-9]*\).*/\1/p')"
if [ -z "$minor" ] || [ "$minor" -lt 25 ]; then
    echo "go >= 1.25 required (found '${gover:-unknown}'); skipping Go SDK anchor" >&2
    exit 3
fi

out="${1:-$here/bin/go_sdk_wait}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
client_out="${2:-$(dirname "$out")/go_sdk_wait_client}"
case "$client_out" in /*) ;; *) client_out="$PWD/$client_out" ;; esac
mkdir -p "$(dirname "$out")" "$(dirname "$client_out")"

cd "$here"
# -mod=readonly: never rewrite go.mod/go.sum during a build.
flags=(-mod=readonly -trimpath -buildvcs=false)
go build "${flags[@]}" -ldflags "-X main.version=bench" -o "$out" .
go build "${flags[@]}" -o "$client_out" ./client
echo "built $out"
echo "built $client_out"

#!/usr/bin/env bash
# Builds FerretDB v1.24.2 once into a cache directory and prints the binary's path.
# FerretDB embeds build/version/version.txt, which its module zip does not contain; a binary whose main module is
# FerretDB itself panics without it. `go install …@v1.24.2` gives such a binary, and so does `go get -tool` + `go build`
# with Go 1.24+ (the tool's module is recorded as the main module). So: a throwaway module, `go mod vendor`, the
# version file written into the vendored copy, and a -mod=vendor build.
set -euo pipefail
version="v1.24.2"
cache="${FERRETDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/umzug-zero-downtime/ferretdb-$version}"
bin="$cache/ferretdb"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { echo "ferretdb-build: Go is required to build FerretDB $version (none on PATH; tried /usr/local/go/bin too)" >&2; exit 1; }
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  go mod init ferretdb-build >/dev/null 2>&1
  go get -tool "github.com/FerretDB/FerretDB/cmd/ferretdb@$version" >&2
  go mod vendor >&2
  printf '%s\n' "$version" > vendor/github.com/FerretDB/FerretDB/build/version/version.txt
  go build -mod=vendor -o "$bin.tmp" github.com/FerretDB/FerretDB/cmd/ferretdb >&2
  "$bin.tmp" --version | grep -q "version: $version" || { echo "ferretdb-build: built binary does not report $version" >&2; exit 1; }
)
mv "$bin.tmp" "$bin"
echo "$bin"

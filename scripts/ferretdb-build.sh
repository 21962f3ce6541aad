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
log="$cache/build.log"
trap 'rm -rf "$work"' EXIT
echo "ferretdb-build: building FerretDB $version once (about 2 minutes; log in $log)" >&2
# Go's download chatter goes to the log; it is shown only when the build fails.
if ! (
  cd "$work"
  go mod init ferretdb-build
  go get -tool "github.com/FerretDB/FerretDB/cmd/ferretdb@$version"
  go mod vendor
  printf '%s\n' "$version" > vendor/github.com/FerretDB/FerretDB/build/version/version.txt
  go build -mod=vendor -o "$bin.tmp" github.com/FerretDB/FerretDB/cmd/ferretdb
  # Read the whole output first: with pipefail, `grep -q` closing the pipe early can fail the binary with SIGPIPE.
  reported="$("$bin.tmp" --version)"
  grep -q "version: $version" <<<"$reported" || { echo "ferretdb-build: built binary does not report $version: $reported"; exit 1; }
) >"$log" 2>&1; then
  tail -40 "$log" >&2
  echo "ferretdb-build: building FerretDB $version failed (full log: $log). Nothing was installed; fix the cause and run again." >&2
  exit 1
fi
mv "$bin.tmp" "$bin"
echo "$bin"

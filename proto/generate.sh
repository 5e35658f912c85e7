#!/usr/bin/env bash
# Regenerates the Go code for every .proto under proto/ with pinned
# generators. Usage: proto/generate.sh [output-root]
# output-root defaults to the repository root; check.sh passes a temp dir.
set -euo pipefail

PROTOC_VERSION="3.21.12"          # Debian bookworm's protobuf-compiler
PROTOC_GEN_GO_VERSION="v1.36.12"  # matches google.golang.org/protobuf in go.mod

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root}"

if ! command -v protoc >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		apt-get install -y protobuf-compiler libprotobuf-dev >/dev/null ||
			{ apt-get update >/dev/null && apt-get install -y protobuf-compiler libprotobuf-dev >/dev/null; }
	else
		echo "protoc not found: install protobuf-compiler and libprotobuf-dev ${PROTOC_VERSION}" >&2
		exit 1
	fi
fi
have="$(protoc --version | awk '{print $2}')"
if [ "$have" != "$PROTOC_VERSION" ]; then
	echo "protoc is $have, want $PROTOC_VERSION" >&2
	exit 1
fi

gobin="$(go env GOPATH)/bin"
gen="$gobin/protoc-gen-go"
if ! [ -x "$gen" ] || [ "$("$gen" --version | awk '{print $2}')" != "$PROTOC_GEN_GO_VERSION" ]; then
	GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
fi

cd "$root/proto"
mapfile -t files < <(find . -name '*.proto' | sed 's|^\./||' | sort)
protoc --plugin=protoc-gen-go="$gen" -I . \
	--go_out="$out" --go_opt=module=github.com/vitals-dev/vitals \
	"${files[@]}"

#!/usr/bin/env bash
# Fails when the committed generated code under proto/ differs from what the
# pinned generators make from the .proto files. CI: run proto/check.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$root/proto/generate.sh" "$tmp"

status=0
while IFS= read -r f; do
	rel="${f#"$tmp"/}"
	if ! diff -u "$root/$rel" "$f"; then
		echo "stale: $rel (run proto/generate.sh and commit the result)" >&2
		status=1
	fi
done < <(find "$tmp" -name '*.pb.go' | sort)

# A committed .pb.go without a .proto is stale too.
while IFS= read -r f; do
	rel="${f#"$root"/}"
	if ! [ -f "$tmp/$rel" ]; then
		echo "stale: $rel has no .proto" >&2
		status=1
	fi
done < <(find "$root/proto" -name '*.pb.go' | sort)
exit $status

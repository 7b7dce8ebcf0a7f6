#!/bin/sh
# Seeds the parse_bundle corpus from the golden vectors: the tiny bundle, and copies of it cut short at a few places so
# that the fuzzer starts from every section.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
vectors="$here/../tests/vectors"
corpus="$here/corpus/parse_bundle"
mkdir -p "$corpus"
for b in "$vectors"/*.bundle; do
    name=$(basename "$b" .bundle)
    cp "$b" "$corpus/$name"
    size=$(wc -c <"$b")
    for cut in 24 512 1024 2048 4096; do
        if [ "$cut" -lt "$size" ]; then
            head -c "$cut" "$b" >"$corpus/$name-cut-$cut"
        fi
    done
done
echo "seeded $(ls "$corpus" | wc -l) inputs into $corpus"

#!/bin/sh
# codec_current.sh - checks that the committed codec/methods.[ch] are exactly
# what codec/gen_codec.py generates from the spec today, so nobody has edited
# the generated files by hand or changed the generator without regenerating
# (`make -C codec regen`). TAP, one case.
#
# Run by `make check` with PYTHON3, WARREN_SRCDIR and AMQP_SPEC set; the
# defaults let it run by hand from a checkout.
srcdir=${WARREN_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
python=${PYTHON3:-python3}
spec=${AMQP_SPEC:-/usr/share/amqp/specs/0-9-1-rabbit/amqp0-9-1.stripped.extended.xml}

echo "1..1"
if [ ! -r "$spec" ]; then
    echo "ok 1 # SKIP spec $spec not found (Debian package amqp-specs)"
    exit 0
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

if ! "$python" "$srcdir/codec/gen_codec.py" --spec "$spec" --out-dir "$tmp" >"$tmp/gen.log" 2>&1; then
    echo "not ok 1 - gen_codec.py failed"
    sed 's/^/# /' "$tmp/gen.log"
    exit 1
fi

stale=
for f in methods.h methods.c; do
    if ! cmp -s "$srcdir/codec/$f" "$tmp/$f"; then
        stale="$stale $f"
        diff -u "$srcdir/codec/$f" "$tmp/$f" | head -40 | sed 's/^/# /'
    fi
done
if [ -z "$stale" ]; then
    echo "ok 1 - codec/methods.h and methods.c are what gen_codec.py generates"
else
    echo "not ok 1 - stale generated codec:$stale (run make -C codec regen)"
    exit 1
fi

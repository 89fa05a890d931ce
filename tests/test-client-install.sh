#!/bin/sh
# test-client-install.sh BUILD_DIR SOURCE_DIR: libdeja as an application
# sees it. Installs the build into a temporary tree (meson install
# --destdir), checks that the library, the headers, deja.pc and deja-cli
# are there, then builds a small C program using nothing but
# `pkg-config --cflags --libs deja` -- against the shared library, and
# statically -- and runs it against a real dejad from the build.
#
# A build with sanitizers installs an instrumented libdeja, so the program
# is compiled with the build's own compiler and -fsanitize flags.
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/deja-install-XXXXXX")
dejad_pid=

cleanup() {
    if [ -n "$dejad_pid" ]; then
        kill "$dejad_pid" 2>/dev/null || true
        wait "$dejad_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# ---- install ----------------------------------------------------------------
root=$tmp/root
meson install -C "$build" --no-rebuild --destdir "$root" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "meson install"; }

pc=$(find "$root" -name deja.pc | head -n 1)
[ -n "$pc" ] || fail "deja.pc was not installed"
export PKG_CONFIG_LIBDIR="${pc%/*}" # only the installed tree, never the system's
export PKG_CONFIG_SYSROOT_DIR="$root"
pkg-config --exists deja || fail "pkg-config does not find deja"
incdir=$(pkg-config --cflags-only-I deja | sed 's/^-I//; s/ *$//')
libdir=$(pkg-config --libs-only-L deja | sed 's/^-L//; s/ *$//')
for f in "$incdir/deja.h" "$incdir/deja-errors.h" "$libdir/libdeja.a" \
         "$libdir/libdeja.so" "$libdir/libdeja.so.0"; do
    [ -e "$f" ] || fail "$f was not installed"
done
cli=$(find "$root" -name deja-cli -type f | head -n 1)
[ -n "$cli" ] || fail "deja-cli was not installed"
echo "installed: $(cd "$root" && find . -type f | sort | tr '\n' ' ')"

# Only the public API may be exported by the shared library.
if command -v nm >/dev/null; then
    stray=$(nm -D --defined-only "$libdir/libdeja.so" | awk '{print $3}' |
            grep -v '^deja_' | grep -v '^_' | grep -v '^LIBDEJA' || true)
    [ -z "$stray" ] || fail "libdeja.so exports non-deja symbols: $stray"
fi

# ---- the build's compiler and sanitizer ---------------------------------------
eval "$(python3 - "$build" <<'PY'
import json, shlex, sys
info = sys.argv[1] + "/meson-info/"
cc = "cc"
for t in json.load(open(info + "intro-targets.json")):
    for s in t.get("target_sources", []):
        if s.get("language") == "c" and s.get("compiler"):
            cc = s["compiler"][0]
san = "none"
for o in json.load(open(info + "intro-buildoptions.json")):
    if o["name"] == "b_sanitize":
        san = o["value"]
print("build_cc=" + shlex.quote(cc))
print("build_sanitize=" + shlex.quote(san))
PY
)"
CC=${CC:-$build_cc}
extra=
if [ "$build_sanitize" != none ]; then
    extra="-fsanitize=$build_sanitize"
fi

# ---- an application -------------------------------------------------------------
cat >"$tmp/app.c" <<'EOF'
/* app.c: uses libdeja the way an application would, through deja.h only. */
#include <deja.h>
#include <stdio.h>
#include <string.h>

static int fetch(void *ctx, const char *prompt, deja_fetch *f) {
    (void)ctx;
    (void)prompt;
    return deja_fetch_answer(f, "fetched", 7, 0);
}

#define CHECK(e)                                                                 \
    do {                                                                         \
        int rc_ = (e);                                                           \
        if (rc_ != 0) {                                                          \
            fprintf(stderr, "%s: %s (%s)\n", #e, deja_strerror(rc_),             \
                    deja_pool_last_error());                                     \
            return 1;                                                            \
        }                                                                        \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    const char *ns = argv[2];
    deja_pool *p = NULL;
    CHECK(deja_pool_create(argv[1], NULL, &p));
    deja_pool_options slow = {.lookup_timeout_ms = 5000, .write_timeout_ms = 5000};
    deja_pool_destroy(p);
    CHECK(deja_pool_create(argv[1], &slow, &p));
    CHECK(deja_pool_ping(p));
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    deja_store_req req = {.ns = ns, .vector = v, .dim = 8, .response = "hello",
                          .response_len = 5};
    uint64_t id = 0;
    CHECK(deja_pool_store(p, &req, &id));
    deja_result *r = NULL;
    CHECK(deja_pool_lookup(p, ns, v, 8, 0.9f, 1, 0, &r));
    if (r->count != 1 || r->hits[0].id != id || strcmp(r->hits[0].response, "hello")) {
        fprintf(stderr, "lookup did not find the entry\n");
        return 1;
    }
    deja_result_free(r);
    float w[8] = {8, -7, 6, -5, 4, -3, 2, -1};
    CHECK(deja_get_or_fetch(p, ns, "q", w, 8, 0.9f, fetch, NULL, &r));
    if (!(r->flags & DEJA_RESULT_STORED)) return 1;
    deja_result_free(r);
    deja_lookup_req reqs[2] = {{.ns = ns, .vector = v, .dim = 8, .threshold = 0.9f},
                               {.ns = ns, .vector = w, .dim = 8, .threshold = 0.9f}};
    deja_result *out[2];
    CHECK(deja_pool_lookup_many(p, reqs, 2, out));
    if (out[0]->count != 1 || out[1]->count != 1) return 1;
    deja_results_free(out, 2);
    deja_pool_status st;
    CHECK(deja_pool_get_status(p, &st));
    deja_pool_destroy(p);

    deja_client *c = NULL;
    CHECK(deja_connect(argv[1], NULL, &c));
    printf("ok: %s, %llu calls, breaker %d\n", deja_server_name(c),
           (unsigned long long)st.calls, st.breaker);
    deja_close(c);
    return 0;
}
EOF

cflags="-std=c11 -Wall -Wextra -Wpedantic -Werror"
# shellcheck disable=SC2046,SC2086  # pkg-config output is meant to be split
$CC $cflags $extra "$tmp/app.c" -o "$tmp/app" $(pkg-config --cflags --libs deja) ||
    fail "app.c does not build with pkg-config deja"
# Static: the archive in place of -ldeja, plus what Libs.private lists.
# shellcheck disable=SC2046,SC2086
$CC $cflags $extra "$tmp/app.c" -o "$tmp/app-static" $(pkg-config --cflags deja) \
    "$libdir/libdeja.a" $(pkg-config --static --libs-only-other --libs-only-l deja |
                           sed 's/-ldeja//') ||
    fail "app.c does not link statically"
if command -v c++ >/dev/null && [ "$build_sanitize" = none ]; then
    printf '#include <deja.h>\nint main() { return deja_strerror(0)[0] != 111; }\n' \
        >"$tmp/app.cc"
    # shellcheck disable=SC2046
    c++ -Wall -Werror -fsyntax-only $(pkg-config --cflags deja) "$tmp/app.cc" ||
        fail "deja.h does not compile as C++"
fi

# ---- run it against a real dejad ----------------------------------------------------
mkdir "$tmp/data"
"$build/server/dejad" --host 127.0.0.1 --port 0 --port-file "$tmp/port" \
    --data "$tmp/data" --unix "$tmp/data/dejad.sock" --fsync batch \
    >"$tmp/dejad.log" 2>&1 &
dejad_pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
    i=$((i + 1))
    [ $i -lt 1000 ] || { cat "$tmp/dejad.log" >&2; fail "dejad did not start"; }
    sleep 0.01
done
url="deja://127.0.0.1:$(cat "$tmp/port")"

LD_LIBRARY_PATH="$libdir" ldd "$tmp/app" | grep -q "$libdir/libdeja.so.0" ||
    fail "app does not load the installed libdeja.so.0"
LD_LIBRARY_PATH="$libdir" "$tmp/app" "$url" shared || fail "app (shared) failed"
"$tmp/app-static" "unix://$tmp/data/dejad.sock" static || fail "app (static) failed"
"$cli" --url "$url" ping >/dev/null || fail "installed deja-cli cannot ping"
echo "PASS: built with pkg-config deja from $root and ran against dejad"

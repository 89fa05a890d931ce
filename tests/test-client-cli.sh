#!/bin/sh
# test-client-cli.sh BUILD_DIR SOURCE_DIR: deja-cli against a real dejad --
# every command, the three vector formats, --json output that parses, and
# the exit statuses scripts rely on (0 ok/hit, 1 miss, 2 usage, 3 server
# error, 4 connection error, 5 not supported: a fake older server).
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
cli=$build/client/deja-cli
tmp=$(mktemp -d "${TMPDIR:-/tmp}/deja-cli-XXXXXX")
dejad_pid=
failures=0

cleanup() {
    if [ -n "$dejad_pid" ]; then
        kill "$dejad_pid" 2>/dev/null || true
        wait "$dejad_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# expect STATUS CMD...: runs deja-cli, checks its exit status; its stdout
# is left in $tmp/out.
expect() {
    want=$1
    shift
    set +e
    "$cli" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    set -e
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: deja-cli $* -> exit $got, expected $want" >&2
        sed 's/^/  stdout: /' "$tmp/out" >&2
        sed 's/^/  stderr: /' "$tmp/err" >&2
        failures=$((failures + 1))
    fi
}

# json_is EXPR: evaluates a Python expression over the JSON in $tmp/out
# (bound to j); fails unless it parses and the expression is true.
json_is() {
    if ! python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$tmp/out" "$1" 2>"$tmp/json-err"; then
        echo "FAIL: JSON check \"$1\" on: $(cat "$tmp/out")" >&2
        cat "$tmp/json-err" >&2
        failures=$((failures + 1))
    fi
}

# ---- a server and some vectors --------------------------------------------------------
mkdir "$tmp/data"
"$build/server/dejad" --host 127.0.0.1 --port 0 --port-file "$tmp/port" \
    --data "$tmp/data" --unix "$tmp/data/dejad.sock" --fsync batch \
    >"$tmp/dejad.log" 2>&1 &
dejad_pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
    i=$((i + 1))
    [ $i -lt 1000 ] || { cat "$tmp/dejad.log" >&2; exit 1; }
    sleep 0.01
done
export DEJA_URL="deja://127.0.0.1:$(cat "$tmp/port")"

python3 - "$tmp" <<'PY'
import struct, sys
d = sys.argv[1]
rows = [[1, 2, 3, 4], [4, 3, 2, 1], [1, -1, 1, -1]]
with open(d + "/v.txt", "w") as f:
    f.write("# four vectors\n1 2 3 4\n[4, 3, 2, 1]\n\n1,-1,1,-1\n1 1 1 1\n")
with open(d + "/v.fvecs", "wb") as f:
    for r in rows:
        f.write(struct.pack("<i", 4) + struct.pack("<4f", *r))
hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }"
hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
with open(d + "/v.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    for r in rows:
        f.write(struct.pack("<4d", *r))
with open(d + "/answer.bin", "wb") as f:
    f.write(b"binary \xff\xfe answer with \"quotes\"\n")
PY

# ---- the commands --------------------------------------------------------------------
expect 0 ping
expect 0 ping --json
json_is 'j["ok"] and j["server"].startswith("dejad") and j["rtt_ms"] >= 0'
expect 0 --url "unix://$tmp/data/dejad.sock" ping

expect 0 store cli-ns --vec "$tmp/v.txt" --response "first answer" --prompt "q1" --json
json_is 'j["ok"] and j["id"] > 0'
id1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$tmp/out")
expect 0 store cli-ns --vec "$tmp/v.fvecs" --row 1 --response-file "$tmp/answer.bin" \
    --ttl 600 --input-tokens 5 --output-tokens 9 --cost 120
expect 3 store cli-ns --vec "$tmp/v.npy" --row 2 --response x --completion truncated --json
json_is 'not j["ok"] and j["error"] == "REJECTED" and j["code"] == -12'

# The same vector from each format finds the same entry.
expect 0 lookup cli-ns --vec "$tmp/v.txt" --json --with-prompt
json_is 'j["hit"] and j["count"] == 1 and j["hits"][0]["id"] == '"$id1"' and j["hits"][0]["prompt"] == "q1"'
expect 0 lookup cli-ns --vec "$tmp/v.fvecs"
expect 0 lookup cli-ns --vec "$tmp/v.npy" --row 0
echo "1 2 3 4" | "$cli" lookup cli-ns --vec - >/dev/null || { echo "FAIL: --vec -" >&2; failures=$((failures + 1)); }
# Bytes that are not UTF-8 still make valid JSON.
expect 0 lookup cli-ns --vec "$tmp/v.npy" --row 1 --json
json_is 'j["hits"][0]["response"] == "binary \ufffd\ufffd answer with \"quotes\"\n"'
# A miss: exit 1, with a JSON document all the same.
expect 1 lookup cli-ns --vec "$tmp/v.txt" --row 2 --threshold 0.99 --json
json_is 'j["ok"] and not j["hit"] and j["count"] == 0 and j["hits"] == []'
# Row 3 is about 0.91 similar to both entries (the server floors thresholds
# at its --min-threshold, 0.5 by default, so a lower one finds no more).
expect 0 lookup cli-ns --vec "$tmp/v.txt" --row 3 -k 5 --threshold 0.8 --json
json_is 'j["count"] == 2'

expect 0 info --json
json_is 'j["ok"] and j["namespace"] is None and "connections" in j["stats"]'
expect 0 stats cli-ns --json
json_is 'j["namespace"] == "cli-ns" and j["stats"]["entries"] == 2'
expect 0 ns info cli-ns --json
json_is 'j["config"]["dim"] == 4 and j["stats"]["entries"] == 2'
expect 3 ns info no-such-ns --json
json_is 'j["error"] == "NOT_FOUND"'
expect 0 ns create cli-conf --dim 8 --index flat --min-threshold 0.7 --default-ttl 60 \
    --max-entries 100 --no-dedup --json
json_is 'j == {"ok": True}'
expect 0 ns create cli-conf --dim 8 --index flat --min-threshold 0.7 --default-ttl 60 \
    --max-entries 100 --no-dedup
expect 3 ns create cli-conf --dim 16 --json
json_is 'j["error"] == "EXISTS"'
expect 0 ns info cli-conf --json
json_is 'j["config"]["index"] == "flat" and j["config"]["dim"] == 8 and abs(j["config"]["min_threshold"] - 0.7) < 1e-6 and j["config"]["no_dedup"] and j["config"]["max_entries"] == 100'
expect 0 ns list --json
json_is 'sorted(j["namespaces"]) == ["cli-conf", "cli-ns"]'
expect 0 ns drop cli-conf --json
json_is 'j["removed"] == 0'
expect 3 ns drop cli-conf
expect 2 ns create x
expect 2 ns create x --dim 0
expect 2 ns list --dim 4
expect 2 ns info
expect 2 ns rename a

expect 0 delete cli-ns "$id1" --json
json_is 'j == {"ok": True}'
expect 3 delete cli-ns "$id1"
expect 0 flush cli-ns --json
json_is 'j["removed"] == 1'

# ---- errors a script must tell apart ---------------------------------------------------------
# FLUSH keeps the namespace's dimension: another one is a server error.
printf '1 2\n' >"$tmp/short.txt"
expect 3 lookup cli-ns --vec "$tmp/short.txt" --json
json_is 'j["error"] == "DIM_MISMATCH" and j["code"] == -10'
expect 1 lookup cli-ns --vec "$tmp/v.txt"
expect 2
expect 2 bogus
expect 2 lookup cli-ns
expect 2 lookup cli-ns --vec "$tmp/no-such-file"
expect 2 lookup cli-ns --vec "$tmp/v.txt" --row 9
expect 2 lookup cli-ns --vec "$tmp/v.txt" --response x
expect 2 lookup "bad ns" --vec "$tmp/v.txt"
expect 2 delete cli-ns not-a-number
expect 2 store cli-ns --vec "$tmp/v.txt"
expect 2 --timeout 0 ping
expect 2 lookup cli-ns --vec "$tmp/v.txt" -k 0
expect 2 lookup cli-ns --vec "$tmp/v.txt" --threshold 1.5
expect 0 help
expect 0 help store
expect 0 store --help
expect 0 --help
grep -q "exit status" "$tmp/out" || { echo "FAIL: --help lacks exit statuses" >&2; failures=$((failures + 1)); }
expect 4 --url deja://127.0.0.1:1 ping --json
json_is 'j["error"] == "CONNECT" and "refused" in j["message"]'
expect 4 --url "unix://$tmp/no-such.sock" info

# A server from before an op: a fake that answers HELLO and then
# UNKNOWN_OP (status 5) to everything. deja-cli says so with exit 5.
python3 - "$tmp/fake-port" <<'PY' &
import socket, struct, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(4)
open(sys.argv[1], "w").write(str(srv.getsockname()[1]))
srv.settimeout(30)
def frame(op, status, rid, body):
    return b"DJ\x01" + struct.pack("<BHHII", op, 0x8000, status, rid, len(body)) + body
for _ in range(2):
    try:
        conn, _ = srv.accept()
    except OSError:
        break
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            break
        buf += data
        while len(buf) >= 16:
            op, _, _, rid, n = struct.unpack("<BHHII", buf[3:16])
            if len(buf) < 16 + n:
                break
            buf = buf[16 + n:]
            if op == 0x01:
                name = b"old-server"
                body = struct.pack("<HHIIH", 1, 4096, 1 << 20, 0, len(name)) + name
                conn.sendall(frame(op, 0, rid, body))
            else:
                msg = b"unknown opcode"
                conn.sendall(frame(op, 5, rid, struct.pack("<H", len(msg)) + msg))
    conn.close()
PY
fake_pid=$!
i=0
while [ ! -s "$tmp/fake-port" ] && [ $i -lt 500 ]; do
    i=$((i + 1))
    sleep 0.01
done
expect 5 --url "deja://127.0.0.1:$(cat "$tmp/fake-port")" ns list --json
json_is 'j["error"] == "UNKNOWN_OP" and "not supported" in j["message"]'
expect 5 --url "deja://127.0.0.1:$(cat "$tmp/fake-port")" ns drop cli-ns
kill "$fake_pid" 2>/dev/null || true
wait "$fake_pid" 2>/dev/null || true

if [ "$failures" -ne 0 ]; then
    echo "$failures checks failed" >&2
    exit 1
fi
echo "PASS: deja-cli"

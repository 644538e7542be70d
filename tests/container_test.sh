#!/bin/sh
# Builds the example image (examples/docker/Dockerfile) with podman from a
# base image made here (no registry needed), runs it, and checks what a user
# gets: /-/healthy, uWSGI and Django metrics on :9117 counting requests sent
# to :8000, the HEALTHCHECK, a non-root user, no compiler in the final image.
# Prints the image size and build time.
#
#   sudo tests/container_test.sh        (needs podman, runc, mmdebstrap; about 5 minutes)
#
# Rootful podman on this kind of host needs runc and lower default ulimits,
# hence the containers.conf below.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
work=${CONTAINER_TEST_DIR:-/tmp/uwsgi-prometheus-container}
mkdir -p "$work"
export CONTAINERS_CONF="$work/containers.conf"
cat > "$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
for tool in podman runc mmdebstrap curl; do
  command -v "$tool" >/dev/null || { echo "container_test: $tool is missing (apt-get install $tool)"; exit 2; }
done

if ! podman image exists debian:bookworm-slim; then
  [ -f "$work/bookworm.tar" ] || mmdebstrap --variant=minbase bookworm "$work/bookworm.tar"
  podman import "$work/bookworm.tar" debian:bookworm-slim
fi

start=$(date +%s)
podman build --format docker --network=host -f "$root/examples/docker/Dockerfile" -t uwsgi-prometheus-demo "$root"
built=$(date +%s)

name=uwsgi-prometheus-demo-test
podman rm -f "$name" >/dev/null 2>&1 || true
trap 'podman rm -f "$name" >/dev/null 2>&1 || true' EXIT
podman run -d --name "$name" --network=host uwsgi-prometheus-demo >/dev/null

fail() { echo "container_test: FAIL: $*"; podman logs "$name" | tail -20; exit 1; }
i=0
until curl -fsS http://127.0.0.1:9117/-/healthy >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "/-/healthy never answered"; sleep 0.2
done
for n in 1 2 3 4 5 6 7; do curl -fsS -o /dev/null "http://127.0.0.1:8000/items/$n" || fail "app request"; done
metrics=$(curl -fsS http://127.0.0.1:9117/metrics)
echo "$metrics" | grep -q '^uwsgi_workers{stats_uri=""} 4$' || fail "uwsgi_workers"
echo "$metrics" | grep -q 'django_http_requests_total_by_view_transport_method_total{method="GET",transport="http",view="item"} 7' \
  || fail "Django metrics not merged"
echo "$metrics" | grep -q '^uwsgi_request_duration_seconds_count 7$' || fail "request histogram"
podman healthcheck run "$name" || fail "HEALTHCHECK"
[ "$(podman exec "$name" id -u)" = 10001 ] || fail "not running as uid 10001"
if podman exec "$name" sh -c 'command -v gcc || command -v cc || command -v c++ || command -v cmake'; then
  fail "a compiler is left in the final image"
fi
size=$(podman image inspect uwsgi-prometheus-demo --format '{{.Size}}')
echo "container_test: OK; image $((size / 1048576)) MiB, built in $((built - start)) s"

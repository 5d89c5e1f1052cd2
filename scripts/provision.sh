#!/usr/bin/env bash
# Provision what the publish step and its tests need on a Debian 12 machine (run as root):
#   the Docker engine (dockerd), the base image oncology-base:bookworm, and an authenticated
#   local registry on 127.0.0.1:5000 that accepts moto's ECR token (user AWS).
# Idempotent: when everything is already there it only checks and prints one line per service.
# Stop what it started with scripts/services-down.sh.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES_DIR="${REPO_DIR}/.work/services"
CACHE_DIR="${ONCOLOGY_CACHE_DIR:-${HOME}/.cache/oncology-mlops}"
BASE_IMAGE="${ONCOLOGY_BASE_IMAGE:-oncology-base:bookworm}"
BASE_TARBALL="${CACHE_DIR}/base-bookworm.tar"
REGISTRY_ADDR="127.0.0.1:5000"
REGISTRY_DIR="${SERVICES_DIR}/registry"
# What moto's ECR get_authorization_token decodes to for the default account 123456789012.
REGISTRY_USER="AWS"
REGISTRY_PASSWORD="123456789012-auth-token"
DOCKERD_TIMEOUT="${DOCKERD_TIMEOUT:-60}"
REGISTRY_TIMEOUT="${REGISTRY_TIMEOUT:-30}"

log() { echo "provision: $*" >&2; }
die() { echo "provision: ERROR: $*" >&2; exit 1; }

mkdir -p "${SERVICES_DIR}" "${CACHE_DIR}"

# --- packages ---------------------------------------------------------------------------------
install_packages() {
    local missing=()
    for bin in dockerd docker docker-registry htpasswd debootstrap curl; do
        command -v "${bin}" >/dev/null 2>&1 || missing+=("${bin}")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "packages: present"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]} and not root: run \`sudo make provision\` (Debian 12), then this command again"
    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${missing[*]} and no apt-get (not Debian): install Docker, the Docker registry (distribution), htpasswd and debootstrap, then run this command again"
    log "installing packages (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        docker.io docker-registry apache2-utils debootstrap curl ca-certificates; } >"${SERVICES_DIR}/apt.log" 2>&1 \
        || { tail -n 20 "${SERVICES_DIR}/apt.log" >&2; die "apt-get failed; see ${SERVICES_DIR}/apt.log"; }
    echo "packages: installed (docker.io docker-registry apache2-utils debootstrap)"
}

# --- dockerd ----------------------------------------------------------------------------------
start_dockerd() {
    if docker info >/dev/null 2>&1; then
        echo "dockerd: running ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "docker does not answer and starting dockerd needs root"
    log "starting dockerd (log: ${SERVICES_DIR}/dockerd.log)"
    setsid dockerd >"${SERVICES_DIR}/dockerd.log" 2>&1 </dev/null &
    echo $! >"${SERVICES_DIR}/dockerd.pid"
    local deadline=$((SECONDS + DOCKERD_TIMEOUT))
    until docker info >/dev/null 2>&1; do
        if ! kill -0 "$(cat "${SERVICES_DIR}/dockerd.pid")" 2>/dev/null; then
            tail -n 20 "${SERVICES_DIR}/dockerd.log" >&2 || true
            die "dockerd exited during start-up; see ${SERVICES_DIR}/dockerd.log"
        fi
        if [ "${SECONDS}" -ge "${deadline}" ]; then
            tail -n 20 "${SERVICES_DIR}/dockerd.log" >&2 || true
            die "dockerd did not answer 'docker info' within ${DOCKERD_TIMEOUT}s; see ${SERVICES_DIR}/dockerd.log"
        fi
        sleep 1
    done
    echo "dockerd: started (pid $(cat "${SERVICES_DIR}/dockerd.pid"), $(docker version --format '{{.Server.Version}}'))"
}

# --- base image -------------------------------------------------------------------------------
debian_mirror() {
    # The mirror apt uses on this machine (deb822 or one-line sources), else Debian's default.
    local uri
    uri="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list 2>/dev/null |
        grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n 1 | tr -d ' ')" || true
    echo "${DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

ROOTFS_TMP=""
remove_rootfs() {
    # debootstrap mounts proc/sys (and may bind /dev) in the target: unmount, and never cross mounts.
    awk -v root="$1" 'index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$1"
}
cleanup() {
    if [ -n "${ROOTFS_TMP}" ]; then
        remove_rootfs "${ROOTFS_TMP}"
        rm -f "${BASE_TARBALL}.partial"
    fi
}
trap cleanup EXIT

build_base_tarball() {
    local mirror rootfs
    mirror="$(debian_mirror)"
    ROOTFS_TMP="$(mktemp -d "${CACHE_DIR}/rootfs.XXXXXX")"
    rootfs="${ROOTFS_TMP}"
    log "debootstrap bookworm from ${mirror} (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "${rootfs}" "${mirror}" >"${SERVICES_DIR}/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see ${SERVICES_DIR}/debootstrap.log"
    # apt caches and lists are about 95 MB and useless in an image that never runs apt.
    # Docs, man pages and translations go too (copyright files stay), as in Debian's slim images.
    rm -rf "${rootfs:?}"/var/cache/apt/* "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/log/*.log \
        "${rootfs:?}"/var/cache/debconf/*-old "${rootfs:?}"/usr/share/man/* "${rootfs:?}"/usr/share/info/* \
        "${rootfs:?}"/usr/share/locale/*
    find "${rootfs}/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "${rootfs}/usr/share/doc" -mindepth 1 -type d -empty -delete
    tar --numeric-owner -C "${rootfs}" -cf "${BASE_TARBALL}.partial" .
    mv "${BASE_TARBALL}.partial" "${BASE_TARBALL}"
    remove_rootfs "${ROOTFS_TMP}"
    ROOTFS_TMP=""
}

ensure_base_image() {
    if docker image inspect "${BASE_IMAGE}" >/dev/null 2>&1; then
        echo "base image: ${BASE_IMAGE} present"
        return
    fi
    local how="imported from cache"
    if [ ! -s "${BASE_TARBALL}" ]; then
        build_base_tarball
        how="built with debootstrap"
    fi
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "${BASE_IMAGE}" <"${BASE_TARBALL}" >/dev/null
    echo "base image: ${BASE_IMAGE} ${how} ($(docker image inspect -f '{{.Size}}' "${BASE_IMAGE}") bytes)"
}

# --- registry ---------------------------------------------------------------------------------
registry_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://${REGISTRY_ADDR}/v2/" || true
}

start_registry() {
    local status
    status="$(registry_status)"
    if [ "${status}" = "401" ]; then
        # A registry started from a checkout that was removed since serves a deleted store: every push gets a 400.
        local pid config
        pid="$(pgrep -f '^docker-registry serve ' | head -n 1 || true)"
        config="$( { tr '\0' '\n' <"/proc/${pid}/cmdline" | sed -n 3p; } 2>/dev/null || true)"
        if [ -z "${pid}" ] || [ -f "${config}" ]; then
            echo "registry: running on ${REGISTRY_ADDR} (htpasswd auth)"
            return
        fi
        log "registry: the running one (pid ${pid}) serves ${config}, which is gone: starting it anew from here"
        kill "${pid}"
        local deadline=$((SECONDS + REGISTRY_TIMEOUT))
        until [ "$(registry_status)" = "000" ]; do
            [ "${SECONDS}" -lt "${deadline}" ] || die "the old registry (pid ${pid}) did not stop within ${REGISTRY_TIMEOUT}s"
            sleep 0.5
        done
        status=000
    fi
    [ "${status}" = "000" ] || die "something else listens on ${REGISTRY_ADDR} (GET /v2/ gave ${status}, expected 401)"
    mkdir -p "${REGISTRY_DIR}/data"
    if ! htpasswd -vb "${REGISTRY_DIR}/htpasswd" "${REGISTRY_USER}" "${REGISTRY_PASSWORD}" >/dev/null 2>&1; then
        htpasswd -Bbn "${REGISTRY_USER}" "${REGISTRY_PASSWORD}" >"${REGISTRY_DIR}/htpasswd"
    fi
    cat >"${REGISTRY_DIR}/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: ${REGISTRY_DIR}/data
  delete:
    enabled: true
http:
  addr: ${REGISTRY_ADDR}
  secret: oncology-local-registry
auth:
  htpasswd:
    realm: oncology-local-registry
    path: ${REGISTRY_DIR}/htpasswd
EOF
    # Reclaim blobs of deleted manifests (tests delete what they push); only safe while it is stopped,
    # and only once something was stored (on an empty store it fails: no repositories yet).
    if [ -d "${REGISTRY_DIR}/data/docker/registry/v2/repositories" ]; then
        docker-registry garbage-collect --delete-untagged "${REGISTRY_DIR}/config.yml" \
            >"${SERVICES_DIR}/registry-gc.log" 2>&1 || log "registry garbage-collect failed (see registry-gc.log); continuing"
    fi
    log "starting docker-registry (log: ${SERVICES_DIR}/registry.log)"
    setsid docker-registry serve "${REGISTRY_DIR}/config.yml" >"${SERVICES_DIR}/registry.log" 2>&1 </dev/null &
    echo $! >"${SERVICES_DIR}/registry.pid"
    local deadline=$((SECONDS + REGISTRY_TIMEOUT))
    until [ "$(registry_status)" = "401" ]; do
        if ! kill -0 "$(cat "${SERVICES_DIR}/registry.pid")" 2>/dev/null; then
            tail -n 20 "${SERVICES_DIR}/registry.log" >&2 || true
            die "docker-registry exited during start-up; see ${SERVICES_DIR}/registry.log"
        fi
        [ "${SECONDS}" -lt "${deadline}" ] ||
            die "registry on ${REGISTRY_ADDR} did not answer 401 within ${REGISTRY_TIMEOUT}s; see ${SERVICES_DIR}/registry.log"
        sleep 0.5
    done
    echo "registry: started on ${REGISTRY_ADDR} (pid $(cat "${SERVICES_DIR}/registry.pid"), htpasswd auth)"
}

install_packages
start_dockerd
ensure_base_image
start_registry

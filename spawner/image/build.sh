#!/usr/bin/env bash
# Build the single-user image gpuhub/singleuser:latest without any image registry (`make image`).
#
#   1. wheel of this repo (built from a clean copy of the git-tracked + untracked-not-ignored files
#      in $CACHE/src, so stale build/ files never leak in and the working tree is not written to)
#   2. pins: the exact versions of gpuhub's dependency closure (+ jupyterhub, jupyterlab,
#      jupyter-server, pip), read offline from the host venv, so the image matches the host
#   3. skip everything when an image carrying the same inputs hash (label org.gpuhub.inputs:
#      this script + the pins + the wheel's file hashes + the Debian settings) already exists
#   4. wheelhouse: those pins as binary wheels for CPython 3.11 / manylinux x86_64, downloaded
#      on the host (pip's HTTP cache) into a persistent cache dir
#   5. debootstrap --variant=minbase bookworm + python3, tini, ca-certificates (debs cached, and
#      the resulting bare rootfs too, for a week)
#   6. in the chroot: python3 -m venv --without-pip /opt/gpuhub, then install the wheelhouse
#      offline (pip run from its own wheel), strip docs/caches
#      and VS Code: a copy of the code-server that `make install` built on the host
#      (spawner/codeserver.py; its own node, native modules built against bookworm's glibc) in
#      /opt/gpuhub/code-server, linked as /opt/gpuhub/bin/code-server (gpuhub/apps.py finds it there)
#   7. one `docker import` of the finished rootfs with ENV/USER/WORKDIR/ENTRYPOINT/CMD/LABEL
#
# Everything is built in the chroot before the import (not `docker run` + `docker commit`):
# the engine here uses the vfs storage driver, where every layer is a full copy of the
# filesystem, so a single imported layer is the smallest and fastest image; the chroot also
# needs no container networking, and pip there installs offline from the host's wheelhouse.
#
# Environment: GPUHUB_IMAGE (default gpuhub/singleuser:latest), GPUHUB_IMAGE_CACHE (default
# /var/cache/gpuhub-image: debs/, wheels/ and the bare rootfs as a tarball; all safe to delete), GPUHUB_IMAGE_FORCE=1 (rebuild even if up to date),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), VENV (default <repo>/.venv).
# Needs root (debootstrap, chroot) and a Docker engine (started with .ci/dockerd if none answers).
set -euo pipefail
umask 022

T_START=$SECONDS
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SELF="$REPO/spawner/image/build.sh"
IMAGE=${GPUHUB_IMAGE:-gpuhub/singleuser:latest}
CACHE=${GPUHUB_IMAGE_CACHE:-/var/cache/gpuhub-image}
VENV=${VENV:-$REPO/.venv}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBS=python3,tini,ca-certificates      # on top of debootstrap's minbase
PREFIX=/opt/gpuhub                      # the image's venv; world-readable, on PATH
IMG_PATH=$PREFIX/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PYVER=3.11                              # bookworm's python3; the wheelhouse targets it
LABEL=org.gpuhub.inputs

log() { printf '[build.sh %4ds] %s\n' "$((SECONDS - T_START))" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }
step() { T_STEP=$SECONDS; log "$*"; }
done_step() { log "  ... done in $((SECONDS - T_STEP)) s"; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
[ -x "$VENV/bin/python" ] || die "no venv at $VENV: run 'make install' first"
# the pins are read from the host venv, so its interpreter must be the image's (bookworm's 3.11)
hostpy=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$hostpy" = "$PYVER" ] || die "$VENV runs Python $hostpy; the image has Debian $SUITE's Python $PYVER: make the venv with it"

WORK=$(mktemp -d /var/tmp/gpuhub-image.XXXXXX)
ROOT=$WORK/rootfs
cleanup() {
    local m
    # debootstrap unmounts what it mounted, but not if it was interrupted
    for m in $(awk -v r="$ROOT" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m" || true; done
    rm -rf "$WORK" "${SRC:-}"
}
trap cleanup EXIT

"$REPO/.ci/dockerd" start
mkdir -p "$CACHE/wheels" "$CACHE/debs"
exec 8>"$CACHE/.lock"   # one build at a time (they share the cache and the fixed source dir)
flock -w 1800 8 || die "another build holds $CACHE/.lock"

# -- 1. the gpuhub wheel --------------------------------------------------------------------------
# Built in a fixed directory: the native extension's object files record their source path, so
# a random one would make every wheel, and so the inputs hash, differ.
step "building the gpuhub wheel"
SRC=$CACHE/src
rm -rf "$SRC" && mkdir -p "$SRC" "$WORK/wheel"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$REPO" ls-files -z --cached --others --exclude-standard \
        | tar -C "$REPO" --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$SRC" -xf -
else
    tar -C "$REPO" --exclude=./.venv --exclude=./build --exclude='*.egg-info' -cf - . | tar -C "$SRC" -xf -
fi
# the prebuilt JupyterLab panel (gitignored; `make labextension` builds it): setup.py puts it
# into the wheel's data files, so the image's servers load it
if [ -f "$REPO/labextension/build/gpuhub-labextension/package.json" ]; then
    rm -rf "$SRC/labextension/build" && mkdir -p "$SRC/labextension/build"
    cp -a "$REPO/labextension/build/gpuhub-labextension" "$SRC/labextension/build/"
fi
"$VENV/bin/pip" wheel --no-deps --disable-pip-version-check -w "$WORK/wheel" "$SRC" >"$WORK/wheel.log" 2>&1 \
    || { tail -n 30 "$WORK/wheel.log" >&2; die "building the wheel failed"; }
WHEEL=$(ls "$WORK"/wheel/gpuhub-*.whl)
log "  $(basename "$WHEEL")"
done_step

# -- 2. pins: gpuhub's dependency closure as installed in the host venv -----------------------------
step "pinning the dependency closure from $VENV"
# the closure of the wheel's requirements and the server's own, as installed in the host venv
# (the same function that pins the servers' environment for local processes)
"$VENV/bin/python" "$REPO/spawner/serverenv.py" pins --wheel "$WHEEL" \
    "jupyterhub==6.1.1" "jupyterlab>=4,<5" "jupyter-server" "pip" >"$WORK/pins.txt" \
    || die "cannot pin the image's packages from $VENV (see above)"
grep -qx 'jupyterhub==6.1.1' "$WORK/pins.txt" || die "the host venv must have jupyterhub==6.1.1"
log "  $(wc -l <"$WORK/pins.txt") packages: $(grep -i -E '^(jupyterhub|jupyterlab|jupyter.server)==' "$WORK/pins.txt" | tr '\n' ' ')"
done_step

# VS Code in the sessions: code-server as `make install` built it on the host (none: no VS Code)
CODE_SERVER_DIR=$(dirname "$(dirname "$("$VENV/bin/python" "$REPO/spawner/codeserver.py" --root "${GPUHUB_SERVER_ENVS:-/opt/gpuhub/server-envs}" path)")")
if [ -f "$CODE_SERVER_DIR/gpuhub-code-server.json" ]; then
    log "  code-server: $CODE_SERVER_DIR"
else
    log "  no code-server in $CODE_SERVER_DIR ('make install' builds it): the image has no VS Code"
    CODE_SERVER_DIR=
fi

# -- 3. skip when an image with the same inputs exists ---------------------------------------------
# The wheel's RECORD lists a sha256 of every file in it (minus WHEEL, which names the setuptools
# version that built it, and RECORD itself), so the key does not depend on zip timestamps.
wheel_files=$("$VENV/bin/python" -c '
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
lines = z.read(record).decode().splitlines()
print("\n".join(sorted(l for l in lines if not l.split(",")[0].endswith((".dist-info/WHEEL", ".dist-info/RECORD")))))
' "$WHEEL")
INPUTS=$({ cat "$SELF"; echo "--"; cat "$WORK/pins.txt"; echo "--"; echo "$wheel_files"; echo "--";
           echo "$SUITE $MIRROR $DEBS $PREFIX";
           [ -z "$CODE_SERVER_DIR" ] || cat "$CODE_SERVER_DIR/gpuhub-code-server.json"; } | sha256sum | cut -c1-16)
have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$INPUTS" ] && [ "${GPUHUB_IMAGE_FORCE:-0}" != 1 ]; then
    log "$IMAGE is up to date (inputs $INPUTS): nothing to build ($(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec) image)"
    log "total $((SECONDS - T_START)) s"
    exit 0
fi
log "building $IMAGE for inputs $INPUTS (image has: ${have:-none})"

# -- 4. wheelhouse --------------------------------------------------------------------------------
step "fetching wheels into $CACHE/wheels"
# Binary wheels for CPython 3.11 on glibc <= 2.36 (bookworm), this machine's arch: nothing is
# compiled, and nothing built against a newer host glibc sneaks in. Offline first; the index
# only for what is missing.
ARCH=$(uname -m)
PLATFORMS=(); for g in $(seq 36 -1 17); do PLATFORMS+=(--platform "manylinux_2_${g}_$ARCH"); done
PLATFORMS+=(--platform "manylinux2014_$ARCH" --platform "manylinux2010_$ARCH" --platform "manylinux1_$ARCH")
PIPDL=("$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all:
       --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" "${PLATFORMS[@]}"
       -d "$CACHE/wheels" -r "$WORK/pins.txt")
"${PIPDL[@]}" --no-index --find-links "$CACHE/wheels" 2>/dev/null || "${PIPDL[@]}" --find-links "$CACHE/wheels"
done_step

# -- 5. the Debian root filesystem -------------------------------------------------------------------
command -v debootstrap >/dev/null || {
    step "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    done_step
}
# The bare rootfs is kept as a tarball (a week at most, for security updates), so that rebuilding
# for new gpuhub code or pins on the same machine skips debootstrap (its dpkg runs dominate).
BASE_TAR=$CACHE/rootfs-$SUITE-$(echo "$SUITE $MIRROR $DEBS $(dpkg-query -W -f='${Version}' debootstrap)" | sha256sum | cut -c1-12).tar
if [ -n "$(find "$BASE_TAR" -mtime -7 2>/dev/null)" ]; then
    step "unpacking the cached $SUITE rootfs $BASE_TAR"
    mkdir -p "$ROOT" && tar -C "$ROOT" --numeric-owner -xpf "$BASE_TAR"
else
    step "debootstrap --variant=minbase $SUITE (+ $DEBS) from $MIRROR"
    debootstrap --variant=minbase --include="$DEBS" --cache-dir="$CACHE/debs" "$SUITE" "$ROOT" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -f "$CACHE"/rootfs-*.tar
    tar -C "$ROOT" --numeric-owner --exclude='./proc/*' --exclude='./sys/*' --exclude='./var/lib/apt/lists/*' \
        --exclude='./var/cache/apt/archives/*.deb' -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
fi
done_step

# -- 6. the venv, installed offline in the chroot ---------------------------------------------------
step "installing $(wc -l <"$WORK/pins.txt") packages + gpuhub into $PREFIX (in the chroot, offline)"
mkdir -p "$ROOT/tmp/wheels"
cp "$WHEEL" "$WORK/pins.txt" "$ROOT/tmp/wheels/"
# hard links (same filesystem), else copies; the exact pins pick the right files
cp -al "$CACHE/wheels/." "$ROOT/tmp/wheels/" 2>/dev/null || cp -a "$CACHE/wheels/." "$ROOT/tmp/wheels/"
PIPWHL=$(basename "$(ls "$ROOT"/tmp/wheels/pip-"$(sed -n 's/^pip==//p' "$WORK/pins.txt")"-*.whl)")
chroot "$ROOT" /usr/bin/python3 -m venv --without-pip "$PREFIX"
chroot "$ROOT" env -i PATH="$IMG_PATH" HOME=/root LANG=C.UTF-8 \
    "$PREFIX/bin/python" "/tmp/wheels/$PIPWHL/pip" install -q --no-index --no-cache-dir \
    --disable-pip-version-check --root-user-action=ignore --find-links /tmp/wheels \
    -r /tmp/wheels/pins.txt "/tmp/wheels/$(basename "$WHEEL")"
# gpuhub.jobrun: a batch job's runner (spawner/jobs.py runs `python3 -m gpuhub.jobrun` from the PATH)
chroot "$ROOT" "$PREFIX/bin/python" -c 'import jupyterhub, jupyterlab, spawner, gpuhub.jobrun; print("  in the chroot: jupyterhub", jupyterhub.__version__, "jupyterlab", jupyterlab.__version__)'
[ -x "$ROOT$PREFIX/bin/jupyterhub-singleuser" ] || die "jupyterhub-singleuser is missing from $PREFIX/bin"
if [ -n "$CODE_SERVER_DIR" ]; then
    cp -a "$CODE_SERVER_DIR" "$ROOT$PREFIX/code-server"
    # its launcher names the host's paths: the image's instead
    printf '#!/bin/sh\nexec %s/code-server/bin/node %s/code-server/node_modules/code-server/out/node/entry.js "$@"\n' \
        "$PREFIX" "$PREFIX" >"$ROOT$PREFIX/code-server/bin/code-server"
    ln -sfn ../code-server/bin/code-server "$ROOT$PREFIX/bin/code-server"
    chroot "$ROOT" env HOME=/tmp "$PREFIX/bin/code-server" --version | tail -1 | sed 's/^/  in the chroot: code-server /'
fi
# an arbitrary uid gets a writable home; docs, caches and the apt lists are dropped
install -d -m 1777 "$ROOT/home/jovyan"
rm -rf "$ROOT"/tmp/* "$ROOT"/root/.cache "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
       "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
       "$ROOT"/var/log/*.log "$ROOT"/var/cache/debconf/*-old
find "$ROOT/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name 'locale.alias' -exec rm -rf {} +
chmod -R a+rX "$ROOT$PREFIX"
done_step

# -- 7. import ------------------------------------------------------------------------------------
step "docker import -> $IMAGE ($(du -sh --exclude=./proc "$ROOT" | cut -f1) rootfs)"
old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
tar -C "$ROOT" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
  | docker import \
      --change "ENV PATH=$IMG_PATH" \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV HOME=/home/jovyan' \
      --change 'ENV SHELL=/bin/bash' \
      --change 'WORKDIR /home/jovyan' \
      --change 'USER 1000:100' \
      --change 'ENTRYPOINT ["/usr/bin/tini", "-g", "--"]' \
      --change 'CMD ["jupyterhub-singleuser"]' \
      --change "LABEL $LABEL=$INPUTS" \
      --change "LABEL org.opencontainers.image.title=gpuhub-singleuser" \
      --message "gpuhub single-user image, inputs $INPUTS" \
      - "$IMAGE" >/dev/null
new=$(docker image inspect -f '{{.Id}}' "$IMAGE")
# with vfs every image is a full copy: drop the one this build replaced, unless something uses it
if [ -n "$old" ] && [ "$old" != "$new" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
done_step

log "built $IMAGE (inputs $INPUTS, $(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec)) in $((SECONDS - T_START)) s"

#!/bin/sh
# Builds the ResNet Explorer image on a Linux machine that reaches Debian's mirrors and PyPI but neither Docker Hub
# (no python:3.11-slim base) nor PyTorch's wheel index: the base is a Debian bookworm root made with debootstrap
# (Python 3.11 from Debian, in a venv at /opt/venv) imported as an image, and every wheel is downloaded here first
# and served to the build from a local index, so the build itself reaches nothing outside this machine.
#
#   sudo docker/build-offline.sh                    builds resnet-explorer:offline
#   sudo TAG=resnet-explorer:cpu TORCH_REQUIREMENTS="torch==2.14.1+cpu torchvision==0.29.1+cpu" docker/build-offline.sh
#
# Settings (environment):
#   TAG                  resnet-explorer:offline      the image built
#   BASE_IMAGE           local/python:3.11            the imported Debian root; made only if it does not exist
#   TORCH_REQUIREMENTS   torch==2.14.1 torchvision==0.29.1
#                        PyPI's builds: on Linux x86-64 PyPI has only the CUDA build of torch 2.14.1, which pulls
#                        about 2.5 GB of nvidia-* runtime wheels. The CPU builds (+cpu) come only from PyTorch's index;
#                        name them here where pip can reach them (through its own configuration).
#   WORK                 /tmp/explorer-offline        the Debian root, the wheels and their index (not the repository)
#   PORT                 8765                         the local index's port (127.0.0.1, for the build only)
#   PYTHON               python3                      the pip that downloads the wheels
#   DEBIAN_MIRROR        http://deb.debian.org/debian
#
# Needs root (debootstrap, chroot, docker), debootstrap, a running Docker engine, and a pip.
set -eu

TAG="${TAG:-resnet-explorer:offline}"
BASE_IMAGE="${BASE_IMAGE:-local/python:3.11}"
TORCH_REQUIREMENTS="${TORCH_REQUIREMENTS:-torch==2.14.1 torchvision==0.29.1}"
WORK="${WORK:-/tmp/explorer-offline}"
PORT="${PORT:-8765}"
PYTHON="${PYTHON:-python3}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

cd "$(dirname "$0")/.."
mkdir -p "$WORK"

# 1. The base: what python:3.11-slim gives the Dockerfile (python and pip on PATH, useradd, grep, CA certificates),
#    from Debian bookworm, whose python3 is 3.11 (trixie's is 3.13).
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  root="$WORK/rootfs"
  rm -rf "$root"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$DEBIAN_MIRROR"
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" > "$root/etc/apt/sources.list"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  chroot "$root" /bin/sh -c 'export DEBIAN_FRONTEND=noninteractive && apt-get update -q \
    && apt-get install -y -q --no-install-recommends python3 python3-venv && apt-get upgrade -y -q \
    && apt-get clean && python3 -m venv /opt/venv'
  rm -rf "$root/etc/resolv.conf" "$root/var/lib/apt/lists/"* "$root/usr/share/doc/"* "$root/usr/share/man/"* \
    "$root/var/log/"*.log "$root/debootstrap"
  tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    -m "Debian bookworm minbase (debootstrap), python3.11 in a venv at /opt/venv" - "$BASE_IMAGE"
  rm -rf "$root"
fi

# 2. The wheels: torch, torchvision and requirements.txt resolved together, as the image's CPython 3.11 on glibc
#    2.36 x86-64 installs them, then laid out as a simple index (one folder per normalised project name).
wheels="$WORK/wheels"
index="$WORK/index"
mkdir -p "$wheels"
platforms="--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64"
for n in 5 12 $(seq 17 36); do platforms="$platforms --platform manylinux_2_${n}_x86_64"; done  # pip takes each N alone
# shellcheck disable=SC2086  # the requirements and platforms are word lists
"$PYTHON" -m pip download --quiet --dest "$wheels" --only-binary=:all: --implementation cp --python-version 3.11 \
  --abi cp311 $platforms $TORCH_REQUIREMENTS -r requirements.txt
rm -rf "$index" && mkdir -p "$index/simple"
"$PYTHON" - "$wheels" "$index/simple" <<'EOF'
import os, re, sys
from pathlib import Path
wheels, simple = Path(sys.argv[1]), Path(sys.argv[2])
for wheel in wheels.glob("*.whl"):
    project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()  # PEP 503
    (simple / project).mkdir(exist_ok=True)
    os.link(wheel, simple / project / wheel.name)
EOF

# 3. The build, on the host's network so that it reaches the index on 127.0.0.1 (and nothing it needs beyond).
"$PYTHON" -m http.server --bind 127.0.0.1 --directory "$index" "$PORT" >"$WORK/index.log" 2>&1 &
server=$!
trap 'kill "$server"' EXIT
sleep 1
DOCKER_BUILDKIT=0 docker build --network host --tag "$TAG" \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg TORCH_INDEX_URL="http://127.0.0.1:$PORT/simple" \
  --build-arg PIP_INDEX_URL="http://127.0.0.1:$PORT/simple" \
  --build-arg TORCH_REQUIREMENTS="$TORCH_REQUIREMENTS" .
docker image ls "$TAG"

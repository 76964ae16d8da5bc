# ResNet Explorer as one image: the Streamlit app with its embedded worker (default command) or a standalone
# training worker (`worker`), running as a non-root user, with the run store, checkpoints, decoded-image cache
# and datasets on the /data volume. See docs/DEPLOY.md.
#
#   docker build -t resnet-explorer .                                           CPU PyTorch (default)
#   docker build -t resnet-explorer:cu130 --build-arg TORCH_VARIANT=cu130 .     CUDA 13.0 PyTorch, for a GPU server
#   docker run -p 8501:8501 -v explorer-data:/data resnet-explorer
#   docker/build-offline.sh                                                     no Docker Hub, no PyTorch index
#
# PyTorch comes from its own wheel index, pinned to the variant's local version (2.14.1+cpu, 2.14.1+cu130), and is
# installed before requirements.txt, which is then installed under a constraint on the installed torch and
# torchvision: nothing in requirements.txt can swap the CPU build for PyPI's CUDA one (several GB larger).
# BASE_IMAGE, TORCH_INDEX_URL, TORCH_REQUIREMENTS and PIP_INDEX_URL let a machine without Docker Hub or PyTorch's
# index build the same image from a Debian root imported as the base and a local wheel index (docker/build-offline.sh).
ARG BASE_IMAGE=python:3.11-slim-trixie
FROM ${BASE_IMAGE}

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# TORCH_REQUIREMENTS is split into words (space-separated requirements). PIP_INDEX_URL is pip's own variable, the
# index for requirements.txt.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ARG TORCH_REQUIREMENTS="torch==${TORCH_VERSION}+${TORCH_VARIANT} torchvision==${TORCHVISION_VERSION}+${TORCH_VARIANT}"
ARG PIP_INDEX_URL=https://pypi.org/simple

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EXPLORER_STORE=/data/runs/explorer.sqlite \
    EXPLORER_CACHE_DIR=/data/cache \
    EXPLORER_DATA_DIR=/data/datasets \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0

RUN pip install --index-url "${TORCH_INDEX_URL}" ${TORCH_REQUIREMENTS} \
    && pip freeze | grep -E '^(torch|torchvision)==' > /etc/torch-constraint.txt

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt -c /etc/torch-constraint.txt \
    && python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"

# The code stays root's (read-only to the app); the user owns /data, so a named volume, which Docker initialises
# from the image, is writable. A bind mount needs `chown -R 10001:10001` on the host.
COPY . .
RUN chmod 0755 docker/entrypoint.sh \
    && useradd --create-home --uid 10001 --user-group explorer \
    && mkdir -p /data/runs /data/cache /data/datasets \
    && chown -R explorer:explorer /data

USER explorer
VOLUME ["/data"]
EXPOSE 8501

# The app's health endpoint. A standalone worker serves no HTTP: run it with --no-healthcheck (compose disables it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, sys, urllib.request; port = os.environ.get('STREAMLIT_SERVER_PORT', '8501'); \
        sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/_stcore/health', timeout=4).read() != b'ok')"

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["app"]

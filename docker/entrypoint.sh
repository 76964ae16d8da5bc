#!/bin/sh
# Starts ResNet Explorer in its container: the web app (with its embedded workers unless EXPLORER_WORKERS=0) or
# one standalone worker, both on the run store under the data volume; anything else runs as given.
#
#   entrypoint.sh [app] [STREAMLIT FLAGS...]   the app on $STREAMLIT_SERVER_PORT (8501), all interfaces, headless
#   entrypoint.sh worker [--device cpu|cuda]   one worker (python -m explorer worker); SIGTERM stops its run
#                                              cleanly, checkpointed and resumable
#   entrypoint.sh COMMAND [ARGS...]            e.g. python -m explorer runs, or bash
#
# Defaults, each overridden by the environment (docker run -e, compose `environment:`); the Dockerfile sets the
# same ones so that `docker exec` sees them too. Every EXPLORER_* variable is described in explorer/settings.py.
#
#   EXPLORER_STORE           /data/runs/explorer.sqlite   run store; checkpoints/ and logs/ go beside it
#   EXPLORER_CACHE_DIR       /data/cache                  decoded images
#   EXPLORER_DATA_DIR        /data/datasets               CIFAR-10 or ImageFolder copies; empty: the synthetic set
#   STREAMLIT_SERVER_PORT    8501                         Streamlit's own variables, read by `streamlit run`
#   STREAMLIT_SERVER_ADDRESS 0.0.0.0
#
# Works outside the image too (tests/test_deploy.py runs it from the repository with `python` on PATH).
set -eu

export EXPLORER_STORE="${EXPLORER_STORE:-/data/runs/explorer.sqlite}"
export EXPLORER_CACHE_DIR="${EXPLORER_CACHE_DIR:-/data/cache}"
export EXPLORER_DATA_DIR="${EXPLORER_DATA_DIR:-/data/datasets}"
export STREAMLIT_SERVER_PORT="${STREAMLIT_SERVER_PORT:-8501}"
export STREAMLIT_SERVER_ADDRESS="${STREAMLIT_SERVER_ADDRESS:-0.0.0.0}"
export PYTHONUNBUFFERED=1

# The app's folder (streamlit_app.py, .streamlit/config.toml): Streamlit reads its config from the working directory.
cd "$(dirname "$0")/.."
mkdir -p "$(dirname "$EXPLORER_STORE")" "$EXPLORER_CACHE_DIR" "$EXPLORER_DATA_DIR"

# exec: the server or worker becomes this process (PID 1 in a container), so `docker stop`'s SIGTERM reaches it.
case "${1:-app}" in
  app)
    if [ "$#" -gt 0 ]; then shift; fi
    exec python -m streamlit run streamlit_app.py --server.port "$STREAMLIT_SERVER_PORT" \
      --server.address "$STREAMLIT_SERVER_ADDRESS" --server.headless true "$@"
    ;;
  worker)
    shift
    exec python -m explorer worker "$@"
    ;;
  *)
    exec "$@"
    ;;
esac

# relay's image, used by every pod in k8s/ (Ray head and workers, the MLflow server).
#   CPU: docker build $(relay k8s build-args) -t ghcr.io/relay/relay:0.1.0 .
#   GPU: docker build $(relay k8s build-args) -t ghcr.io/relay/relay:0.1.0-gpu \
#          --build-arg BASE=rayproject/ray:2.58.0-py311-gpu \
#          --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#          --build-arg XGBOOST=xgboost==3.2.0 .
# `relay k8s build-args` passes the checkout's git commit, dirty flag and diff hash (the image
# has no .git): every run in a pod records them and `relay reproduce` can check them.
# The Ray version must stay the one relay pins (2.58.0) and the manifests' rayVersion.
ARG BASE=rayproject/ray:2.58.0-py311
FROM ${BASE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# model.family gbdt: the CPU build relay pins, or on GPU images the CUDA one (xgboost==3.2.0)
ARG XGBOOST=

WORKDIR /home/ray/relay
COPY --chown=1000:100 pyproject.toml constraints.txt README.md ./
COPY --chown=1000:100 cluster cluster
COPY --chown=1000:100 serving serving
COPY --chown=1000:100 jobs jobs

# torch first from the chosen index (constraints pin 2.13.0; +cpu/+cu128 builds satisfy it),
# then relay with every pin; the MLflow server also needs basic-auth and the PostgreSQL driver.
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX}" \
 && pip install --no-cache-dir -c constraints.txt . "Flask-WTF==1.3.0" "psycopg2-binary==2.9.13" \
 && if [ -n "${XGBOOST}" ]; then pip uninstall -y xgboost-cpu && pip install --no-cache-dir "${XGBOOST}"; fi

# Last, so a new commit rebuilds only this layer. Unset: runs record commit "unknown".
ARG RELAY_GIT_COMMIT=unknown
ARG RELAY_GIT_DIRTY=
ARG RELAY_GIT_DIFF_SHA256=
ENV RELAY_GIT_COMMIT=${RELAY_GIT_COMMIT} \
    RELAY_GIT_DIRTY=${RELAY_GIT_DIRTY} \
    RELAY_GIT_DIFF_SHA256=${RELAY_GIT_DIFF_SHA256}
LABEL org.opencontainers.image.revision=${RELAY_GIT_COMMIT}

# The ray user of the base image (uid 1000, gid 100): the manifests run pods as it, non-root.
USER 1000:100

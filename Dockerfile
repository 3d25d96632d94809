# relay's image, used by every pod in k8s/ (Ray head and workers, the MLflow server).
#   CPU: docker build -t ghcr.io/relay/relay:0.1.0 .
#   GPU: docker build -t ghcr.io/relay/relay:0.1.0-gpu \
#          --build-arg BASE=rayproject/ray:2.58.0-py311-gpu \
#          --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# The Ray version must stay the one relay pins (2.58.0) and the manifests' rayVersion.
ARG BASE=rayproject/ray:2.58.0-py311
FROM ${BASE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

WORKDIR /home/ray/relay
COPY --chown=1000:100 pyproject.toml constraints.txt README.md ./
COPY --chown=1000:100 cluster cluster
COPY --chown=1000:100 serving serving
COPY --chown=1000:100 jobs jobs

# torch first from the chosen index (constraints pin 2.13.0; +cpu/+cu128 builds satisfy it),
# then relay with every pin; the MLflow server also needs basic-auth and the PostgreSQL driver.
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX}" \
 && pip install --no-cache-dir -c constraints.txt . "Flask-WTF==1.3.0" "psycopg2-binary==2.9.13"

# The ray user of the base image (uid 1000, gid 100): the manifests run pods as it, non-root.
USER 1000:100

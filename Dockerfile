# The model server with one model baked in. Built by `mlship image build`, which stages the
# build context: this file, the serving lock, requirements-extra.lock (what this model needs
# beyond the server, e.g. LightGBM, pinned with hashes from requirements.lock), the model
# directory (model/, with the team's code under model/code/), wheels/ (the locks' wheels,
# downloaded on the host) and mlship-wheel/, so the build needs no network and every
# dependency is checked against the locks' hashes. What changes least comes first: a new
# model or new mlship code rebuilds only the last layers (and the labels, see below).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtual environment with the server's pinned dependencies and mlship ----
# (without their tests, C and Cython sources, headers and type stubs, nor numpy's
# distutils: nothing runs them; f2py stays, as `from numpy import *` reaches it)
FROM ${BASE_IMAGE} AS builder
# (no ENV or WORKDIR here: each instruction is a commit, a copy of the filesystem on vfs)
COPY requirements-serve.lock requirements-extra.lock /build/
COPY wheels /build/wheels
RUN export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet --no-index --find-links /build/wheels \
        --require-hashes --no-deps -r /build/requirements-serve.lock \
    && if grep -q '==' /build/requirements-extra.lock; then \
        /opt/venv/bin/pip install --quiet --no-index --find-links /build/wheels \
            --require-hashes --no-deps -r /build/requirements-extra.lock; fi \
    && find /opt/venv -depth -type d -name tests -path "*site-packages/*" -exec rm -rf {} + \
    && find /opt/venv -type f \( -name "*.pyx" -o -name "*.pxd" -o -name "*.pxi" \
        -o -name "*.pyi" -o -name "*.h" -o -name "*.c" -o -name "*.cpp" \) -delete \
    && rm -rf /opt/venv/lib/python3*/site-packages/numpy/distutils \
    && /opt/venv/bin/python -m compileall -q /opt/venv
COPY mlship-wheel /build/mlship-wheel
# skops' trusted-type lists, written once for these versions: the server then starts without
# importing all of scikit-learn to rebuild them (mlship.pipeline.skops_names)
# The installers go last: the server never installs anything (23 MB, and less to patch).
RUN export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    && /opt/venv/bin/pip install --quiet --no-index --no-deps /build/mlship-wheel/mlship-*.whl \
    && /opt/venv/bin/python -c "from mlship.pipeline.skops_names import save_names; save_names()" \
    && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools

# --- runtime: the environment and the model, run as a non-root user ----------------------
FROM ${BASE_IMAGE} AS runtime
# Debian packages the model's native code links against (LightGBM: libgomp1); installed
# only when the base image lacks them, the one case in which the build needs a network.
ARG SYSTEM_PACKAGES=""
# hadolint ignore=DL3008,SC2086
RUN if [ -n "${SYSTEM_PACKAGES}" ] && ! dpkg -s ${SYSTEM_PACKAGES} >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends ${SYSTEM_PACKAGES} \
        && rm -rf /var/lib/apt/lists/*; fi \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mlship
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
EXPOSE 8000
# Python's own HTTP client: the slim base has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
ENTRYPOINT ["mlship", "serve", "--model", "/opt/model", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--workers", "2"]
USER 10001:10001
# What changes with every build, before the large copies: the classic builder commits a
# container for each instruction, and on the vfs storage driver each commit copies the
# whole filesystem (these three cost 55 s after the environment was in, 16 s before it).
ARG SOURCE="" REVISION=unknown CREATED="" MODEL_NAME=mlship-model MODEL_VERSION=local \
    RUN_ID="" DVC_LOCK_SHA256=""
ENV MLSHIP_MODEL_NAME=${MODEL_NAME}
LABEL org.opencontainers.image.title="mlship model server" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      io.mlship.model.name="${MODEL_NAME}" \
      io.mlship.model.version="${MODEL_VERSION}" \
      io.mlship.mlflow.run_id="${RUN_ID}" \
      io.mlship.dvc_lock.sha256="${DVC_LOCK_SHA256}"
COPY --from=builder /opt/venv /opt/venv
COPY model /opt/model

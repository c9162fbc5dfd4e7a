# The CI agent for Jenkins and Cloud Build: Python 3.11 with venv, make and git for the
# Makefile, kubectl and the GKE auth plugin for `make deploy`, gcloud for credentials.
# `make install` builds the project's .venv inside the workspace, from requirements.lock.
# Docker builds use the host's engine through its socket (the docker SDK needs no CLI).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
# false: skip Google's apt repository (gcloud, kubectl), e.g. for a build without internet
ARG GOOGLE_CLOUD_CLI=true
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's and Google's packages move with their repositories' security updates: unpinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl git gnupg make \
    && if [ "${GOOGLE_CLOUD_CLI}" = "true" ]; then \
        curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
            | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \
        && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
            > /etc/apt/sources.list.d/google-cloud-sdk.list \
        && apt-get update \
        && apt-get install -y --no-install-recommends google-cloud-cli kubectl \
            google-cloud-cli-gke-gcloud-auth-plugin; \
    fi \
    && rm -rf /var/lib/apt/lists/*
# Jenkins runs the container as its own uid, whose HOME may not exist: caches go to /tmp
ENV USE_GKE_GCLOUD_AUTH_PLUGIN=True PIP_DISABLE_PIP_VERSION_CHECK=1 XDG_CACHE_HOME=/tmp/cache

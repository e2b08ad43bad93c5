# kubevirt-update-exporter: a slim, non-root image that never writes to its root filesystem.
#
#   docker build -t kubevirt-update-exporter:0.1.0 .      (or: buildah bud -t ... .)
#   docker run --rm -p 8080:8080 -v ~/.kube/config:/kubeconfig:ro \
#     kubevirt-update-exporter:0.1.0 serve --kubeconfig /kubeconfig
#
# Both stages run Debian 12's own Python 3.11 (/usr/bin/python3.11), so the virtualenv built in
# stage 1 runs unchanged in stage 2:
# - stage 1 (Debian bookworm + python3-venv) builds the project's wheel and installs it with its
#   dependencies into /opt/venv;
# - stage 2 is the distroless Debian 12 Python image (Debian's python3.11 packages on a glibc
#   base; no shell, no apt, no pip): nothing in the running image can install anything.
# scripts/build-image builds the same two bases from the same Debian packages with mmdebstrap
# (no container registry is reachable there) and passes them in through these two arguments.
ARG BUILDER_IMAGE=debian:bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12

FROM ${BUILDER_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# python3-venv brings ensurepip: a throwaway venv (/build) gets pip to build and install with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv=3.11.2-1+b1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
# /opt/venv gets no pip of its own (--without-pip); /build's pip installs into it. Its .pyc
# files are compiled here, so the read-only runtime never needs to write them.
RUN /build/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && python3 -m venv --without-pip /opt/venv \
    && /build/bin/pip --python /opt/venv/bin/python install --compile /wheels/*.whl

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kubevirt-update-exporter" \
      org.opencontainers.image.description="Prometheus exporter: which KubeVirt VMIs run in outdated virt-launcher pods, why, and what will or should update them" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# nobody:nogroup, numeric so Kubernetes' runAsNonRoot can verify it.
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/opt/venv/bin/kubevirt-update-exporter"]
CMD ["serve"]

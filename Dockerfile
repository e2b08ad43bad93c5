# kubevirt-update-exporter: a slim, non-root image that never writes to its root filesystem.
#
#   docker build -t kubevirt-update-exporter:0.1.0 .
#   docker run --rm -p 8080:8080 -v ~/.kube/config:/kubeconfig:ro \
#     kubevirt-update-exporter:0.1.0 serve --kubeconfig /kubeconfig
#
# Stage 1 builds the project's wheel and installs it with its dependencies into a virtualenv;
# stage 2 is a clean Python base with that virtualenv copied in and no pip, setuptools or
# compilers: nothing in the running image can install anything.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
# The venv gets no pip of its own (--without-pip); the builder's pip installs into it. Its .pyc
# files are compiled here, so the read-only runtime never needs to write them.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --compile /wheels/*.whl

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kubevirt-update-exporter" \
      org.opencontainers.image.description="Prometheus exporter: which KubeVirt VMIs run in outdated virt-launcher pods, why, and what will or should update them" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# No package installer in the final image: drop the base image's pip, setuptools and wheel,
# and ensurepip's bundled copies.
RUN python -m pip uninstall --yes pip setuptools wheel \
    && rm -rf /usr/local/lib/python3.11/ensurepip /usr/local/bin/pip*
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# nobody:nogroup, numeric so Kubernetes' runAsNonRoot can verify it.
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/opt/venv/bin/kubevirt-update-exporter"]
CMD ["serve"]

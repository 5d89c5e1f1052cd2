# The serving image: oncology_model + its runtime dependencies + one model bundle.
#
# The build context is made by oncology_pipeline.buildcontext.prepare_build_context:
#   Dockerfile, .dockerignore
#   wheels/   the locked runtime dependencies and the project's own wheel, plus requirements.txt
#   model/    the model bundle (model.skops, metadata.json)
# It builds offline (pip --no-index), with the classic builder or BuildKit.
#
# Any base with Python 3.11 and `python3 -m venv` works: the official python:3.11-slim (default) or
# oncology-base:bookworm (Debian's python3, made by scripts/provision.sh). Builder and runtime share it,
# so the venv's interpreter path is the same in both.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
# Private package-index credentials may arrive here; they stay in this stage, never in the final image.
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY wheels/ /wheels/
RUN set -eu; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-index --find-links /wheels --no-compile \
        -r /wheels/requirements.txt /wheels/oncology_mlops-*.whl; \
    /opt/venv/bin/pip uninstall -y -q pip setuptools; \
    site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
    find "$site" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +; \
    find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' -o -name '*.c' -o -name '*.cpp' \) -delete; \
    rm -rf /opt/venv/bin/Activate.ps1 /opt/venv/bin/activate*; \
    /opt/venv/bin/python -m compileall -q -j 0 "$site"

FROM ${BASE_IMAGE} AS runtime
RUN groupadd --system --gid 10001 oncology \
 && useradd --system --uid 10001 --gid oncology --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin oncology
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["python", "-m", "oncology_model", "serve", "--model", "/opt/model", "--host", "0.0.0.0", "--port", "8000"]

# What changes with every model comes last, so a new model reuses every layer above.
ARG VERSION=0.0.0
ARG MODEL_VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="oncology-model" \
      org.opencontainers.image.description="Breast-cancer (Wisconsin) classifier served with FastAPI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.oncology-mlops.model.version="${MODEL_VERSION}"
COPY model/ /opt/model/

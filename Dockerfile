# One image for both deployables: `ucs-tasks consume` (the consumer) and `ucs-tasks bridge`.
# Layered so that a code change rebuilds only the last layers: the locked dependencies first
# (constraints.txt, the same pins `make test` passed with), then the project itself.
# The embedded broker and PostgreSQL (the `embedded` extra) are not installed: production talks
# to a real Kafka cluster and a real PostgreSQL server.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# The runtime dependencies alone, read from pyproject.toml: this layer changes only with them.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > requirements.txt \
    && pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt -r requirements.txt
COPY README.md ./
COPY schemas schemas
COPY consumer consumer
COPY producer_tools producer_tools
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
# A numeric, non-root user: Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 ucs && useradd --system --uid 10001 --gid 10001 --no-create-home ucs
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl && rm -rf /wheels
USER 10001:10001
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Liveness of whichever process runs: the bridge's /healthz, or the consumer's health port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["ucs-tasks", "health"]
ENTRYPOINT ["ucs-tasks"]
CMD ["consume"]

# One image for both deployables: `ucs-tasks consume` (the consumer) and `ucs-tasks bridge`.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY consumer consumer
COPY producer_tools producer_tools
COPY schemas schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
RUN useradd --system --uid 10001 ucs
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER ucs
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["ucs-tasks"]
CMD ["consume"]

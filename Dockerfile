# racebench in a container: the service (`racebench serve`), Locust, the bench runner, reports.
# Used by docker-compose.yml; every setting comes from the environment (see README.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg

# pgbench and pg_isready, for `racebench bench --ceiling` and for waiting on the database.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY racebench ./racebench
COPY reference_service ./reference_service
COPY harness ./harness
COPY scenarios ./scenarios
COPY loadtests ./loadtests
COPY reports ./reports
RUN pip install . \
    && useradd --create-home --uid 1000 racebench \
    && mkdir -p /runs \
    && chown racebench /runs

USER racebench
EXPOSE 8000 8089
ENTRYPOINT ["racebench"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

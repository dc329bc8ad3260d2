# momo's image: one image for every process (web, api, worker, beat, flower, migrate), the
# command chosen by compose.yaml or the Kubernetes manifests (deploy/k8s), as the Procfile
# names them. Build: docker build -t momo .   (README, Containers)

# --- build: a virtualenv with the locked packages, then momo itself --------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/momo

# The lock first, so a change to momo's code reuses this layer: every package at the
# release and with the hashes requirements/main.txt names, nothing else
COPY requirements/main.txt /tmp/requirements.txt
RUN /opt/momo/bin/pip install --require-hashes -r /tmp/requirements.txt

# momo, its dependencies being there already
COPY pyproject.toml README.md /src/
COPY momo /src/momo
COPY core /src/core
COPY ingest /src/ingest
COPY matcher /src/matcher
COPY tasks /src/tasks
COPY api /src/api
RUN /opt/momo/bin/pip install --no-deps /src \
    && /opt/momo/bin/pip check

# --- run: the virtualenv, a user of its own, the state folders ---------------------------
FROM python:3.11-slim-bookworm

# the web's spool (callbacks kept while the database is down), beat's schedule and momo
# check's result, each a volume in compose.yaml; made here owned by momo, so a new named
# volume starts so too
RUN groupadd --system --gid 10001 momo \
    && useradd --system --uid 10001 --gid momo --home-dir /var/lib/momo --shell /usr/sbin/nologin momo \
    && mkdir -p /var/lib/momo/spool /var/lib/momo/beat /var/lib/momo/metrics \
    && chown -R momo:momo /var/lib/momo \
    && chmod -R 0750 /var/lib/momo

COPY --from=build /opt/momo /opt/momo

ENV PATH=/opt/momo/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MOMO_INSTANCE_PATH=/var/lib/momo \
    MOMO_SPOOL_DIR=/var/lib/momo/spool

# numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd
USER 10001:10001
WORKDIR /var/lib/momo
# web 8000, api 8001, flower 5555 (compose.yaml publishes none of them but Flower, on the
# host's loopback; the TLS front reaches web and api)
EXPOSE 8000 8001 5555

CMD ["momo", "--help"]

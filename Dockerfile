# The production image (the default target): the three services (api, uploader, notifier) and
# nothing else: no stand-ins, no dev/, no tests, no test tools. Every package comes from
# requirements/prod.lock, checked against its hashes. docker-compose.yml builds the `local`
# target below instead, which adds the local stand-ins for its own stack. This file
# deliberately has no CMD, so nothing runs by accident: the process is chosen with `command:`.
#
#   docker build -t album-publisher .                    # production
#   docker compose up --build -d                         # the local stack (target: local)
#
# The base image is a tag until you pin it: a tag can be moved to other content, a digest
# cannot. docs/supply-chain.md says how to look the digest up and pass it:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS production

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed, unprivileged user: nothing in the container needs root once it is built.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app

WORKDIR /app

# Dependencies first, in a layer of their own, so a code change doesn't reinstall them. As the
# Makefile does: pip installs uv from requirements/uv.lock (its hashes), then uv installs exactly
# the lock's pins (--no-deps: nothing is resolved), each file checked against its hashes; the
# lock also upgrades the base image's pip and setuptools to locked releases. uv is installed
# aside and removed in the same layer: the image does not carry it.
COPY requirements/uv.lock requirements/prod.lock requirements/
RUN pip install --require-hashes --no-deps --target /tmp/uv -r requirements/uv.lock \
    && /tmp/uv/bin/uv pip install --system --no-cache --require-hashes --no-deps \
       -r requirements/prod.lock \
    && rm -rf /tmp/uv

# Only the product, owned by root: the app user can read the code but not change it. It runs
# from /app (`python -m` puts the working directory first on sys.path), so the project itself
# needs no install step, and its templates and static files are read where they lie.
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services

# var/ holds the SQLite database when DATABASE_URL is left at its default (compose uses Postgres).
RUN mkdir -p /app/var && chown app:app /app/var

USER app

# The API (API_PORT).
EXPOSE 8000

# docker-compose.yml's image: the production image plus the local stand-ins (moto's S3, the
# Graph API simulator, the mail catcher) and the demo seed, from requirements/run.lock and
# dev/. Never deploy this one. The stand-ins listen on 9000 (S3), 8010 (Graph), 1025/8025 (mail).
FROM production AS local
USER root
COPY requirements/run.lock requirements/run.lock
RUN pip install --require-hashes --no-deps --target /tmp/uv -r requirements/uv.lock \
    && /tmp/uv/bin/uv pip install --system --no-cache --require-hashes --no-deps \
       -r requirements/run.lock \
    && rm -rf /tmp/uv
COPY dev ./dev
USER app

# The default target: the production image.
FROM production

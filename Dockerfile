# One image for every process of the system: the three services (api, uploader, notifier) and the
# local stand-ins (moto S3, the Graph API simulator, the mail catcher). docker-compose.yml picks
# the process with `command:`; this file deliberately has no CMD, so nothing runs by accident.
#
#   docker compose up --build -d
#   docker compose exec api python -m services.api create-user you@example.com
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed, unprivileged user: nothing in the container needs root once it is built.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app

WORKDIR /app

# Dependencies first, in a layer of their own, so a code change doesn't reinstall them. The
# package directories are empty stand-ins here: this step only resolves pyproject.toml's
# dependencies; the code is copied below and runs from /app (`python -m` puts the working
# directory first on sys.path).
# The "stand-ins" extra brings moto[server] (the S3 stand-in) and aiosmtpd (the mail catcher);
# a production-only image would install "." alone.
COPY pyproject.toml ./
RUN mkdir -p shared services dev \
    && pip install --no-cache-dir ".[stand-ins]" \
    && rm -rf shared services dev build ./*.egg-info

# Owned by root: the app user can read the code but not change it.
COPY . .

# var/ holds the SQLite database when DATABASE_URL is left at its default (compose uses Postgres).
RUN mkdir -p /app/var && chown app:app /app/var

USER app

# The API (API_PORT). The stand-ins listen on 9000 (S3), 8010 (Graph) and 1025/8025 (mail).
EXPOSE 8000

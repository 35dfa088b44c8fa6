# The orders service image: the API (the default command, granian) and, with another command, the event
# worker (`python manage.py run_listeners`) and the migrations (`python manage.py migrate`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/app/data

WORKDIR /app

# A fixed uid, so Kubernetes can check runAsNonRoot without knowing the name. The home folder is
# where gunicorn (>= 25) puts its control socket.
RUN groupadd --system --gid 10001 orders \
    && useradd --system --uid 10001 --gid orders --create-home --home-dir /home/orders --shell /usr/sbin/nologin orders

# Dependencies first: this layer is rebuilt only when the runtime lock changes. requirements.lock
# (`make lock`, from requirements.txt) names every package with its exact version and hashes, wheels
# only: pip refuses any file the lock does not name, and builds nothing from source.
# A builder that reaches the package index through its own mirror or a TLS-inspecting proxy passes
# `--build-arg PIP_INDEX_URL=...` / `--build-arg PIP_CERT=<CA bundle path>` (with the bundle mounted
# for the build); both are unset by default and are not kept in the image's environment.
ARG PIP_INDEX_URL
ARG PIP_CERT
COPY requirements.lock .
RUN pip install --require-hashes -r requirements.lock

# The code stays owned by root: the service can read it, not change it.
COPY . .

# Static files (admin, Swagger UI) are collected into the image and served by whitenoise.
# Settings refuse to load without JWT_KEY; these throwaway values exist for this command only,
# and the data folder it may create is removed so no key or database is baked into the image.
RUN JWT_KEY=collectstatic-only SECRET_KEY=collectstatic-only DATA_DIR=/tmp/collectstatic \
        python manage.py collectstatic --noinput \
    && rm -rf /tmp/collectstatic \
    && mkdir -p /app/data \
    && chown orders:orders /app/data

USER 10001:10001

EXPOSE 3000

# granian serving ticketing_orders.wsgi:application on 0.0.0.0:3000, workers from WEB_CONCURRENCY
# (ticketing_orders/server.py: its defaults as GRANIAN_* variables, which the environment may override).
# `gunicorn ticketing_orders.wsgi` serves the same API (gunicorn.conf.py, from the working directory).
CMD ["python", "-m", "ticketing_orders.server"]

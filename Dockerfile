# counterscan: one image for the API, the scheduled scanner and Dask workers.
#   docker build -t counterscan .
#   docker compose up -d          (compose.yaml: PostgreSQL, API, nightly scanner, Dask scheduler + workers)
FROM python:3.11-slim-bookworm

# Cairo rasterises SVG logos; OpenCV's headless wheel needs glib.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcairo2 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/counterscan
COPY pyproject.toml README.md ./
COPY src ./src
COPY data/demo ./data/demo
RUN pip install --no-cache-dir .

# The store's home (blobs, indexes, config.toml) lives on a volume shared by every service.
RUN useradd --create-home --uid 10001 counterscan && mkdir -p /srv/counterscan && chown counterscan /srv/counterscan
USER counterscan
ENV COUNTERSCAN_HOME=/srv/counterscan \
    OMP_NUM_THREADS=1
VOLUME ["/srv/counterscan"]
EXPOSE 8080
ENTRYPOINT ["counterscan"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]

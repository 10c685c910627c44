# shiftwatch worker / load generator image (used by docker-compose.yml and deploy/k8s).
#   docker build -t shiftwatch:0.1.0 .
#   docker run --rm shiftwatch:0.1.0 worker --broker kafka://HOST:9092
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SHIFTWATCH_WEB_HOST=0.0.0.0 \
    SHIFTWATCH_DATA_DIR=/data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sketches ./sketches
COPY detectors ./detectors
COPY stream ./stream
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --create-home shiftwatch \
    && rm -rf /src

WORKDIR /data
USER 10001
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SHIFTWATCH_WEB_PORT', '6066'), timeout=2)"
ENTRYPOINT ["shiftwatch"]
CMD ["worker"]

# The MLflow tracking server with what a PostgreSQL store and S3 artifacts need; the
# versions are requirements.lock's (tests/unit/test_compose.py checks them).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.43.117 \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mlflow
# runs and artifacts live in PostgreSQL and MinIO: nothing is written in the container
ENV HOME=/tmp
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=2)"]

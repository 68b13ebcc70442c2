# The price router as an AWS Lambda container image: only the serving dependencies (numpy pricing, no torch),
# the runtime interface client as entrypoint, the handler as CMD. Build: docker build -t pricetrail-router .
# The same install steps run in the tests (serve/image/install.sh into a fresh venv).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_WAIT_POLICY=PASSIVE \
    OMP_NUM_THREADS=1

WORKDIR /var/task

# The library and the serve package (the app and its handler) are installed, then their sources removed.
COPY pyproject.toml README.md ./
COPY lib lib
COPY serve serve
RUN sh serve/image/install.sh python /var/task \
    && rm -rf lib serve pyproject.toml README.md

# The registry is small text (pointers by md5); the artifacts come from the DVC remote by hash into /tmp.
COPY registry registry
COPY stockcodes.yaml stockcodes.yaml

# Lambda's filesystem is read-only except /tmp. Set PRICETRAIL_S3_URL (the DVC remote, s3://bucket/prefix) in the
# function's configuration; credentials come from the function's role, never from the image.
ENV PRICETRAIL_REGISTRY_DIR=/var/task/registry \
    PRICETRAIL_STOCKCODES_FILE=/var/task/stockcodes.yaml \
    PRICETRAIL_S3_CACHE_DIR=/tmp/pricetrail-cache \
    HOME=/tmp

ENTRYPOINT ["python", "-m", "awslambdaric"]
CMD ["serve.lambda_handler.handler"]

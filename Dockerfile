# Text-to-image server. On Linux x86-64, torch==2.13.0 from PyPI is the CUDA build: the image
# runs on an NVIDIA GPU (NVIDIA Container Toolkit on the host) and falls back to the CPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY backend/ backend/
COPY gunicorn.conf.py .env ./
COPY models/README.md models/

# The server needs no privileges; models/ is mounted from the host (see docker-compose.yml).
# .jobs exists in the image so the compose volume mounted there inherits the app user's ownership.
RUN useradd --create-home --uid 1000 app && mkdir -p /app/.jobs && chown -R app /app
USER app

EXPOSE 5000
# Build the demo model first when it is the configured default and missing, then serve.
CMD ["sh", "-c", "python -m backend.model.demo --if-default && exec gunicorn -c gunicorn.conf.py"]

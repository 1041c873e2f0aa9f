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
# The trained demo's committed weights and its all-green LoRA: `--if-default` below installs
# them as models/demo and models/loras.
COPY demo_model/weights/ demo_model/weights/
COPY demo_model/loras/ demo_model/loras/
COPY gunicorn.conf.py .env ./
COPY models/README.md models/

# The server needs no privileges; models/ is mounted from the host (see docker-compose.yml).
# .jobs (JOBS_DIR) and .results (RESULTS_DIR, shared by API and workers in the scale-out mode)
# exist in the image so the volumes mounted there inherit the app user's ownership.
RUN useradd --create-home --uid 1000 app && mkdir -p /app/.jobs /app/.results && chown -R app /app
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 1000

# 5000: the API (PORT); 9200: a scale-out worker's own /health and /metrics (WORKER_PORT).
EXPOSE 5000 9200
# Install the demo model first when it is the configured default and not there yet, then serve.
CMD ["sh", "-c", "python -m backend.model.demo --if-default && exec gunicorn -c gunicorn.conf.py"]

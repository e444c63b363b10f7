# omnibot web process. Run the worker from the same image with
#   docker run ... omnibot worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONFIG_FILE=/etc/omnibot/omnibot.yaml \
    OMNIBOT_DATA_DIR=/var/lib/omnibot \
    GUNICORN_BIND=0.0.0.0:8080

WORKDIR /app
COPY requirements.txt setup.py README.rst ./
COPY omnibot ./omnibot
COPY config ./config
RUN pip install --no-cache-dir . \
    && mkdir -p /etc/omnibot /var/lib/omnibot \
    && cp config/omnibot.yaml /etc/omnibot/omnibot.yaml \
    && useradd --system --home /var/lib/omnibot omnibot \
    && chown omnibot /var/lib/omnibot

USER omnibot
EXPOSE 8080
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "omnibot.wsgi:app"]

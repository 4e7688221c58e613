# One image for the API and the workers; the command picks the role.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends libcairo2 libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models models
COPY batch batch
COPY stream stream
COPY web web
RUN pip install --no-cache-dir .

ENV DRUMSCRIBE_DATA=/data
VOLUME /data
EXPOSE 8000
CMD ["drumscribe", "serve", "--host", "0.0.0.0", "--port", "8000"]

# CryptoViz image: collector, consumer or API, chosen by the command.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 cryptoviz
COPY --from=build /install /usr/local
USER cryptoviz
WORKDIR /home/cryptoviz
ENV PYTHONUNBUFFERED=1 CRYPTOVIZ_LOG_DIR=/home/cryptoviz/logs
ENTRYPOINT ["cryptoviz"]
CMD ["--help"]

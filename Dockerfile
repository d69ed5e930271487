# The operator image: `docker build -t kubedruid/operator:0.1.0 .` (not built in CI: our machines have no engine).
FROM python:3.11-slim
RUN useradd --uid 65532 --no-create-home kubedruid
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER 65532
ENTRYPOINT ["kubedruid"]
CMD ["operator", "run", "--leader-elect", "--webhook-addr=0.0.0.0", "--probe-addr=0.0.0.0", "--log-format=json"]

#!/usr/bin/python3
"""An S3-compatible server for the local node's Druid deep storage: moto's S3 in server mode (kubedruid's local
image docker.io/kubedruid/s3-server, built by src/kubedruid/devcluster/images.py).

    S3_BUCKETS  buckets created at start, comma or space separated (default: druid)
    S3_HOST     address to listen on (default 0.0.0.0)
    S3_PORT     port (default 9000, like MinIO)

Any access key and secret are accepted, path-style and virtual-host requests both work. Everything is held in
memory: a restarted server is empty again (its buckets are re-created).
"""

import os
import signal
import sys
import threading

import boto3
from moto.server import ThreadedMotoServer


def main() -> int:
    host = os.environ.get("S3_HOST", "0.0.0.0")
    port = int(os.environ.get("S3_PORT", "9000"))
    buckets = os.environ.get("S3_BUCKETS", "druid").replace(",", " ").split()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=True)
    server.start()
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                      aws_access_key_id="local", aws_secret_access_key="local")
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    print(f"s3-server: listening on {host}:{port}, buckets: {', '.join(buckets) or 'none'}", flush=True)

    stop = threading.Event()
    for signo in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signo, lambda *_: stop.set())
    stop.wait()
    server.stop()
    print("s3-server: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real S3 endpoint for the tests: moto's server on 127.0.0.1, reached through the
SDK's standard environment (`AWS_ENDPOINT_URL`, keys), as a user's bucket would be."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


@contextmanager
def s3_server(*buckets: str) -> Iterator[dict[str, str]]:
    """Start moto, create `buckets` (versioned: every write leaves a version behind), and
    set the environment for this process; yields that environment for subprocesses."""
    pytest.importorskip("s3fs", reason="object storage is an extra: pip install "
                        "'stemsplit-cli[cloud]'")  # fmt: skip
    server_module = pytest.importorskip("moto.server", reason="pip install 'moto[server]'")
    import boto3

    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    import requests

    # moto keeps its buckets in this process across servers: start empty
    requests.post(f"http://{host}:{port}/moto-api/reset", timeout=30).raise_for_status()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}  # fmt: skip
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
            client.put_bucket_versioning(Bucket=bucket,
                                         VersioningConfiguration={"Status": "Enabled"})  # fmt: skip
        yield env
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def client() -> Any:
    import boto3

    return boto3.client("s3")


def upload(path: Path, bucket: str, key: str) -> None:
    client().upload_file(str(path), bucket, key)


def versions(bucket: str) -> list[tuple[str, str]]:
    """Every (key, version) the bucket holds: a rewrite adds one, even of equal bytes."""
    pages = client().get_paginator("list_object_versions").paginate(Bucket=bucket)
    return sorted((v["Key"], v["VersionId"]) for page in pages for v in page.get("Versions", []))


def download_all(bucket: str, folder: Path) -> dict[str, Path]:
    """The bucket's objects as files under `folder`, by key."""
    found = {}
    pages = client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    for page in pages:
        for item in page.get("Contents", []):
            target = folder / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            client().download_file(bucket, item["Key"], str(target))
            found[item["Key"]] = target
    return found

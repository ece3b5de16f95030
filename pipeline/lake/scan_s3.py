"""What `pipeline.lake.scan` needs to read a lake in a bucket: the manifest, the files' URLs,
and polars' `storage_options` from the standard AWS chain (resolved by boto3, so profiles,
SSO and instance roles work as for the rest of capaudit; polars' own reader knows fewer).
"""

from __future__ import annotations

import json
import os
from typing import Any

from pipeline.errors import StorageError, WarehouseError
from pipeline.lake.catalog import MANIFEST
from pipeline.storage.client import ObjectNotFound, shared_store
from pipeline.storage.location import S3Location, parse_s3
from pipeline.storage.settings import StorageSettings


def bucket_manifest(root: str, storage: StorageSettings) -> tuple[S3Location, dict[str, Any]]:
    where = parse_s3(root)
    try:
        body, _etag = shared_store(storage).get(where.bucket, where.key(MANIFEST))
    except ObjectNotFound as exc:
        raise WarehouseError(f"{where.url()}: no published run yet (no {MANIFEST})") from exc
    manifest: dict[str, Any] = json.loads(body)
    return where, manifest


def storage_options(storage: StorageSettings) -> dict[str, str]:
    """polars' (object_store's) options for the store: endpoint, region and credentials."""
    import boto3

    session = boto3.session.Session()
    found = session.get_credentials()
    if found is None:
        raise StorageError("no AWS credentials found (AWS_ACCESS_KEY_ID, AWS_PROFILE, a role)")
    credentials = found.get_frozen_credentials()
    options: dict[str, str] = {
        "aws_access_key_id": str(credentials.access_key),
        "aws_secret_access_key": str(credentials.secret_key),
        "aws_region": storage.region or session.region_name or "us-east-1",
    }
    if credentials.token:
        options["aws_session_token"] = str(credentials.token)
    endpoint = (
        storage.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        options["aws_endpoint_url"] = endpoint
        options["aws_allow_http"] = str(endpoint.startswith("http://")).lower()
    if storage.addressing_style == "virtual":
        options["aws_virtual_hosted_style_request"] = "true"
    return options

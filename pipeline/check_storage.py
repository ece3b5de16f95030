"""`capaudit check`'s `storage` line: each configured `s3://` location (`[receiver] landing_url`,
`[warehouse] lake_url`) answers a listing of one key with the AWS chain's credentials. The
probes run within the check's budget like the others (pipeline/check_runner.py)."""

from __future__ import annotations

import asyncio
import functools

from pipeline.check_runner import Probe
from pipeline.settings import Settings
from pipeline.storage.location import parse_s3


def storage_probes(settings: Settings) -> list[Probe]:
    urls = (settings.receiver.landing_url, settings.warehouse.lake_url)
    return [
        Probe("storage", "LIST", url, functools.partial(_list_one, url, settings))
        for url in urls
        if url
    ]


async def _list_one(url: str, settings: Settings) -> str:
    from pipeline.storage.client import shared_store

    where = parse_s3(url)
    await asyncio.to_thread(shared_store(settings.storage).probe, where.bucket, where.prefix)
    return f"{url} answers (credentials from the AWS chain, not shown)"

"""Where callbacks land: a local directory (the default) or an S3 prefix (`[receiver]
landing_url`). Every reader and writer of landing asks here, so the two never disagree.

    landing = configured_landing(settings)   # Path("data/landing") or ObjectLanding(...)
    writer = landing_writer(settings.receiver, settings.storage)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.landing.objects import ObjectLanding
from pipeline.landing.writer import LandingWriter
from pipeline.settings import ReceiverSettings, Settings
from pipeline.storage.location import parse_s3
from pipeline.storage.settings import StorageSettings

if TYPE_CHECKING:
    from pipeline.landing.s3writer import ObjectWriter

Landing = Path | ObjectLanding


def landing_of(receiver: ReceiverSettings, storage: StorageSettings) -> Landing:
    if not receiver.landing_url:
        return Path(receiver.landing_dir)
    from pipeline.storage.client import shared_store

    where = parse_s3(receiver.landing_url, "[receiver] landing_url")
    return ObjectLanding(shared_store(storage), where)


def configured_landing(settings: Settings) -> Landing:
    return landing_of(settings.receiver, settings.storage)


def landing_writer(
    receiver: ReceiverSettings, storage: StorageSettings
) -> LandingWriter | ObjectWriter:
    """The receiver's writer: segment files, or one object per batch on S3."""
    landing = landing_of(receiver, storage)
    commit_window = receiver.group_commit_ms / 1000
    if isinstance(landing, ObjectLanding):
        from pipeline.landing.s3writer import ObjectWriter

        return ObjectWriter(landing, commit_window_seconds=commit_window)
    return LandingWriter(
        landing,
        max_bytes=receiver.segment_max_bytes,
        max_age_seconds=receiver.segment_max_age_seconds,
        commit_window_seconds=commit_window,
        durable=receiver.durable,
    )

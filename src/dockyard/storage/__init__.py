"""Blob bytes behind a small driver protocol (see ``base.StorageDriver``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.storage.base import StorageDriver
from dockyard.storage.filesystem import FilesystemDriver

if TYPE_CHECKING:
    from dockyard.config import Settings

__all__ = ["StorageDriver", "FilesystemDriver", "open_storage"]


def open_storage(settings: Settings) -> StorageDriver:
    """The driver the settings ask for (boto3 is only imported for S3)."""
    if settings.storage == "s3":
        from dockyard.storage.s3 import S3Driver

        return S3Driver(
            settings.s3_bucket,
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
            prefix=settings.s3_prefix,
            path_style=None if settings.s3_path_style == "auto" else settings.s3_path_style == "true",
            redirect=settings.s3_redirect,
            presign_seconds=settings.s3_presign_seconds,
        )
    return FilesystemDriver(settings.data_dir)

"""Blob bytes behind a small driver protocol (see ``base.StorageDriver``)."""

from dockyard.storage.base import StorageDriver
from dockyard.storage.filesystem import FilesystemDriver

__all__ = ["StorageDriver", "FilesystemDriver"]

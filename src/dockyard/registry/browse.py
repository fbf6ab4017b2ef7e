"""What the web UI shows about repositories, tags and manifests: read-only views of the registry.

Every view is a fixed number of set-based queries whatever the number of rows, so a page renders
as fast for a registry of 1,000 repositories and 10,000 tags as for ten:

* a page of the repository list: one query for every repository's name and sort keys, the access
  filter (``readable_repositories``, a few queries), then grouped queries for the tag counts,
  sizes and descriptions of the page's rows only; sorting hundreds of repositories by size uses
  sizes at most a minute old (``size_order``);
* a page of tags: one query for the tags with their manifests, one for the children of the
  indexes among them and one for their image configs' storage keys. Config bytes (small) come
  from storage, read concurrently; what the pages need of them is cached by digest, which never
  goes stale.

Sizes are what ``docker pull`` transfers: an image is its manifest, config and layers; an index
adds up its children. A repository's stored size is what it holds: its linked blobs and its
manifests, each once (``stored_sizes``).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from dockyard.auth.access import namespace_of, readable_repositories
from dockyard.auth.permissions import Principal
from dockyard.meta.tables import blobs, manifests, repositories, repository_blobs, repository_manifests, tags
from dockyard.registry import mediatypes as mt
from dockyard.registry.cache import LRU
from dockyard.registry.digest import parse_digest
from dockyard.registry.errors import RegistryError
from dockyard.registry.service import SMALL_BLOB, BlobInfo, Registry
from dockyard.registry.uploads import blob_key

PAGE_SIZE = 50
SORTS = ("name", "push", "size")
IMAGE_CONFIGS = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
MAX_CONFIG = 4 * 1024 * 1024  # larger "configs" are not image configs anyone reads in a browser
FRESH_SIZES_UP_TO = 200
SIZE_ORDER_TTL = 60.0
_size_orders: dict[str, tuple[float, dict[int, int]]] = {}  # database URL -> (when, sizes)
_DESCRIPTION_PREVIEW = 400  # characters of a description fetched for the list's first line
# Buildkit's attestation manifests sit in an index as platform unknown/unknown.
_ATTESTATION = "vnd.docker.reference.type"
# Configs are content-addressed, so neither cache ever goes stale. Whole configs (the manifest
# page) can be large once parsed: only a few are kept; platforms (the tag lists) are short strings.
_configs: LRU[dict[str, Any]] = LRU(64)
_platforms: LRU[str] = LRU(65536)


# -- the repository list ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    name: str
    visibility: str
    description: str  # the first line, for the list
    last_push_at: float | None
    last_pull_at: float | None
    tags: int
    size: int


@dataclass(frozen=True, slots=True)
class RepositoryList:
    repositories: list[RepositorySummary]
    total: int  # matching the filters
    page: int
    pages: int
    namespaces: list[str]  # every namespace with a repository the visitor may read
    readable: int  # repositories the visitor may read, before the filters


def _ids_in(column: sa.ColumnElement[Any], ids: Collection[int]) -> sa.ColumnElement[bool]:
    """``column IN ids`` with the integers rendered into the SQL: no list of ids is too long for
    the database's limit on bound parameters."""
    return column.in_(sa.bindparam("ids", sorted(ids), expanding=True, literal_execute=True, unique=True))


def stored_sizes(conn: sa.Connection, ids: Collection[int] | None) -> dict[int, int]:
    """Bytes each repository holds (every repository's for ``ids`` None): the blobs linked to it
    (pushed, mounted or referenced; each once) plus its manifests. Two grouped joins over primary
    keys (the usage report's "stored" figure, referenced blobs only, joins through every
    manifest's references instead: several times slower)."""
    if ids is not None and not ids:
        return {}
    blob_bytes = (
        sa.select(repository_blobs.c.repository_id, sa.func.sum(blobs.c.size))
        .select_from(repository_blobs.join(blobs, blobs.c.digest == repository_blobs.c.digest))
        .group_by(repository_blobs.c.repository_id)
    )
    manifest_bytes = (
        sa.select(repository_manifests.c.repository_id, sa.func.sum(manifests.c.size))
        .select_from(repository_manifests.join(manifests, manifests.c.digest == repository_manifests.c.digest))
        .group_by(repository_manifests.c.repository_id)
    )
    if ids is not None:
        blob_bytes = blob_bytes.where(_ids_in(repository_blobs.c.repository_id, ids))
        manifest_bytes = manifest_bytes.where(_ids_in(repository_manifests.c.repository_id, ids))
    sizes: dict[int, int] = {}
    for query in (blob_bytes, manifest_bytes):
        for repo_id, total in conn.execute(query):
            sizes[repo_id] = sizes.get(repo_id, 0) + int(total or 0)
    return sizes


def size_order(conn: sa.Connection, ids: Collection[int]) -> dict[int, int]:
    """Sizes to sort ``ids`` by: computed now for up to ``FRESH_SIZES_UP_TO`` repositories, else
    taken from every repository's sizes computed at most ``SIZE_ORDER_TTL`` seconds ago (about
    100 ms for 1,000 repositories and 10,000 tags on SQLite: too slow for every page view, and an
    order that lags a push by a minute misleads nobody; the sizes shown are always fresh)."""
    if len(ids) <= FRESH_SIZES_UP_TO:
        return stored_sizes(conn, ids)
    key = str(conn.engine.url)
    now = time.monotonic()
    cached = _size_orders.get(key)
    if cached is None or now - cached[0] > SIZE_ORDER_TTL:
        cached = (now, stored_sizes(conn, None))
        _size_orders[key] = cached
    return cached[1]


def tag_counts(conn: sa.Connection, ids: Collection[int]) -> dict[int, int]:
    if not ids:
        return {}
    q = sa.select(tags.c.repository_id, sa.func.count()).where(_ids_in(tags.c.repository_id, ids))
    return {repo_id: int(n) for repo_id, n in conn.execute(q.group_by(tags.c.repository_id))}


def first_line(text: str | None) -> str:
    """The first non-blank line of a Markdown description, without its heading marks."""
    for line in (text or "").splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return ""


def repository_list(
    conn: sa.Connection,
    principal: Principal | None,
    namespace: str = "",
    search: str = "",
    sort: str = "name",
    page: int = 1,
    per_page: int = PAGE_SIZE,
) -> RepositoryList:
    """One page of the repositories ``principal`` may read (all of them for None: an open
    registry), in ``namespace``, whose name contains ``search``, sorted by name, last push (newest
    first) or stored size (largest first)."""
    rows = conn.execute(
        sa.select(repositories.c.id, repositories.c.name, repositories.c.visibility, repositories.c.last_push_at)
    ).all()
    if principal is not None:
        allowed = set(readable_repositories(conn, principal, [r.name for r in rows]))
        rows = [r for r in rows if r.name in allowed]
    readable = len(rows)
    namespaces = sorted({namespace_of(r.name) for r in rows})
    if namespace:
        rows = [r for r in rows if namespace_of(r.name) == namespace]
    needle = search.strip().lower()
    if needle:
        rows = [r for r in rows if needle in r.name]
    if sort == "size":
        order = size_order(conn, [r.id for r in rows])
        rows.sort(key=lambda r: (-order.get(r.id, 0), r.name))
    elif sort == "push":
        rows.sort(key=lambda r: (r.last_push_at is None, -(r.last_push_at or 0.0), r.name))
    else:
        rows.sort(key=lambda r: r.name)
    pages = max(1, math.ceil(len(rows) / per_page))
    page = min(max(page, 1), pages)
    chosen = rows[(page - 1) * per_page : page * per_page]
    ids = [r.id for r in chosen]
    sizes = stored_sizes(conn, ids)
    counts = tag_counts(conn, ids)
    details: dict[int, sa.Row] = {}
    if ids:
        q = sa.select(
            repositories.c.id,
            repositories.c.last_pull_at,
            sa.func.substr(repositories.c.description, 1, _DESCRIPTION_PREVIEW).label("description"),
        ).where(_ids_in(repositories.c.id, ids))
        details = {row.id: row for row in conn.execute(q)}
    summaries = [
        RepositorySummary(
            name=r.name,
            visibility=r.visibility,
            description=first_line(details[r.id].description),
            last_push_at=r.last_push_at,
            last_pull_at=details[r.id].last_pull_at,
            tags=counts.get(r.id, 0),
            size=sizes.get(r.id, 0),
        )
        for r in chosen
        if r.id in details
    ]
    return RepositoryList(summaries, len(rows), page, pages, namespaces, readable)


# -- one repository -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepositoryView:
    id: int
    name: str
    visibility: str
    description: str
    created_at: float
    last_push_at: float | None
    last_pull_at: float | None
    tags: int
    size: int
    default_tag: str | None  # for the pull command: "latest" if there is one, else the newest push


def repository_view(conn: sa.Connection, name: str) -> RepositoryView | None:
    row = conn.execute(sa.select(repositories).where(repositories.c.name == name)).first()
    if row is None:
        return None
    return RepositoryView(
        id=row.id,
        name=row.name,
        visibility=row.visibility,
        description=row.description or "",
        created_at=row.created_at,
        last_push_at=row.last_push_at,
        last_pull_at=row.last_pull_at,
        tags=tag_counts(conn, [row.id]).get(row.id, 0),
        size=stored_sizes(conn, [row.id]).get(row.id, 0),
        default_tag=conn.execute(
            sa.select(tags.c.name)
            .where(tags.c.repository_id == row.id)
            .order_by(sa.case((tags.c.name == "latest", 0), else_=1), tags.c.updated_at.desc(), tags.c.name)
            .limit(1)
        ).scalar(),
    )


# -- manifests and configs ----------------------------------------------------------------------


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _descriptors(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key)
    return [d for d in value if isinstance(d, dict)] if isinstance(value, list) else []


def _size_of(descriptor: dict[str, Any]) -> int:
    size = descriptor.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def image_size(content: bytes, body: dict[str, Any] | None = None) -> int:
    """What pulling an image transfers: its manifest, config and layers."""
    body = _json_object(content) if body is None else body
    config = body.get("config")
    return (
        len(content)
        + (_size_of(config) if isinstance(config, dict) else 0)
        + sum(_size_of(layer) for layer in _descriptors(body, "layers"))
    )


def is_attestation(entry: dict[str, Any]) -> bool:
    annotations = entry.get("annotations")
    if isinstance(annotations, dict) and _ATTESTATION in annotations:
        return True
    platform = entry.get("platform")
    return isinstance(platform, dict) and platform.get("os") == "unknown" and platform.get("architecture") == "unknown"


def platform_name(platform: Any) -> str:
    """``linux/arm64/v8`` from an index entry's platform or an image config."""
    if not isinstance(platform, dict):
        return ""
    parts = [_text(platform.get("os")), _text(platform.get("architecture")), _text(platform.get("variant"))]
    return "/".join(p for p in parts if p)


def _children_sizes(conn: sa.Connection, digests: Collection[str]) -> dict[str, tuple[str, int]]:
    """digest -> (media type, pulled size) of the given manifests: an index's children."""
    if not digests:
        return {}
    q = sa.select(manifests.c.digest, manifests.c.media_type, manifests.c.content).where(
        manifests.c.digest.in_(sorted(digests))
    )
    found = {}
    for digest, media_type, content in conn.execute(q):
        size = image_size(content) if media_type in mt.IMAGE_MANIFESTS else len(content)
        found[digest] = (media_type, size)
    return found


def _config_locations(conn: sa.Connection, digests: Collection[str]) -> dict[str, tuple[int, str]]:
    """digest -> (size, storage key) of config blobs, for reading them from storage."""
    if not digests:
        return {}
    q = sa.select(blobs.c.digest, blobs.c.size, blobs.c.storage_key).where(blobs.c.digest.in_(sorted(digests)))
    found = {}
    for digest, size, key in conn.execute(q):
        try:
            found[digest] = (size, key or blob_key(parse_digest(digest)))
        except RegistryError:
            continue
    return found


def _read_capped(registry: Registry, key: str, size: int) -> bytes:
    try:
        with registry.storage.reader(key) as f:
            return f.read(size + 1)
    except FileNotFoundError:
        return b""


async def _load_config(registry: Registry, digest: str, size: int, key: str) -> dict[str, Any] | None:
    """A config's JSON from storage; None when it is missing or too big, {} when it is not a
    JSON object. Never an error: a page shows what it can."""
    if size > MAX_CONFIG:
        return None
    try:
        if size <= SMALL_BLOB:
            data = await registry.small_blob(BlobInfo(parse_digest(digest), size, key, None)) or b""
        else:
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(registry.pool, _read_capped, registry, key, size)
    except RegistryError:
        return None
    return _json_object(data) if len(data) == size else None


async def config_platforms(registry: Registry, locations: dict[str, tuple[int, str]]) -> dict[str, str]:
    """config digest -> platform (``linux/arm64/v8``) of the configs at ``locations``: read
    concurrently the first time, then from a cache of these short strings (a config never changes
    under its digest)."""
    found: dict[str, str] = {}
    missing = []
    for digest in locations:
        cached = _platforms.get(digest)
        if cached is not None:
            found[digest] = cached
        else:
            missing.append(digest)
    loaded = await asyncio.gather(*(_load_config(registry, d, *locations[d]) for d in missing))
    for digest, parsed in zip(missing, loaded, strict=True):
        if parsed is not None:
            found[digest] = platform_name(parsed)
            _platforms.put(digest, found[digest])
    return found


async def config_of(registry: Registry, digest: str, location: tuple[int, str] | None) -> dict[str, Any]:
    """The whole parsed config, for the manifest page ({} when it cannot be read)."""
    cached = _configs.get(digest)
    if cached is None and location is not None:
        cached = await _load_config(registry, digest, *location)
        if cached is not None:
            _configs.put(digest, cached)
    return cached or {}


# -- tags of a repository -----------------------------------------------------------------------


@dataclass(slots=True)
class TagRow:
    name: str
    digest: str
    media_type: str
    kind: str  # 'image' | 'index' | 'artifact'
    size: int
    platforms: list[str]
    artifact_type: str | None
    pushed_at: float
    last_pulled_at: float | None
    config: str | None = None  # the config digest of an image, whose platform is read from it


@dataclass(frozen=True, slots=True)
class TagList:
    tags: list[TagRow]
    total: int
    page: int
    pages: int


def _tag_rows(
    conn: sa.Connection, repo_id: int, search: str, page: int, per_page: int
) -> tuple[list[TagRow], int, int, dict[str, tuple[int, str]]]:
    where = [tags.c.repository_id == repo_id]
    needle = search.strip().lower()
    if needle:
        where.append(sa.func.lower(tags.c.name).contains(needle, autoescape=True))
    total = conn.execute(sa.select(sa.func.count()).select_from(tags).where(*where)).scalar_one()
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    q = (
        sa.select(
            tags.c.name,
            tags.c.digest,
            tags.c.updated_at,
            manifests.c.media_type,
            manifests.c.content,
            manifests.c.artifact_type,
            repository_manifests.c.last_pulled_at,
        )
        .select_from(
            tags.join(manifests, manifests.c.digest == tags.c.digest).outerjoin(
                repository_manifests,
                sa.and_(
                    repository_manifests.c.repository_id == tags.c.repository_id,
                    repository_manifests.c.digest == tags.c.digest,
                ),
            )
        )
        .where(*where)
        .order_by(tags.c.updated_at.desc(), tags.c.name)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    rows: list[TagRow] = []
    children: dict[int, list[str]] = {}
    for row in conn.execute(q):
        body = _json_object(row.content)
        tag = TagRow(
            row.name, row.digest, row.media_type, "image", len(row.content), [], row.artifact_type,
            row.updated_at, row.last_pulled_at,
        )  # fmt: skip
        if row.media_type in mt.INDEXES:
            tag.kind = "index"
            entries = _descriptors(body, "manifests")
            tag.platforms = [platform_name(e.get("platform")) for e in entries if not is_attestation(e)]
            tag.platforms = [p for p in tag.platforms if p]
            children[len(rows)] = [_text(e.get("digest")) for e in entries]
        else:
            config = body.get("config") if isinstance(body.get("config"), dict) else {}
            tag.size = image_size(row.content, body)
            if _text(config.get("mediaType")) in IMAGE_CONFIGS and not body.get("artifactType"):
                tag.artifact_type = None
                tag.config = _text(config.get("digest")) or None
            else:
                tag.kind = "artifact"
        rows.append(tag)
    sizes = _children_sizes(conn, {d for digests in children.values() for d in digests if d})
    for position, digests in children.items():
        rows[position].size += sum(sizes.get(d, ("", 0))[1] for d in digests)
    locations = _config_locations(conn, {r.config for r in rows if r.config})
    return rows, total, page, locations


async def tag_list(registry: Registry, repo_id: int, search: str = "", page: int = 1) -> TagList:
    """One page of a repository's tags, newest push first, with sizes and platforms."""
    rows, total, page, locations = await registry.db.read(_tag_rows, repo_id, search, page, PAGE_SIZE)
    platforms = await config_platforms(registry, locations)
    for row in rows:
        if row.config is not None and platforms.get(row.config):
            row.platforms = [platforms[row.config]]
    return TagList(rows, total, page, max(1, math.ceil(total / PAGE_SIZE)))


# -- one manifest -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layer:
    digest: str
    media_type: str
    size: int
    created_by: str  # the Dockerfile instruction, from the config's history ("" when unknown)


@dataclass(frozen=True, slots=True)
class Platform:
    digest: str
    media_type: str
    platform: str
    size: int | None  # None when the child is not in the registry
    attestation: bool


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    media_type: str
    artifact_type: str
    size: int
    annotations: dict[str, str]


@dataclass(frozen=True, slots=True)
class ImageConfig:
    digest: str
    size: int
    platform: str
    created: str
    author: str
    labels: dict[str, str]
    env: list[tuple[str, str]]
    entrypoint: str  # as the Dockerfile's exec form, JSON
    cmd: str
    working_dir: str
    user: str
    exposed_ports: list[str]
    volumes: list[str]


@dataclass
class ManifestView:
    digest: str
    media_type: str
    kind: str  # 'image' | 'index' | 'artifact'
    manifest_size: int
    size: int
    tags: list[str]
    pushed_at: float | None
    last_pulled_at: float | None
    annotations: dict[str, str]
    subject: str | None
    artifact_type: str | None
    platforms: list[Platform] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    config: ImageConfig | None = None
    referrers: list[Referrer] = field(default_factory=list)


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in sorted(value.items())}


def _exec_form(value: Any) -> str:
    if isinstance(value, list):
        return json.dumps([v if isinstance(v, str) else str(v) for v in value])
    return value if isinstance(value, str) else ""


def _pair_history(layers: list[dict[str, Any]], history: Any) -> list[str]:
    """The instruction that created each layer: history entries without ``empty_layer`` pair up
    with the layers in order (ENV, CMD and the like add a history entry but no layer)."""
    entries = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
    made = [_text(h.get("created_by")) for h in entries if not h.get("empty_layer")]
    if len(made) != len(layers):  # a config that does not describe these layers: show nothing wrong
        return [""] * len(layers)
    return made


def image_config(digest: str, size: int, config: dict[str, Any]) -> ImageConfig:
    settings = config.get("config") if isinstance(config.get("config"), dict) else {}
    env = []
    for item in settings.get("Env") or []:
        if isinstance(item, str):
            key, _, value = item.partition("=")
            env.append((key, value))
    return ImageConfig(
        digest=digest,
        size=size,
        platform=platform_name(config),
        created=_text(config.get("created")),
        author=_text(config.get("author")),
        labels=_str_map(settings.get("Labels")),
        env=env,
        entrypoint=_exec_form(settings.get("Entrypoint")),
        cmd=_exec_form(settings.get("Cmd")),
        working_dir=_text(settings.get("WorkingDir")),
        user=_text(settings.get("User")),
        exposed_ports=sorted(str(p) for p in settings.get("ExposedPorts") or {} if isinstance(p, str)),
        volumes=sorted(str(v) for v in settings.get("Volumes") or {} if isinstance(v, str)),
    )


def _manifest_facts(
    conn: sa.Connection, name: str, digest: str, children: list[str], config: str | None
) -> tuple[list[str], sa.Row | None, dict[str, tuple[str, int]], dict[str, tuple[int, str]]]:
    tag_names = list(
        conn.execute(
            sa.select(tags.c.name)
            .select_from(tags.join(repositories))
            .where(repositories.c.name == name, tags.c.digest == digest)
            .order_by(tags.c.name)
        ).scalars()
    )
    link = conn.execute(
        sa.select(repository_manifests.c.created_at, repository_manifests.c.last_pulled_at)
        .select_from(repository_manifests.join(repositories))
        .where(repositories.c.name == name, repository_manifests.c.digest == digest)
    ).first()
    return tag_names, link, _children_sizes(conn, children), _config_locations(conn, [config] if config else [])


async def manifest_view(registry: Registry, name: str, digest: str) -> ManifestView | None:
    """Everything the manifest page shows, or None when ``name`` holds no such manifest."""
    try:
        parse_digest(digest)
        manifest = await registry.get_manifest(name, digest)
    except RegistryError:
        return None
    body = _json_object(manifest.content)
    entries = _descriptors(body, "manifests") if manifest.media_type in mt.INDEXES else []
    config = body.get("config") if isinstance(body.get("config"), dict) else {}
    layers = _descriptors(body, "layers")
    config_digest = _text(config.get("digest")) or None
    image = (
        manifest.media_type in mt.IMAGE_MANIFESTS
        and _text(config.get("mediaType")) in IMAGE_CONFIGS
        and not body.get("artifactType")
    )
    children = [_text(e.get("digest")) for e in entries]
    tag_names, link, child_sizes, locations = await registry.db.read(
        _manifest_facts, name, digest, children, config_digest if image else None
    )
    subject = body.get("subject")
    view = ManifestView(
        digest=manifest.digest,
        media_type=manifest.media_type,
        kind="index" if manifest.media_type in mt.INDEXES else ("image" if image else "artifact"),
        manifest_size=len(manifest.content),
        size=len(manifest.content),
        tags=tag_names,
        pushed_at=link.created_at if link else None,
        last_pulled_at=link.last_pulled_at if link else None,
        annotations=_str_map(body.get("annotations")),
        subject=(_text(subject.get("digest")) or None) if isinstance(subject, dict) else None,
        artifact_type=_text(body.get("artifactType")) or (None if image else _text(config.get("mediaType")) or None),
    )
    if view.kind == "index":
        for entry in entries:
            child = _text(entry.get("digest"))
            found = child_sizes.get(child)
            view.platforms.append(
                Platform(child, _text(entry.get("mediaType")), platform_name(entry.get("platform")),
                         found[1] if found else None, is_attestation(entry))
            )  # fmt: skip
        view.size += sum(p.size or 0 for p in view.platforms)
    else:
        view.size = image_size(manifest.content, body)
        created_by = [""] * len(layers)
        if image and config_digest:
            parsed = await config_of(registry, config_digest, locations.get(config_digest))
            view.config = image_config(config_digest, _size_of(config), parsed)
            created_by = _pair_history(layers, parsed.get("history"))
        view.layers = [
            Layer(_text(layer.get("digest")), _text(layer.get("mediaType")), _size_of(layer), made)
            for layer, made in zip(layers, created_by, strict=True)
        ]
    for found in await registry.referrers(name, manifest.digest, None):
        view.referrers.append(
            Referrer(found["digest"], found["mediaType"], found.get("artifactType", ""), found["size"],
                     _str_map(found.get("annotations")))
        )  # fmt: skip
    return view

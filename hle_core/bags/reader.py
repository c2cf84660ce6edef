"""Reading rosbag2 bags (mcap and sqlite3; a bag directory or a bare ``.mcap`` / ``.db3`` file) without ROS.

:class:`BagReader` wraps rosbags' ``AnyReader`` and never lets a damaged bag end an evaluation silently:

* a bag that rosbags cannot open because an MCAP file lost its footer (a recording cut short) is read again by
  :class:`~hle_core.bags.mcap_scan.McapScan`, which recovers every complete message (``salvaged``);
* an error while iterating (a corrupt sqlite page, a cut-off record) ends the iteration, and is kept in ``error``;
* a message whose bytes do not deserialise is yielded with ``msg=None`` and the reason in ``error``.

``topics`` gives, per topic, the message type, the count the bag *declares* (metadata.yaml, MCAP statistics or
sqlite rows; None when unknown) and the count actually read, so a caller can account for every message.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["BagError", "BagRecord", "TopicSummary", "BagReader", "bag_storage", "is_storage_file"]

#: First bytes of the storage files of a bag (MCAP magic, SQLite 3 header).
STORAGE_MAGIC = (b"\x89MCAP0\r\n", b"SQLite format 3\x00")


class BagError(ValueError):
    """The bag cannot be used as asked (e.g. the requested topic is not in it); the message says why."""


@dataclass
class BagRecord:
    """One message: ``msg`` is the deserialised rosbags object, or None with ``error`` saying why (or because only
    the serialised bytes were asked for: ``raw``)."""

    topic: str
    msgtype: str
    log_time: int                   # ns, the bag's receive time (not the header stamp)
    msg: Any | None
    error: str | None = None
    raw: bytes | None = None        # the CDR bytes as stored, with messages(..., deserialize=False)


@dataclass
class TopicSummary:
    msgtype: str
    declared: int | None            # count the bag's index / metadata declares; None when unknown
    read: int = 0                   # records yielded so far (deserialised or not)


def bag_storage(path: Path) -> str:
    """``mcap`` | ``sqlite3`` | ``unknown`` for a bag directory or storage file."""
    files = [path] if path.is_file() else sorted(path.iterdir()) if path.is_dir() else []
    suffixes = {p.suffix for p in files}
    return "mcap" if ".mcap" in suffixes else "sqlite3" if ".db3" in suffixes else "unknown"


def is_storage_file(path: Path) -> bool:
    """``path`` is a regular file that starts like an MCAP or SQLite 3 file (a bag's storage file, maybe damaged)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return any(head.startswith(magic) for magic in STORAGE_MAGIC)


def _not_a_bag(path: Path) -> str | None:
    """Why ``path`` is no bag at all (not even a damaged one), or None."""
    if path.is_file():
        if not is_storage_file(path):
            return f"{path} is not a rosbag2 bag: neither an MCAP nor an SQLite 3 file"
    elif path.is_dir():
        if not (path / "metadata.yaml").is_file() and not any(path.glob("*.mcap")) and not any(path.glob("*.db3")):
            return f"{path} is not a rosbag2 bag: a folder without metadata.yaml or .mcap / .db3 files"
    return None


def _metadata_counts(path: Path) -> dict[str, tuple[str, int]]:
    """topic → (type, message count) from a bag directory's metadata.yaml; {} when absent or unreadable."""
    meta = path / "metadata.yaml" if path.is_dir() else None
    if meta is None or not meta.is_file():
        return {}
    try:
        import yaml

        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        return {t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], int(t["message_count"]))
                for t in info.get("topics_with_message_count", [])}
    except Exception:
        return {}


class BagReader:
    """Messages of a rosbag2 bag, tolerant of damage. Use as a context manager.

    Attributes (after ``open``): ``storage``, ``topics`` (name → :class:`TopicSummary`), ``salvaged`` (read by
    a linear scan because the index was unreadable), ``open_error`` (why rosbags refused the bag, if it did),
    ``error`` (what ended reading early, if anything).

    Raises:
        FileNotFoundError: ``path`` does not exist. BagError (on ``open``): ``path`` is no bag at all (not an MCAP /
        SQLite file, or a folder with neither metadata.yaml nor storage files); a damaged bag is read, not refused.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag not found: {self.path}")
        self.storage = bag_storage(self.path)
        self.topics: dict[str, TopicSummary] = {}
        self.salvaged = False
        self.open_error: str | None = None
        self.error: str | None = None
        self._reader: Any = None
        self._files: list[Path] = []

    # --- opening ---------------------------------------------------------------------------------------
    def open(self) -> "BagReader":
        from rosbags.highlevel import AnyReader

        from .types import base_typestore

        why = _not_a_bag(self.path)
        if why:
            raise BagError(why)
        try:
            reader = AnyReader([self.path], default_typestore=base_typestore())
            reader.open()
        except FileNotFoundError:
            raise
        except Exception as exc:                                      # damaged: try to salvage what is there
            self.open_error = f"{type(exc).__name__}: {exc}"
            self._open_salvage()
            return self
        self._reader = reader
        for conn in reader.connections:
            s = self.topics.setdefault(conn.topic, TopicSummary(conn.msgtype, 0))
            s.declared = (s.declared or 0) + int(conn.msgcount)
        return self

    def _open_salvage(self) -> None:
        files = [self.path] if self.path.is_file() else sorted(self.path.glob("*.mcap")) if self.path.is_dir() else []
        self._files = [f for f in files if f.suffix == ".mcap"]
        for topic, (msgtype, count) in _metadata_counts(self.path).items():
            self.topics[topic] = TopicSummary(msgtype, count)
        if not self._files:
            self.error = f"bag cannot be opened ({self.open_error}) and holds no MCAP file to scan"
            return
        self.salvaged = True

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> "BagReader":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------------------
    def require_topics(self, topics: Iterable[str]) -> None:
        """Raise :class:`BagError` when a topic is missing from a bag that opened cleanly (a typo, not damage)."""
        if self.salvaged or self.open_error:
            return
        missing = [t for t in topics if t not in self.topics]
        if missing:
            have = ", ".join(f"{t} ({s.msgtype}, {s.declared})" for t, s in sorted(self.topics.items())) or "none"
            raise BagError(f"topic(s) {missing} not in bag {self.path}; it has: {have}")

    def messages(self, topics: Iterable[str], deserialize: bool = True) -> Iterator[BagRecord]:
        """Records of ``topics`` in the bag's order; errors end the iteration and are kept in ``error``.

        ``deserialize=False`` yields the stored CDR bytes in ``raw`` (``msg`` None), e.g. to republish them as is.
        """
        wanted = set(topics)
        if self._reader is not None:
            yield from self._messages_indexed(wanted, deserialize)
        elif self._files:
            yield from self._messages_salvaged(wanted, deserialize)

    def _count(self, topic: str, msgtype: str) -> None:
        s = self.topics.setdefault(topic, TopicSummary(msgtype, None))
        s.read += 1

    def _messages_indexed(self, wanted: set[str], deserialize: bool) -> Iterator[BagRecord]:
        reader = self._reader
        conns = [c for c in reader.connections if c.topic in wanted]
        if not conns:
            return
        try:
            for conn, t, raw in reader.messages(connections=conns):
                self._count(conn.topic, conn.msgtype)
                if not deserialize:
                    yield BagRecord(conn.topic, conn.msgtype, int(t), None, raw=bytes(raw))
                    continue
                try:
                    msg = reader.deserialize(raw, conn.msgtype)
                except Exception as exc:
                    yield BagRecord(conn.topic, conn.msgtype, int(t), None, f"{type(exc).__name__}: {exc}")
                    continue
                yield BagRecord(conn.topic, conn.msgtype, int(t), msg)
        except Exception as exc:                                      # damaged storage: keep what was read
            self.error = f"reading stopped: {type(exc).__name__}: {exc}"

    def _messages_salvaged(self, wanted: set[str], deserialize: bool) -> Iterator[BagRecord]:
        from .mcap_scan import McapScan

        for path in self._files:
            scan, store = McapScan(path), None
            for channel, t, raw in scan.messages():
                if channel.topic not in wanted:
                    continue
                schema = scan.schemas.get(channel.schema_id)
                known = self.topics.get(channel.topic)
                msgtype = schema.name if schema is not None else (known.msgtype if known else "")
                self._count(channel.topic, msgtype)
                if not deserialize:
                    yield BagRecord(channel.topic, msgtype, int(t), None, raw=raw)
                    continue
                if store is None or msgtype not in store.types:       # schemas precede their messages
                    store = _scan_typestore(scan.schemas.values())
                try:
                    msg = store.deserialize_cdr(raw, msgtype)
                except Exception as exc:
                    yield BagRecord(channel.topic, msgtype, int(t), None, f"{type(exc).__name__}: {exc}")
                    continue
                yield BagRecord(channel.topic, msgtype, int(t), msg)
            if scan.error:
                self.error = "; ".join(filter(None, [self.error, f"{path.name}: {scan.error}"]))


def _scan_typestore(schemas: Iterable[Any]) -> Any:
    """A typestore from an MCAP file's own schemas (ros2msg), else the standard types."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from .types import base_typestore

    try:
        types: dict[str, Any] = {}
        for schema in schemas:
            if schema.encoding != "ros2msg" or not schema.data:
                return base_typestore()
            types.update(get_types_from_msg(schema.data, schema.name))
        if not types:
            return base_typestore()
        store = get_typestore(Stores.EMPTY)
        store.register(types)
        return store
    except Exception:
        return base_typestore()

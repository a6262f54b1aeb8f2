"""MCAP recordings of ROS 2 messages, without ROS: schemas, crash-tolerant writing, reading.

Files follow MCAP's ``ros2`` profile as rosbag2 and Foxglove write and read it: each
channel's messages are CDR-serialized ROS 2 messages (``message_encoding`` ``cdr``), each
schema is named by the full type (``sensor_msgs/msg/JointState``) and holds its complete
message definition in ``ros2msg`` encoding, built by :func:`message_definition` exactly as
rosbag2 builds it from the installed ``.msg`` files (``share/<pkg>/msg/<Type>.msg``). Channels
carry ``topic_type_hash`` (the type's RIHS01 hash, where its ``.json`` type description is
installed) as rosbag2 does.

Writing (:class:`McapRecordingWriter`): messages go into chunks (zstd by default); a chunk is
written to the file and flushed to the operating system as soon as it is closed, which
happens when its uncompressed size passes ``chunk_size`` or when the owner calls
:meth:`~McapRecordingWriter.close_chunk` (the recorder does so on a timer). So a process
killed with SIGKILL leaves a file that holds every closed chunk, intact, and loses exactly
the open chunk (the messages received since the last chunk was closed) plus the summary
section at the end (the indexes, statistics and footer, which only make finding data fast).
Schemas and channels are written into the chunk that was open when they were registered, so
every message of a closed chunk has its schema and channel in that chunk or an earlier one.
A SIGKILL while a chunk is being written leaves that chunk cut short: it is as lost as the
open one. :func:`read_mcap` reads such a file up to its last complete chunk;
:func:`recover_mcap` rewrites it into a complete, indexed file.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.records import Channel, Chunk, Message, Schema
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import LIBRARY_IDENTIFIER, MCAP0_MAGIC, CompressionType, Writer

from mbrl_ros import __version__

#: rosbag2's delimiter before each dependency in a ``ros2msg`` definition (80 '=').
DEFINITION_SEPARATOR = "=" * 80
PRIMITIVE_TYPES = frozenset((
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "string", "wstring"))
# rosbag2's pattern for the field types of a .msg file (the first word of each field line).
_FIELD_TYPE_RE = re.compile(r"(?:^|\n)\s*([a-zA-Z0-9_/]+)(?:\[[^\]]*\])?\s+")
_CONSTANT_RE = re.compile(r"^\S+\s+[A-Za-z0-9_]+\s*=")
_NAME = r"[a-zA-Z][a-zA-Z0-9_]*"
_TYPE_RE = re.compile(rf"^({_NAME})/(?:({_NAME})/)?({_NAME})$")
COMPRESSIONS = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4,
                "none": CompressionType.NONE}
_SOURCE_MSG_DIR = Path(__file__).resolve().parents[2] / "msg"  # a source checkout's msg/


class DefinitionNotFoundError(LookupError):
    """A message type's ``.msg`` file is in none of the searched folders."""


def split_type(type_name: str) -> tuple[str, str, str]:
    """``(package, "msg", Type)`` of ``pkg/Type`` or ``pkg/msg/Type``."""
    match = _TYPE_RE.match(type_name)
    if not match:
        raise ValueError(f"not a ROS message type name: {type_name!r} (want pkg/msg/Type)")
    package, namespace, name = match.groups()
    return package, namespace or "msg", name


def full_type(type_name: str) -> str:
    """``pkg/msg/Type`` for ``pkg/Type`` or ``pkg/msg/Type`` (the name rosbag2 gives schemas)."""
    return "/".join(split_type(type_name))


def share_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Install prefixes' ``share`` folders to look for interface files in: ``extra`` first,
    then AMENT_PREFIX_PATH's prefixes, then this interpreter's prefix (a venv)."""
    raw = os.environ.get("AMENT_PREFIX_PATH", "")
    prefixes = [Path(p) for p in raw.split(os.pathsep) if p] + [Path(sys.prefix)]
    dirs = [Path(d) for d in extra] + [p / "share" for p in prefixes]
    return list(dict.fromkeys(dirs))


def _interface_file(type_name: str, suffix: str, shares: Sequence[Path]) -> Path | None:
    package, namespace, name = split_type(type_name)
    for share in shares:
        path = share / package / namespace / f"{name}{suffix}"
        if path.is_file():
            return path
    if package == "mbrl_ros" and suffix == ".msg" and (_SOURCE_MSG_DIR / f"{name}.msg").is_file():
        return _SOURCE_MSG_DIR / f"{name}.msg"  # this package, run from a source checkout
    return None


def _dependencies(text: str, package: str) -> list[str]:
    """Non-primitive field types of a .msg text, as rosbag2 finds them (``pkg/Type``,
    same-package types prefixed with ``package``), sorted and unique."""
    found = set()
    for match in _FIELD_TYPE_RE.finditer(text):
        name = match.group(1)
        if name in PRIMITIVE_TYPES:
            continue
        found.add(name if "/" in name else f"{package}/{name}")
    return sorted(found)


def message_definition(type_name: str, shares: Sequence[Path] | None = None) -> str:
    """The complete ``ros2msg`` definition of ``type_name``, as rosbag2 writes it.

    The type's own ``.msg`` text comes first; then, depth first and in sorted order, every
    type it uses that is not in the text yet, each preceded by a newline, a line of 80
    ``=`` and ``MSG: pkg/Type`` (rosbag2's ``LocalMessageDefinitionSource``). The files come
    from ``share/<pkg>/msg/<Type>.msg`` of the folders ``shares`` (default
    :func:`share_dirs`); this package's own types also from a source checkout's ``msg/``.
    """
    shares = share_dirs() if shares is None else list(shares)
    texts: dict[str, str] = {}
    seen: set[str] = set()

    def text_of(name: str) -> str:
        if name not in texts:
            path = _interface_file(name, ".msg", shares)
            if path is None:
                package, namespace, type_ = split_type(name)
                searched = ", ".join(str(s) for s in shares)
                raise DefinitionNotFoundError(
                    f"no {package}/{namespace}/{type_}.msg in {searched}")
            texts[name] = path.read_text()
        return texts[name]

    def append(name: str, depth: int) -> str:
        if depth <= 0:
            raise ValueError(f"definition of {type_name} nests too deep (a cycle?)")
        text = text_of(name)
        result = text
        for dep in _dependencies(text, split_type(name)[0]):
            if dep not in seen:
                seen.add(dep)
                result += f"\n{DEFINITION_SEPARATOR}\nMSG: {dep}\n" + append(dep, depth - 1)
        return result

    return append(type_name, 50)


def type_hash(type_name: str, shares: Sequence[Path] | None = None) -> str:
    """The type's RIHS01 hash from its installed type description (``<Type>.json``), or ""."""
    path = _interface_file(type_name, ".json", share_dirs() if shares is None else shares)
    if path is None:
        return ""
    try:
        hashes = json.loads(path.read_text())["type_hashes"]
        wanted = full_type(type_name)
        return next((h["hash_string"] for h in hashes if h["type_name"] == wanted), "")
    except (ValueError, KeyError, TypeError):
        return ""


def leads_with_header(definition: str) -> bool:
    """Whether the message's first field is a ``std_msgs/Header`` (its stamp is then at a
    fixed place in the CDR data: :func:`cdr_header_stamp_ns`)."""
    top = re.split(rf"^{DEFINITION_SEPARATOR}$", definition, maxsplit=1, flags=re.MULTILINE)[0]
    for line in top.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or _CONSTANT_RE.match(line):
            continue  # blank, comment or a constant (constants take no room in the data)
        return line.split()[0] in ("std_msgs/Header", "std_msgs/msg/Header")
    return False


def cdr_header_stamp_ns(data: bytes | memoryview) -> int | None:
    """Header stamp (ns) of a CDR message whose first field is a ``std_msgs/Header``: after
    the 4-byte encapsulation header come ``int32 sec`` and ``uint32 nanosec`` (byte order
    from the encapsulation's kind: odd = little endian). None for data too short."""
    if len(data) < 12:
        return None
    sec, nanosec = struct.unpack_from("<iI" if data[1] & 1 else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


@dataclass
class McapRecordingWriter:
    """One MCAP file, written chunk by chunk; see the module docstring for what a SIGKILL
    loses. ``path`` must not exist (a recording is never overwritten). Not thread safe."""

    path: Path
    chunk_size: int = 1 << 20
    compression: str = "zstd"
    shares: Sequence[Path] | None = None
    messages: int = 0
    chunks: int = 0
    _schemas: dict[str, tuple[int, str]] = field(default_factory=dict)
    _channels: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {sorted(COMPRESSIONS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "xb")  # closed by close()
        self._writer = Writer(self._file, chunk_size=self.chunk_size,
                              compression=COMPRESSIONS[self.compression])
        self._writer.start(profile="ros2",
                           library=f"mbrl_ros/{__version__}; {LIBRARY_IDENTIFIER}")
        self._file.flush()
        self._written = self._file.tell()
        self._closed = False

    def add_metadata(self, name: str, data: Mapping[str, str]) -> None:
        """A metadata record (written at once, outside any chunk)."""
        self._writer.add_metadata(name, {str(k): str(v) for k, v in data.items()})
        self._file.flush()
        self._written = self._file.tell()

    def definition(self, type_name: str) -> str:
        """The ``ros2msg`` definition recorded for ``type_name``."""
        return self._schema(type_name)[1]

    def _schema(self, type_name: str) -> tuple[int, str]:
        name = full_type(type_name)
        if name not in self._schemas:
            text = message_definition(name, self.shares)
            schema_id = self._writer.register_schema(name, SchemaEncoding.ROS2, text.encode())
            self._schemas[name] = (schema_id, text)
        return self._schemas[name]

    def add_channel(self, topic: str, type_name: str) -> int:
        """The channel id of ``topic`` (registered, with its type's schema, on first use)."""
        if topic not in self._channels:
            schema_id, _ = self._schema(type_name)
            metadata = {}
            digest = type_hash(type_name, self.shares)
            if digest:
                metadata["topic_type_hash"] = digest
            self._channels[topic] = self._writer.register_channel(
                topic, MessageEncoding.CDR, schema_id, metadata)
        return self._channels[topic]

    def write(self, channel_id: int, data: bytes, log_time_ns: int,
              publish_time_ns: int | None = None, sequence: int = 0) -> None:
        """Add one CDR message; a chunk that this closes is on the file when this returns."""
        self._writer.add_message(channel_id=channel_id, log_time=int(log_time_ns), data=data,
                                 publish_time=int(log_time_ns if publish_time_ns is None
                                                  else publish_time_ns),
                                 sequence=int(sequence) & 0xFFFFFFFF)
        self.messages += 1
        if self._file.tell() != self._written:  # the writer closed a chunk: hand it to the OS
            self._file.flush()
            self._written = self._file.tell()
            self.chunks += 1

    def close_chunk(self) -> None:
        """Close the open chunk (if it holds a message) and flush it to the file."""
        before = self._written
        self._writer.flush()
        self._written = self._file.tell()
        if self._written != before:
            self.chunks += 1

    @property
    def bytes_written(self) -> int:
        return self._written

    def close(self) -> None:
        """Write the open chunk, the summary section and the footer; close the file."""
        if self._closed:
            return
        self._closed = True
        try:
            self.close_chunk()
            self._writer.finish()
        finally:
            self._file.close()


# ---------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class RecordedMessage:
    """One message of a file: its channel (topic, schema) and record (times, CDR data)."""

    schema: Schema | None
    channel: Channel
    message: Message

    @property
    def topic(self) -> str:
        return self.channel.topic


@dataclass
class McapContents:
    """What :func:`read_mcap` found: messages in file order, and whether the file ended
    without its summary (``complete`` False: written by a process that did not finish it;
    ``lost_tail_bytes`` bytes after the last complete record were not readable)."""

    messages: list[RecordedMessage]
    schemas: dict[int, Schema]
    channels: dict[int, Channel]
    complete: bool
    lost_tail_bytes: int = 0

    def topics(self) -> dict[str, int]:
        """Messages per topic (channels without messages count 0)."""
        counts = {c.topic: 0 for c in self.channels.values()}
        for m in self.messages:
            counts[m.topic] += 1
        return counts

    def decoded(self, topic: str | None = None) -> Iterator[tuple[RecordedMessage, Any]]:
        """``(message, decoded ROS 2 message)`` with mcap-ros2-support's decoder."""
        from mcap_ros2.decoder import DecoderFactory

        factory = DecoderFactory()
        for m in self.messages:
            if topic is None or m.topic == topic:
                decoder = factory.decoder_for(m.channel.message_encoding, m.schema)
                if decoder is None:
                    raise McapError(f"no ROS 2 decoder for channel {m.topic}")
                yield m, decoder(m.message.data)


def _is_complete(path: Path) -> bool:
    size = path.stat().st_size
    if size < 8 + 8:
        return False
    with open(path, "rb") as f:
        f.seek(-8, io.SEEK_END)
        return f.read(8) == MCAP0_MAGIC


def read_mcap(path: str | Path) -> McapContents:
    """Every message of an MCAP file in file order, also of a file whose writer was killed.

    A complete file is read through its index (mcap's seeking reader). A file without its
    end (no footer and closing magic) is read record by record from the start up to the
    last complete record; a chunk cut short by the end of the file is dropped whole (its
    CRC or length cannot be trusted), so what comes back is everything up to the last
    complete chunk."""
    path = Path(path)
    if _is_complete(path):
        with open(path, "rb") as f:
            reader = make_reader(f)
            summary = reader.get_summary()
            messages = [RecordedMessage(s, c, m)
                        for s, c, m in reader.iter_messages(log_time_order=False)]
        schemas = dict(summary.schemas) if summary else {}
        channels = dict(summary.channels) if summary else {}
        return McapContents(messages, schemas, channels, complete=True)
    size = path.stat().st_size
    valid_end = _complete_records_end(path, size)
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    messages: list[RecordedMessage] = []

    def take(record: object) -> None:
        if isinstance(record, Schema):
            schemas[record.id] = record
        elif isinstance(record, Channel):
            channels[record.id] = record
        elif isinstance(record, Message) and record.channel_id in channels:
            channel = channels[record.channel_id]
            messages.append(RecordedMessage(schemas.get(channel.schema_id), channel, record))

    good_end = 0
    with open(path, "rb") as f:
        records = StreamReader(f, emit_chunks=True).records
        while f.tell() < valid_end:
            record = next(records)
            if isinstance(record, Chunk):
                try:
                    inner = breakup_chunk(record, validate_crc=True)
                except Exception:  # damaged: whatever the codec raises
                    break
                for item in inner:
                    take(item)
            else:
                take(record)
            good_end = f.tell()
    return McapContents(messages, schemas, channels, complete=False,
                        lost_tail_bytes=size - good_end)


def _complete_records_end(path: Path, size: int) -> int:
    """Offset after the last record that lies wholly inside the file (walking the records'
    opcode + length prefixes from the magic at the start)."""
    with open(path, "rb") as f:
        if f.read(8) != MCAP0_MAGIC:
            raise McapError(f"{path} is not an MCAP file (no magic at its start)")
        end = 8
        while True:
            head = f.read(9)
            if len(head) < 9:
                return end
            _, length = struct.unpack("<BQ", head)
            if end + 9 + length > size:
                return end
            end += 9 + length
            f.seek(end)


def recover_mcap(source: str | Path, target: str | Path,
                 compression: str = "zstd") -> McapContents:
    """Rewrite what :func:`read_mcap` reads of ``source`` (e.g. a recording whose writer was
    killed) into a complete, indexed ``target``: same schemas, channels, messages and times."""
    contents = read_mcap(source)
    with open(target, "xb") as f:
        writer = Writer(f, compression=COMPRESSIONS[compression])
        writer.start(profile="ros2", library=f"mbrl_ros/{__version__}; {LIBRARY_IDENTIFIER}")
        schema_ids = {sid: writer.register_schema(s.name, s.encoding, s.data)
                      for sid, s in sorted(contents.schemas.items())}
        channel_ids = {cid: writer.register_channel(c.topic, c.message_encoding,
                                                    schema_ids.get(c.schema_id, 0),
                                                    dict(c.metadata))
                       for cid, c in sorted(contents.channels.items())}
        for m in contents.messages:
            writer.add_message(channel_ids[m.channel.id], m.message.log_time, m.message.data,
                               m.message.publish_time, m.message.sequence)
        writer.finish()
    return contents

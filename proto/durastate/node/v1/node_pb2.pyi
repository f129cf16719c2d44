from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PreconditionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECONDITION_NONE: _ClassVar[PreconditionKind]
    PRECONDITION_DOES_NOT_EXIST: _ClassVar[PreconditionKind]
    PRECONDITION_MATCHES_VERSION: _ClassVar[PreconditionKind]

class MetadataStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METADATA_OK: _ClassVar[MetadataStatus]
    METADATA_PRECONDITION_FAILED: _ClassVar[MetadataStatus]
PRECONDITION_NONE: PreconditionKind
PRECONDITION_DOES_NOT_EXIST: PreconditionKind
PRECONDITION_MATCHES_VERSION: PreconditionKind
METADATA_OK: MetadataStatus
METADATA_PRECONDITION_FAILED: MetadataStatus

class GetNodeInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("name", "generation", "roles", "ports", "uptime_s", "pid", "metadata_backend", "metadata_leader", "cluster_name", "address")
    class PortsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    METADATA_BACKEND_FIELD_NUMBER: _ClassVar[int]
    METADATA_LEADER_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    generation: int
    roles: _containers.RepeatedScalarFieldContainer[str]
    ports: _containers.ScalarMap[str, int]
    uptime_s: float
    pid: int
    metadata_backend: str
    metadata_leader: str
    cluster_name: str
    address: str
    def __init__(self, name: _Optional[str] = ..., generation: _Optional[int] = ..., roles: _Optional[_Iterable[str]] = ..., ports: _Optional[_Mapping[str, int]] = ..., uptime_s: _Optional[float] = ..., pid: _Optional[int] = ..., metadata_backend: _Optional[str] = ..., metadata_leader: _Optional[str] = ..., cluster_name: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class MetadataGetRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class MetadataGetResponse(_message.Message):
    __slots__ = ("found", "value", "version")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    version: int
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class MetadataPutRequest(_message.Message):
    __slots__ = ("key", "value", "precondition", "expected_version", "force")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PRECONDITION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    precondition: PreconditionKind
    expected_version: int
    force: bool
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., precondition: _Optional[_Union[PreconditionKind, str]] = ..., expected_version: _Optional[int] = ..., force: _Optional[bool] = ...) -> None: ...

class MetadataPutResponse(_message.Message):
    __slots__ = ("status", "version", "current_version")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    status: MetadataStatus
    version: int
    current_version: int
    def __init__(self, status: _Optional[_Union[MetadataStatus, str]] = ..., version: _Optional[int] = ..., current_version: _Optional[int] = ...) -> None: ...

class LogAppendRequest(_message.Message):
    __slots__ = ("log_id", "records")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    log_id: int
    records: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, log_id: _Optional[int] = ..., records: _Optional[_Iterable[bytes]] = ...) -> None: ...

class LogAppendResponse(_message.Message):
    __slots__ = ("first_lsn",)
    FIRST_LSN_FIELD_NUMBER: _ClassVar[int]
    first_lsn: int
    def __init__(self, first_lsn: _Optional[int] = ...) -> None: ...

class LogReadRequest(_message.Message):
    __slots__ = ("log_id", "from_lsn", "follow")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_LSN_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    log_id: int
    from_lsn: int
    follow: bool
    def __init__(self, log_id: _Optional[int] = ..., from_lsn: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("lsn", "payload", "trim_gap_to")
    LSN_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TRIM_GAP_TO_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    payload: bytes
    trim_gap_to: int
    def __init__(self, lsn: _Optional[int] = ..., payload: _Optional[bytes] = ..., trim_gap_to: _Optional[int] = ...) -> None: ...

class LogEntries(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ...) -> None: ...

class LogTailRequest(_message.Message):
    __slots__ = ("log_id",)
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    log_id: int
    def __init__(self, log_id: _Optional[int] = ...) -> None: ...

class LogTailResponse(_message.Message):
    __slots__ = ("next_lsn", "sealed")
    NEXT_LSN_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    next_lsn: int
    sealed: bool
    def __init__(self, next_lsn: _Optional[int] = ..., sealed: _Optional[bool] = ...) -> None: ...

class LogChainRequest(_message.Message):
    __slots__ = ("log_id",)
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    log_id: int
    def __init__(self, log_id: _Optional[int] = ...) -> None: ...

class LogSegment(_message.Message):
    __slots__ = ("base_lsn", "index", "sequencer", "nodeset", "replication", "sealed", "loglet_id")
    BASE_LSN_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SEQUENCER_FIELD_NUMBER: _ClassVar[int]
    NODESET_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    LOGLET_ID_FIELD_NUMBER: _ClassVar[int]
    base_lsn: int
    index: int
    sequencer: str
    nodeset: _containers.RepeatedScalarFieldContainer[str]
    replication: int
    sealed: bool
    loglet_id: str
    def __init__(self, base_lsn: _Optional[int] = ..., index: _Optional[int] = ..., sequencer: _Optional[str] = ..., nodeset: _Optional[_Iterable[str]] = ..., replication: _Optional[int] = ..., sealed: _Optional[bool] = ..., loglet_id: _Optional[str] = ...) -> None: ...

class LogChainResponse(_message.Message):
    __slots__ = ("segments", "version")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[LogSegment]
    version: int
    def __init__(self, segments: _Optional[_Iterable[_Union[LogSegment, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class LogTrimRequest(_message.Message):
    __slots__ = ("log_id", "up_to_lsn")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_LSN_FIELD_NUMBER: _ClassVar[int]
    log_id: int
    up_to_lsn: int
    def __init__(self, log_id: _Optional[int] = ..., up_to_lsn: _Optional[int] = ...) -> None: ...

class LogTrimResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogAdminRequest(_message.Message):
    __slots__ = ("log_id",)
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    log_id: int
    def __init__(self, log_id: _Optional[int] = ...) -> None: ...

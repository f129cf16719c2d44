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
    __slots__ = ("key", "value", "precondition", "expected_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PRECONDITION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    precondition: PreconditionKind
    expected_version: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., precondition: _Optional[_Union[PreconditionKind, str]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class MetadataPutResponse(_message.Message):
    __slots__ = ("status", "version", "current_version")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    status: MetadataStatus
    version: int
    current_version: int
    def __init__(self, status: _Optional[_Union[MetadataStatus, str]] = ..., version: _Optional[int] = ..., current_version: _Optional[int] = ...) -> None: ...

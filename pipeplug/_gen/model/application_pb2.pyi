from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApplicationSyncStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[ApplicationSyncStatus]
    SYNCED: _ClassVar[ApplicationSyncStatus]
    DEPLOYING: _ClassVar[ApplicationSyncStatus]
    OUT_OF_SYNC: _ClassVar[ApplicationSyncStatus]
    INVALID_CONFIG: _ClassVar[ApplicationSyncStatus]
UNKNOWN: ApplicationSyncStatus
SYNCED: ApplicationSyncStatus
DEPLOYING: ApplicationSyncStatus
OUT_OF_SYNC: ApplicationSyncStatus
INVALID_CONFIG: ApplicationSyncStatus

class ApplicationSyncState(_message.Message):
    __slots__ = ("status", "short_reason", "reason", "head_deployment_id", "timestamp")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SHORT_REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HEAD_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    status: ApplicationSyncStatus
    short_reason: str
    reason: str
    head_deployment_id: str
    timestamp: int
    def __init__(self, status: _Optional[_Union[ApplicationSyncStatus, str]] = ..., short_reason: _Optional[str] = ..., reason: _Optional[str] = ..., head_deployment_id: _Optional[str] = ..., timestamp: _Optional[int] = ...) -> None: ...

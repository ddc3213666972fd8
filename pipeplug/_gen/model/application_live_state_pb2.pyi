from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApplicationLiveState(_message.Message):
    __slots__ = ("resources", "health_status")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[ApplicationLiveState.Status]
        HEALTHY: _ClassVar[ApplicationLiveState.Status]
        OTHER: _ClassVar[ApplicationLiveState.Status]
    UNKNOWN: ApplicationLiveState.Status
    HEALTHY: ApplicationLiveState.Status
    OTHER: ApplicationLiveState.Status
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    HEALTH_STATUS_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[ResourceState]
    health_status: ApplicationLiveState.Status
    def __init__(self, resources: _Optional[_Iterable[_Union[ResourceState, _Mapping]]] = ..., health_status: _Optional[_Union[ApplicationLiveState.Status, str]] = ...) -> None: ...

class ResourceState(_message.Message):
    __slots__ = ("id", "parent_ids", "name", "resource_type", "resource_metadata", "health_status", "health_description", "deploy_target", "plugin_name", "created_at", "updated_at")
    class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[ResourceState.HealthStatus]
        HEALTHY: _ClassVar[ResourceState.HealthStatus]
        UNHEALTHY: _ClassVar[ResourceState.HealthStatus]
    UNKNOWN: ResourceState.HealthStatus
    HEALTHY: ResourceState.HealthStatus
    UNHEALTHY: ResourceState.HealthStatus
    class ResourceMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_METADATA_FIELD_NUMBER: _ClassVar[int]
    HEALTH_STATUS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_TARGET_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    parent_ids: _containers.RepeatedScalarFieldContainer[str]
    name: str
    resource_type: str
    resource_metadata: _containers.ScalarMap[str, str]
    health_status: ResourceState.HealthStatus
    health_description: str
    deploy_target: str
    plugin_name: str
    created_at: int
    updated_at: int
    def __init__(self, id: _Optional[str] = ..., parent_ids: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., resource_type: _Optional[str] = ..., resource_metadata: _Optional[_Mapping[str, str]] = ..., health_status: _Optional[_Union[ResourceState.HealthStatus, str]] = ..., health_description: _Optional[str] = ..., deploy_target: _Optional[str] = ..., plugin_name: _Optional[str] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ...) -> None: ...

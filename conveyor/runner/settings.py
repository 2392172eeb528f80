"""AWS DMS task settings: the keys Conveyor honours, typed; the rest of DMS's keys, named.

A key that DMS does not define is an error with its path. A DMS key that Conveyor does not honour
yet is reported in a warning, never silently ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from conveyor.endpoints.base import ErrorPolicy, PrepMode
from conveyor.endpoints.config import describe_validation_error
from conveyor.errors import ConfigError
from conveyor.transform.lobs import LobMode, LobPolicy

#: Every key of DMS's task-settings document, by section (from the AWS DMS user guide).
DMS_KEYS: dict[str, set[str]] = {
    "TargetMetadata": {
        "TargetSchema",
        "SupportLobs",
        "FullLobMode",
        "LobChunkSize",
        "LimitedSizeLobMode",
        "LobMaxSize",
        "InlineLobMaxSize",
        "LoadMaxFileSize",
        "ParallelLoadThreads",
        "ParallelLoadBufferSize",
        "ParallelLoadQueuesPerThread",
        "ParallelApplyThreads",
        "ParallelApplyBufferSize",
        "ParallelApplyQueuesPerThread",
        "BatchApplyEnabled",
        "TaskRecoveryTableEnabled",
    },
    "FullLoadSettings": {
        "TargetTablePrepMode",
        "CreatePkAfterFullLoad",
        "StopTaskCachedChangesApplied",
        "StopTaskCachedChangesNotApplied",
        "MaxFullLoadSubTasks",
        "TransactionConsistencyTimeout",
        "CommitRate",
    },
    "Logging": {"EnableLogging", "EnableLogContext", "LogComponents", "CloudWatchLogGroup", "CloudWatchLogStream"},
    "ControlTablesSettings": {
        "ControlSchema",
        "HistoryTimeslotInMinutes",
        "HistoryTableEnabled",
        "SuspendedTablesTableEnabled",
        "StatusTableEnabled",
        "FullLoadExceptionTableEnabled",
        "historyTimeslotInMinutes",
    },
    "StreamBufferSettings": {"StreamBufferCount", "StreamBufferSizeInMB", "CtrlStreamBufferSizeInMB"},
    "ChangeProcessingDdlHandlingPolicy": {
        "HandleSourceTableDropped",
        "HandleSourceTableTruncated",
        "HandleSourceTableAltered",
    },
    "ChangeProcessingTuning": {
        "BatchApplyPreserveTransaction",
        "BatchApplyTimeoutMin",
        "BatchApplyTimeoutMax",
        "BatchApplyMemoryLimit",
        "BatchSplitSize",
        "MinTransactionSize",
        "CommitTimeout",
        "MemoryLimitTotal",
        "MemoryKeepTime",
        "StatementCacheSize",
    },
    "ErrorBehavior": {
        "DataErrorPolicy",
        "DataTruncationErrorPolicy",
        "DataErrorEscalationPolicy",
        "DataErrorEscalationCount",
        "TableErrorPolicy",
        "TableErrorEscalationPolicy",
        "TableErrorEscalationCount",
        "RecoverableErrorCount",
        "RecoverableErrorInterval",
        "RecoverableErrorThrottling",
        "RecoverableErrorThrottlingMax",
        "RecoverableErrorStopRetryAfterThrottlingMax",
        "ApplyErrorDeletePolicy",
        "ApplyErrorInsertPolicy",
        "ApplyErrorUpdatePolicy",
        "ApplyErrorEscalationPolicy",
        "ApplyErrorEscalationCount",
        "ApplyErrorFailOnTruncationDdl",
        "FailOnNoTablesCaptured",
        "FailOnTransactionConsistencyBreached",
        "FullLoadIgnoreConflicts",
        "EventErrorPolicy",
    },
    "ValidationSettings": {
        "EnableValidation",
        "ValidationMode",
        "ThreadCount",
        "PartitionSize",
        "FailureMaxCount",
        "RecordFailureDelayInMinutes",
        "RecordSuspendDelayInMinutes",
        "MaxKeyColumnSize",
        "TableFailureMaxCount",
        "ValidationOnly",
        "HandleCollationDiff",
        "RecordFailureDelayLimitInMinutes",
        "SkipLobColumns",
        "ValidationPartialLobSize",
        "ValidationQueryCdcDelaySeconds",
    },
    "BeforeImageSettings": {"EnableBeforeImage", "FieldName", "ColumnFilter"},
    "CharacterSetSettings": {"CharacterReplacements", "CharacterSetSupport"},
    "LoopbackPreventionSettings": {"EnableLoopbackPrevention", "SourceSchema", "TargetSchema"},
    "TTSettings": {"EnableTT", "TTS3Settings", "TTRecordSettings"},
    "PostProcessingRules": set(),
    "FailTaskWhenCleanTaskResourceFailed": set(),
}

_STRICT = ConfigDict(extra="ignore", frozen=True)


class FullLoadSettingsSection(BaseModel):
    model_config = _STRICT
    TargetTablePrepMode: PrepMode = Field(
        PrepMode.DROP_AND_CREATE, description="What to do with existing target tables."
    )
    MaxFullLoadSubTasks: int = Field(8, ge=1, le=49, description="Tables or segments loaded at once.")
    CommitRate: int = Field(10000, ge=1, le=100000, description="Rows read and written per batch.")
    CreatePkAfterFullLoad: bool = Field(
        False, description="Create primary keys after the data (faster); not on SQLite and MySQL targets."
    )


class TargetMetadataSection(BaseModel):
    model_config = _STRICT
    TargetSchema: str = Field("", description="Schema (PostgreSQL) or database (MySQL) on the target; empty = default.")
    SupportLobs: bool = Field(
        True,
        description="Migrate LOB columns (text, bytea, json, xml; TEXT, BLOB, JSON). false: they are not read, "
        "created or written (a warning names them); key columns are always copied.",
    )
    FullLobMode: bool = Field(
        False, description="Copy LOBs whole, whatever their size (also what happens when neither mode is set)."
    )
    LimitedSizeLobMode: bool = Field(
        False,
        description="Truncate LOBs longer than LobMaxSize (text on a character boundary), full load and CDC; each "
        "truncation is counted per table and reported. JSON / XML values too long are rejected rows instead.",
    )
    LobMaxSize: int = Field(
        32, ge=0, le=102400, description="Limited LOB mode: the largest LOB kept, in KB (text: UTF-8 bytes)."
    )
    LobChunkSize: int = Field(
        64, ge=0, description="Accepted; no effect: Conveyor reads each LOB whole with its row, never in chunks."
    )
    InlineLobMaxSize: int = Field(
        0, ge=0, le=102400, description="Accepted; no effect: Conveyor reads every LOB inline with its row."
    )
    BatchApplyEnabled: bool = Field(
        False,
        description="CDC: collect changes for BatchApplyTimeoutMin seconds per target commit (fewer, bigger "
        "commits) instead of a few milliseconds; either way a commit holds whole source transactions.",
    )

    @model_validator(mode="after")
    def _one_lob_mode(self) -> TargetMetadataSection:
        if self.FullLobMode and self.LimitedSizeLobMode:
            raise ValueError("FullLobMode and LimitedSizeLobMode are both true: set one of them")
        if self.LimitedSizeLobMode and self.LobMaxSize < 1:
            raise ValueError("LimitedSizeLobMode needs LobMaxSize (KB) of at least 1")
        return self

    def lob_policy(self) -> LobPolicy:
        """The task's LOB handling (table-settings ``lob-settings`` rules override it per table)."""
        if not self.SupportLobs:
            return LobPolicy(LobMode.NONE)
        if self.LimitedSizeLobMode:
            return LobPolicy(LobMode.LIMITED, self.LobMaxSize * 1024)
        return LobPolicy(LobMode.FULL)


class ChangeProcessingTuningSection(BaseModel):
    model_config = _STRICT
    BatchApplyTimeoutMin: int = Field(
        1, ge=0, description="Batch apply: seconds a window collects changes (less when the source goes quiet)."
    )
    BatchApplyMemoryLimit: int = Field(
        500, ge=1, description="Batch apply: MB of changes a window holds at most (about 500 bytes per change)."
    )


class ErrorBehaviorSection(BaseModel):
    model_config = _STRICT
    DataErrorPolicy: ErrorPolicy = Field(ErrorPolicy.LOG_ERROR, description="What to do with a row the target rejects.")
    TableErrorPolicy: ErrorPolicy = Field(ErrorPolicy.SUSPEND_TABLE, description="What to do when a table fails.")


class ControlTablesSettingsSection(BaseModel):
    model_config = _STRICT
    ControlSchema: str = Field(
        "", description="Where Conveyor's control tables live on the target; empty = target schema."
    )


class ChangeProcessingDdlHandlingPolicySection(BaseModel):
    model_config = _STRICT
    HandleSourceTableAltered: bool = Field(
        True,
        description="Follow ADD / DROP / RENAME COLUMN and type widening on the target; other DDL, or any DDL "
        "when false, suspends that table.",
    )
    HandleSourceTableTruncated: bool = Field(True, description="Truncate the target table when the source's is.")


class ValidationSettingsSection(BaseModel):
    model_config = _STRICT
    EnableValidation: bool = Field(
        False,
        description="`conveyor run`: validate each table after its full load, and during CDC the rows each applied "
        "batch changed.",
    )
    ValidationOnly: bool = Field(
        False, description="`conveyor run` only validates (like `conveyor validate`); nothing is loaded or applied."
    )
    ThreadCount: int = Field(
        5, ge=1, le=64, description="Validation: queries per database at once (tables, then chunks of each)."
    )
    PartitionSize: int = Field(
        10000, ge=1, description="Validation: keys in the first chunks; later chunks adapt to ~0.5 s per query."
    )
    FailureMaxCount: int = Field(
        10000, ge=0, description="Validation: failures recorded in all, after which validation stops."
    )


class TaskSettings(BaseModel):
    model_config = _STRICT
    FullLoadSettings: FullLoadSettingsSection = FullLoadSettingsSection()
    TargetMetadata: TargetMetadataSection = TargetMetadataSection()
    ErrorBehavior: ErrorBehaviorSection = ErrorBehaviorSection()
    ControlTablesSettings: ControlTablesSettingsSection = ControlTablesSettingsSection()
    ChangeProcessingTuning: ChangeProcessingTuningSection = ChangeProcessingTuningSection()
    ChangeProcessingDdlHandlingPolicy: ChangeProcessingDdlHandlingPolicySection = (
        ChangeProcessingDdlHandlingPolicySection()
    )
    ValidationSettings: ValidationSettingsSection = ValidationSettingsSection()


def honoured_keys() -> dict[str, set[str]]:
    return {
        name: set(field.annotation.model_fields)  # type: ignore[union-attr]
        for name, field in TaskSettings.model_fields.items()
    }


def parse_settings(doc: Any, path: str = "settings") -> tuple[TaskSettings, list[str]]:
    """DMS task settings -> typed settings and warnings for DMS keys not honoured yet."""
    if doc is None:
        return TaskSettings(), []
    if not isinstance(doc, dict):
        raise ConfigError("task settings are a JSON object in AWS DMS's format", path)
    honoured = honoured_keys()
    warnings: list[str] = []
    for section, value in doc.items():
        if section not in DMS_KEYS:
            raise ConfigError("unknown key (not an AWS DMS task-settings section)", f"{path}.{section}")
        if not isinstance(value, dict) or not DMS_KEYS[section]:
            if section not in honoured:
                warnings.append(f"{path}.{section} is not honoured yet and is ignored")
            continue
        for key in value:
            if key not in DMS_KEYS[section]:
                raise ConfigError("unknown key (not an AWS DMS task setting)", f"{path}.{section}.{key}")
            if key not in honoured.get(section, set()):
                warnings.append(f"{path}.{section}.{key} is not honoured yet and is ignored")
    try:
        return TaskSettings.model_validate(doc), warnings
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc), path) from None

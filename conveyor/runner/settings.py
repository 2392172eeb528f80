"""AWS DMS task settings: the keys Conveyor honours, typed; the rest of DMS's keys, named.

A key that DMS does not define is an error with its path. A DMS key that Conveyor does not honour
yet is reported in a warning, never silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

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
    BatchApplyTimeoutMax: int = Field(
        30,
        ge=1,
        description="Batch apply: seconds a window may go on collecting while the target still applies the one "
        "before; then the stream waits for the target.",
    )
    BatchApplyMemoryLimit: int = Field(
        500,
        ge=1,
        description="Batch apply: MB of changes a window holds at most (about 1.25 KB per change; a window "
        "never holds more than 10,000 changes).",
    )

    @model_validator(mode="after")
    def _max_after_min(self) -> ChangeProcessingTuningSection:
        if self.BatchApplyTimeoutMax < self.BatchApplyTimeoutMin:
            raise ValueError(
                f"BatchApplyTimeoutMax ({self.BatchApplyTimeoutMax}) is less than BatchApplyTimeoutMin "
                f"({self.BatchApplyTimeoutMin}): set it to at least BatchApplyTimeoutMin"
            )
        return self


class ErrorBehaviorSection(BaseModel):
    model_config = _STRICT
    DataErrorPolicy: ErrorPolicy = Field(
        ErrorPolicy.LOG_ERROR,
        description="What to do with a row (full load) or change (CDC) the target rejects: LOG_ERROR records it in "
        "conveyor_apply_exceptions; IGNORE_RECORD only counts it; SUSPEND_TABLE fails (full load) or suspends (CDC) "
        "its table; STOP_TASK stops the task.",
    )
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


#: DMS keys accepted with a reason they change nothing in Conveyor (the warning names it)
NOT_HONOURED_WHY: dict[str, str] = {
    "ChangeProcessingTuning.BatchApplyPreserveTransaction": "every target commit holds whole source "
    "transactions, in both apply modes, whatever its value",
    "ValidationSettings.HandleCollationDiff": "Conveyor never pairs rows by their order under a collation "
    "(integer key ranges, or hash buckets of each key's exact text), so collation differences cannot "
    "misalign rows; keys are compared by their exact text",
}


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
    ValidationMode: Literal["ROW_LEVEL", "GROUP_LEVEL"] = Field(
        "ROW_LEVEL",
        description="Both work alike: groups of rows are checksummed in the databases and the rows of a "
        "differing group compared, so failures are always rows (the failures table, repair).",
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
    TableFailureMaxCount: int = Field(
        1000,
        ge=0,
        description="Validation of a table with more failing rows than this is suspended (`Suspended records`; "
        "that many failures recorded); other tables go on. During CDC, after RecordSuspendDelayInMinutes.",
    )
    RecordSuspendDelayInMinutes: int = Field(
        30,
        ge=0,
        description="CDC: minutes a table stays over TableFailureMaxCount before its re-validation is suspended.",
    )
    RecordFailureDelayInMinutes: int = Field(
        0,
        ge=0,
        description="CDC: minutes a changed row must keep differing before it is recorded as failed (pending "
        "until then). DMS's default is 5; Conveyor's 0 since a failure already waits until the stream has "
        "applied the source's transactions up to the first read.",
    )
    RecordFailureDelayLimitInMinutes: int = Field(
        0, ge=0, description="CDC: the same delay when longer than RecordFailureDelayInMinutes (the larger counts)."
    )
    ValidationQueryCdcDelaySeconds: int = Field(
        0, ge=0, description="CDC: seconds a changed row waits before it is first validated again."
    )
    MaxKeyColumnSize: int = Field(
        8096,
        ge=1,
        description="Bytes (UTF-8) of a row's key texts: a row with a longer key is not recorded as failed or "
        "re-validated during CDC; it is counted in ValidationSuspendedRecords.",
    )
    SkipLobColumns: bool = Field(
        False, description="Leave LOB columns (TEXT, BLOB, JSON; never key columns) out of the comparison."
    )
    ValidationPartialLobSize: int = Field(
        0,
        ge=0,
        description="KB: compare only this much of each text and binary LOB value, on both sides (text: UTF-8 "
        "bytes, cut on a character boundary; JSON whole); 0 compares LOBs whole.",
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
                why = NOT_HONOURED_WHY.get(f"{section}.{key}")
                warnings.append(
                    f"{path}.{section}.{key} is ignored: {why}"
                    if why
                    else f"{path}.{section}.{key} is not honoured yet and is ignored"
                )
    try:
        return TaskSettings.model_validate(doc), warnings
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc), path) from None

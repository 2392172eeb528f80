import pytest

from conveyor.endpoints.base import PrepMode
from conveyor.endpoints.config import PostgresConfig
from conveyor.errors import ConfigError
from conveyor.runner.task import load_task, task_from_document

BASE = {"name": "t", "source": "sqlite:///a.db", "target": "postgresql://u:p@h:5433/db"}


def test_urls_and_settings() -> None:
    task = task_from_document(
        {
            **BASE,
            "settings": {"FullLoadSettings": {"TargetTablePrepMode": "TRUNCATE_BEFORE_LOAD", "MaxFullLoadSubTasks": 4}},
        }
    )
    assert task.source.engine == "sqlite"
    assert task.target.engine == "postgresql" and task.target.port == 5433
    assert task.settings.FullLoadSettings.TargetTablePrepMode is PrepMode.TRUNCATE_BEFORE_LOAD
    assert task.settings.FullLoadSettings.MaxFullLoadSubTasks == 4


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"^sourse: unknown key"):
        task_from_document({**BASE, "sourse": "x"})


def test_unknown_setting_is_an_error_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"settings\.FullLoadSettings\.TargetTablePrepNode"):
        task_from_document({**BASE, "settings": {"FullLoadSettings": {"TargetTablePrepNode": "x"}}})


def test_dms_setting_not_honoured_is_a_warning() -> None:
    task = task_from_document(
        {
            **BASE,
            "settings": {
                "FullLoadSettings": {"TransactionConsistencyTimeout": 600},
                "Logging": {"EnableLogging": True},
            },
        }
    )
    assert any("TransactionConsistencyTimeout" in w for w in task.warnings)
    assert any("EnableLogging" in w for w in task.warnings)


def test_bad_setting_value() -> None:
    with pytest.raises(ConfigError, match="TargetTablePrepMode"):
        task_from_document({**BASE, "settings": {"FullLoadSettings": {"TargetTablePrepMode": "WIPE"}}})


def test_env_substitution_is_url_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPW", "p@ss:/word")
    task = task_from_document({**BASE, "target": "postgresql://u:${PGPW}@h/db"})
    assert isinstance(task.target, PostgresConfig)
    assert task.target.password is not None
    assert task.target.password.get_secret_value() == "p@ss:/word"
    assert "p@ss" not in repr(task.target) and "p@ss" not in str(task.target)


def test_missing_env_var() -> None:
    with pytest.raises(ConfigError, match="NOPE_NOT_SET"):
        task_from_document({**BASE, "target": "postgresql://u:${NOPE_NOT_SET}@h/db"})


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("oracle://h/db", "unknown engine"),
        ("postgresql://h:99999/db", "port"),
        ("mysql://h/db?ssl-mode=SOMETIMES", "ssl_mode"),
        ("mysql://h/db?colour=blue", "colour: unknown key"),
        ("sqlite://relative.db", "SQLite URLs"),
        ({"engine": "postgresql", "hots": "x"}, "hots: unknown key"),
    ],
)
def test_bad_endpoints(endpoint: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        task_from_document({**BASE, "source": endpoint})


def test_field_map_endpoint() -> None:
    task = task_from_document(
        {**BASE, "source": {"engine": "mysql", "host": "db", "database": "shop", "password": "pw"}}
    )
    assert task.source.engine == "mysql" and task.source.database == "shop"


def test_task_file_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="not found"):
        load_task(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_task(bad)
    ok = tmp_path / "ok.json"
    ok.write_text('{"name": "t", "source": "sqlite:///a.db", "target": "sqlite:///b.db"}')
    assert load_task(ok).name == "t"

"""Where Postgres comes from: the embedded server shared by processes, an external URL, and clear errors."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_pipeline.storage import database

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (database.DATABASE_URL_ENV,)}
    env[database.DATA_DIR_ENV] = str(data_dir)
    return env


def test_unreachable_database_url_fails_fast_naming_the_variable(monkeypatch):
    monkeypatch.setenv(database.DATABASE_URL_ENV, "postgresql://app:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(database.DatabaseConfigError) as info:
        database.check_connection(database.database_url())
    message = str(info.value)
    assert database.DATABASE_URL_ENV in message
    assert "s3cret" not in message and "***" in message


def test_non_postgres_url_is_refused(monkeypatch):
    monkeypatch.setenv(database.DATABASE_URL_ENV, "mysql://localhost/db")
    with pytest.raises(database.DatabaseConfigError, match="postgresql://"):
        database.database_url()


def test_unwritable_data_folder_fails_naming_the_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(database.DatabaseConfigError) as info:
        database.start_embedded_postgres(blocker / "sub" / "postgres")
    assert str(blocker / "sub") in str(info.value)
    assert database.DATA_DIR_ENV in str(info.value)


@pytest.mark.slow
def test_two_processes_share_one_embedded_server_and_run_history_survives_a_restart(tmp_path):
    """Two Dagster processes on the project's dagster.yaml use one embedded server; a restart keeps the runs."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    data_dir = tmp_path / "data"
    env = embedded_env(data_dir)
    env["DAGSTER_HOME"] = str(home)
    launch_run = """
        import json, dagster as dg
        from campaign_pipeline.storage.database import database_url
        @dg.op
        def hello(): return 1
        @dg.job
        def smoke(): hello()
        instance = dg.DagsterInstance.get()
        result = smoke.execute_in_process(instance=instance)
        print(json.dumps({"url": database_url(), "run": result.run_id, "runs": instance.get_runs_count()}))
    """
    try:
        first = json.loads(run_python(launch_run, env, cwd=home))
        second = json.loads(run_python(launch_run, env, cwd=home))
        assert first["url"] == second["url"]  # the second process found the first one's server
        assert second["runs"] == 2
        database.stop_embedded_postgres(data_dir / "postgres")
        after_restart = json.loads(
            run_python(
                """
                import json, dagster as dg
                instance = dg.DagsterInstance.get()
                print(json.dumps({"runs": [r.run_id for r in instance.get_runs()]}))
                """,
                env,
                cwd=home,
            )
        )
        assert set(after_restart["runs"]) == {first["run"], second["run"]}
    finally:
        database.stop_embedded_postgres(data_dir / "postgres")


def test_external_url_is_used_by_dagster_and_the_pipeline(pg_url, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = dict(os.environ)
    env[database.DATABASE_URL_ENV] = pg_url
    env[database.DATA_DIR_ENV] = str(tmp_path / "data")
    env["DAGSTER_HOME"] = str(home)
    out = json.loads(
        run_python(
            """
            import json, dagster as dg
            from campaign_pipeline.storage.database import get_engine
            @dg.op
            def hello(): return 1
            @dg.job
            def external_smoke(): hello()
            result = external_smoke.execute_in_process(instance=dg.DagsterInstance.get())
            print(json.dumps({"run": result.run_id, "engine": get_engine().url.database}))
            """,
            env,
            cwd=home,
        )
    )
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM runs WHERE run_id = :r"), {"r": out["run"]}).scalar()
    engine.dispose()
    assert stored == 1
    assert out["engine"] == sa.make_url(pg_url).database
    assert not (tmp_path / "data" / "postgres").exists()  # no embedded server was started

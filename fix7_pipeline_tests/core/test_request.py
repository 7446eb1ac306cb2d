"""The one request schema: the Dagster run config, `fix7 rehearse`'s flags and rehearsal.yaml all come from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from fix7_pipeline.cli.main import build_parser
from fix7_pipeline.cli.rehearse import request_config
from fix7_pipeline.core.run.automation_config import TOP_KEYS, load_automation_config, yaml_settings
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.shared.paths import project_dir
from fix7_pipeline.core.intake.request import RehearsalRequest, request_fields

PIPELINE_ORDER = ["clone_path", "apply_sql", "rollback_sql", "attested_by", "contract", "search_roots",
                  "allowed_roots", "production_hosts", "allow_hosts", "server_url", "keep_databases", "fresh_clone",
                  "statement_timeout_s", "lock_timeout_s", "max_statement_s", "max_lock_s", "max_access_exclusive_s",
                  "max_total_s", "no_rewrite_tables", "index_warn_mb", "index_warn_rows", "max_blocked_ms",
                  "max_production_estimate_s", "no_traffic_probe", "probe_sessions", "probe_rate",
                  "probe_reader_hold_s", "probe_lock_timeout_ms", "evidence_dir"]


def test_every_field_has_a_description_a_default_and_a_flag_in_pipeline_order():
    fields = request_fields()
    assert [f.name for f in fields] == PIPELINE_ORDER
    for f in fields:
        assert f.info.description and len(f.info.description) > 10, f.name
        assert not f.info.is_required(), f.name
        assert f.flag is not None and f.flag.help, f.name
    assert [f.name for f in dataclasses.fields(RehearsalRequest)] == PIPELINE_ORDER


def test_the_core_schema_does_not_import_dagster():
    import subprocess
    import sys

    code = ("import sys; import fix7_pipeline.core.intake.request, fix7_pipeline.core.run.automation_config; "
            "print(any(m == 'dagster' or m.startswith('dagster.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_the_dagster_config_is_derived_field_for_field():
    from fix7_pipeline.defs.intake import RehearsalRequestConfig

    derived = RehearsalRequestConfig.model_fields
    assert list(derived) == PIPELINE_ORDER
    for f in request_fields():
        assert derived[f.name].description == f.info.description
        assert derived[f.name].default == f.default, f.name
    config = RehearsalRequestConfig(attested_by="ops", max_lock_s=1.5, no_rewrite_tables=["birth_registry"])
    request = config.to_request()
    assert isinstance(request, RehearsalRequest)
    assert (request.max_lock_s, request.no_rewrite_tables, request.attested_by) == (1.5, ["birth_registry"], "ops")
    assert request.clone_path == str(project_dir() / ".fix7/demo/birth_surface_clone.dump")


def test_the_launchpad_opens_with_every_list_field_filled_in():
    """Dagster's own scaffold of the job's run config (what the launchpad loads) carries the list fields."""
    from dagster._core.snap import JobSnap
    from dagster._core.snap.snap_to_yaml import default_values_yaml_from_type_snap

    from fix7_pipeline.definitions import defs

    snap = JobSnap.from_job_def(defs.resolve_job_def("fix7_rehearsal"))
    schema = snap.config_schema_snapshot
    root = schema.get_config_snap(snap.mode_def_snaps[0].root_config_key)
    scaffold = yaml.safe_load(default_values_yaml_from_type_snap(schema, root))["ops"]["clone_intake"]["config"]
    # Dagster leaves out a field whose default is null: the four thresholds, unset by default
    assert set(scaffold) == {f.name for f in request_fields() if f.default is not None}
    for f in request_fields():
        if f.kind is list:
            assert scaffold[f.name] == [], f.name


def test_every_cli_flag_maps_to_its_field():
    argv = ["rehearse", "--clone", "c.dump", "--apply", "a.sql", "--rollback", "r.sql", "--attested-by", "me",
            "--contract", "k.yaml", "--search-root", "s1", "--search-root", "s2", "--allowed-root", "/al",
            "--production-host", "*.prod", "--allow-host", "ok.test", "--server", "postgresql://u@h/db",
            "--keep-databases", "--statement-timeout-s", "5", "--lock-timeout-s", "2", "--max-statement-s", "1.5",
            "--max-lock-s", "0", "--max-access-exclusive-s", "2", "--max-total-s", "9",
            "--no-rewrite-table", "t1", "--no-rewrite-table", "s.t2", "--index-warn-mb", "3",
            "--index-warn-rows", "7", "--max-blocked-ms", "500", "--max-production-estimate-s", "60",
            "--probe-sessions", "2", "--probe-rate", "5", "--probe-reader-hold-s", "0.2",
            "--probe-lock-timeout-ms", "300", "--evidence-dir", "ev"]
    config = request_config(build_parser().parse_args(argv))
    assert list(config) == PIPELINE_ORDER
    assert config["clone_path"] == str(Path("c.dump").absolute())
    assert config["evidence_dir"] == str(Path("ev").resolve())
    assert config["search_roots"] == ["s1", "s2"] and config["no_rewrite_tables"] == ["t1", "s.t2"]
    assert (config["max_lock_s"], config["statement_timeout_s"], config["index_warn_rows"]) == (0.0, 5, 7)
    assert config["keep_databases"] is True and config["server_url"] == "postgresql://u@h/db"
    assert (config["max_blocked_ms"], config["max_production_estimate_s"], config["probe_sessions"],
            config["no_traffic_probe"]) == (500.0, 60.0, 2, False)
    RehearsalRequest(**config)  # the run config the CLI sends is a valid request

    bare = request_config(build_parser().parse_args(argv[:7]))
    # unset timeouts and warning sizes are left to the schema's defaults; thresholds are present and unset
    assert not {"statement_timeout_s", "lock_timeout_s", "index_warn_mb", "index_warn_rows"} & set(bare)
    assert bare["max_lock_s"] is None and bare["production_hosts"] == [] and bare["attested_by"] == ""


@pytest.mark.parametrize("flag,value", [("--statement-timeout-s", "0"), ("--max-lock-s", "-1"),
                                        ("--index-warn-rows", "x")])
def test_a_bad_flag_value_is_a_usage_error(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["rehearse", "--clone", "c", "--apply", "a", "--rollback", "r", flag, value])
    assert e.value.code == 2 and "usage error" in capsys.readouterr().err


def test_rehearsal_yaml_takes_every_request_field_but_the_clone_and_the_evidence_dir(tmp_path):
    assert set(yaml_settings()) == set(PIPELINE_ORDER) - {"clone_path", "evidence_dir"}
    assert not set(yaml_settings()) & TOP_KEYS - {"clone_path"}
    (tmp_path / "a.sql").write_text("select 1;")
    (tmp_path / "r.sql").write_text("select 1;")
    f = tmp_path / "rehearsal.yaml"
    f.write_text(yaml.safe_dump({"clone_path": "c.dump", "apply_sql": "a.sql", "rollback_sql": "r.sql",
                                 "search_roots": ["roots"], "contract": "k.yaml", "max_lock_s": 2,
                                 "no_rewrite_tables": ["birth_registry"], "keep_databases": True}))
    cfg = load_automation_config(f)
    assert cfg.request["apply_sql"] == str(tmp_path / "a.sql") and cfg.request["contract"] == str(tmp_path / "k.yaml")
    assert cfg.request["search_roots"] == [str(tmp_path / "roots")] and cfg.request["max_lock_s"] == 2.0
    assert cfg.request["no_rewrite_tables"] == ["birth_registry"]
    RehearsalRequest(**cfg.request_config("/x.dump", "t"))
    for bad, why in [({"keep_databases": "yes"}, "true or false"), ({"index_warn_rows": -1}, "a whole number"),
                     ({"production_hosts": "x"}, "a list of text"), ({"max_total_s": "9"}, "a number")]:
        f.write_text(yaml.safe_dump({"clone_path": "c.dump", "apply_sql": "a.sql", "rollback_sql": "r.sql", **bad}))
        with pytest.raises(Fix7Error) as e:
            load_automation_config(f)
        assert why in e.value.message, bad

"""Issue 22: the true reason and the documented exit code, through the CLI.

A contract that cannot be read (YAML) or made (schema SQL PostgreSQL refuses) is a usage error, exit 2, like a
change file that cannot be read: it is the operator's input, not a verdict on the clone.
"""

from __future__ import annotations

import pytest

from fix7_pipeline_tests.e2e_support import DagsterHome, minimal_plain_dump, rehearse_args, tiny_change


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("true_reasons_home"), "reasons")
    yield h
    h.drop()


def _usage_error(r) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    return r.stderr


@pytest.mark.parametrize("name, text, said", [
    ("contract.yaml", "shape: [this is: not a contract\n", "could not be read"),
    ("contract.sql", "create table public.t (id integer primary key, x no_such_type);\n", "PostgreSQL did not accept"),
])
def test_a_broken_contract_exits_2(home, tmp_path, name, text, said):
    contract = tmp_path / name
    contract.write_text(text)
    r = home.cli(*rehearse_args(minimal_plain_dump(tmp_path / "clone.sql"), tiny_change(tmp_path / "change"),
                                tmp_path / "ev", "--contract", str(contract)))
    err = _usage_error(r)
    assert said in err and str(contract) in err

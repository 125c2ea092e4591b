"""Registry slots and history, the release checklist, and the CLI forms of both."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmlab.cli import app
from mmlab.errors import ConfigError, DataError
from mmlab.ml.registry import Registry
from mmlab.ml.release import release_check

runner = CliRunner()
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def models(trained, tmp_path):
    """models/ with two exported models (a, b) and an empty registry."""
    root = tmp_path / "models"
    for mid in ("a", "b"):
        shutil.copytree(trained, root / mid)
        meta = json.loads((root / mid / "lgbm_meta.json").read_text())
        meta["model_id"] = mid
        (root / mid / "lgbm_meta.json").write_text(json.dumps(meta))
    return root


def test_register_promote_rollback(models):
    reg = Registry(models / "registry")
    for mid in ("a", "b"):
        e = reg.register(models / mid, notes=f"model {mid}")
        assert e["path"] == mid and e["schema_hash"] and e["thresholds"]["tau_entry"] > 0
    m = json.loads((models / "registry" / "manifest.json").read_text())
    assert {e["id"] for e in m["models"]} == {"a", "b"}
    for e in m["models"]:
        assert set(e) >= {"id", "created_at", "schema_hash", "thresholds", "path", "metrics", "notes"}
    reg.promote("a", to="active")
    reg.promote("b", to="active")
    reg.promote("a", to="shadow")
    assert (reg.load()["active"], reg.load()["shadow"]) == ("b", "a")
    assert reg.model_dir("active") == models / "b"
    assert reg.rollback()["active"] == "a"
    assert reg.rollback()["active"] is None
    with pytest.raises(ConfigError, match="nothing to roll back"):
        reg.rollback()
    with pytest.raises(ConfigError, match="'zz' is not in .*registered: \\['a', 'b'\\]"):
        reg.promote("zz")
    with pytest.raises(ConfigError, match="--to must be one of"):
        reg.promote("a", to="canary")


def test_promote_needs_an_onnx_file(models):
    (models / "a" / "model.onnx").unlink()
    reg = Registry(models / "registry")
    reg.register(models / "a")
    with pytest.raises(DataError, match="run mmlab export-onnx"):
        reg.promote("a")


def test_registry_cli_forms(models):
    regdir = str(models / "registry")
    r = runner.invoke(app, ["export-onnx", str(models / "a"), "--registry", regdir])
    assert r.exit_code == 0 and "PASS" in r.output and "registered a" in r.output, r.output
    r = runner.invoke(app, ["export-onnx", str(models / "b"), "--registry", regdir])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["registry", "promote", "--to", "active", "--id", "a", "--registry", regdir])
    assert r.exit_code == 0 and "active = a" in r.output
    r = runner.invoke(app, ["registry", "promote", "--to", "active", "--id", "b", "--registry", regdir])
    assert r.exit_code == 0
    r = runner.invoke(app, ["registry", "list", "--registry", regdir, "--json"])
    listing = json.loads(r.output)
    assert listing["active"] == "b" and {m["id"] for m in listing["models"]} == {"a", "b"}
    r = runner.invoke(app, ["registry", "rollback", "--registry", regdir])
    assert r.exit_code == 0 and "active = a" in r.output
    r = runner.invoke(app, ["registry", "list", "--registry", regdir])
    assert r.exit_code == 0 and "active=a" in r.output
    r = runner.invoke(app, ["registry", "promote", "--to", "active", "--id", "nope", "--registry", regdir])
    assert r.exit_code == 2 and "not in" in r.output


def test_release_check_without_backtest(models):
    reg = Registry(models / "registry")
    reg.register(models / "a")
    reg.register(models / "b")
    reg.promote("a")
    res = release_check("b", registry=models / "registry")
    st = {c["check"]: c["status"] for c in res["checks"]}
    assert st == {"schema": "PASS", "pr_auc": "PASS", "precision": "PASS", "parity": "PASS", "backtest": "SKIP"}
    assert res["passed"] and res["active"] == "a"
    # A worse candidate fails the metric checks.
    meta = json.loads((models / "b" / "lgbm_meta.json").read_text())
    meta["metrics"]["test"]["pr_auc"] = 0.0
    (models / "b" / "lgbm_meta.json").write_text(json.dumps(meta))
    reg.register(models / "b")
    res = release_check("b", registry=models / "registry")
    assert not res["passed"] and {c["check"]: c["status"] for c in res["checks"]}["pr_auc"] == "FAIL"


def test_release_check_backtest_gates_cli(models, btc_store):
    regdir = models / "registry"
    reg = Registry(regdir)
    reg.register(models / "a")
    cfg = models / "gate.toml"
    cfg.write_text((REPO / "experiments" / "grid_btcusdt.toml").read_text().replace('root = "data"', f'root = "{btc_store}"'))
    r = runner.invoke(app, ["release", "check", "a", "--registry", str(regdir), "--config", str(cfg), "--day", "2024-07-19",
                            "--min-winrate", "0.0", "--min-markout-bps", "-100", "--min-fill-rate", "0.01", "--json"])
    res = json.loads(r.output)
    st = {c["check"]: c["status"] for c in res["checks"]}
    assert r.exit_code == 0, r.output
    assert st["winrate"] == st["avg_markout"] == st["fill_rate"] == "PASS"
    r = runner.invoke(app, ["release", "check", "a", "--registry", str(regdir), "--config", str(cfg)])
    assert r.exit_code == 1 and "FAIL" in r.output  # default gates: the grid's markouts are negative

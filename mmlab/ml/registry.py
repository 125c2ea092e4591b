"""The model registry: ``models/registry/manifest.json`` with the models, the active and shadow slots and history.

Manifest layout::

    {"models": [{"id", "created_at", "schema_hash", "thresholds", "path", "metrics", "notes"}, ...],
     "active": "<id>" | null, "shadow": "<id>" | null,
     "history": [{"at", "slot", "from", "to", "action"}, ...]}

``path`` is relative to the registry's parent directory (``models/``) when the model lives below it, else
absolute. ``register`` adds or refreshes an entry (``mmlab export-onnx`` registers the model it exported);
``promote`` points a slot at a registered model that has ``model.onnx``; ``rollback`` returns the active slot to
the model it held before the last promotion. Writes go through a temporary file and ``os.replace`` so a crash
never leaves a half-written manifest.

>>> reg = Registry("models/registry")  # doctest: +SKIP
>>> reg.promote("m1", to="active")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from mmlab.errors import ConfigError, DataError

DEFAULT_REGISTRY = Path("models") / "registry"
MANIFEST = "manifest.json"
SLOTS = ("active", "shadow")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    """Read/modify/write access to one registry directory."""

    def __init__(self, root: str | os.PathLike = DEFAULT_REGISTRY) -> None:
        self.root = Path(root)
        self.path = self.root / MANIFEST

    # -- storage
    def load(self) -> dict:
        if not self.path.exists():
            return {"models": [], "active": None, "shadow": None, "history": []}
        try:
            m = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{self.path} is not valid JSON ({exc}); restore it from version control or delete it "
                            "and re-register the models (mmlab export-onnx)") from exc
        for k, v in (("models", []), ("active", None), ("shadow", None), ("history", [])):
            m.setdefault(k, v)
        return m

    def save(self, m: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(m, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)

    # -- queries
    def entry(self, model_id: str, m: dict | None = None) -> dict:
        m = m or self.load()
        for e in m["models"]:
            if e["id"] == model_id:
                return e
        known = [e["id"] for e in m["models"]]
        raise ConfigError(f"model {model_id!r} is not in {self.path} (registered: {known or 'none'}); "
                          f"export it first: mmlab export-onnx models/{model_id}")

    def model_dir(self, model_id: str) -> Path:
        """Directory of a registered model; ``active``/``shadow`` resolve through the slot."""
        m = self.load()
        if model_id in SLOTS:
            slot = model_id
            model_id = m.get(slot)
            if not model_id:
                raise ConfigError(f"no model in the {slot} slot of {self.path}; promote one: "
                                  f"mmlab registry promote --to {slot} --id <id>")
        p = Path(self.entry(model_id, m)["path"])
        return p if p.is_absolute() else self.root.parent / p

    def resolve_id(self, model_id: str) -> str:
        if model_id in SLOTS:
            got = self.load().get(model_id)
            if not got:
                raise ConfigError(f"no model in the {model_id} slot of {self.path}")
            return got
        return model_id

    # -- changes
    def register(self, model_dir: str | os.PathLike, notes: str = "") -> dict:
        """Add (or refresh) the entry of an exported model directory from its ``lgbm_meta.json``."""
        d = Path(model_dir)
        meta_path = d / "lgbm_meta.json"
        if not meta_path.exists():
            raise DataError(f"{meta_path} does not exist: train the model first (mmlab train ... --out {d})")
        meta = json.loads(meta_path.read_text())
        try:
            rel = d.resolve().relative_to(self.root.resolve().parent)
            path = str(rel)
        except ValueError:
            path = str(d.resolve())
        m = self.load()
        entry = {"id": meta["model_id"], "created_at": _now(), "schema_hash": meta["schema_hash"],
                 "thresholds": meta["thresholds"], "path": path, "metrics": meta.get("metrics", {}).get("test", {}),
                 "target": meta.get("target"), "data_windows": meta.get("data_windows"), "notes": notes}
        m["models"] = [e for e in m["models"] if e["id"] != entry["id"]] + [entry]
        m["history"].append({"at": entry["created_at"], "slot": None, "from": None, "to": entry["id"], "action": "register"})
        self.save(m)
        return entry

    def promote(self, model_id: str, to: str = "active") -> dict:
        """Point slot ``to`` (active|shadow) at ``model_id``; returns the manifest."""
        if to not in SLOTS:
            raise ConfigError(f"--to must be one of {SLOTS}, got {to!r}")
        m = self.load()
        e = self.entry(model_id, m)
        d = Path(e["path"]) if Path(e["path"]).is_absolute() else self.root.parent / e["path"]
        if not (d / "model.onnx").exists():
            raise DataError(f"{d / 'model.onnx'} does not exist; run mmlab export-onnx {d} before promoting {model_id!r}")
        prev = m.get(to)
        m[to] = model_id
        m["history"].append({"at": _now(), "slot": to, "from": prev, "to": model_id, "action": "promote"})
        self.save(m)
        return m

    def rollback(self, slot: str = "active") -> dict:
        """Return ``slot`` to the model it held before its last promotion (walking back over earlier rollbacks)."""
        if slot not in SLOTS:
            raise ConfigError(f"slot must be one of {SLOTS}, got {slot!r}")
        m = self.load()
        moves = [h for h in m["history"] if h.get("slot") == slot and h["action"] in ("promote", "rollback")]
        # Undo promotions in reverse order; a rollback entry cancels the promotion it undid.
        stack = []
        for h in moves:
            if h["action"] == "promote":
                stack.append(h)
            elif stack:
                stack.pop()
        if not stack:
            raise ConfigError(f"nothing to roll back in the {slot} slot of {self.path} (no earlier promotion)")
        last = stack[-1]
        cur = m.get(slot)
        m[slot] = last["from"]
        m["history"].append({"at": _now(), "slot": slot, "from": cur, "to": last["from"], "action": "rollback"})
        self.save(m)
        return m

    def rows(self) -> list[dict]:
        """One dict per model for listings (slot marks, test PR-AUC/precision, thresholds)."""
        m = self.load()
        out = []
        for e in m["models"]:
            slot = ",".join(s for s in SLOTS if m.get(s) == e["id"])
            met = e.get("metrics") or {}
            th = e.get("thresholds") or {}
            out.append({"id": e["id"], "slot": slot, "created_at": e["created_at"], "schema_hash": e["schema_hash"],
                        "target": e.get("target"), "pr_auc": met.get("pr_auc"), "precision": met.get("precision_at_tau"),
                        "tau_entry": th.get("tau_entry"), "tau_hold": th.get("tau_hold"), "path": e["path"],
                        "notes": e.get("notes", "")})
        return out

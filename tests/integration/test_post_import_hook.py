import sys

from drift_verl.integration.job.plugin import when_imported


def test_callback_runs_after_first_import(tmp_path, monkeypatch):
    (tmp_path / "drift_hook_probe.py").write_text("VALUE = 41\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    when_imported("drift_hook_probe", lambda module: seen.append(module.VALUE + 1))
    assert seen == []
    import drift_hook_probe  # noqa: F401

    assert seen == [42]
    when_imported("drift_hook_probe", lambda module: seen.append("already"))  # imported: runs at once
    assert seen == [42, "already"]
    sys.modules.pop("drift_hook_probe")

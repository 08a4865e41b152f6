"""The verifier workers' loader against verl's own (``load_extern_object``), which a capped worker cannot import
(it pulls in torch, Ray and transformers): the same inputs find the same function or fail the same way, so a
change in verl's convention fails here."""

import pytest
from verl.utils.import_utils import load_extern_object

from drift_verl.integration.verifier import load_function


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "verify.py"
    path.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n"
                    "    return float(ground_truth in solution_str)\n")
    return path


@pytest.mark.parametrize("form", ["{script}", "file://{script}", "pkg://reward_fns.exact", "pkg://reward_fns/exact"])
def test_the_same_paths_find_the_same_function(script, form):
    path = form.format(script=script)
    ours, verls = load_function(path, "compute_score"), load_extern_object(path, "compute_score")
    assert (ours.__qualname__, ours.__code__.co_filename) == (verls.__qualname__, verls.__code__.co_filename)
    assert ours("d", "<answer>7</answer>", "7") == verls("d", "<answer>7</answer>", "7") == 1.0
    assert (ours is verls) == path.startswith("pkg://")  # a module imported by name is shared; a file is run anew


@pytest.mark.parametrize("form, name, error", [
    ("{script}", "score", AttributeError),  # no such function in the file
    ("pkg://reward_fns.exact", "score", AttributeError),
    ("{missing}", "compute_score", FileNotFoundError),
    ("file://{missing}", "compute_score", FileNotFoundError),
    ("pkg://reward_fns.nowhere", "compute_score", ModuleNotFoundError),
])
def test_the_same_paths_fail_the_same_way(script, form, name, error):
    path = form.format(script=script, missing=script.parent / "missing.py")
    for loader in (load_function, load_extern_object):
        with pytest.raises(error):
            loader(path, name)

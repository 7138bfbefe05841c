"""docs/resolved/<recipe>/<variant>.yaml: the checked-in resolved config of every recipe and variant, every value of
the run in one place, kept in step with recipes/ and configs/ (regenerate: python scripts/resolve_recipes.py)."""

import importlib.util

import pytest
from conftest import ROOT

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def resolve():
    spec = importlib.util.spec_from_file_location("resolve_recipes", ROOT / "scripts" / "resolve_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered(resolve):
    return resolve.render_all()  # composed in-process with Hydra's compose API: a few seconds for every recipe


def test_every_recipe_has_its_resolved_config_checked_in_and_up_to_date(resolve, rendered):
    from reasontrain.cli import available_recipes

    assert len(rendered) == sum(len(v) for v in available_recipes().values())
    problems = resolve.drift(rendered)
    assert not problems, ("the checked-in resolved recipe configs are out of date; regenerate them with "
                          f"`{resolve.REGENERATE}` and commit docs/resolved/:\n  " + "\n  ".join(problems))


def test_resolved_configs_are_the_same_on_every_machine(rendered):
    """No absolute path of this checkout or of the package's assets: interpolations stay unresolved."""
    for path, text in rendered.items():
        assert str(ROOT) not in text and "/assets/" not in text and "/site-packages/" not in text, path


def test_check_names_missing_changed_and_stale_files(resolve, rendered, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(resolve, "RESOLVED_DIR", tmp_path)
    moved = {tmp_path / p.parent.name / p.name: text for p, text in rendered.items()}
    for path, text in moved.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    first, second = sorted(moved)[:2]
    first.unlink()
    second.write_text(second.read_text().replace("seed: 0", "seed: 1"))
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "tiny-arith.yaml").write_text("")
    problems = resolve.drift(moved)
    assert problems == [f"{first}: missing", f"{second}: differs from its recipe",
                        f"{tmp_path / 'gone' / 'tiny-arith.yaml'}: no such recipe any more"]
    monkeypatch.setattr(resolve, "render_all", lambda: moved)
    assert resolve.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert str(first) in err and "python scripts/resolve_recipes.py" in err

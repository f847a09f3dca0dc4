"""The released generator versions. Every released version stays runnable forever, so an
old receipt can always be replayed exactly; each is pinned by a hash of its source files.

Each version implements one version of the policy language (POLICY-LANGUAGE.md): v1 and v2
language 1.0, v3 language 1.1 ("fail closed"). Whatever compares an A with the reference
interpreter runs the interpreter in the language of the generator that made A
(:attr:`Generator.language`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from types import ModuleType
from typing import Any

from finops_fabric import model as m
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.generators import v1, v2, v3

# The default for new enforcers: v3, language 1.1 (fail closed). v1 and v2 stay released for
# replay and for operators who have not moved yet; `mu kaizen --from-generator=2
# --to-generator=3` names, on an operator's own O, the decisions that change (by design).
DEFAULT_VERSION = "3"
_MODULES: dict[str, ModuleType] = {"1": v1, "2": v2, "3": v3}
#: The policy language version each generator implements (v1 and v2 predate the constant, and
#: their source is frozen, so the table is kept here).
LANGUAGE: dict[str, str] = {"1": "1.0", "2": "1.0", "3": v3.LANGUAGE}

# The lock: the source hash of every released generator. A released generator never changes
# (an old receipt must replay byte for byte forever); an improvement ships as a new version.
RELEASED: dict[str, str] = {
    "1": "sha256:53609bd6c041a1a3039438bf849dcb7dd6fde3845820e1052799d251424eb15c",
    "2": "sha256:0bd448666a1bbd711cdeecc53473f5fb1661355a19c4d869b8830e93531a10a1",
    "3": "sha256:5962aa490405880a41dbe55311c69e5fee9042f56450da71018fd8e4b60ecd5d",
}


def source_hash(version: str) -> str:
    """SHA-256 over the generator package's files: each as ``<name>\\0<len>\\0<bytes>``, sorted."""
    pkg = resources.files(f"finops_fabric.generators.v{version}")
    h = hashlib.sha256()
    names = sorted(p.name for p in pkg.iterdir() if p.name.endswith(".py"))
    for name in names:
        data = pkg.joinpath(name).read_bytes()
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class Generator:
    id: str
    version: str
    source_hash: str
    module: ModuleType
    language: str

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version, "source_hash": self.source_hash}

    def build(self, policy: m.Policy, ontology_hash: str, cache: Any = None) -> dict[str, bytes]:
        files: dict[str, bytes] = self.module.build(policy, ontology_hash, self.source_hash, cache)
        return files

    def load(self, files: dict[str, bytes], manifest: dict[str, Any], enforcer_hash: str) -> Any:
        return self.module.load(files, manifest, enforcer_hash)


def versions() -> list[str]:
    return sorted(_MODULES, key=int)


def get(version: str | None = None) -> Generator:
    v = DEFAULT_VERSION if version is None else str(version).removeprefix("v")
    mod = _MODULES.get(v)
    if mod is None:
        raise InputError(
            f"unknown generator version {version!r}; this installation has {', '.join(versions())}",
            code="generator.unknown_version",
            hint="run `mu generators` to list them",
        )
    actual = source_hash(v)
    if RELEASED.get(v) != actual:
        raise CheckFailed(
            f"generator v{v} in this installation has source {actual}, but the released v{v} has "
            f"{RELEASED.get(v)}: its files were changed, so receipts made with it could not be replayed",
            code="generator.modified",
            hint="restore the released generator; an improvement ships as a new generator version",
        )
    return Generator(mod.GENERATOR_ID, mod.VERSION, actual, mod, LANGUAGE[v])


def language(version: str) -> str:
    """The policy language version generator ``version`` implements (InputError if unknown)."""
    v = str(version).removeprefix("v")
    if v not in LANGUAGE:
        raise InputError(
            f"unknown generator version {version!r}; this installation has {', '.join(versions())}",
            code="generator.unknown_version",
            hint="run `mu generators` to list them",
        )
    return LANGUAGE[v]

"""The released generator versions. Every released version stays runnable forever, so an
old receipt can always be replayed exactly; each is pinned by a hash of its source files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from types import ModuleType
from typing import Any

from finops_fabric import model as m
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.generators import v1, v2

# v2 becomes the default only after `mu kaizen` has shown, on the operator's own O, that it
# decides exactly as v1 does (an operator's decision, made by changing this line in a release).
DEFAULT_VERSION = "1"
_MODULES: dict[str, ModuleType] = {"1": v1, "2": v2}

# The lock: the source hash of every released generator. A released generator never changes
# (an old receipt must replay byte for byte forever); an improvement ships as a new version.
RELEASED: dict[str, str] = {
    "1": "sha256:53609bd6c041a1a3039438bf849dcb7dd6fde3845820e1052799d251424eb15c",
    "2": "sha256:0bd448666a1bbd711cdeecc53473f5fb1661355a19c4d869b8830e93531a10a1",
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
    return Generator(mod.GENERATOR_ID, mod.VERSION, actual, mod)

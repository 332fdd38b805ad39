"""Check the Terraform in terraform/ against the schema of the provider versions it pins, offline.

No provider binary can be downloaded here, but the provider's schema can: the prebuilt CDK bindings on
PyPI (``cdktn-provider-google`` for google 8.x, ``cdktf-cdktf-provider-google`` for 6.x, their ``-beta``
twins, ``cdktn-provider-archive``) are generated from ``terraform providers schema -json`` and ship it in
two forms inside their wheel, in the jsii tarball ``_jsii/provider-*.jsii.tgz``:

* the jsii assembly (``package/.jsii``): for every resource and data source a class whose initializer
  takes a ``<Name>Config`` struct; every struct property says whether it is optional, and a nested
  block is a property typed as a struct (``{"fqn": ...}``) or a list of structs;
* the generated JavaScript (``package/lib/<resource>/index.js``): the ``synthesizeHclAttributes`` method
  of each class and the ``<struct>ToHclTerraform`` function of each struct map every property to its
  exact Terraform name and say ``isBlock: true|false``.

The check joins the two: names and block-or-attribute come from the JavaScript (the generator writes them
from the schema), required-or-optional and the nested block's own schema from the jsii assembly.
Where a property has no ``isBlock`` entry, a struct-typed property is taken for a block (a heuristic,
counted in the cache file as ``heuristic_blocks``).

The schema of each (provider, version) is extracted once into a small JSON file under the cache folder
(default ``.tfschema/``, gitignored); the wheel is downloaded with ``pip download`` into a temporary
folder and deleted once extracted.

What it reports, for every ``resource``, ``data`` and ``provider`` block of each module folder, nested
blocks and ``dynamic`` blocks included, and for every call of a local module (against that module's
``variable`` blocks: required when without ``default``), naming the file, line, block and argument:
  unknown argument or block, missing required argument or block, a block written as an argument
  (``x = {...}``) and an argument written as a block (``x {...}``).
Meta-arguments (count, for_each, depends_on, provider, lifecycle, provisioner, connection; source,
version, providers for modules) are known. A block's ``provider`` meta-argument picks its provider
(google or google-beta); otherwise the type's prefix does.

Limits: it checks names and nesting, not values (types, enums, ``ConflictsWith``/``ExactlyOneOf``, max
items); an attribute that is required only in combination with others is seen as optional; registry and
git module calls are not checked and expressions are not evaluated; a recursive schema (four exotic
structs in google 8.7) is accepted unchecked below the point where it recurses.

Usage:
  terraform_schema.py check [FOLDER ...]        default: terraform and terraform/examples/*
  terraform_schema.py diff PROVIDER OLD NEW TYPE...   what changed for some types between two versions
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2  # python-hcl2 >= 8.1, in .hclvenv (see scripts/terraform_checks.sh)
from lark import Token, Tree

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / ".tfschema"
CACHE_FORMAT = 1

# Provider source => the schema packages known to this check: (provider version, pip package, package version).
SCHEMA_PACKAGES: dict[str, list[tuple[str, str, str]]] = {
    "hashicorp/google": [
        ("8.7.0", "cdktn-provider-google", "21.1.0"),
        ("6.50.0", "cdktf-cdktf-provider-google", "16.12.1"),
    ],
    "hashicorp/google-beta": [
        ("8.7.0", "cdktn-provider-google-beta", "21.1.0"),
        ("6.50.0", "cdktf-cdktf-provider-google-beta", "16.12.1"),
    ],
    "hashicorp/archive": [
        ("2.8.1", "cdktn-provider-archive", "14.0.1"),
    ],
}

# Meta-arguments Terraform itself understands, by kind of top-level block: (arguments, blocks).
META: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "resource": (
        frozenset({"count", "for_each", "depends_on", "provider"}),
        frozenset({"lifecycle", "provisioner", "connection"}),
    ),
    "data": (frozenset({"count", "for_each", "depends_on", "provider"}), frozenset({"lifecycle"})),
    "provider": (frozenset({"alias"}), frozenset()),
    "module": (frozenset({"source", "version", "count", "for_each", "depends_on", "providers"}), frozenset()),
}
LIFECYCLE_ARGUMENTS = frozenset({"create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by"})
LIFECYCLE_BLOCKS = frozenset({"precondition", "postcondition"})
CONDITION_ARGUMENTS = frozenset({"condition", "error_message"})
DYNAMIC_ARGUMENTS = frozenset({"for_each", "iterator", "labels"})


# ------------------------------------------------------------------------------------------------
# The schema
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockSchema:
    """Arguments (name => required) and nested blocks (name => (required, schema)) of one block.

    An open block (a recursive schema the bindings cannot express) accepts any content.
    """

    attributes: dict[str, bool]
    blocks: dict[str, tuple[bool, BlockSchema]]
    open: bool = False

    @staticmethod
    def from_json(data: dict[str, Any]) -> BlockSchema:
        return BlockSchema(
            attributes={name: bool(required) for name, required in data["attributes"].items()},
            blocks={
                name: (bool(nested["required"]), BlockSchema.from_json(nested["schema"]))
                for name, nested in data["blocks"].items()
            },
            open=bool(data.get("open", False)),
        )


@dataclass(frozen=True)
class ProviderSchema:
    source: str
    version: str
    package: str
    provider: BlockSchema
    resources: dict[str, BlockSchema]
    data_sources: dict[str, BlockSchema]

    @property
    def label(self) -> str:
        return f"{self.source.split('/')[-1]} {self.version}"

    @staticmethod
    def from_json(data: dict[str, Any]) -> ProviderSchema:
        return ProviderSchema(
            source=data["source"],
            version=data["version"],
            package=data["package"],
            provider=BlockSchema.from_json(data["provider"]),
            resources={name: BlockSchema.from_json(s) for name, s in data["resources"].items()},
            data_sources={name: BlockSchema.from_json(s) for name, s in data["data_sources"].items()},
        )


class SchemaError(Exception):
    """The schema could not be found, downloaded or read."""


_CLASS_LINK = re.compile(r"docs/(resources|data-sources)/\w+ (\w+)\}|/docs ([\w-]+)\}")
_SEGMENT = re.compile(
    r"^function (\w+)ToHclTerraform\(struct\)"
    r"|^class (\w+) extends \w+\.(?:TerraformResource|TerraformDataSource|TerraformProvider)"
    r"|^    synthesizeHclAttributes\(\)",
    re.M,
)
_HCL_ENTRY = re.compile(r"^\s+(\w+): \{\n\s+value: (.*?),\n\s+isBlock: (true|false),", re.M)
_VALUE_PROPERTY = re.compile(r"(?:struct|this)\.(_?\w+)\)*(?:\.internalValue)?\)*$")


def _js_blocks(js: str) -> dict[str, dict[str, tuple[str, bool]]]:
    """Struct or class name => {camelCase property => (Terraform name, isBlock)} from generated JavaScript."""
    found: dict[str, dict[str, tuple[str, bool]]] = {}
    marks = list(_SEGMENT.finditer(js))
    current_class = ""
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(js)
        if mark.group(2):
            current_class = mark.group(2)
            continue
        owner = mark.group(1)[0].upper() + mark.group(1)[1:] if mark.group(1) else current_class
        entries: dict[str, tuple[str, bool]] = {}
        for entry in _HCL_ENTRY.finditer(js, mark.end(), end):
            prop = _VALUE_PROPERTY.search(entry.group(2))
            if prop:
                entries[prop.group(1).lstrip("_")] = (entry.group(1), entry.group(3) == "true")
        found[owner] = entries
    return found


def _struct_of(type_ref: dict[str, Any]) -> str | None:
    """The struct fqn of a property typed as a struct or a (union with a) list of structs."""
    if "fqn" in type_ref:
        return str(type_ref["fqn"])
    if "collection" in type_ref:
        return _struct_of(type_ref["collection"]["elementtype"])
    if "union" in type_ref:
        for member in type_ref["union"]["types"]:
            fqn = _struct_of(member)
            if fqn and not fqn.endswith(".IResolvable"):
                return fqn
    return None


@dataclass
class _Extractor:
    types: dict[str, Any]
    js: dict[str, dict[str, dict[str, tuple[str, bool]]]]  # module dir => owner => camel => (name, isBlock)
    heuristic_blocks: int = 0
    recursive: int = 0
    unmapped: list[str] = field(default_factory=list)

    def block(self, struct_fqn: str, module: str, owner: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if struct_fqn in seen:  # a recursive schema (rare): its content is not checked
            self.recursive += 1
            return {"attributes": {}, "blocks": {}, "open": True}
        struct = self.types[struct_fqn]
        names = self.js.get(module, {}).get(owner, {})
        attributes: dict[str, bool] = {}
        blocks: dict[str, Any] = {}
        for prop in struct.get("properties", []):
            camel = prop["name"]
            required = not prop.get("optional", False)
            nested = _struct_of(prop["type"])
            is_struct = nested is not None and self.types.get(nested, {}).get("datatype", False)
            # The bindings rename properties that clash with their own members (build -> buildAttribute).
            js_name = camel[: -len("Attribute")] if camel not in names and camel.endswith("Attribute") else camel
            if js_name in names:
                name, is_block = names[js_name]
            else:
                name = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
                is_block = is_struct
                self.unmapped.append(f"{struct_fqn}.{camel}")
                if is_block:
                    self.heuristic_blocks += 1
            if is_block and nested is not None and is_struct:
                nested_owner = nested.rsplit(".", 1)[-1]
                blocks[name] = {
                    "required": required,
                    "schema": self.block(nested, module, nested_owner, (*seen, struct_fqn)),
                }
            else:
                attributes[name] = required
        return {"attributes": attributes, "blocks": blocks}


def extract_schema(wheel: Path, source: str, version: str, package: str) -> dict[str, Any]:
    """The schema of every resource, data source and the provider block, from a bindings wheel."""
    assembly: dict[str, Any] | None = None
    js: dict[str, dict[str, dict[str, tuple[str, bool]]]] = {}
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".jsii.tgz")]
        with archive.open(member) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for entry in tar:
                if not entry.isfile():
                    continue
                handle = tar.extractfile(entry)
                if handle is None:
                    continue
                if entry.name == "package/.jsii":
                    assembly = json.loads(handle.read())
                elif entry.name.startswith("package/lib/") and entry.name.endswith(".js"):
                    # lib/<resource>/index.js, and for big resources also lib/<resource>/index-structs/*.js
                    module = entry.name.split("/")[2]
                    js.setdefault(module, {}).update(_js_blocks(handle.read().decode("utf-8")))
    if assembly is None:
        raise SchemaError(f"{wheel.name}: no jsii assembly (package/.jsii) in {member}")
    types: dict[str, Any] = assembly["types"]
    extractor = _Extractor(types=types, js=js)
    out: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "source": source,
        "version": version,
        "package": package,
        "provider": None,
        "resources": {},
        "data_sources": {},
    }
    for fqn, spec in types.items():
        base = str(spec.get("base") or "")
        if spec.get("kind") != "class" or not base.endswith(
            (".TerraformResource", ".TerraformDataSource", ".TerraformProvider")
        ):
            continue
        link = _CLASS_LINK.search(spec.get("docs", {}).get("summary", ""))
        if not link:
            raise SchemaError(f"{package}: cannot tell the Terraform type of {fqn} from its docs")
        if f"/{version}/" not in spec["docs"]["summary"]:
            raise SchemaError(f"{package}: {fqn} documents another provider version than {version}")
        config = next(p for p in spec["initializer"]["parameters"] if p["name"] == "config")
        module = str(spec["locationInModule"]["filename"]).split("/")[1]
        schema = extractor.block(config["type"]["fqn"], module, spec["name"])
        if base.endswith(".TerraformProvider"):
            out["provider"] = schema
        elif link.group(1) == "resources":
            out["resources"][link.group(2)] = schema
        else:
            out["data_sources"][link.group(2)] = schema
    if out["provider"] is None or not out["resources"]:
        raise SchemaError(f"{package}: found no provider or no resources in its assembly")
    out["heuristic_blocks"] = extractor.heuristic_blocks
    out["unmapped_properties"] = len(extractor.unmapped)
    out["recursive_blocks"] = extractor.recursive
    return out


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def satisfies(version: str, constraint: str) -> bool:
    """Whether VERSION meets a Terraform version constraint (=, !=, >, >=, <, <=, ~>; comma = and)."""
    have = _version_tuple(version)
    for clause in constraint.split(","):
        match = re.fullmatch(r"\s*(=|!=|>=|<=|>|<|~>)?\s*v?(\d+(?:\.\d+){0,2})\s*", clause)
        if not match:
            raise SchemaError(f"cannot read the version constraint {constraint!r}")
        operator, text = match.group(1) or "=", match.group(2)
        want = _version_tuple(text)
        padded = want + (0,) * (3 - len(want))
        ok = {
            "=": have == padded,
            "!=": have != padded,
            ">": have > padded,
            ">=": have >= padded,
            "<": have < padded,
            "<=": have <= padded,
            # ~> 8.0 allows 8.x; ~> 8.7.0 allows 8.7.x; ~> 8 allows >= 8.
            "~>": have >= padded and (len(want) == 1 or have[: len(want) - 1] == want[:-1]),
        }[operator]
        if not ok:
            return False
    return True


def schema_for(source: str, constraint: str, cache: Path = DEFAULT_CACHE) -> ProviderSchema:
    """The schema of the newest known version of SOURCE that meets CONSTRAINT, extracted once and cached."""
    candidates = sorted(SCHEMA_PACKAGES.get(source, []), key=lambda c: _version_tuple(c[0]), reverse=True)
    matching = [c for c in candidates if satisfies(c[0], constraint)]
    if not matching:
        known = ", ".join(c[0] for c in candidates) or "none"
        raise SchemaError(
            f"no schema package known for {source} {constraint!r} (known versions: {known}); "
            "add one to SCHEMA_PACKAGES in scripts/terraform_schema.py"
        )
    version, package, package_version = matching[0]
    path = cache / f"{source.replace('/', '_')}-{version}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("format") == CACHE_FORMAT and data.get("package") == f"{package}=={package_version}":
            return ProviderSchema.from_json(data)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        print(f"downloading the {source} {version} schema ({package}=={package_version})", file=sys.stderr)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--dest",
                scratch,
                f"{package}=={package_version}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(Path(scratch).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise SchemaError(f"pip download {package}=={package_version} failed:\n{done.stderr.strip()}")
        data = extract_schema(wheels[0], source, version, f"{package}=={package_version}")
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True))
    os.replace(partial, path)
    return ProviderSchema.from_json(data)


# ------------------------------------------------------------------------------------------------
# Reading the HCL (python-hcl2's parse tree: it keeps blocks and arguments apart, with line numbers)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    name: str
    line: int
    expression: str


@dataclass(frozen=True)
class Block:
    type: str
    labels: tuple[str, ...]
    line: int
    attributes: tuple[Attribute, ...]
    blocks: tuple[Block, ...]


def _token_text(tree: Any) -> str:
    if isinstance(tree, Token):
        return str(tree)
    assert isinstance(tree, Tree)
    if tree.data == "string":
        return "".join(_token_text(child) for child in tree.children if isinstance(child, Tree))
    return "".join(_token_text(child) for child in tree.children)


def _body(tree: Any, text: str) -> tuple[tuple[Attribute, ...], tuple[Block, ...]]:
    attributes: list[Attribute] = []
    blocks: list[Block] = []
    for child in tree.children:
        if not isinstance(child, Tree):
            continue
        if child.data == "attribute":
            name = _token_text(child.children[0])
            expression = text[child.children[2].meta.start_pos : child.children[2].meta.end_pos]
            attributes.append(Attribute(name, child.meta.line, expression.strip()))
        elif child.data == "block":
            parts = [c for c in child.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]
            *head, body = parts
            nested_attributes, nested_blocks = _body(body, text)
            labels = tuple(_token_text(label) for label in head[1:])
            blocks.append(Block(_token_text(head[0]), labels, child.meta.line, nested_attributes, nested_blocks))
    return tuple(attributes), tuple(blocks)


def parse_hcl(text: str) -> Block:
    """The file as one unnamed block holding its top-level arguments and blocks."""
    tree = hcl2.parses_to_tree(text)
    (body,) = [c for c in tree.children if getattr(c, "data", None) == "body"]
    attributes, blocks = _body(body, text)
    return Block("", (), 1, attributes, blocks)


# ------------------------------------------------------------------------------------------------
# The check
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    address: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.address}: {self.message}"


def _suggest(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


@dataclass
class _Checker:
    file: str
    problems: list[Problem] = field(default_factory=list)

    def report(self, line: int, address: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, address, message))

    def body(
        self,
        block: Block,
        schema: BlockSchema,
        address: str,
        label: str,
        meta: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset()),
    ) -> None:
        if schema.open:
            return
        meta_arguments, meta_blocks = meta
        present: set[str] = set()
        for attribute in block.attributes:
            name = attribute.name
            present.add(name)
            if name in schema.attributes or name in meta_arguments:
                continue
            if name in schema.blocks or name in meta_blocks:
                self.report(
                    attribute.line, address, f'"{name}" is a block: write `{name} {{ ... }}`, not `{name} = ...`'
                )
            else:
                known = set(schema.attributes) | set(schema.blocks) | meta_arguments | meta_blocks
                self.report(attribute.line, address, f'unknown argument "{name}" ({label}){_suggest(name, known)}')
        for nested in block.blocks:
            if nested.type == "dynamic":
                self.dynamic(nested, schema, address, label)
                present.add(nested.labels[0] if nested.labels else "")
                continue
            present.add(nested.type)
            if nested.type in meta_blocks:
                if nested.type == "lifecycle":
                    self.lifecycle(nested, f"{address} > lifecycle")
                continue
            if nested.type in schema.blocks:
                self.body(nested, schema.blocks[nested.type][1], f"{address} > {nested.type}", label)
            elif nested.type in schema.attributes or nested.type in meta_arguments:
                self.report(
                    nested.line,
                    address,
                    f'"{nested.type}" is an argument: write `{nested.type} = ...`, not `{nested.type} {{ ... }}`',
                )
            else:
                known = set(schema.attributes) | set(schema.blocks) | meta_arguments | meta_blocks
                self.report(
                    nested.line, address, f'unknown block "{nested.type}" ({label}){_suggest(nested.type, known)}'
                )
        for name, required in sorted(schema.attributes.items()):
            if required and name not in present:
                self.report(block.line, address, f'missing required argument "{name}" ({label})')
        for name, (required, _) in sorted(schema.blocks.items()):
            if required and name not in present:
                self.report(block.line, address, f'missing required block "{name}" ({label})')

    def dynamic(self, block: Block, schema: BlockSchema, address: str, label: str) -> None:
        if len(block.labels) != 1:
            self.report(block.line, address, "a dynamic block needs exactly one label: the block it generates")
            return
        name = block.labels[0]
        where = f'{address} > dynamic "{name}"'
        if name not in schema.blocks:
            if name in schema.attributes:
                self.report(block.line, address, f'"{name}" is an argument: a dynamic block cannot generate it')
            else:
                known = set(schema.blocks)
                self.report(block.line, address, f'unknown block "{name}" in dynamic ({label}){_suggest(name, known)}')
            return
        for attribute in block.attributes:
            if attribute.name not in DYNAMIC_ARGUMENTS:
                self.report(attribute.line, where, f'unknown argument "{attribute.name}" of a dynamic block')
        if "for_each" not in {a.name for a in block.attributes}:
            self.report(block.line, where, 'missing required argument "for_each" of a dynamic block')
        contents = [b for b in block.blocks if b.type == "content"]
        for other in block.blocks:
            if other.type != "content":
                self.report(other.line, where, f'unknown block "{other.type}" of a dynamic block (only "content")')
        if len(contents) != 1:
            self.report(block.line, where, 'a dynamic block needs exactly one "content" block')
            return
        self.body(contents[0], schema.blocks[name][1], where, label)

    def lifecycle(self, block: Block, address: str) -> None:
        for attribute in block.attributes:
            if attribute.name not in LIFECYCLE_ARGUMENTS:
                self.report(attribute.line, address, f'unknown lifecycle argument "{attribute.name}"')
        for nested in block.blocks:
            if nested.type not in LIFECYCLE_BLOCKS:
                self.report(nested.line, address, f'unknown lifecycle block "{nested.type}"')
                continue
            names = {a.name for a in nested.attributes}
            for name in sorted(names - CONDITION_ARGUMENTS):
                self.report(nested.line, f"{address} > {nested.type}", f'unknown argument "{name}"')
            for name in sorted(CONDITION_ARGUMENTS - names):
                self.report(nested.line, f"{address} > {nested.type}", f'missing required argument "{name}"')


def _required_providers(blocks: list[Block]) -> dict[str, tuple[str, str]]:
    """Local name => (source, version constraint), from `terraform { required_providers { ... } }`."""
    found: dict[str, tuple[str, str]] = {}
    for terraform in (b for b in blocks if b.type == "terraform"):
        for required in (b for b in terraform.blocks if b.type == "required_providers"):
            for attribute in required.attributes:
                source = re.search(r'source\s*=\s*"([^"]+)"', attribute.expression)
                version = re.search(r'version\s*=\s*"([^"]+)"', attribute.expression)
                if source and version:
                    name = source.group(1)
                    found[attribute.name] = (
                        name if name.count("/") == 1 else "/".join(name.split("/")[-2:]),
                        version.group(1),
                    )
    return found


def module_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tf"))


def _module_source(block: Block) -> str:
    source = next((a.expression for a in block.attributes if a.name == "source"), '""')
    return source.strip('"')


def _local_module(block: Block, folder: Path) -> Path | None:
    """The folder of a module call with a local source (./ or ../); registry and git sources are not checked."""
    source = _module_source(block)
    return (folder / source).resolve() if source.startswith(("./", "../")) else None


def module_schema(folder: Path) -> BlockSchema:
    """A local module's inputs as a schema: every variable is an argument, required when it has no default."""
    variables = [
        b
        for path in module_files(folder)
        for b in parse_hcl(path.read_text()).blocks
        if b.type == "variable" and b.labels
    ]
    return BlockSchema(
        attributes={v.labels[0]: not any(a.name == "default" for a in v.attributes) for v in variables},
        blocks={},
    )


def check_folder(
    folder: Path,
    cache: Path = DEFAULT_CACHE,
    inherited: dict[str, tuple[str, str]] | None = None,
    relative_to: Path = ROOT,
) -> tuple[list[Problem], int]:
    """Problems of every resource, data and provider block in FOLDER's .tf files, and how many blocks were checked."""
    parsed = {path: parse_hcl(path.read_text()) for path in module_files(folder)}
    top = [block for tree in parsed.values() for block in tree.blocks]
    providers = {**(inherited or {}), **_required_providers(top)}
    schemas: dict[str, ProviderSchema] = {}
    problems: list[Problem] = []
    checked = 0

    def schema_of(local_name: str, path: str, block: Block, address: str) -> ProviderSchema | None:
        if local_name not in providers:
            problems.append(Problem(path, block.line, address, f'provider "{local_name}" is not in required_providers'))
            return None
        if local_name not in schemas:
            schemas[local_name] = schema_for(*providers[local_name], cache=cache)
        return schemas[local_name]

    for path, tree in parsed.items():
        name = (
            str(path.resolve().relative_to(relative_to.resolve()))
            if path.resolve().is_relative_to(relative_to.resolve())
            else str(path)
        )
        checker = _Checker(name)
        for block in tree.blocks:
            if block.type not in META:
                continue
            address = f"{block.type} " + " ".join(f'"{label}"' for label in block.labels)
            if block.type == "module":
                called = _local_module(block, folder)
                if called is not None:
                    label = f"module {_module_source(block)}"
                    checker.body(block, module_schema(called), address, label, META["module"])
                    checked += 1
                continue
            if block.type == "provider":
                schema = schema_of(block.labels[0], name, block, address)
                if schema:
                    checker.body(block, schema.provider, address, schema.label, META["provider"])
                    checked += 1
                continue
            rtype = block.labels[0]
            provider_attr = next((a for a in block.attributes if a.name == "provider"), None)
            local_name = provider_attr.expression.split(".")[0] if provider_attr else rtype.split("_")[0]
            schema = schema_of(local_name, name, block, address)
            if schema is None:
                continue
            table = schema.resources if block.type == "resource" else schema.data_sources
            if rtype not in table:
                kind = "resource type" if block.type == "resource" else "data source"
                checker.report(
                    block.line, address, f'unknown {kind} "{rtype}" ({schema.label}){_suggest(rtype, set(table))}'
                )
                continue
            checker.body(block, table[rtype], address, schema.label, META[block.type])
            checked += 1
        problems.extend(checker.problems)
    return sorted(problems), checked


def default_folders() -> list[Path]:
    terraform = ROOT / "terraform"
    return [terraform, *sorted(p for p in (terraform / "examples").iterdir() if p.is_dir())]


def check(folders: list[Path], cache: Path = DEFAULT_CACHE) -> int:
    """Check FOLDERS; a folder without required_providers inherits the first folder's (the root module's)."""
    root_providers: dict[str, tuple[str, str]] | None = None
    total_problems = 0
    for folder in folders:
        tops = [b for path in module_files(folder) for b in parse_hcl(path.read_text()).blocks]
        own = _required_providers(tops)
        if root_providers is None:
            root_providers = own
        problems, checked = check_folder(folder, cache, inherited=root_providers)
        for problem in problems:
            print(problem)
        pins = ", ".join(f"{name} {constraint}" for name, (_, constraint) in sorted({**root_providers, **own}.items()))
        where = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
        print(f"{where}: {checked} blocks checked ({pins}), {len(problems)} problem(s)")
        total_problems += len(problems)
    return 1 if total_problems else 0


def diff(source: str, old: str, new: str, types: list[str], cache: Path = DEFAULT_CACHE) -> Iterator[str]:
    """Lines naming what differs for TYPES (resource types; data.TYPE for data sources) between two versions."""
    before, after = schema_for(source, f"= {old}", cache), schema_for(source, f"= {new}", cache)

    def walk(path: str, a: BlockSchema | None, b: BlockSchema | None) -> Iterator[str]:
        if a is None and b is None:
            yield f"{path}: in neither version"
            return
        if a is None or b is None:
            yield f"{path}: {'added' if a is None else 'removed'}"
            return
        for name in sorted(set(a.attributes) | set(b.attributes)):
            if name not in b.attributes:
                yield f"{path}.{name}: argument removed"
            elif name not in a.attributes:
                yield f"{path}.{name}: argument added{' (required)' if b.attributes[name] else ''}"
            elif a.attributes[name] != b.attributes[name]:
                yield f"{path}.{name}: now {'required' if b.attributes[name] else 'optional'}"
        for name in sorted(set(a.blocks) | set(b.blocks)):
            old_block, new_block = a.blocks.get(name), b.blocks.get(name)
            if old_block and new_block and old_block[0] != new_block[0]:
                yield f"{path} > {name}: block now {'required' if new_block[0] else 'optional'}"
            yield from walk(
                f"{path} > {name}", old_block[1] if old_block else None, new_block[1] if new_block else None
            )

    for rtype in types:
        kind, name = ("data", rtype[5:]) if rtype.startswith("data.") else ("resource", rtype)
        table_a = before.data_sources if kind == "data" else before.resources
        table_b = after.data_sources if kind == "data" else after.resources
        yield from walk(rtype, table_a.get(name), table_b.get(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="schema cache folder (default .tfschema)")
    commands = parser.add_subparsers(dest="command", required=True)
    check_command = commands.add_parser("check", help="check module folders against the pinned provider schemas")
    check_command.add_argument("folders", nargs="*", type=Path)
    diff_command = commands.add_parser("diff", help="schema differences of some types between two versions")
    diff_command.add_argument("source", help="e.g. hashicorp/google")
    diff_command.add_argument("old")
    diff_command.add_argument("new")
    diff_command.add_argument("types", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return check([f.resolve() for f in args.folders] or default_folders(), args.cache)
        for line in diff(args.source, args.old, args.new, args.types, args.cache):
            print(line)
        return 0
    except SchemaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""A job's tool catalogue: the tools its agents may ask for, as the submitter saw them.

Each entry is a tool's name, description, argument schema, device class and model (its
name with every setting that changes its output, e.g. the ALM's decoding settings). The
catalogue is taken from the submitting process's registry and settings when a job is
created and stored once per content (`version` is its hash), and every later step reads
it from there: the agents' prompts list the catalogue's tools and a refinement round's
calls carry the catalogue's models, so no worker re-plans a job from its own settings
and a replayed prompt hashes as the first one did. Jobs from before the catalogue was
stored (no version) are shown this process's tools, as they were.
"""

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from models import ToolCatalogue
from models.db import session_scope
from workers.method.perception.tools.base import PlannedCall, args_schema


@dataclass(frozen=True)
class CatalogueTool:
    """What the agents are told about one tool, and the model its calls are planned with."""

    name: str
    description: str
    device: str
    model: str
    args: dict
    required: tuple[str, ...] = ()
    speech_only: bool = False

    def args_schema(self) -> dict:
        return args_schema(self.args, self.required)

    def as_json(self) -> dict:
        return {"name": self.name, "description": self.description, "device": self.device, "model": self.model,
                "args": self.args, "required": list(self.required), "speech_only": self.speech_only}


@dataclass(frozen=True)
class Catalogue:
    version: str  # sha256 of the entries' JSON
    tools: tuple[CatalogueTool, ...]
    # False for a job from before catalogues were stored: its calls name no model, so each
    # worker runs its own, as such a job always did.
    pins_models: bool = True

    def tool(self, name: str) -> CatalogueTool | None:
        return next((t for t in self.tools if t.name == name), None)

    def call(self, tool: str, args: dict, needs_speech: bool = False) -> PlannedCall:
        """A call of `tool` planned with the catalogue's model for it (None: a tool the
        catalogue lacks; a worker runs it only with a model of its own, if it has one)."""
        entry = self.tool(tool)
        return PlannedCall(tool, args, needs_speech, entry.model if entry and self.pins_models else None)


def current(pins_models: bool = True) -> Catalogue:
    """This process's available tools, with the models its settings give them."""
    # the tool registry: the API reads a stored catalogue without it
    from workers.method.perception.tools import available_tools

    return _from_entries([
        CatalogueTool(t.name, t.description, t.device, t.model_name(), t.args, tuple(t.required), t.speech_only)
        for t in available_tools()
    ], pins_models)


def store(session, catalogue: Catalogue) -> str:
    """The catalogue's row (written once per content); returns its version."""
    session.execute(
        insert(ToolCatalogue)
        .values(version=catalogue.version, tools=[t.as_json() for t in catalogue.tools])
        .on_conflict_do_nothing(index_elements=["version"])
    )
    return catalogue.version


def of_job(version: str | None) -> Catalogue:
    """The catalogue a job was submitted with (this process's for a job from before)."""
    return current(pins_models=False) if version is None else _load(version)


@lru_cache(maxsize=64)
def _load(version: str) -> Catalogue:
    # A version names its content for good, so a process may keep what it read.
    with session_scope() as session:
        rows = session.scalar(select(ToolCatalogue.tools).where(ToolCatalogue.version == version))
    if rows is None:
        raise LookupError(f"tool catalogue {version} is not stored")
    return Catalogue(version, tuple(
        CatalogueTool(r["name"], r["description"], r["device"], r["model"], r["args"], tuple(r["required"]),
                      r["speech_only"])
        for r in rows
    ))


def _from_entries(tools: list[CatalogueTool], pins_models: bool) -> Catalogue:
    blob = json.dumps([t.as_json() for t in tools], sort_keys=True)
    return Catalogue(hashlib.sha256(blob.encode()).hexdigest(), tuple(tools), pins_models)

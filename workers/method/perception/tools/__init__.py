"""The perception tools the agents may call, gathered from this package.

Each module here declares `TOOL` (or `TOOLS`, a list) built from `base.Tool`: its name,
what it is for, a JSON schema of its arguments and its device class. The interaction
agent's prompt and output schema are built from this registry, so adding a tool is
adding one module. Importing it loads none of the tools' libraries (see base.py).
"""

import importlib
import pkgutil

from core.settings import get_settings
from workers.method.perception.tools.base import WINDOW_ARGS, PlannedCall, Tool, ToolResult

__all__ = ["TOOLS", "WINDOW_ARGS", "PlannedCall", "Tool", "ToolResult", "available_tools", "coarse_tools"]


def _discover() -> dict[str, Tool]:
    found: dict[str, Tool] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for tool in getattr(module, "TOOLS", []) + ([module.TOOL] if hasattr(module, "TOOL") else []):
            if tool.name in found:
                raise RuntimeError(f"two perception tools are named {tool.name!r}")
            found[tool.name] = tool
    return found


TOOLS: dict[str, Tool] = _discover()


def coarse_tools() -> list[Tool]:
    """The tools of the coarse document (iteration 0): those configured that are available."""
    names = get_settings().coarse_tools
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        raise ValueError(f"AGR_COARSE_TOOLS names unknown tool(s) {unknown}; known: {sorted(TOOLS)}")
    return [TOOLS[n] for n in names if TOOLS[n].available()]


def available_tools() -> list[Tool]:
    return [t for t in TOOLS.values() if t.available()]

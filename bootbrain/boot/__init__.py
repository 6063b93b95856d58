"""The pure boot core: parse what iPXE sent, decide, render the script.

No Flask and no SQLAlchemy here: the inventory layer hands in the frozen views of
:mod:`bootbrain.boot.types`, and the machine-facing handlers send back what
:mod:`bootbrain.boot.render` returns.
"""

from .decide import conflict, decide, error, pick_rule, rule_matches, specificity
from .facts import parse_facts
from .render import (
    RenderError,
    TemplateProblem,
    check_stored_value,
    compile_template,
    render_bootstrap,
    render_decision,
    render_error,
    template_variables,
    validate_profile,
)
from .types import (
    Decision,
    Facts,
    MachineView,
    MenuItem,
    MenuView,
    NextBootView,
    ProfileView,
    RenderContext,
    RuleView,
    StaticNet,
)

__all__ = [
    "Decision",
    "Facts",
    "MachineView",
    "MenuItem",
    "MenuView",
    "NextBootView",
    "ProfileView",
    "RenderContext",
    "RenderError",
    "RuleView",
    "StaticNet",
    "TemplateProblem",
    "check_stored_value",
    "compile_template",
    "conflict",
    "decide",
    "error",
    "parse_facts",
    "pick_rule",
    "render_bootstrap",
    "render_decision",
    "render_error",
    "rule_matches",
    "specificity",
    "template_variables",
    "validate_profile",
]

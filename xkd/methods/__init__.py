"""Distillation methods: `base` says what a method is; each other module is one method family.

Importing this package registers the built-in methods (their modules import `base`, never this package, so there
is no import cycle). Methods from other packages come through the `xkd.methods` entry-point group or an import
path (`--method package.module:name`); see "Add your own method" in the README.
"""

from xkd.methods import aguilar, alp, kd, pkd, universal  # noqa: F401  (registers the built-ins)
from xkd.methods.base import (
    METHODS,
    LossTerm,
    Method,
    MethodOptions,
    OptionSpec,
    TermContext,
    TermModule,
    compose,
    get_method,
    gold_term,
    method,
    module_term,
    needs_context,
    option,
    soft_term,
    weighted_loss,
)
from xkd.methods.kd import KDOptions

__all__ = [
    "METHODS",
    "KDOptions",
    "LossTerm",
    "Method",
    "MethodOptions",
    "OptionSpec",
    "TermContext",
    "TermModule",
    "compose",
    "get_method",
    "gold_term",
    "method",
    "module_term",
    "needs_context",
    "option",
    "soft_term",
    "weighted_loss",
]

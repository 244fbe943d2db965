"""Distillation methods: `base` says what a method is; each other module is one method family.

Importing this package registers the built-in methods: every module in it is imported, so a new built-in method is
one new file here and no edit elsewhere (the modules import `base`, never this package, so there is no import
cycle). Methods from other packages come through the `xkd.methods` entry-point group or an import
path (`--method package.module:name`); see "Add your own method" in the README.
"""

import importlib
import pkgutil

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
    soft_term,
    weighted_loss,
)
from xkd.methods.kd import KDOptions, gold_and_soft
from xkd.options import option

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # each method module registers its methods

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
    "gold_and_soft",
    "gold_term",
    "method",
    "module_term",
    "needs_context",
    "option",
    "soft_term",
    "weighted_loss",
]

"""CRD `x-kubernetes-validations` CEL rules, evaluated offline with cel-python.

Rules that read `oldSelf` are transition rules: they compare an update with the stored object
and cannot apply to a create, so they are skipped. Every rule is compiled when the CRDs are
loaded, so a rule cel-python cannot compile is an error there, never a silent pass. The
KubeRay v1.7.0 rules use only `has()`, `in`, `==` and boolean operators: no Kubernetes CEL
extension functions are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import celpy
from lark import Token

from cluster.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    text: str
    message: str
    program: Any  # a celpy Runner; None for a transition rule (skipped on create)

    @property
    def transition(self) -> bool:
        return self.program is None


@cache
def compile_rule(text: str, message: str = "") -> Rule:
    env = celpy.Environment()
    try:
        ast = env.compile(text)
    except celpy.CELParseError as exc:
        raise ConfigError(f"CEL rule {text!r} does not compile with cel-python: {exc}") from None
    idents = ast.scan_values(lambda v: isinstance(v, Token) and v.type == "IDENT")
    if any(tok == "oldSelf" for tok in idents):
        return Rule(text, message, None)
    return Rule(text, message, env.program(ast))


def violations(rules: list[dict[str, Any]], value: Any) -> list[str]:
    """Messages of the rules that `value` (the node the rules sit on, bound to `self`) breaks."""
    found = []
    for spec in rules:
        rule = compile_rule(spec["rule"], spec.get("message", ""))
        if rule.transition:
            continue
        try:
            result = rule.program.evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as exc:
            result = exc
        if isinstance(result, celpy.celtypes.BoolType) and bool(result):
            continue
        why = "" if isinstance(result, celpy.celtypes.BoolType) else f" (error: {result})"
        found.append(f"{rule.message or 'CEL rule failed'} [rule: {rule.text}]{why}")
    return found

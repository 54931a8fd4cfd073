"""RNN4xx: dropout."""

from __future__ import annotations

import libcst as cst

from rnnlint.analysis.values import known
from rnnlint.findings import Severity
from rnnlint.rules.base import Context, Rule, RuleMeta, rule

FUNCTIONAL_DROPOUT = frozenset(
    "torch.nn.functional." + n
    for n in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
)


@rule(
    RuleMeta(
        "RNN401",
        "dropout-single-layer",
        Severity.WARNING,
        ("torch",),
        "nn.RNN/LSTM/GRU with dropout > 0 and num_layers=1: PyTorch applies it only between layers, so it does nothing.",
    )
)
class DropoutSingleLayer(Rule):
    def check(self, ctx: Context) -> None:
        for layer in ctx.layers:
            if layer.framework != "torch" or layer.cell:
                continue
            dropout, layers = layer.get("dropout"), layer.get("num_layers")
            if not (known(dropout) and known(layers)):
                continue
            if isinstance(dropout, (int, float)) and dropout > 0 and layers == 1:
                ctx.report(
                    layer.call.node,
                    f"{layer.label}(dropout={dropout!r}, num_layers=1): PyTorch applies this dropout "
                    "only between stacked layers, so with one layer it does nothing; add nn.Dropout "
                    "on the output or use num_layers >= 2",
                    layer.call.stmt,
                )


@rule(
    RuleMeta(
        "RNN402",
        "functional-dropout-always-on",
        Severity.ERROR,
        ("torch",),
        "F.dropout in forward() without training=self.training stays on at evaluation time.",
    )
)
class FunctionalDropoutAlwaysOn(Rule):
    def check(self, ctx: Context) -> None:
        for call in ctx.facts.calls:
            if call.qualname not in FUNCTIONAL_DROPOUT:
                continue
            scope = call.scope
            if not scope.is_method() or call.has_star_args:
                continue
            training = call.arg(2, "training")
            name = call.qualname.rsplit(".", 1)[-1]
            where = f"F.{name}() in {scope.parent.name}.{scope.name}()"  # type: ignore[union-attr]
            if training is None:
                problem = "has no training= argument: it defaults to training=True"
            elif isinstance(training, cst.Name) and training.value == "True":
                problem = "passes training=True"
            else:
                continue  # training=self.training, or a flag the author controls
            ctx.report(
                call.node,
                f"{where} {problem}, so dropout stays on after model.eval(); pass "
                "training=self.training or use nn.Dropout",
                call.stmt,
            )

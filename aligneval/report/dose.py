"""Several aligned twins of one baseline (`aligneval align --lambda 0.01,0.1,1`) in the report: which
models they are and the λ each was trained with, so the report can compare every twin and draw Δ
against λ.

The naming contract (`aligned-lam<λ>`, seeds as `aligned-lam0.1@13`) and reading a twin's λ (model
card, else name) live in the comparison stage, aligneval.compare.models; the report uses them from there.
"""

from __future__ import annotations

from aligneval.compare.models import LAMBDA_IN_NAME, find_twins, lambdas, twin_lambda

__all__ = ["LAMBDA_IN_NAME", "find_twins", "lambdas", "twin_lambda"]

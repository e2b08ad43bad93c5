"""`selectors`: the Kubernetes label-selector grammar and its matching semantics."""

from __future__ import annotations

import pytest

from exporter.selectors import LabelSelector

LABELS = {"env": "prod", "tier": "web", "kubevirt.io/size": "small", "replicas": "3", "empty": ""}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("env=prod", True),
        ("env==prod", True),
        ("env = prod", True),
        ("env=dev", False),
        ("env!=dev", True),
        ("env!=prod", False),
        ("missing!=x", True),
        ("env in (prod, staging)", True),
        ("env in (dev,staging)", False),
        ("missing in (a)", False),
        ("env notin (dev)", True),
        ("env notin (prod)", False),
        ("missing notin (a)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("kubevirt.io/size=small", True),
        ("env=prod,tier=web", True),
        ("env=prod, tier=db", False),
        ("env in (prod,dev),!missing,tier", True),
        ("replicas>2", True),
        ("replicas<2", False),
        ("env>2", False),
        ("empty=", True),
        ("empty in (a,)", True),
    ],
)
def test_label_selector_matches_with_kubernetes_semantics(selector: str, matches: bool) -> None:
    assert LabelSelector.parse(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("selector", "bad_term"),
    [
        ("env=prod,", "''"),
        ("env in ()", "'env in ()'"),
        ("env in (a", "env in (a"),
        ("env)", "env)"),
        ("env=a=b", "'env=a=b'"),
        ("bad key=x", "'bad key=x'"),
        ("-env=x", "'-env=x'"),
        ("env=" + "x" * 64, "env="),
        ("env in (a b)", "'env in (a b)'"),
        ("replicas>two", "'replicas>two'"),
        ("!", "'!'"),
        ("env==", None),
    ],
)
def test_label_selector_rejects_bad_terms_naming_them(selector: str, bad_term: str | None) -> None:
    if bad_term is None:  # an empty value is legal: `env==` selects env=""
        assert LabelSelector.parse(selector).matches({"env": ""})
        return
    with pytest.raises(ValueError, match="invalid label selector") as caught:
        LabelSelector.parse(selector)
    assert bad_term in str(caught.value)

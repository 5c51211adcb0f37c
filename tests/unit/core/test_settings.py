"""Secrets never show themselves: every way a value is commonly turned into text either masks it or fails."""

from __future__ import annotations

import copy
import json
import logging
import pickle

import pytest

from nexgen_etl.core.settings import AwsCredentials, Secret

VALUE = "nexgen-canary-7d1e"


@pytest.mark.parametrize("render", [
    pytest.param(repr, id="repr"),
    pytest.param(str, id="str"),
    pytest.param(lambda s: f"{s}", id="f-string"),
    pytest.param(lambda s: f"{s!s:>30}", id="f-string-spec"),
    pytest.param(lambda s: "%s" % s, id="percent-s"),
    pytest.param(lambda s: "{}".format(s), id="format"),
    pytest.param(lambda s: repr(AwsCredentials("AKIDEXAMPLE", s)), id="credentials-repr"),
])
def test_rendering_masks(render) -> None:
    """Catches: a Secret that shows its value in any of these (a str subclass leaked through json and +)."""
    assert VALUE not in render(Secret(VALUE))


@pytest.mark.parametrize("use", [
    pytest.param(lambda s: json.dumps({"k": s}), id="json.dumps"),
    pytest.param(lambda s: "x" + s, id="str-plus"),
    pytest.param(lambda s: s + "x", id="plus-str"),
    pytest.param(lambda s: "%d" % s, id="percent-d"),
    pytest.param(lambda s: pickle.dumps(s), id="pickle"),
    pytest.param(lambda s: copy.deepcopy(s), id="deepcopy"),
    pytest.param(lambda s: "".join([s]), id="join"),
])
def test_serialising_or_concatenating_fails(use) -> None:
    """Catches: `Secret(str)`, which these treated as the plain value (tried: all but percent-d passed it on)."""
    with pytest.raises(TypeError):
        use(Secret(VALUE))


def test_logging_masks(caplog) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("nexgen_etl.test").info("key %s %r", Secret(VALUE), Secret(VALUE))
    assert VALUE not in caplog.text and "***" in caplog.text


def test_reveal_and_environment() -> None:
    creds = AwsCredentials("AKIDEXAMPLE", Secret(VALUE), Secret("tok"))
    assert creds.as_env() == {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": VALUE,
                              "AWS_SESSION_TOKEN": "tok"}
    assert Secret(VALUE) == Secret(VALUE) and Secret(VALUE) != VALUE and not Secret("")
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]

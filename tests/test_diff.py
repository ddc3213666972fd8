"""pipeplug.diff: structural and line diffs for plan preview and livestate.

The rendering follows the layout of the Go SDK's ``sdk/diff`` renderer (``#path``,
then ``-``/``+`` lines under the path's parents); example_app.py's plan preview and
livestate, which use it, are checked over gRPC in tests/test_test_client.py.
"""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeplug import SyncStatus
from pipeplug import diff as pdiff


def test_nested_changes_render_under_their_parents_with_masked_paths():
    live = {"data": {"password": "old"}, "spec": {"replicas": 2, "template": {"containers": [{"image": "web:1", "name": "web"}]}}}
    git = {"data": {"password": "new"}, "spec": {"replicas": 3, "template": {"containers": [{"image": "web:2", "name": "web"}]}}}
    result = pdiff.diff(live, git, mask=["data"])
    assert [c.path_string for c in result.changes] == ["data.password", "spec.replicas", "spec.template.containers.0.image"]
    assert result.render() == (
        "data:\n"
        "  #data.password\n"
        "- password: *****\n"
        "+ password: *****\n"
        "\n"
        "spec:\n"
        "  #spec.replicas\n"
        "- replicas: 2\n"
        "+ replicas: 3\n"
        "\n"
        "  template:\n"
        "    containers:\n"
        "      -\n"
        "        #spec.template.containers.0.image\n"
        "-       image: web:1\n"
        "+       image: web:2\n"
        "\n"
    )
    assert "old" not in result.render() and "new" not in result.render()


def test_left_padding_indents_every_level():
    rendered = pdiff.diff({"a": {"b": 1}}, {"a": {"b": 2}}).render(left_padding=1)
    assert rendered == "  a:\n    #a.b\n-   b: 1\n+   b: 2\n\n"


def test_added_structures_render_as_yaml_blocks():
    result = pdiff.diff({}, {"spec": {"b": [1, {"x": True}], "a": 1.5}})
    assert [(c.path_string, c.kind) for c in result.changes] == [("spec", "added")]
    assert result.render() == "#spec\n+ spec:\n+ a: 1.5\n+ b:\n+   - 1\n+   - x: true\n\n"


def test_kinds_and_summary():
    result = pdiff.diff({"keep": 1, "gone": "x", "list": [1, 2, 3]}, {"keep": 2, "new": None, "list": [1]})
    assert sorted((c.path_string, c.kind) for c in result.changes) == [
        ("gone", "removed"), ("keep", "changed"), ("list.1", "removed"), ("list.2", "removed"), ("new", "added"),
    ]  # fmt: skip
    assert result.summary == "1 added, 1 changed, 3 removed"
    assert not pdiff.diff({"a": [1, {"b": "c"}]}, {"a": [1, {"b": "c"}]})


def test_list_indexes_sort_as_numbers():
    result = pdiff.diff({"l": list(range(12))}, {"l": [*range(10), 0, 0]})
    assert [c.path_string for c in result.changes] == ["l.10", "l.11"]
    result = pdiff.diff({"l": []}, {"l": list(range(11))})
    assert [c.path_string for c in result.changes][:3] == ["l.0", "l.1", "l.2"] and result.changes[-1].path_string == "l.10"


def test_numbers_compare_by_value_but_never_with_booleans_or_strings():
    assert not pdiff.diff({"n": 1}, {"n": 1.0})
    assert pdiff.diff({"n": 1}, {"n": True})
    assert pdiff.diff({"n": 1}, {"n": "1"})
    assert pdiff.diff({"n": None}, {"n": 0})


def test_ignore_removed_keys_skips_what_only_the_live_side_has():
    live = {"spec": {"replicas": 2, "clusterIP": "10.0.0.1"}}
    git = {"spec": {"replicas": 2}}
    assert pdiff.diff(live, git)
    assert not pdiff.diff(live, git, ignore_removed_keys=True)
    assert pdiff.diff(live, {"spec": {"replicas": 3}}, ignore_removed_keys=True).changes[0].path_string == "spec.replicas"


def test_equate_empty():
    assert pdiff.diff({"a": [], "b": {}, "c": ""}, {})
    assert not pdiff.diff({"a": [], "b": {}, "c": ""}, {}, equate_empty=True)
    assert pdiff.diff({"a": [1]}, {}, equate_empty=True)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.25, "1.25"), (2.0, "2"), (1e-7, "0.0000001"), (1e21, "1000000000000000000000"), (-0.5, "-0.5"), (False, "false"), (None, "null"), (7, "7")],
)
def test_scalars_render_as_go_formats_them(value, text):
    assert pdiff.diff({}, {"v": value}).render() == f"#v\n+ v: {text}\n\n"


def test_sets_of_documents_by_kubernetes_name():
    before = pdiff.load_documents(
        textwrap.dedent(
            """
            kind: Deployment
            metadata: {name: web, namespace: prod}
            spec: {replicas: 2}
            ---
            kind: Service
            metadata: {name: web}
            """
        )
    )
    after = pdiff.load_documents("kind: Deployment\nmetadata: {name: web, namespace: prod}\nspec: {replicas: 4}\n---\nplain: doc\n")
    assert sorted(before) == ["Deployment/prod/web", "Service/web"]
    assert sorted(after) == ["1", "Deployment/prod/web"]
    changed = pdiff.diff_sets(before, after)
    assert sorted(changed) == ["1", "Deployment/prod/web", "Service/web"]
    assert changed["Deployment/prod/web"].changes[0].path_string == "spec.replicas"
    assert changed["Service/web"].changes[0].kind == "removed"
    assert changed["1"].render() == "#\n+ plain: doc\n\n"


def test_documents_with_the_same_name_are_refused():
    with pytest.raises(ValueError, match="Service/a"):
        pdiff.load_documents("kind: Service\nmetadata: {name: a}\n---\nkind: Service\nmetadata: {name: a}\n")


def test_unified_masks_secrets_and_marks_a_missing_final_newline():
    text = pdiff.unified("user: a\ntoken: hunter2\n", "user: b\ntoken: hunter2", before_name="live", after_name="git", secrets=["hunter2"])
    assert "hunter2" not in text
    assert text.splitlines()[:2] == ["--- live", "+++ git"]
    assert "-user: a" in text and "+user: b" in text and "+token: *****" in text
    assert "\\ No newline at end of file" in text
    assert pdiff.unified("same\n", "same\n") == ""


def test_sync_verdict():
    assert pdiff.sync_verdict({"a": 1}, {"a": 1}) == (SyncStatus.SYNCED, "", "")
    verdict = pdiff.sync_verdict({"a": 2}, {"a": 1, "extra": True}, ignore_removed_keys=True)
    assert verdict.sync_status is SyncStatus.OUT_OF_SYNC
    assert verdict.short_reason == "live differs from git: 0 added, 1 changed, 0 removed"
    assert verdict.reason == "#a\n- a: 1\n+ a: 2\n\n"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@given(JSON, JSON)
def test_a_document_never_differs_from_itself_and_always_from_a_different_one(a, b):
    assert not pdiff.diff(a, a)
    result = pdiff.diff(a, b)
    assert bool(result) == (not _equal(a, b))
    result.render()  # renders whatever the values are


def _equal(a, b):
    """Equality as the differ defines it: numbers by value, booleans apart from numbers."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b
    return type(a) is type(b) and a == b

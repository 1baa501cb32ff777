"""Participants and the instructor: a display name from the URL tags and filters runs, bad names and tokens get one
line, `?run=` opens a run on any page, and the instructor's token unlocks everyone's runs and the class leaderboard."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.participants import name_problem, token_matches
from dashboard.state import visible
from optimizers.results import class_leaderboard
from profiler import store

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.mark.parametrize("name, problem", [("Ann", ""), ("  Zoë 2 ", ""), ("", "Type a display name"),
                                           ("   ", "Type a display name"), ("x" * 33, "at most 32 characters"),
                                           ("a\tb", "control characters"), ("a\nb", "control characters")])
def test_name_problem(name, problem):
    assert (name_problem(name) == "") if not problem else problem in name_problem(name)


def test_token_matches_only_the_set_token():
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cre", "s3cret") and not token_matches("S3CRET", "s3cret")
    assert not token_matches("", "") and not token_matches("anything", None) and not token_matches("", "s3cret")


def test_visible_filters_on_the_participant_tag():
    class Item:
        def __init__(self, who):
            self.participant = who

    items = [Item("ann"), Item("bob"), Item("")]
    assert [i.participant for i in visible(items, "ann", everyone=False)] == ["ann"]
    assert len(visible(items, "ann", everyone=True)) == 3


def open_app(page: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def runs_table_ids(at: AppTest) -> set[str]:
    return set(at.dataframe[0].value["id"])


def test_a_name_in_the_url_shows_only_that_participants_runs_until_the_toggle(in_classroom):
    root, runs = in_classroom
    at = open_app("runs", name="ann")
    assert at.text_input(key="name_input").value == "ann"
    ann = {r.id for r in store.list_runs(root) if r.participant == "ann"}
    assert runs_table_ids(at) == ann and len(ann) == 2
    assert {c.participant for c in store.list_comparisons(root)} == {"ann", "bob"}
    listing = next(d.value for d in at.dataframe if {"kind", "passes", "accuracy"} <= set(d.value.columns))
    assert len(listing) == 3 and set(listing["passes"]) == {"bf16", "dynamic-int8", "torchscript-freeze"}  # not bob's
    at.toggle(key="show_everyone").set_value(True).run()
    assert runs_table_ids(at) == {r.id for r in store.list_runs(root)}


def test_typing_a_name_puts_it_in_the_url_and_a_bad_one_is_refused_in_one_line(in_classroom):
    at = open_app()
    at.text_input(key="name_input").input("zoe").run()
    assert at.session_state["participant"] == "zoe" and at.query_params["name"] == "zoe"
    at.text_input(key="name_input").input("bad\tname").run()
    assert [e.value for e in at.sidebar.error] == [name_problem("bad\tname")]
    assert at.session_state["participant"] == "zoe"  # the good name stays
    assert not at.exception
    at.text_input(key="name_input").input("").run()  # cleared: no name, and no error following every page
    assert not at.sidebar.error and "participant" not in at.session_state and "name" not in at.query_params
    at.switch_page("app_pages/overview.py")
    at.run()
    assert not at.sidebar.error


def test_deep_link_opens_someone_elses_run_on_any_page(in_classroom):
    root, runs = in_classroom
    bob = runs[("bob", 2)]
    at = open_app("overview", name="ann", run=bob.id)
    assert at.selectbox(key="pick_run").value == bob.id
    assert {m.label: m.value for m in at.metric}["Throughput"].endswith("/s")
    assert not at.error


def test_a_deep_link_to_a_missing_run_says_so_in_one_line(in_classroom):
    at = open_app("overview", name="ann", run="../../etc/passwd")
    assert [w.value for w in at.warning if "No run" in w.value] == [
        "No run '../../etc/passwd' here (deleted, or the link is mistyped): showing another."]
    assert at.selectbox(key="pick_run").value in {r.id for r in store.list_runs(in_classroom[0])}
    assert not at.error


def test_instructor_token_unlocks_everyone_and_the_class_leaderboard(in_classroom, monkeypatch):
    root, runs = in_classroom
    monkeypatch.setenv("OPLENS_INSTRUCTOR_TOKEN", "s3cret")
    at = open_app("class_board", name="teacher")
    assert any("instructor's token" in i.value for i in at.info)
    at.text_input(key="token_input").input("wrong").run()
    assert [e.value for e in at.sidebar.error] == ["That is not the instructor's token."]
    assert "instructor" not in at.session_state and at.text_input(key="token_input").value == ""  # not kept
    at.text_input(key="token_input").input("s3cret").run()
    assert at.session_state["instructor"] is True
    assert not any(t.key == "token_input" for t in at.text_input)  # entered once: the box is gone
    table = at.dataframe[0].value
    expected = class_leaderboard(store.list_comparisons(root), "bert-tiny")
    assert list(table["participant"]) == [r.participant for r in expected]
    assert list(table["best speedup"]) == pytest.approx([r.speedup for r in expected])
    at.switch_page("app_pages/runs.py")
    at.run()
    assert runs_table_ids(at) == {r.id for r in store.list_runs(root)}  # the instructor sees everyone's runs


def test_without_a_server_token_nobody_becomes_instructor(in_classroom, monkeypatch):
    monkeypatch.delenv("OPLENS_INSTRUCTOR_TOKEN", raising=False)
    at = open_app("class_board", name="ann")
    assert not any(t.key == "token_input" for t in at.text_input)
    # no box to type a token in, so the page does not ask for one: it says how the server gets one
    assert any("this server has no instructor token" in i.value and "OPLENS_INSTRUCTOR_TOKEN=" in i.value
               for i in at.info)
    assert not any("enter the instructor's token in the sidebar to see" in i.value and "no instructor token" not in
                   i.value for i in at.info)

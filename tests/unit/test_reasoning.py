"""Reasoning split over recorded DeepSeek-R1 outputs, chunked at every boundary."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from seekstack.reasoning import ReasoningSplitter, split_reasoning

CASES = json.loads((Path(__file__).parents[1] / "data" / "r1_outputs.json").read_text(encoding="utf-8"))
IDS = [c["name"] for c in CASES]


def run_chunks(chunks):
    splitter = ReasoningSplitter()
    reasoning, content = [], []
    for chunk in chunks:
        r, a = splitter.feed(chunk)
        reasoning.append(r)
        content.append(a)
    r, a = splitter.finish()
    return "".join(reasoning) + r, "".join(content) + a


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_whole_output(case):
    assert split_reasoning(case["output"]) == (case["reasoning"], case["content"])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_single_split_point(case):
    text = case["output"]
    for cut in range(len(text) + 1):
        assert run_chunks([text[:cut], text[cut:]]) == (case["reasoning"], case["content"]), cut


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_one_character_per_chunk(case):
    assert run_chunks(list(case["output"])) == (case["reasoning"], case["content"])


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(CASES), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_random_chunkings(case, cuts):
    text = case["output"]
    points = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0] + points, points + [len(text)])]
    assert run_chunks(chunks) == (case["reasoning"], case["content"])


def test_holds_back_only_a_possible_tag():
    splitter = ReasoningSplitter()
    assert splitter.feed("thinking hard</th") == ("thinking hard", "")
    assert splitter.feed("ink>\n\nDone") == ("", "Done")


def test_nothing_held_when_no_tag_prefix_at_end():
    splitter = ReasoningSplitter()
    splitter.feed("x")
    assert splitter.feed(" step one.") == (" step one.", "")

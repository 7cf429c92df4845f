"""PII: the labelled corpus (precision/recall per class), streaming splits, and properties."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings, strategies as st

from seekstack.governance.pii.masker import Redactor, StreamFilter, detect
from seekstack.governance.pii.recognizers import CHECKSUM_CLASSES, CLASSES
from seekstack.governance.pii.scoring import score

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "pii" / "corpus.jsonl"
SAMPLES = [json.loads(line) for line in CORPUS.read_text().splitlines()]


def test_corpus_precision_and_recall_meet_the_targets():
    result = score(CORPUS)
    print("\n" + result.table())
    assert result.samples >= 400 and len(CLASSES) >= 18
    assert all(result.tp[c] + result.fn[c] >= 10 for c in CLASSES), "every class needs labelled samples"
    assert sum(1 for s in SAMPLES if not s["entities"]) >= 100, "look-alikes without PII"
    for cls in CHECKSUM_CLASSES:
        assert result.recall(cls) >= 0.99, (cls, result.recall(cls))
    assert result.precision() >= 0.98


def test_docs_table_is_the_measured_one():
    from seekstack.markdown import block

    assert block((ROOT / "docs" / "pii.md").read_text(), "pii-table") == score(CORPUS).table(), \
        "regenerate docs/pii.md (make docs)"


def stream(filter_: StreamFilter, text: str, size: int) -> str:
    return "".join(filter_.feed(text[i:i + size]) for i in range(0, len(text), size)) + filter_.finish()


MIXED = [s["text"] for s in SAMPLES if len(s["entities"]) >= 2][:12] + \
    ["住址：北京市海淀区中关村大街27号，车牌粤BD12345，MAC 00:1A:2B:3C:4D:5E，IP 2001:db8::1"]


def test_masking_a_stream_equals_masking_the_whole_at_every_split():
    for text in MIXED:
        whole = Redactor("mask").inbound(text)
        for size in range(1, 12):
            assert stream(StreamFilter(Redactor("mask")), text, size) == whole, (text, size)


def test_tokenized_placeholders_are_restored_when_split_across_chunks():
    for text in MIXED:
        redactor = Redactor("tokenize")
        masked = redactor.inbound(text)
        assert masked != text and "[" in masked
        for size in range(1, 9):  # the model echoes the placeholders, chunked arbitrarily
            assert stream(StreamFilter(redactor), masked, size) == text


def test_detect_changes_nothing_and_counts_classes():
    redactor = Redactor("detect")
    text = MIXED[0]
    assert redactor.inbound(text) == text and sum(redactor.found.values()) >= 2


def test_no_word_boundary_trap_next_to_cjk():
    found = {e.cls for e in detect("身份证号11010519491231002X已登记，手机13812345678请回电")}
    assert found == {"cn_resident_id", "cn_mobile"}


entity_values = st.sampled_from([e["value"] for s in SAMPLES for e in s["entities"]])
filler = st.text(alphabet=st.sampled_from(list("的了是在，。 abcXYZ患者电话：-")), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(filler, entity_values), min_size=1, max_size=4), filler, st.integers(1, 9))
def test_mask_never_emits_a_detected_value_and_tokenize_round_trips(parts, tail, size):
    text = "".join(a + " " + b + "，" for a, b in parts) + tail  # entities apart, as in text
    detected = detect(text)
    masked = Redactor("mask").inbound(text)
    for entity in detected:
        assert entity.value not in masked
    streamed = stream(StreamFilter(Redactor("mask")), text, size)
    # A stream cannot take back what it sent: it must mask each occurrence that was detectable
    # when it streamed past (" 李华，患者 李华" — the first 李华 is a name only in hindsight).
    def knowable(e):
        return any(p.start == e.start for p in detect(text[:e.end]))
    for entity in detected:
        if all(knowable(o) for o in detected if o.value == entity.value):
            assert entity.value not in streamed
    redactor = Redactor("tokenize")
    assert redactor.vault.restore(redactor.inbound(text)) == text


def test_detect_in_a_stream_delays_nothing_and_still_counts_split_entities():
    text = "电话13812345678，邮箱a.b@example.com。"
    f = StreamFilter(Redactor("detect"))
    pieces = [text[i:i + 2] for i in range(0, len(text), 2)]
    assert [f.feed(p) for p in pieces] == pieces and f.finish() == ""
    assert f.redactor.found == {"cn_mobile": 1, "email": 1}


def test_the_digit_precheck_skips_only_patterns_that_need_a_digit():
    """`digit=True` lets detect() skip a pattern on text without an ASCII digit: it must never
    have matched there. Every corpus text, with its digits turned into letters and CJK, is tried."""
    from seekstack.governance.pii.recognizers import RECOGNIZERS

    needing = [r for r in RECOGNIZERS if r.digit]
    assert len(needing) >= 15
    for sample in SAMPLES:
        for replacement in ("A", "x", "号", " "):
            text = "".join(replacement if c.isascii() and c.isdigit() else c for c in sample["text"])
            for r in needing:
                assert next(r.pattern.finditer(text), None) is None, (r.name, text)

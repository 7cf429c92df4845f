"""/v1/rerank: the request's schema, how each engine's answer is shaped (llama.cpp and vLLM's
``results``, SGLang's bare list), and the config rules for rerankers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from seekstack.config import ModelConfig, Settings
from seekstack.errors import EngineError
from seekstack.gateway.shaping import shape_rerank
from seekstack.protocol import RerankRequest

DOCS = ["Paris is the capital of France", "Berlin", "France"]


def test_results_come_best_first_cut_to_top_n_with_their_documents():
    vllm = {"id": "rerank-1", "usage": {"total_tokens": 30},
            "results": [{"index": 1, "relevance_score": 0.1, "document": {"text": "ignored"}},
                        {"index": 0, "relevance_score": 0.9}, {"index": 2, "relevance_score": 0.5}]}
    shaped = shape_rerank(vllm, "bge", DOCS, None, True)
    assert shaped == {"id": "rerank-1", "object": "list", "model": "bge", "usage": {"prompt_tokens": 30, "total_tokens": 30},
                      "results": [{"index": 0, "relevance_score": 0.9, "document": {"text": DOCS[0]}},
                                  {"index": 2, "relevance_score": 0.5, "document": {"text": DOCS[2]}},
                                  {"index": 1, "relevance_score": 0.1, "document": {"text": DOCS[1]}}]}
    top = shape_rerank(vllm, "bge", DOCS, 2, False)
    assert top["results"] == [{"index": 0, "relevance_score": 0.9}, {"index": 2, "relevance_score": 0.5}]


def test_sglang_scores_and_ties_in_document_order():
    sglang = {"results": [{"score": 0.5, "index": 2, "document": "France"}, {"score": 0.5, "index": 0},
                          {"score": 1, "index": 1}]}
    shaped = shape_rerank(sglang, "bge", DOCS, None, False)
    assert [(r["index"], r["relevance_score"]) for r in shaped["results"]] == [(1, 1.0), (0, 0.5), (2, 0.5)]
    assert shaped["id"].startswith("rerank-") and shaped["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
    for item, n in zip(sglang["results"], (7, 8, 9)):
        item["meta_info"] = {"prompt_tokens": n}
    assert shape_rerank(sglang, "bge", DOCS, None, False, estimate=99)["usage"]["prompt_tokens"] == 24


def test_an_engine_that_counts_nothing_is_charged_the_gateways_bound():
    results = [{"index": i, "relevance_score": 0.5} for i in range(3)]
    assert shape_rerank({"results": results}, "bge", DOCS, None, False, estimate=99)["usage"] == {
        "prompt_tokens": 99, "total_tokens": 99}


@pytest.mark.parametrize("results, says", [
    ([{"index": 0, "relevance_score": 0.9}, {"index": 1, "relevance_score": 0.1}], "scored 2 of the 3 documents"),
    ([{"index": 0, "relevance_score": 0.9}] * 3, "without one index and score"),
    ([{"index": 0, "relevance_score": "high"}, {"index": 1, "relevance_score": 0}, {"index": 2, "relevance_score": 0}],
     "without one index and score"),
    ([{"index": 0, "relevance_score": True}, {"index": 1, "relevance_score": 0}, {"index": 2, "relevance_score": 0}],
     "without one index and score"),
    ([{"index": 0, "relevance_score": 1}, {"index": 1, "relevance_score": 0}, {"index": 5, "relevance_score": 0}],
     r"not sent \(index 5\)"),
    (["0.9", "0.1", "0.5"], "without one index and score"),
])
def test_an_answer_that_does_not_score_each_document_once_is_the_engines_error(results, says):
    with pytest.raises(EngineError, match=says):
        shape_rerank({"results": results}, "bge", DOCS, None, True)


def test_the_request_takes_strings_or_text_objects_and_refuses_what_it_does_not_know():
    req = RerankRequest.model_validate({"model": "bge", "query": "q", "documents": ["a", {"text": "b"}], "top_n": 1})
    assert req.texts() == ["a", "b"] and req.return_documents
    for bad in ({"model": "bge", "query": "q", "documents": []},
                {"model": "bge", "query": "", "documents": ["a"]},
                {"model": "bge", "query": "q", "documents": ["a"], "top_n": 0},
                {"model": "bge", "query": "q", "documents": [{"body": "a"}]},
                {"model": "bge", "query": "q", "documents": ["a"] * 1001},
                {"model": "bge", "query": "q", "documents": ["a"], "rank_fields": ["x"]}):
        with pytest.raises(ValidationError):
            RerankRequest.model_validate(bad)


def test_a_model_runs_in_one_mode_and_a_reranker_falls_back_to_rerankers_only():
    with pytest.raises(ValidationError, match="set one of `embeddings` or `rerank`"):
        ModelConfig(name="m", source="embedded", embeddings=True, rerank=True)
    assert ModelConfig(name="m", source="embedded", rerank=True).task == "rerank"
    with pytest.raises(ValidationError, match="fallback 'chat' must be a reranker too"):
        Settings(models=[{"name": "r", "source": "embedded", "rerank": True, "fallbacks": ["chat"]},
                         {"name": "chat", "source": "embedded"}])
    with pytest.raises(ValidationError, match="fallback 'e' must be a reranker too"):
        Settings(models=[{"name": "r", "source": "embedded", "rerank": True, "fallbacks": ["e"]},
                         {"name": "e", "source": "embedded", "embeddings": True}])
    Settings(models=[{"name": "r", "source": "embedded", "rerank": True, "fallbacks": ["r2"]},
                     {"name": "r2", "source": "embedded", "rerank": True}])

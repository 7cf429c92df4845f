"""Admission when models take turns (planner/admission.py): models with a keep_alive need not all
fit at once — every other model plus the largest of them must — and the derived sizes are not
shrunk to squeeze them all in. The plans are the planner's for the embedded model on this machine."""

from __future__ import annotations

from seekstack.config import Settings
from seekstack.planner.admission import admit, derive, room

GB = 1e9


def settings(budget_gb: float, *models: dict) -> Settings:
    return Settings.model_validate({"supervisor": {"memory_budget_gb": budget_gb}, "models": [
        {"source": "embedded", "context": 512, "slots": 1, "prompt_cache_mib": 0, **m} for m in models]})


def one_model_bytes() -> float:
    plan = settings(10, {"name": "x"})
    return room(plan).bytes_of(plan.models[0])


def test_models_with_a_keep_alive_fit_by_taking_turns():
    one = one_model_bytes()
    s = settings(1.5 * one / GB, {"name": "a", "keep_alive": 60}, {"name": "b", "keep_alive": 60})
    admission = admit(s)
    assert admission.fits and not admission.all_fit
    assert admission.need_bytes == one and admission.all_bytes == 2 * one
    assert admission.on_demand() == ["a", "b"]
    assert "a, b (keep_alive) load on demand, taking turns" in admission.sharing()


def test_models_that_all_fit_do_not_take_turns():
    one = one_model_bytes()
    admission = admit(settings(2.5 * one / GB, {"name": "a", "keep_alive": 60}, {"name": "b", "keep_alive": 60}))
    assert admission.fits and admission.all_fit and admission.sharing() is None


def test_a_model_without_a_keep_alive_never_gives_its_room():
    """a is always loaded: a and b together must fit, whatever b's keep_alive."""
    one = one_model_bytes()
    admission = admit(settings(1.5 * one / GB, {"name": "a"}, {"name": "b", "keep_alive": 60}))
    assert not admission.fits and admission.need_bytes == 2 * one
    assert "(models with keep_alive counted as the largest of them: they take turns)" in admission.explain()
    assert admission.sharing() is None


def test_the_derived_context_is_not_shrunk_for_models_that_take_turns():
    """Unset context and slots: with turns, each model gets the sizes one model would get alone."""
    one_alone = settings(0.35, {"name": "a"})
    one_alone.models[0].model_fields_set.difference_update({"context", "slots"})
    derive(one_alone)
    two = settings(0.35, {"name": "a", "keep_alive": 60}, {"name": "b", "keep_alive": 60})
    for m in two.models:
        m.model_fields_set.difference_update({"context", "slots"})
    derive(two)
    assert [(m.context, m.slots) for m in two.models] == [(one_alone.models[0].context, one_alone.models[0].slots)] * 2
    assert admit(two).fits and not admit(two).all_fit


def test_the_room_counts_every_replica_and_nothing_for_engines_it_does_not_size():
    s = Settings.model_validate({"supervisor": {"memory_budget_gb": 1}, "models": [
        {"name": "two", "source": "embedded", "context": 512, "slots": 1, "prompt_cache_mib": 0, "replicas": 2},
        {"name": "far", "engine": {"kind": "openai", "url": "http://10.0.0.1:8000/v1"}}]})
    plan = room(s)
    assert plan.budget_bytes == 1 * GB and plan.where == "supervisor.memory_budget_gb"
    assert plan.bytes_of(s.models[0]) == 2 * one_model_bytes() and plan.bytes_of(s.models[1]) == 0


def test_doctor_says_the_models_fit_by_taking_turns():
    from seekstack.doctor import OK, memory_check

    one = one_model_bytes()
    [check] = memory_check(settings(1.5 * one / GB, {"name": "a", "keep_alive": 60}, {"name": "b", "keep_alive": 60}))
    assert check.status == OK and "with a, b (keep_alive) taking turns (0.46 GiB all at once)" in check.detail, check


def test_when_taking_turns_would_fit_the_fix_says_which_models_need_a_keep_alive():
    one = one_model_bytes()
    s = settings(1.2 * one / GB, {"name": "a", "keep_alive": 60}, {"name": "b"}, {"name": "c"})
    admission = admit(s)
    assert not admission.fits
    assert admission.smallest_fix() == "set keep_alive (seconds idle) for b, c: models with a keep_alive take turns in memory"
    fixed = settings(1.2 * one / GB, *({"name": n, "keep_alive": 60} for n in "abc"))
    assert admit(fixed).fits  # the fix it names is enough
    alone = admit(settings(0.5 * one / GB, {"name": "a"}, {"name": "b"}))
    assert "keep_alive" not in alone.smallest_fix()  # one model does not fit alone: turns cannot help


def test_a_llamacpp_engine_that_runs_elsewhere_takes_no_memory_here_and_keeps_its_context():
    """Its model file is on its own host: it is not planned (it was, as the embedded model), and
    its context is not derived from this host's memory."""
    far = {"name": "far", "engine": {"kind": "llamacpp", "url": "http://10.0.0.1:8080"}}
    assert admit(Settings.model_validate({"supervisor": {"memory_budget_gb": 0.01}, "models": [far]})) is None
    both = Settings.model_validate({"supervisor": {"memory_budget_gb": 0.35}, "models": [
        far, {"name": "here", "source": "embedded"}]})
    derive(both)
    assert both.models[0].context == 4096 and both.models[0].model_fields_set == {"name", "engine"}
    assert [m.name for m, _ in admit(both).plans] == ["here"] and admit(both).fits


def test_an_embedding_models_plan_counts_a_batch_of_a_whole_requests_context():
    """llama.cpp embeds an input in one step: its physical batch, and the compute buffer the plan
    counts, is the request's context (2,048 here) for an embedding model, 512 otherwise — and the
    engine is launched with the batch the plan counted."""
    import xllamacpp

    from seekstack.config import ModelConfig
    from seekstack.engines.llamacpp import LlamaCppProcess
    from seekstack.engines.llamacpp_worker import build_params
    from seekstack.planner.admission import _plan
    from seekstack.planner.hardware import detect, parse_hardware

    hw = parse_hardware("auto", detect())
    chat = ModelConfig(name="c", source="embedded", context=2048, slots=1)
    embed = ModelConfig(name="e", source="embedded", context=2048, slots=1, embeddings=True)
    hidden = 576  # SmolLM2-135M
    assert _plan(embed, hw).overhead_bytes - _plan(chat, hw).overhead_bytes == (2048 - 512) * hidden * 64
    assert "2048 × hidden × 64 B" in " ".join(_plan(embed, hw).assumptions)
    for model, batch in ((chat, 512), (embed, 2048)):
        spec = LlamaCppProcess.__new__(LlamaCppProcess)
        spec.model, spec.socket_path, spec.host, spec.port = model, None, "127.0.0.1", 0
        params = build_params(spec.spec())
        assert params.n_ubatch == batch and params.n_batch >= batch
    assert xllamacpp.CommonParams().n_ubatch == 512  # llama.cpp's own, which refused inputs past 512 tokens


def test_a_reranker_is_planned_and_launched_as_llama_cpp_s_reranking_mode():
    """A query and a document are scored in one sequence: a reranker's batch is a request's context,
    as an embedding model's, and llama.cpp runs it with rank pooling (its --reranking)."""
    import xllamacpp

    from seekstack.config import ModelConfig
    from seekstack.engines.llamacpp import LlamaCppProcess
    from seekstack.engines.llamacpp_worker import build_params
    from seekstack.planner.admission import _plan
    from seekstack.planner.hardware import detect, parse_hardware

    hw = parse_hardware("auto", detect())
    embed = ModelConfig(name="e", source="embedded", context=2048, slots=1, embeddings=True)
    rerank = ModelConfig(name="r", source="embedded", context=2048, slots=1, rerank=True)
    assert _plan(rerank, hw).overhead_bytes == _plan(embed, hw).overhead_bytes
    pooling = xllamacpp.llama_pooling_type
    for model, kind in ((embed, pooling.LLAMA_POOLING_TYPE_MEAN), (rerank, pooling.LLAMA_POOLING_TYPE_RANK)):
        spec = LlamaCppProcess.__new__(LlamaCppProcess)
        spec.model, spec.socket_path, spec.host, spec.port = model, None, "127.0.0.1", 0
        params = build_params(spec.spec())
        assert params.embedding and params.pooling_type == kind and params.n_ubatch == 2048

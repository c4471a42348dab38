"""generate/stream refuse by name what they cannot do: unknown arguments, non-finite logits, overlong prompts."""
import numpy as np
import pytest

from gptx.generate import generate, stream
from gptx.model import GPT, GPTConfig
from gptx.sampling import SamplingParams, choose


@pytest.fixture(scope="module")
def model():
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=50), seed=0)


def both(model, *args, **kw):
    """Run generate and the first step of stream with the same arguments (each must raise)."""
    for f in (lambda: generate(model, *args, **kw), lambda: next(iter(stream(model, *args, **kw)))):
        yield f


@pytest.mark.parametrize("kw, names", [
    (dict(num_beam_groups=2), ["num_beam_groups (diverse (group) beam search is not supported"]),
    (dict(pad_token_id=0, attention_mask=[1, 1]), ["pad_token_id (not needed", "attention_mask (not needed"]),
    (dict(temprature=0.5), ["temprature (did you mean temperature?)"]),
    (dict(min_length=5), ["min_length (use min_new_tokens"]),
    (dict(streamer=object()), ["streamer (use model.stream"]),
    (dict(frobnicate=1), ["frobnicate (not an argument"]),
])
def test_unknown_arguments_are_named_with_what_to_use(model, kw, names):
    for f in both(model, [1, 2], 4, **kw):
        with pytest.raises(TypeError) as e:
            f()
        assert all(n in str(e.value) for n in names), str(e.value)


def test_harmless_defaults_and_per_function_arguments(model):
    ids = generate(model, [1, 2], 4, seed=0)
    assert generate(model, [1, 2], 4, seed=0, num_beams=1, use_cache=True) == ids
    assert list(stream(model, [1, 2], 4, seed=0, num_beams=1, length_penalty=1.0, early_stopping=False)) == ids
    for kw in (dict(num_beams=4), dict(length_penalty=2.0), dict(return_scores=True)):
        with pytest.raises(TypeError, match=f"{next(iter(kw))} .*use generate\\(num_beams=...\\)"):
            next(iter(stream(model, [1, 2], 4, **kw)))
    with pytest.raises(TypeError, match="return_logprobs .*use generate"):
        next(iter(stream(model, [1, 2], 4, return_logprobs=True)))
    with pytest.raises(TypeError, match="return_full_text .*stream yields only the new tokens"):
        next(iter(stream(model, [1, 2], 4, return_full_text=True)))
    with pytest.raises(TypeError, match="text= is an argument of stream"):
        generate(model, [1, 2], 4, text=True)
    with pytest.raises(TypeError, match="stop_at_eos"):
        generate(model, [1, 2], 4, stop_at_eos=None)
    with pytest.raises(TypeError, match="do_sample"):
        generate(model, [1, 2], 4, do_sample="yes")


def test_non_finite_logits_name_the_step(model):
    calls = []

    def nan_at_third(ids, scores):
        calls.append(ids.shape)
        if len(calls) == 3:
            scores[0, 7] = np.nan
        return scores

    kw = dict(temperature=0.8, seed=0, logits_processor=[nan_at_third])
    for run in (lambda: generate(model, [1, 2], 6, **kw), lambda: list(stream(model, [1, 2], 6, **kw))):
        calls.clear()
        with pytest.raises(ValueError, match=r"sequence 0, step 2 .*logits_processor\[0\] returned non-finite "
                                             r"scores \(1 NaN"):
            run()
    assert calls[0] == (1, 2)
    with pytest.raises(ValueError, match="every token is banned"):
        generate(model, [1, 2], 3, logits_processor=lambda ids, s: np.full_like(s, -np.inf))
    with pytest.raises(TypeError, match=r"logits_processor\[1\] returned None; return the scores"):
        generate(model, [1, 2], 3, logits_processor=[lambda ids, s: s, lambda ids, s: None])
    with pytest.raises(ValueError, match=r"logits_processor\[0\] returned \(3,\) scores"):
        generate(model, [1, 2], 3, logits_processor=lambda ids, s: np.zeros(3))
    broken = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=50), seed=0)
    np.asarray(broken._p.wte)[3, 0] = np.inf  # a CPU tensor: the numpy view writes into it
    with pytest.raises(ValueError, match=r"sequence 0, step 0 .*the model's logits are not finite"):
        generate(broken, [1, 3], 3, temperature=0)
    # the sampler itself, called directly: a clear error, never an IndexError
    row = np.zeros(50)
    row[4] = np.nan
    for params in (SamplingParams(), SamplingParams(temperature=0)):
        with pytest.raises(ValueError, match="position 9 of sequence 1 .*1 NaN"):
            choose(row, params, 0, 1, 9)
    with pytest.raises(ValueError, match="50 -inf of 50"):
        choose(np.full(50, -np.inf), SamplingParams(), 0, 0, 0)


def test_context_messages_name_what_was_given(model):
    with pytest.raises(ValueError, match=r"the prompt has 17 tokens, longer than the context \(16 = block_size\)"):
        generate(model, [1] * 17, 2)
    with pytest.raises(ValueError, match=r"prompt 1 \(10 tokens\) \+ max_new_tokens \(7\) exceeds the context"):
        generate(model, [[1], [1] * 10], 7)
    with pytest.raises(ValueError, match=r"max_length \(17\) exceeds the context \(16 = block_size\)"):
        generate(model, [1, 2], max_length=17)
    # sliding_window: the cut is counted, per prompt
    with pytest.warns(UserWarning, match="dropped from the left: 4 tokens of prompt 0, 1 token of prompt 2"):
        out = generate(model, [[1] * 20, [2] * 3, [3] * 17], 3, sliding_window=True, seed=0)
    assert [len(x) for x in out] == [3, 3, 3]
    with pytest.warns(UserWarning, match="2 tokens of the prompt"):
        assert len(list(stream(model, [1] * 18, 2, sliding_window=True, seed=0))) == 2


def test_model_methods_take_max_length_alone():
    import gptx

    m = gptx.GPT(gptx.GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=50), seed=0)
    out = m.generate([1, 2, 3], max_length=10, do_sample=False, stop_at_eos=False)
    assert len(out) == 7  # max_length counts the prompt, as in transformers
    assert len(list(m.stream([1, 2], max_length=6, temperature=0, stop_at_eos=False))) == 4

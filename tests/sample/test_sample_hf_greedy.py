"""Greedy generation vs transformers' GPT2LMHeadModel.generate(do_sample=False), by token and by GPT-2 text."""
import numpy as np
import pytest

import gptx
from gptx.model import GPT
from hf_models import wide_random_gpt2_folder
from gptx.tokenizer import Tokenizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# (n_layer, n_head, n_embd, block_size): small, but with the real GPT-2 vocabulary so the ids are GPT-2 BPE text.
SHAPE = (2, 4, 64, 64)
PROMPTS = ["Hello, my name is", "The quick brown fox jumps over", "1 2 3"]
NEW = 20


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    L, NH, C, BS = SHAPE
    path = tmp_path_factory.mktemp("hf")
    hf = wide_random_gpt2_folder(path, seed=0, n_layer=L, n_head=NH, n_embd=C, n_positions=BS, vocab_size=50257)
    return hf, GPT.from_pretrained(path)


def hf_greedy(hf, ids):
    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW, do_sample=False)
    return out[0, len(ids):].tolist()


def test_greedy_tokens_and_text_match_transformers(models):
    hf, model = models
    tok = Tokenizer.gpt2()
    prompts = [tok.encode(p) for p in PROMPTS]
    expected = [hf_greedy(hf, p) for p in prompts]
    assert all(len(set(e)) > 10 for e in expected), "degenerate reference: the test would prove little"
    before = gptx.get_num_threads()
    try:
        for threads in (1, 2):
            gptx.set_num_threads(threads)
            # one batch of prompts of different lengths, and each alone
            assert model.generate(prompts, NEW, temperature=0) == expected
        for p, e in zip(prompts, expected):
            assert model.generate(p, NEW, temperature=0) == e
    finally:
        gptx.set_num_threads(before)
    # text prompts through the tokenizer give the same text transformers' ids decode to
    for text, e in zip(PROMPTS, expected):
        got = model.generate(text, NEW, temperature=0, tokenizer=tok)
        assert tok.decode(got) == tok.decode(e)
        assert "".join(model.stream(text, NEW, temperature=0, tokenizer=tok)) == tok.decode(e)

"""Greedy generation vs transformers' GPT2LMHeadModel.generate(do_sample=False), by token and by GPT-2 text."""
import numpy as np
import pytest

import gptx
from gptx.model import GPT
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
    cfg = transformers.GPT2Config(n_layer=L, n_head=NH, n_embd=C, n_positions=BS, vocab_size=50257,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn_like(p))
            else:
                # Wider than the 0.02 init: with it, the tied LM head just repeats the last prompt token, and the top
                # two logits would sit within float32 rounding of each other. These settings give ~19 distinct
                # tokens out of 20 per prompt with a top-2 gap >= 4e-3 (errors here are ~1e-6).
                p.copy_((0.3 if name == "transformer.wpe.weight" else 0.1) * torch.randn_like(p))
    # Never stop early: no end-of-text token; pad id only to silence generate's warning.
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    path = tmp_path_factory.mktemp("hf")
    hf.save_pretrained(path)
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

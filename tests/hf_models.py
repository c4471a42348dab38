"""Random-weight transformers GPT-2 models saved to local folders, for tests that compare gptx with transformers'
generate (no network: nothing is downloaded)."""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def wide_random_gpt2_folder(path, seed, **config):
    """A GPT2LMHeadModel with every parameter random and wider than the 0.02 init, saved to `path`; returns it.

    With the 0.02 init the tied LM head just repeats the last prompt token and the top two logits sit within float32
    rounding of each other; these scales give distinct greedy tokens with a top-2 gap well above gptx's ~1e-6 error.
    It never stops early: no end-of-text id (pad id 0 only silences generate's warning)."""
    cfg = transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="eager",
                                  **config)
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn_like(p))
            else:
                p.copy_((0.3 if name == "transformer.wpe.weight" else 0.1) * torch.randn_like(p))
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    hf.save_pretrained(path)
    return hf


def wide_random_pair(path, shape, seed=1):
    """(transformers model, the same weights loaded by gptx.GPT.from_pretrained) for shape (n_layer, n_head, n_embd,
    block_size, vocab_size), with no end-of-text id: the pair the generate comparisons run."""
    from gptx.model import GPT

    L, NH, C, BS, V = shape
    hf = wide_random_gpt2_folder(path, seed=seed, n_layer=L, n_head=NH, n_embd=C, n_positions=BS, vocab_size=V,
                                 bos_token_id=None, eos_token_id=None)
    return hf, GPT.from_pretrained(path)

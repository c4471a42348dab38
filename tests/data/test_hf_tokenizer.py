"""The tokenizer files gptx writes, read back by transformers (offline, local folders): the same ids as gptx."""
import json
import os

import numpy as np
import pytest

from gptx import hf_tokenizer
from gptx.data import shakespeare_text
from gptx.tokenizer import EOT, Tokenizer

transformers = pytest.importorskip("transformers")

# ASCII, accents (precomposed and combining), CJK, emoji with a ZWJ and a skin tone, whitespace runs, the literal
# end-of-text string inside a word and alone, contractions GPT-2's pre-tokenizer splits.
MIXED = ("Hello  world!\n\n\tcafé naïve e\u0301 中文字 日本語 😀👍🏽👨\u200d👩\u200d👧 it's we'll\r\n"
         "   three spaces, \u00a0nbsp\u3000ideographic" + EOT + "after" + EOT + "\n  " + EOT
         + " trailing   ")
PIECES = ["a", "Z", "9", " ", "  ", "\n", "\t", "é", "ß", "中", "文", "😀", "👍🏽", EOT, "'s", " the", ".",
          "\u0301"]


@pytest.fixture(scope="module")
def tokenizers():
    return {"bytes": Tokenizer.bytes(), "gpt2": Tokenizer.gpt2(),
            "bpe": Tokenizer.train([shakespeare_text()[:100_000]], vocab_size=400)}


def texts(rng):
    out = [MIXED, shakespeare_text()[:3000]]
    for _ in range(10):
        out.append("".join(PIECES[i] for i in rng.integers(0, len(PIECES), size=200)))
    return out


@pytest.mark.parametrize("kind", ["bytes", "gpt2", "bpe"])
def test_auto_tokenizer_gives_gptx_ids(kind, tokenizers, tmp_path, rng):
    tok = tokenizers[kind]
    tok.save(tmp_path, model_max_length=64)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert hf.eos_token_id == tok.eot_token and hf.bos_token_id == tok.eot_token
    assert hf.model_max_length == 64
    for text in texts(rng):
        ids = tok.encode(text, allow_special=True)
        assert hf(text)["input_ids"] == ids
        assert hf.decode(ids) == tok.decode(ids)  # no clean-up of spaces: the exact text
    assert tok.eot_token in tok.encode(MIXED, allow_special=True)


@pytest.mark.parametrize("kind", ["gpt2", "bpe"])
def test_vocab_and_merges_alone_give_gptx_ids(kind, tokenizers, tmp_path, rng):
    """vocab.json + merges.txt without tokenizer.json: what GPT2Tokenizer reads."""
    tok = tokenizers[kind]
    tok.save(tmp_path / "all")
    (tmp_path / "two").mkdir()
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / "two" / name).write_bytes((tmp_path / "all" / name).read_bytes())
    slow = transformers.GPT2Tokenizer.from_pretrained(tmp_path / "two", local_files_only=True)
    assert len(slow) >= 256
    for text in texts(rng):
        plain = text.replace(EOT, "")
        assert slow(plain)["input_ids"] == tok.encode(plain)


def test_gpt2_merges_are_one_per_token():
    vocab, merges = hf_tokenizer.gpt2_vocab_and_merges()
    assert len(vocab) == 50256 and len(merges) == 50000  # ids 256..50255 are merges, 50256 is <|endoftext|>
    assert merges[0] == ("Ġ", "t") and vocab["Ġthe"] == 262  # GPT-2's first merge and " the"
    assert merges[-1] == ("Ġg", "azed")  # GPT-2's last merge (the last line of its merges.txt): " gazed", 50255
    for a, b in merges[:2000]:
        assert vocab[a] < vocab[a + b] and vocab[b] < vocab[a + b]


def test_byte_tokenizer_end_of_text():
    tok = Tokenizer.bytes()
    assert (tok.vocab_size, tok.eot_token) == (257, 256)
    assert tok.encode("a" + EOT + "b") == [97] + list(EOT.encode()) + [98]  # typed text stays text
    assert tok.encode("a" + EOT + "b", allow_special=True) == [97, 256, 98]
    assert tok.encode_array(EOT + EOT, allow_special=True).tolist() == [256, 256]
    assert tok.decode([104, 256, 105, 256]) == "h" + EOT + "i" + EOT
    assert tok.decode_bytes(np.array([256])) == EOT.encode()
    old = Tokenizer.bytes(end_of_text=False)
    assert (old.vocab_size, old.eot_token) == (256, None)
    with pytest.raises(ValueError, match="256"):
        old.decode([256])
    assert old.encode(EOT, allow_special=True) == list(EOT.encode())


def test_old_byte_tokenizer_files_still_load(tmp_path):
    meta = {"format": "gptx-tokenizer", "version": 1, "kind": "bytes", "name": "bytes", "vocab_size": 256,
            "eot_token": None, "files": {}}
    (tmp_path / "gptx_tokenizer.json").write_text(json.dumps(meta))
    tok = Tokenizer.load(tmp_path)
    assert (tok.kind, tok.vocab_size, tok.eot_token) == ("bytes", 256, None)
    Tokenizer.bytes().save(tmp_path)
    assert Tokenizer.load(tmp_path).eot_token == 256


def _meta(tmp_path, obj):
    Tokenizer.bytes().save(tmp_path)
    path = tmp_path / "gptx_tokenizer.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.mark.parametrize("obj, fragment", [
    ([1, 2, 3], "not an object"),
    ("\"text\"", "not an object"),
    ("{broken", "invalid JSON"),
    ({"format": "gptx-tokenizer", "version": "1", "kind": "bytes"}, "not a gptx tokenizer"),
    ({"format": "gptx-tokenizer", "version": 1, "kind": "bytes", "vocab_size": 2**31 - 1}, "vocab_size"),
    ({"format": "gptx-tokenizer", "version": 1, "kind": "gpt2", "eot_token": 2**31 - 1}, "eot_token"),
    ({"format": "gptx-tokenizer", "version": 1, "kind": "gpt2", "eot_token": "x"}, "eot_token"),
    ({"format": "gptx-tokenizer", "version": 1, "kind": "bpe", "files": {"tokenizer": "../tokenizer.json"}},
     "same folder"),
    ({"format": "gptx-tokenizer", "version": 1, "kind": "bpe", "files": {"tokenizer": "/etc/passwd"}},
     "same folder"),
    ({"format": "gptx-tokenizer", "version": 1, "kind": "bpe", "files": ["tokenizer.json"]}, "files"),
    ({"format": "gptx-tokenizer", "version": 1, "kind": "bytes", "name": 5}, "name"),
])
def test_bad_meta_file_is_a_value_error_naming_it(tmp_path, obj, fragment):
    path = _meta(tmp_path, obj)
    with pytest.raises(ValueError, match=fragment) as e:
        Tokenizer.load(tmp_path)
    assert str(path) in str(e.value)
    with pytest.raises(ValueError, match=fragment):
        Tokenizer.load(path)


def test_meta_file_through_a_link_outside_is_refused(tmp_path, tokenizers):
    outside = tmp_path / "outside"
    tokenizers["bpe"].save(outside)
    inside = tmp_path / "inside"
    inside.mkdir()
    os.symlink(outside / "tokenizer.json", inside / "tokenizer.json")
    (inside / "gptx_tokenizer.json").write_text((outside / "gptx_tokenizer.json").read_text())
    with pytest.raises(ValueError, match="same folder"):
        Tokenizer.load(inside)


def test_absurd_ids_in_tokenizer_json_are_refused_without_allocating(tmp_path, tokenizers):
    tokenizers["bpe"].save(tmp_path)
    doc = json.loads((tmp_path / "tokenizer.json").read_text())
    doc["model"]["vocab"][next(iter(doc["model"]["vocab"]))] = 2**31 - 1
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="token ids must be") as e:
        Tokenizer.load(tmp_path)
    assert "tokenizer.json" in str(e.value)
    (tmp_path / "tokenizer.json").write_bytes(b"\xff\xfe not text")
    with pytest.raises(ValueError, match="tokenizer.json"):
        Tokenizer.load(tmp_path)

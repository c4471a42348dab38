"""Tokenizers: byte round trips, GPT-2 ids offline, trained BPE, save/load, chunked file encoding, asset hashes."""
import gzip
import json
import os
import shutil
import socket

import numpy as np
import pytest

from gptx import _assets, tokenizer as tokmod
from gptx.data import shakespeare_text
from gptx.tokenizer import Tokenizer

# Code points to draw random text from: ASCII, Latin-1, Greek, CJK, combining marks, emoji (incl. a ZWJ and a
# variation selector), unusual whitespace. Surrogates are not valid in UTF-8 and are left out.
ALPHABET = (
    list("abcXYZ019 ,.'!?-\n\t\r") + ["  ", "\n\n", " \n", "'s", "'ll"]
    + ["é", "ß", "\u00a0", "λ", "Ж", "中", "文", "\u0301", "\u3000", "\u2028"]
    + ["😀", "👍🏽", "👨\u200d👩\u200d👧", "❤\ufe0f", "\U0010fffd", "\x00", "\x7f"]
)


def random_text(rng, n=400):
    return "".join(ALPHABET[i] for i in rng.integers(0, len(ALPHABET), size=n))


@pytest.fixture(scope="module")
def gpt2():
    return Tokenizer.gpt2()


@pytest.fixture(scope="module")
def trained():
    # 200 kB of Shakespeare and 400 ids train in ~0.3 s on one core.
    return Tokenizer.train([shakespeare_text()[:200_000]], vocab_size=400)


# ----- bytes -----
def test_bytes_round_trip_random_unicode(rng):
    tok = Tokenizer.bytes()
    assert tok.vocab_size == 257 and tok.eot_token == 256 and tok.kind == "bytes"
    for _ in range(20):
        text = random_text(rng)
        ids = tok.encode(text)
        assert ids == list(text.encode("utf-8"))
        assert tok.decode(ids) == text
        assert tok.decode_bytes(ids) == text.encode("utf-8")


def test_bytes_decode_invalid_utf8_never_crashes(rng):
    tok = Tokenizer.bytes()
    assert tok.decode([0xFF, 0xFE, ord("h")]) == "\ufffd\ufffdh"
    assert tok.decode(list("😀".encode())[:2]) == "\ufffd"
    for _ in range(20):
        raw = rng.integers(0, 256, size=64)
        assert tok.decode_bytes(raw) == bytes(raw.tolist())
        assert tok.decode(raw) == bytes(raw.tolist()).decode("utf-8", errors="replace")
        assert tok.decode(raw.astype(np.uint8)) == tok.decode(raw.tolist())


def test_decode_rejects_bad_ids():
    tok = Tokenizer.bytes()
    with pytest.raises(ValueError, match="257"):
        tok.decode([257])
    with pytest.raises(ValueError, match="-1"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="integers"):
        tok.decode(np.array([1.5]))
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(np.zeros((2, 2), dtype=np.int32))
    assert tok.decode([]) == ""
    with pytest.raises(ValueError, match="50257"):
        Tokenizer.gpt2().decode([50257])


# ----- gpt2 -----
def test_gpt2_known_ids(gpt2):
    assert gpt2.vocab_size == 50257 and gpt2.eot_token == 50256 and gpt2.name == "gpt2"
    assert gpt2.encode("Hello world") == [15496, 995]
    # Ids every GPT-2 tokenizer agrees on: "\n" 198, " " 220, " the" 262, "hello" 31373.
    assert gpt2.encode("\n") == [198]
    assert gpt2.encode(" ") == [220]
    assert gpt2.encode(" the") == [262]
    assert gpt2.encode("hello") == [31373]
    for ids, text in [([198], "\n"), ([262], " the"), ([15496, 995], "Hello world"), ([50256], "<|endoftext|>")]:
        assert gpt2.decode(ids) == text


def test_gpt2_special_token(gpt2):
    plain = gpt2.encode("a<|endoftext|>b")
    assert 50256 not in plain and gpt2.decode(plain) == "a<|endoftext|>b"
    assert gpt2.encode("a<|endoftext|>b", allow_special=True) == [64, 50256, 65]
    assert gpt2.encode_batch(["<|endoftext|>"], allow_special=True) == [[50256]]


def test_gpt2_round_trip_shakespeare_and_random(gpt2, rng):
    text = shakespeare_text()
    ids = gpt2.encode(text)
    assert 300_000 < len(ids) < 400_000 and max(ids) < 50256
    assert gpt2.decode(ids) == text
    for _ in range(10):
        t = random_text(rng)
        ids = gpt2.encode(t)
        assert gpt2.decode(ids) == t
        # Per-token bytes concatenate to the exact text even where a token is half a character.
        assert b"".join(gpt2.token_bytes(i) for i in ids) == t.encode("utf-8")
    half = gpt2.encode("😀")[:1]
    assert "\ufffd" in gpt2.decode(half)


def test_gpt2_builds_offline(monkeypatch):
    """Building the encoding must not use the network or tiktoken's download cache."""
    import tiktoken.load

    def no_network(*a, **k):
        raise AssertionError("network or tiktoken download used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", no_network)
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tokmod, "_gpt2_cache", {})
    assert Tokenizer.gpt2().encode("Hello world") == [15496, 995]


def test_pattern_matches_tiktoken():
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    assert tokmod.R50K_PATTERN == openai_public.r50k_pat_str


def test_fallback_pattern_gives_the_same_ids(gpt2, rng):
    """The original GPT-2 regex (used with older tiktoken) cuts the same pieces as the possessive form."""
    import tiktoken

    classic = tiktoken.Encoding(name="gpt2-classic", pat_str=tokmod.GPT2_PATTERN, mergeable_ranks=tokmod.gpt2_ranks(),
                                special_tokens={"<|endoftext|>": 50256})
    texts = [random_text(rng, 2000) for _ in range(10)] + [shakespeare_text()[:100_000], "a  \n\n  b \t\n", "x   "]
    for t in texts:
        assert classic.encode_ordinary(t) == gpt2.encode(t)


# ----- trained BPE -----
def test_trained_bpe_round_trip(trained, rng):
    assert trained.vocab_size == 400 and trained.eot_token == 0 and trained.kind == "bpe"
    held_out = shakespeare_text()[500_000:520_000]
    ids = trained.encode(held_out)
    assert len(ids) < 0.6 * len(held_out.encode())  # merges compress English text
    assert max(ids) < 400 and trained.decode(ids) == held_out
    for _ in range(10):
        t = random_text(rng)  # characters never seen in training fall back to byte tokens
        ids = trained.encode(t)
        assert trained.decode(ids) == t
        assert trained.decode_bytes(ids) == t.encode("utf-8")


def test_trained_bpe_byte_table(trained):
    """Every byte has its own token, and decoding agrees with the tokenizers library's own decoder."""
    singles = {trained.token_bytes(i) for i in range(trained.vocab_size) if len(trained.token_bytes(i)) == 1}
    assert singles == {bytes([b]) for b in range(256)}
    text = shakespeare_text()[:2000] + " naïve 😀\t\r\n"
    ids = trained.encode(text)
    assert trained._backend[0].decode(ids) == trained.decode(ids) == text


def test_trained_bpe_special_token(trained):
    assert 0 not in trained.encode("x<|endoftext|>y")
    assert trained.decode(trained.encode("x<|endoftext|>y")) == "x<|endoftext|>y"
    assert 0 in trained.encode("x<|endoftext|>y", allow_special=True)
    assert trained.decode([0]) == "<|endoftext|>"


def test_train_from_files_and_errors(tmp_path):
    text = shakespeare_text()[:50_000]
    p = tmp_path / "a.txt"
    p.write_text(text, encoding="utf-8")
    from_path = Tokenizer.train(p, vocab_size=300)
    from_str_path = Tokenizer.train(str(p), vocab_size=300)
    from_texts = Tokenizer.train([text], vocab_size=300)
    sample = text[:3000]
    assert from_path.encode(sample) == from_str_path.encode(sample) == from_texts.encode(sample)
    with pytest.raises(ValueError, match="at least"):
        Tokenizer.train([text], vocab_size=200)
    with pytest.raises(ValueError, match="at most 65536"):
        Tokenizer.train([text], vocab_size=70_000)
    with pytest.raises(FileNotFoundError):
        Tokenizer.train(tmp_path / "missing.txt", vocab_size=300)


# ----- save / load -----
@pytest.mark.parametrize("kind", ["bytes", "gpt2", "bpe"])
def test_save_load(kind, trained, gpt2, tmp_path):
    tok = {"bytes": Tokenizer.bytes(), "gpt2": gpt2, "bpe": trained}[kind]
    tok.save(tmp_path)
    meta = json.loads((tmp_path / tokmod.META_FILE).read_text())
    assert meta["kind"] == kind and meta["vocab_size"] == tok.vocab_size
    back = Tokenizer.load(tmp_path)
    assert (back.kind, back.vocab_size, back.eot_token) == (tok.kind, tok.vocab_size, tok.eot_token)
    text = shakespeare_text()[:5000] + " 😀 é"
    assert back.encode(text) == tok.encode(text)
    assert Tokenizer.from_spec(str(tmp_path)).encode(text) == tok.encode(text)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_load_hf_tokenizer_json_directly(trained, tmp_path):
    trained.save(tmp_path)
    direct = Tokenizer.load(tmp_path / "tokenizer.json")
    assert direct.encode("To be, or not") == trained.encode("To be, or not")
    os.remove(tmp_path / tokmod.META_FILE)
    assert Tokenizer.load(tmp_path).vocab_size == 400  # a folder with only a Hugging Face tokenizer.json


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        Tokenizer.load(tmp_path)
    Tokenizer.bytes().save(tmp_path)
    meta = json.loads((tmp_path / tokmod.META_FILE).read_text())
    (tmp_path / tokmod.META_FILE).write_text(json.dumps(dict(meta, version=99)))
    with pytest.raises(ValueError, match="version 99"):
        Tokenizer.load(tmp_path)
    (tmp_path / tokmod.META_FILE).write_text(json.dumps(dict(meta, kind="words")))
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        Tokenizer.load(tmp_path)
    with pytest.raises(ValueError, match="neither"):
        Tokenizer.from_spec("no-such-tokenizer")


# ----- chunked file encoding -----
@pytest.mark.parametrize("kind", ["bytes", "gpt2", "bpe"])
def test_encode_file_in_chunks_equals_whole(kind, gpt2, trained, rng, tmp_path):
    """Files are cut only where GPT-2's pre-tokenizer would split anyway, so chunking never changes the ids."""
    tok = {"bytes": Tokenizer.bytes(), "gpt2": gpt2, "bpe": trained}[kind]
    lines = []
    for _ in range(300):
        lines.append(random_text(rng, int(rng.integers(0, 30))))
    text = "\n".join(lines) + shakespeare_text()[:3000]
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    whole = tok.encode(text)
    for chunk in (2, 17, 64, 1000):
        assert tok.encode_file(path, chunk_bytes=chunk).tolist() == whole, f"chunk_bytes={chunk}"


# ----- bundled assets -----
def _tampered_assets(tmp_path, name, mutate):
    for fname, _, _ in _assets.ASSETS.values():
        shutil.copy(os.path.join(_assets.ASSET_DIR, fname), tmp_path / fname)
    fname = _assets.ASSETS[name][0]
    raw = gzip.decompress((tmp_path / fname).read_bytes())
    (tmp_path / fname).write_bytes(gzip.compress(mutate(raw)))


def test_tampered_shakespeare_is_refused(tmp_path, monkeypatch):
    _tampered_assets(tmp_path, "tinyshakespeare.txt", lambda b: b.replace(b"First Citizen", b"First Citizeq", 1))
    monkeypatch.setattr(_assets, "ASSET_DIR", str(tmp_path))
    with pytest.raises(_assets.AssetError, match="sha256"):
        shakespeare_text()


def test_tampered_gpt2_ranks_are_refused(tmp_path, monkeypatch):
    _tampered_assets(tmp_path, "gpt2.tiktoken", lambda b: b[:-3] + b"99\n")
    monkeypatch.setattr(_assets, "ASSET_DIR", str(tmp_path))
    with pytest.raises(_assets.AssetError, match="sha256"):
        Tokenizer.gpt2()


def test_missing_or_unreadable_asset(tmp_path, monkeypatch):
    monkeypatch.setattr(_assets, "ASSET_DIR", str(tmp_path))
    with pytest.raises(_assets.AssetError, match="missing"):
        shakespeare_text()
    (tmp_path / "tinyshakespeare.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(_assets.AssetError, match="gzip"):
        shakespeare_text()


def test_shakespeare_text():
    text = shakespeare_text()
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")

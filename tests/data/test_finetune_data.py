"""Fine-tuning data: JSONL reading and its errors, prompt masking, truncation, padded batches and exact resume."""
import json

import numpy as np
import pytest

from gptx.data import FinetuneDataset, encode_pairs, load_jsonl_pairs
from gptx.data_finetune import IGNORE_INDEX
from gptx.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def gpt2():
    return Tokenizer.gpt2()


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_jsonl_pairs(tmp_path):
    p = write_lines(tmp_path / "d.jsonl", [
        json.dumps({"prompt": "Q: 2+2?", "completion": " 4", "id": 7}),
        "",
        json.dumps({"prompt": "héllo 😀", "completion": ""}, ensure_ascii=False),
    ])
    assert load_jsonl_pairs(p) == [("Q: 2+2?", " 4"), ("héllo 😀", "")]


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "a", "completion": "b"', r"d\.jsonl:2: invalid JSON"),
    ('{"prompt": "a"}', r'd\.jsonl:2: missing key "completion"'),
    ('{"completion": "a"}', r'd\.jsonl:2: missing key "prompt"'),
    ('{"prompt": 1, "completion": "b"}', r'd\.jsonl:2: "prompt" must be a string'),
    ('["a", "b"]', r"d\.jsonl:2: expected a JSON object"),
])
def test_load_jsonl_errors_name_the_line(tmp_path, line, message):
    p = write_lines(tmp_path / "d.jsonl", [json.dumps({"prompt": "ok", "completion": "ok"}), line])
    with pytest.raises(ValueError, match=message):
        load_jsonl_pairs(p)


def test_load_jsonl_empty_and_bad_utf8(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="no examples"):
        load_jsonl_pairs(tmp_path / "e.jsonl")
    (tmp_path / "u.jsonl").write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "\xff"}\n')
    with pytest.raises(ValueError, match=r"u\.jsonl:2: not valid UTF-8"):
        load_jsonl_pairs(tmp_path / "u.jsonl")


def test_masking_bytes_tokenizer():
    [(x, y)] = encode_pairs([("ab", "cd")], Tokenizer.bytes(), block_size=16)
    a, b, c, d = (ord(ch) for ch in "abcd")
    assert x.tolist() == [a, b, c, d] and y.tolist() == [IGNORE_INDEX, c, d, 256]  # learns to stop at 256
    assert x.dtype == y.dtype == np.int32
    [(x, y)] = encode_pairs([("", "hi")], Tokenizer.bytes(), block_size=8)  # empty prompt: start from the end token
    assert x.tolist() == [256, ord("h"), ord("i")]
    [(x, y)] = encode_pairs([("ab", "cd")], Tokenizer.bytes(end_of_text=False), block_size=16)
    assert x.tolist() == [a, b, c] and y.tolist() == [IGNORE_INDEX, c, d]  # the older byte tokenizer has no end


def test_masking_gpt2(gpt2):
    [(x, y)] = encode_pairs([{"prompt": "Hello", "completion": " world"}], gpt2, block_size=16)
    assert x.tolist() == [15496, 995] and y.tolist() == [995, 50256]
    pairs = [("The quick brown fox", " jumps over the lazy dog."), ("Q: what is 2+2?\nA:", " 4")]
    for (prompt, completion), (x, y) in zip(pairs, encode_pairs(pairs, gpt2, block_size=64)):
        p, c = gpt2.encode(prompt), gpt2.encode(completion) + [50256]
        assert x.tolist() == (p + c)[:-1]
        assert (y[:len(p) - 1] == IGNORE_INDEX).all()
        assert y[len(p) - 1:].tolist() == c  # every completion token and the end token are learned
    [(x, y)] = encode_pairs([("", "hi")], gpt2, block_size=8)  # empty prompt: start from the end token
    assert x[0] == 50256 and y.tolist() == gpt2.encode("hi") + [50256]
    with pytest.raises(ValueError, match="empty prompt"):
        encode_pairs([("", "hi")], Tokenizer.bytes(end_of_text=False), block_size=8)
    with pytest.raises(ValueError, match="empty completion"):
        encode_pairs([("hi", "")], Tokenizer.bytes(end_of_text=False), block_size=8)


def test_too_long():
    tok = Tokenizer.bytes(end_of_text=False)  # no end token, so the counts below are the texts' lengths
    pairs = [("0123456789", "abc")]
    [(x, y)] = encode_pairs(pairs, tok, block_size=6)
    assert tok.decode(x) == "6789ab" and y.tolist() == [IGNORE_INDEX] * 3 + [ord(ch) for ch in "abc"]
    [(x, y)] = encode_pairs([("p", "abcdefghij")], tok, block_size=4)
    assert tok.decode(x) == "pabc" and tok.decode(y) == "abcd"  # at least one prompt token stays
    assert encode_pairs(pairs, tok, block_size=6, too_long="skip") == []
    with pytest.raises(ValueError, match="exceed"):
        encode_pairs(pairs, tok, block_size=6, too_long="error")
    assert len(encode_pairs(pairs, tok, block_size=12, too_long="error")) == 1  # 13 tokens -> 12 positions fit
    with pytest.raises(ValueError, match="too_long"):
        encode_pairs(pairs, tok, block_size=6, too_long="wrap")


def make_dataset(n=10, seed=0):
    tok = Tokenizer.bytes()
    pairs = [("p" * (1 + i % 3), "c" * (1 + i)) for i in range(n)]
    return FinetuneDataset(encode_pairs(pairs, tok, block_size=32), seed=seed, pad_id=0)


def test_padding():
    ds = make_dataset()
    x, y = next(ds.iter_batches(3))
    lengths = [len(e[0]) for e in ds.examples[:3]]
    assert x.shape == (3, max(lengths)) and x.dtype == np.int32
    for b, n in enumerate(lengths):
        assert (x[b, n:] == 0).all() and (y[b, n:] == IGNORE_INDEX).all()
        np.testing.assert_array_equal(y[b, :n], ds.examples[b][1])
    x, y = ds.get_batch(4, block_size=5)
    assert x.shape[1] <= 5
    x, y = ds.get_batch(4, block_size=20, pad_full=True)
    assert x.shape == (4, 20)


def test_next_batch_is_a_shuffle_per_epoch():
    ds = make_dataset(n=10)
    seen = []
    for _ in range(5):  # 5 batches of 4 = 2 epochs
        x, y = ds.next_batch(4)
        seen += [int((row != IGNORE_INDEX).sum()) for row in y]  # completion + end token = 2 + index
    first, second = seen[:10], seen[10:]
    assert sorted(first) == sorted(second) == list(range(2, 12))
    assert first != second and ds.epoch == 1


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_exact_resume(mode):
    draw = (lambda d: d.get_batch(3)) if mode == "random" else (lambda d: d.next_batch(3))
    ds = make_dataset(n=7, seed=11)
    for _ in range(5):
        draw(ds)
    state = json.loads(json.dumps(ds.state_dict()))
    after = [draw(ds) for _ in range(6)]
    fresh = make_dataset(n=7, seed=0)
    fresh.load_state_dict(state)
    for (x1, y1), (x2, y2) in zip(after, [draw(fresh) for _ in range(6)]):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    with pytest.raises(ValueError, match="saved for 7 examples"):
        make_dataset(n=8).load_state_dict(state)

"""Holes the loaders' fuzzing found in prompt/completion JSONL, tokenizer folders and the JSON readers behind them:
each is now a ValueError naming the file, where it was a traceback of another type, an abort, or a tokenizer that
silently lost text."""
import hashlib
import json
import shutil

import pytest

import gptx
from gptx import data
from gptx.loading import folder_tokenizer
from gptx.tokenizer import Tokenizer

DEEP = "[" * 5000  # past Python's recursion limit: json raises RecursionError, not a JSONDecodeError


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    Tokenizer.train(["the quick brown fox jumps over the lazy dog " * 20], vocab_size=280).save(folder)
    return folder


def copy(folder, tmp_path):
    out = tmp_path / "tok"
    shutil.copytree(folder, out)
    return out


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "a\\ud800", "completion": "b"}', r'"prompt" holds an unpaired surrogate escape \(\\ud800\)'),
    ('{"prompt": "a", "completion": "\\udc00"}', r'"completion" holds an unpaired surrogate escape \(\\udc00\)'),
    (DEEP, "invalid JSON: nested too deeply"),
])
def test_jsonl_pairs_that_cannot_become_text_name_the_line(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "ok", "completion": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"pairs\.jsonl:2: {message}"):
        data.load_jsonl_pairs(path)


def test_tokenizer_ids_shared_by_two_tokens_are_refused(bpe_folder, tmp_path):
    folder = copy(bpe_folder, tmp_path)
    hf = json.loads((folder / "tokenizer.json").read_text())
    vocab = hf["model"]["vocab"]
    vocab["Ê"] = vocab["Ë"]  # two byte tokens, one id: which byte decode gives back would be up to a hash map
    (folder / "tokenizer.json").write_text(json.dumps(hf))
    with pytest.raises(ValueError, match=r"tokenizer\.json: tokens .* both have id"):
        Tokenizer.load(folder)


def test_byte_level_bpe_without_every_byte_is_refused(bpe_folder, tmp_path):
    folder = copy(bpe_folder, tmp_path)
    hf = json.loads((folder / "tokenizer.json").read_text())
    vocab = hf["model"]["vocab"]
    vocab["Ԋ"] = vocab.pop("Ċ")  # the newline byte's symbol renamed: encode would drop every "\n" silently
    (folder / "tokenizer.json").write_text(json.dumps(hf))
    with pytest.raises(ValueError, match=r"tokenizer\.json: a byte-level BPE needs a token for each of the 256 "
                                         r"bytes, but has none for 0x0a \(1 missing\)"):
        Tokenizer.load(folder)


@pytest.mark.parametrize("edit, message", [
    (lambda v: v.update({"Ġthe": 2**31}), "it uses id 2147483648"),  # tokenizers would allocate 2**31 entries
    (lambda v: v.update({"Ġthe": 0}), "some id is given to two tokens"),
    (lambda v: v.update({"Ġthe": "x"}), "expected a JSON object of token -> integer id"),
])
def test_vocab_json_ids_are_checked_before_tokenizers_reads_them(bpe_folder, tmp_path, edit, message):
    folder = tmp_path / "vm"
    folder.mkdir()
    shutil.copy(bpe_folder / "merges.txt", folder)
    vocab = json.loads((bpe_folder / "vocab.json").read_text())
    assert folder_tokenizer(bpe_folder, 280).vocab_size == len(vocab)
    edit(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match=rf"vocab\.json: .*{message}"):
        folder_tokenizer(folder, 280)


def test_tokenizer_meta_file_naming_a_surrogate_is_refused(bpe_folder, tmp_path):
    folder = copy(bpe_folder, tmp_path)
    meta = (folder / "gptx_tokenizer.json").read_text().replace('"tokenizer.json"', '"tok\\udc00.json"')
    (folder / "gptx_tokenizer.json").write_text(meta)
    with pytest.raises(ValueError, match=r"gptx_tokenizer\.json: files\.tokenizer must name a file in the same"):
        Tokenizer.load(folder)


def test_deeply_nested_json_is_a_clear_error_in_every_reader(tmp_path, bpe_folder):
    meta = tmp_path / "gptx_tokenizer.json"
    meta.write_text('{"format": "gptx-tokenizer", "x": ' + DEEP + "}")
    with pytest.raises(ValueError, match="gptx_tokenizer.json is not a tokenizer file: invalid JSON"):
        Tokenizer.load(meta)
    step = gptx.save_checkpoint(tmp_path / "run", gptx.GPT(gptx.GPTConfig(n_layer=1, n_head=1, n_embd=8,
                                                                         block_size=4, vocab_size=16)))
    (step / "state.json").write_text(DEEP)
    manifest = json.loads((step / "manifest.json").read_text())  # vouch for it: the JSON reader itself must refuse
    manifest["files"]["state.json"] = {"sha256": hashlib.sha256(DEEP.encode()).hexdigest(), "bytes": len(DEEP)}
    (step / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="state.json is not valid JSON"):
        gptx.load_checkpoint(step)
    text = tmp_path / "corpus.txt"
    text.write_text("some text to cut into shards " * 40)
    data.prepare([text], tmp_path / "shards", tokenizer="bytes", shard_tokens=500)
    (tmp_path / "shards" / "index.json").write_text(DEEP)
    with pytest.raises(ValueError, match=r"index\.json is corrupt: invalid JSON"):
        data.load_shards(tmp_path / "shards")

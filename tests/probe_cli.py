"""Bad-argument probing of gptx's public Python API and of every `gptx` subcommand.

Each public function or method gets its valid call (a spec below) with one argument at a time replaced by a bad value
of its kind: a number negative, zero, huge, fractional, NaN or infinite, of the wrong type or None; an array of the
wrong dtype or byte order, rank or shape, zero-sized or a list; a path that is missing, empty or of the wrong kind.
The calls run in worker processes (a crash or a hang ends only the worker, which restarts after that case); every
command line runs as its own `python -m gptx` process. Each case is classified:

    clean      a Python exception (ValueError, TypeError, OSError and subclasses) whose message names the argument
               (its name, or the bad path or value); on the command line, exit status != 0 with a one-line error
               (argparse's usage error included) and no traceback
    unclear    an exception that does not name the argument, or of another type
    crash      the process died on a signal
    hang       no answer within the timeout
    traceback  a command line that printed a Python traceback
    silent     the call returned (exit status 0) although the value is invalid
    accepted   the value is valid after all (zero rows, an optional argument's None, ...): not counted against gptx

    python tests/probe_cli.py              # everything; prints the table, exits 1 on any crash/hang/traceback/silent
    python tests/probe_cli.py --fast       # a sample (the normal suite runs it: tests/test_probe_cli.py)
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

MEMORY_CAP = 4 << 30
TIMEOUT = 60.0
BAD = ("unclear", "crash", "hang", "traceback", "silent")

# ---- the API: one valid call per public callable ------------------------------------------------------------------
# Names and argument values are expressions evaluated after SETUP; `valid` lists (argument, label) pairs whose value
# is legitimate for that argument (so their acceptance is not silent).
SETUP = r"""
import os, pathlib, tempfile
import numpy as np
import gptx
from gptx import ops, data
rng = np.random.default_rng(0)
tmp = pathlib.Path(tempfile.mkdtemp(prefix="gptx-probe-"))
os.chdir(tmp)  # a relative or empty path writes here, not into the caller's folder
def f32(*s): return rng.standard_normal(s).astype(np.float32)
cfg = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=300)
model = gptx.GPT(gptx.GPTConfig(**cfg), seed=0)
tok = gptx.Tokenizer.bytes()
idx = np.array([[1, 2, 3, 4]], np.int32)
tokens = (np.arange(2000) % 250).astype(np.uint16)
(tmp / "text.txt").write_text("hello world, this is text. " * 200)
(tmp / "pairs.jsonl").write_text('{"prompt": "a b", "completion": " c"}\n' * 4)
opt = gptx.AdamW(model.named_parameters(), model.grads, flat=model.flat_buffers())
ck = gptx.save_checkpoint(tmp / "run", model, optimizer=opt, tokenizer=tok)
data.prepare([tmp / "text.txt"], tmp / "shards", tokenizer="bytes", shard_tokens=1000)
ds = gptx.TokenDataset(tokens, seed=0)
fds = gptx.FinetuneDataset(data.encode_pairs([("a b", " c")] * 4, tok, 8))
a, b = f32(3, 5), f32(5, 7)
qkv = f32(1, 4, 3, 2, 8)
ln_x, ln_w, ln_b = f32(3, 8), f32(8), f32(8)
logits, targets = f32(4, 300), np.array([1, 2, 3, 4], np.int32)
wte, wpe = f32(300, 16), f32(16, 16)
a_file = tmp / "text.txt"
"""

S = "silent"
API = [
    # (callable, {argument: valid value}, {(argument, label), ...} that are valid too)
    ("gptx.set_num_threads", {"n": "1"}, set()),
    ("gptx.GPTConfig", {"n_layer": "1", "n_head": "2", "n_embd": "16", "block_size": "16", "vocab_size": "300",
                        "layer_norm_epsilon": "1e-5"}, set()),
    ("gptx.GPT", {"config": "gptx.GPTConfig(**cfg)", "seed": "0"}, {("seed", "none"), ("seed", "zero"),
                                                                   ("seed", "huge")}),
    # ids are converted by value (a list, or another byte order, is the same ids)
    ("model.forward", {"idx": "idx", "targets": "idx"},
     {("targets", "none"), ("idx", "zero"), ("idx", "list"), ("idx", "big_endian"), ("targets", "list"),
      ("targets", "big_endian")}),
    ("model.generate", {"prompt_ids": "[1, 2, 3]", "max_new_tokens": "4", "temperature": "0.8", "top_k": "5",
                        "top_p": "0.9", "seed": "1"},
     {("max_new_tokens", "zero"), ("max_new_tokens", "none"), ("temperature", "zero"), ("temperature", "none"),
      ("top_k", "none"),
      ("top_k", "zero"), ("top_p", "none"), ("seed", "none"), ("seed", "zero"), ("top_k", "huge"), ("seed", "neg"),
      ("seed", "huge")}),
    ("model.to", {"device": "'cpu'", "dtype": "'float32'"}, {("dtype", "none")}),  # None: keep the dtype
    ("model.load_state_dict", {"state_dict": "model.state_dict()"}, set()),
    # an output folder is created where missing; "" is the working folder
    ("model.save_pretrained", {"path": "tmp / 'hf'"}, {("path", "missing"), ("path", "a_folder"), ("path", "empty")}),
    ("gptx.GPT.from_pretrained", {"path": "tmp / 'run'"}, set()),
    ("tok.encode", {"text": "'hello'"}, {("text", "empty"), ("text", "junk")}),
    ("tok.decode", {"ids": "[104, 105]"}, {("ids", "zero"), ("ids", "int")}),  # one id alone is a sequence of one
    ("gptx.Tokenizer.train", {"source": "['some text to learn from'] * 10", "vocab_size": "300"},
     {("source", "zero")}),  # no text: the 256 bytes and the special tokens
    ("gptx.Tokenizer.load", {"path": "ck / 'tokenizer'"}, set()),
    ("gptx.Tokenizer.from_spec", {"spec": "'bytes'"}, set()),
    ("gptx.TokenDataset", {"tokens": "tokens", "seed": "0"},
     {("tokens", "list"), ("tokens", "short"), ("tokens", "big_endian"), ("tokens", "zero"), ("seed", "zero"),
      ("seed", "huge"), ("tokens", "neg_id")}),  # too few tokens is refused by the batch that needs them; -1 as
    # uint16 is the id 65535
    ("ds.get_batch", {"batch_size": "2", "block_size": "8"}, set()),
    ("ds.next_batch", {"batch_size": "2", "block_size": "8"}, set()),
    ("fds.next_batch", {"batch_size": "2", "block_size": "8"}, {("block_size", "none"), ("block_size", "huge")}),
    ("gptx.FinetuneDataset", {"examples": "fds.examples", "seed": "0", "pad_id": "0"},
     {("seed", "zero"), ("seed", "huge"), ("pad_id", "zero")}),
    ("data.encode_pairs", {"pairs": "[('a', 'b')]", "tokenizer": "tok", "block_size": "8", "too_long": "'skip'"},
     {("pairs", "zero"), ("block_size", "huge")}),
    ("data.load_jsonl_pairs", {"path": "tmp / 'pairs.jsonl'"}, set()),
    ("data.load_text", {"path": "a_file"}, {("path", "a_file")}),
    # a split of any 1-D sequence (the ids are checked where they are used)
    ("gptx.train_val_split", {"tokens": "tokens", "val_fraction": "0.1"},
     {("val_fraction", "zero"), ("tokens", "list"), ("tokens", "zero"), ("tokens", "short"), ("tokens", "big_endian"),
      ("tokens", "f32"), ("tokens", "neg_id")}),
    ("gptx.load_shards", {"directory": "tmp / 'shards'", "split": "'train'"}, set()),
    ("data.prepare", {"inputs": "[a_file]", "out_dir": "tmp / 'shards2'", "tokenizer": "'bytes'",
                      "shard_tokens": "1000", "val_fraction": "0.1"},
     {("val_fraction", "zero"), ("out_dir", "missing"), ("out_dir", "a_folder"), ("shard_tokens", "huge")}),
    ("gptx.AdamW", {"named_params": "model.named_parameters()", "grads": "model.grads", "lr": "1e-3",
                    "eps": "1e-8", "weight_decay": "0.1"}, {("weight_decay", "zero")}),
    ("gptx.lr_schedule", {"step": "3", "max_steps": "10", "lr": "1e-3", "warmup_steps": "2", "min_lr": "0.0"},
     {("step", "zero"), ("warmup_steps", "zero"), ("min_lr", "zero"), ("step", "huge"), ("max_steps", "zero"),
      ("max_steps", "huge"), ("warmup_steps", "huge")}),
    # max_norm <= 0, None or inf: no clipping (torch's convention)
    ("gptx.clip_grad_norm", {"grads": "model.grads", "max_norm": "1.0"},
     {("max_norm", "inf"), ("max_norm", "neg"), ("max_norm", "none")}),
    ("gptx.TrainConfig", {"steps": "10", "batch_size": "2", "block_size": "8", "lr": "1e-3", "warmup": "2",
                          "grad_accum": "1"},
     {("steps", "zero"), ("warmup", "zero"), ("steps", "huge"), ("warmup", "huge"), ("batch_size", "huge"),
      ("block_size", "huge"), ("grad_accum", "huge")}),  # large sizes fail where memory is asked for
    ("gptx.save_checkpoint", {"out_dir": "tmp / 'ck'", "model": "model", "keep": "2"},
     {("keep", "zero"), ("keep", "huge"), ("out_dir", "missing"), ("out_dir", "a_folder"), ("out_dir", "empty")}),
    ("gptx.load_checkpoint", {"path": "tmp / 'run'"}, {("path", "empty")}),  # the working folder holds one
    ("gptx.load", {"path": "tmp / 'run'", "tokenizer": "'bytes'", "device": "'cpu'", "dtype": "'float32'"},
     {("tokenizer", "none"), ("path", "empty"), ("dtype", "none")}),
    ("gptx.Tensor", {"array": "f32(3, 4)"}, {("array", "zero"), ("array", "f64"), ("array", "i64"),
                                             ("array", "scalar"), ("array", "extra_dim"), ("array", "short"),
                                             ("array", "transposed")}),
    # shapes that are another valid problem: batched a, fewer columns of b, a shorter row, a smaller head
    ("ops.matmul_forward", {"a": "a", "b": "b"}, {("a", "zero"), ("a", "extra_dim"), ("b", "short")}),
    ("ops.softmax_forward", {"inp": "f32(2, 3, 5)", "scale": "1.0"},
     {("inp", "zero"), ("inp", "extra_dim"), ("inp", "short"), ("scale", "neg")}),
    ("ops.attention_forward", {"q": "qkv", "scale": "0.3"}, {("scale", "none"), ("q", "zero"), ("q", "short")}),
    ("ops.layernorm_forward", {"inp": "ln_x", "weight": "ln_w", "bias": "ln_b", "eps": "1e-5"},
     {("inp", "zero"), ("inp", "extra_dim")}),
    ("ops.gelu_forward", {"inp": "f32(3, 4)"}, {("inp", "zero"), ("inp", "extra_dim"), ("inp", "short"),
                                                ("inp", "scalar")}),
    ("ops.add_forward", {"a": "f32(3, 4)", "b": "f32(3, 4)"}, set()),
    ("ops.embedding_forward", {"idx": "idx", "wte": "wte", "wpe": "wpe", "pos_offset": "0"},
     {("idx", "zero"), ("idx", "short"), ("idx", "transposed"), ("pos_offset", "zero")}),
    ("ops.cross_entropy_forward", {"logits": "logits", "targets": "targets"},
     {("logits", "zero"), ("logits", "short")}),  # V = 299 holds every target
    ("ops.global_norm", {"tensors": "[f32(3), f32(4, 2)]"}, {("tensors", "zero")}),
]


def bad_values(value) -> list[tuple[str, str]]:
    """(label, expression) pairs of bad values of the same kind as `value` (the valid argument, evaluated)."""
    import numpy as np

    if isinstance(value, bool):
        return [("str", "'yes'")]
    if isinstance(value, int):
        return [("neg", "-1"), ("zero", "0"), ("huge", "2**62"), ("frac", "1.5"), ("nan", "float('nan')"),
                ("str", "'3'"), ("none", "None")]
    if isinstance(value, float):
        return [("neg", "-1.0"), ("nan", "float('nan')"), ("inf", "float('inf')"), ("str", "'x'"), ("none", "None")]
    if isinstance(value, str):
        return [("empty", "''"), ("junk", "'no-such-thing'"), ("int", "7"), ("none", "None")]
    if isinstance(value, os.PathLike):
        # fresh for every case: what one case writes there must not make the next one's path valid
        return [("missing", "pathlib.Path(tempfile.mkdtemp()) / 'missing'"), ("empty", "''"), ("a_file", "a_file"),
                ("a_folder", "pathlib.Path(tempfile.mkdtemp())"), ("int", "7"), ("none", "None")]
    if isinstance(value, np.ndarray):
        out = [("list", "V.tolist()"), ("extra_dim", "V[None]"), ("scalar", "V.reshape(-1)[:1].reshape(())"),
               ("zero", "V[:0]"), ("short", "np.ascontiguousarray(V[..., :-1])"), ("none", "None"),
               ("big_endian", "V.astype(V.dtype.newbyteorder('>'))")]
        if value.dtype.kind == "f":
            out += [("f64", "V.astype(np.float64)"), ("i64", "V.astype(np.int64)")]
        else:
            out += [("f32", "V.astype(np.float32)"), ("neg_id", "-np.ones_like(V)"), ("huge_id", "V + 2**20")]
        if value.ndim >= 2:
            out.append(("transposed", "V.swapaxes(-1, -2)"))
        return out
    if isinstance(value, (list, tuple)):
        return [("zero", "[]"), ("none", "None"), ("int", "7")]
    return [("none", "None"), ("int", "7"), ("str", "'x'")]


def api_cases() -> list[dict]:
    """Every (callable, argument, bad value): evaluated in a worker, which knows the valid values."""
    ns = {}
    exec(SETUP, ns)
    cases = []
    for name, args, valid in API:
        for arg, expr in args.items():
            value = eval(expr, ns)
            for label, bad in bad_values(value):
                cases.append({"kind": "api", "name": name, "arg": arg, "label": label, "expr": bad,
                              "valid": (arg, label) in valid})
    return cases


def names_argument(message: str, case: dict, bad_value) -> bool:
    """Whether the message says which argument is wrong: the changed one, or (a mismatch between two) another of the
    call's arguments, or the bad path or value itself."""
    text = message.lower()
    args = dict(API[[n for n, _, _ in API].index(case["name"])][1])
    keys = {k for a in args for k in (a.lower(), a.replace("_", " ").lower(), a.replace("_", "-").lower())}
    # a one-letter name ("a", "n") counts quoted, as the native ops write it ("argument 'a'"), or right after the
    # function's name ("set_num_threads: n must be ..."); not as the article "a" of any sentence
    def named(k):
        if len(k) == 1:
            return f"'{k}'" in text or re.search(rf":\s*{k}\b", text) is not None
        return re.search(rf"\b{re.escape(k)}\b", text) is not None

    if any(named(k) for k in keys):
        return True
    return isinstance(bad_value, (str, os.PathLike)) and bool(os.fspath(bad_value)) and \
        os.fspath(bad_value).lower() in text


def run_api_case(ns: dict, case: dict) -> str:
    import numpy as np

    args = {k: eval(v, ns) for k, v in dict(API[[n for n, _, _ in API].index(case["name"])][1]).items()}
    ns["V"] = args[case["arg"]]
    bad = eval(case["expr"], ns)
    args[case["arg"]] = bad
    fn = eval(case["name"], ns)
    threads = ns["gptx"].get_num_threads()
    try:
        with np.errstate(all="ignore"):
            fn(**args)
    except (ValueError, TypeError, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None and e.filename == bad:  # "...: ''" names the path
            return "clean"
        return "clean" if names_argument(str(e), case, bad) else "unclear"
    except Exception:  # noqa: BLE001 (a bare traceback for the user)
        return "unclear"
    finally:
        ns["gptx"].set_num_threads(threads)
    return "accepted" if case["valid"] else "silent"


def api_worker(cases_file: str, start: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    cases = json.loads(Path(cases_file).read_text())
    ns = {}
    exec(SETUP, ns)
    for i in range(start, len(cases)):
        print(f"{i} start", flush=True)
        c = cases[i]
        try:
            outcome = run_api_case(ns, c)
        except Exception as e:  # noqa: BLE001 (the harness failed to build the case)
            outcome = f"unclear:{type(e).__name__}"
        print(f"{i} {outcome}", flush=True)


def run_api(cases: list[dict]) -> list[str]:
    """The outcome of every case, in worker processes restarted after a crash or a hang."""
    outcomes = [None] * len(cases)
    with tempfile.TemporaryDirectory() as tmp:
        cases_file = Path(tmp) / "cases.json"
        cases_file.write_text(json.dumps(cases))
        i = 0
        while i < len(cases):
            proc = subprocess.Popen([sys.executable, __file__, "--api-worker", str(cases_file), "--start", str(i)],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            lines = queue.Queue()
            reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)],
                                      daemon=True)
            reader.start()
            current = i
            while True:
                try:
                    line = lines.get(timeout=TIMEOUT)
                except queue.Empty:  # one case ran past the timeout
                    proc.kill()
                    outcomes[current] = "hang"
                    break
                if line is None:
                    break
                idx, outcome = line.split(maxsplit=1)
                current = int(idx)
                if outcome.strip() != "start":
                    outcomes[current] = outcome.strip().split(":")[0]
            proc.wait()
            reader.join()
            proc.stdout.close()
            if outcomes[current] is None:  # the worker died inside this case
                outcomes[current] = "crash" if proc.returncode < 0 else "unclear"
            i = current + 1
    return outcomes


# ---- the command line ---------------------------------------------------------------------------------------------
def cli_cases(root: Path) -> list[dict]:
    """Misuses of every subcommand: missing files, conflicting flags, out-of-range numbers, unwritable outputs."""
    run, shards, text, jsonl = root / "run", root / "shards", root / "text.txt", root / "pairs.jsonl"
    ro = text / "under-a-file"  # unwritable even for root: its parent is a file
    missing = root / "missing"
    tiny = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
            "--steps", "1", "--eval-every", "0", "--eval-batches", "1", "--threads", "1", "--no-progress"]
    cases = []

    def case(label, *argv, valid=False):
        cases.append({"kind": "cli", "name": argv[0] if argv else "", "label": label, "valid": valid,
                      "argv": [os.fspath(a) for a in argv]})

    # numbers out of range, for every numeric flag
    for flag, bad in [("--steps", "-1"), ("--batch-size", "0"), ("--block-size", "0"), ("--grad-accum", "0"),
                      ("--lr", "nan"), ("--lr", "-1"), ("--min-lr", "inf"), ("--warmup", "-5"),
                      ("--weight-decay", "-0.1"), ("--grad-clip", "nan"), ("--eval-every", "-1"),
                      ("--eval-batches", "0"), ("--ckpt-every", "-1"), ("--keep", "-1"), ("--log-every", "-1"),
                      ("--threads", "0"), ("--threads", "100000"), ("--seed", "-1"), ("--minutes", "nan"),
                      ("--val-fraction", "1.5"), ("--n-layer", "0"), ("--n-head", "x"), ("--n-embd", "1e3"),
                      ("--vocab-size", "-3"), ("--steps", "1e3")]:
        case(f"train {flag}={bad}", "train", *tiny, "--out", root / "o1", f"{flag}={bad}")
    for flag, bad in [("--temperature", "nan"), ("--temperature", "-1"), ("--top-k", "-1"), ("--top-p", "1.5"),
                      ("--top-p", "nan"), ("--min-p", "-0.1"), ("--repetition-penalty", "0"),
                      ("--repetition-penalty", "nan"), ("--presence-penalty", "inf"), ("--frequency-penalty", "nan"),
                      ("--max-new-tokens", "-1"), ("--num-samples", "0"), ("--threads", "0"),
                      ("--threads", "100000"), ("--device", "tpu"), ("--device", "cuda:-1")]:
        case(f"sample {flag}={bad}", "sample", run, "--prompt", "hi", "--max-new-tokens", "2", f"{flag}={bad}")
    for flag, bad in [("--block-size", "0"), ("--batch-size", "0"), ("--threads", "0"), ("--block-size", "99999")]:
        case(f"eval {flag}={bad}", "eval", run, "--data", text, f"{flag}={bad}")
    for flag, bad in [("--shard-tokens", "0"), ("--val-fraction", "-0.1"), ("--val-fraction", "nan")]:
        case(f"prepare {flag}={bad}", "prepare", "-i", text, "-o", root / "p1", "--tokenizer", "bytes",
             f"{flag}={bad}")
    for flag, bad in [("--minutes", "0"), ("--minutes", "nan"), ("--steps", "0"), ("--chars", "-1"),
                      ("--temperature", "nan"), ("--top-k", "-1"), ("--threads", "0")]:
        case(f"demo {flag}={bad}", "demo", "--out", root / "d1", f"{flag}={bad}")
    # missing, wrong-kind and malformed files
    case("train --data missing", "train", *tiny, "--out", root / "o2", "--data", missing)
    case("train --jsonl missing", "train", *tiny, "--out", root / "o3", "--jsonl", missing)
    case("train --jsonl a folder", "train", *tiny, "--out", root / "o4", "--jsonl", root)
    case("train --jsonl not jsonl", "train", *tiny, "--out", root / "o5", "--jsonl", text)
    case("train --init missing", "train", "--init", missing, "--steps", "1", "--out", root / "o6")
    case("train --init a text file", "train", "--init", text, "--steps", "1", "--out", root / "o7")
    case("train --resume missing", "train", "--resume", missing, "--steps", "1")
    case("train --resume not a run", "train", "--resume", root, "--steps", "1")
    case("train --tokenizer missing", "train", *tiny, "--out", root / "o8", "--tokenizer", missing)
    case("train --data shards of a bigger vocab", "train", *tiny, "--out", root / "o9", "--data", shards,
         "--vocab-size", "10")
    case("sample missing checkpoint", "sample", missing, "--prompt", "x")
    case("sample a text file", "sample", text, "--prompt", "x")
    case("sample --tokenizer missing", "sample", run, "--tokenizer", missing, "--prompt", "x")
    case("eval missing data", "eval", run, "--data", missing)
    case("eval missing checkpoint", "eval", missing, "--data", text)
    case("prepare missing input", "prepare", "-i", missing, "-o", root / "p2", "--tokenizer", "bytes")
    case("prepare input is a folder", "prepare", "-i", root, "-o", root / "p3", "--tokenizer", "bytes")
    case("prepare --tokenizer missing", "prepare", "-i", text, "-o", root / "p4", "--tokenizer", missing)
    case("bench --bench-path missing", "bench", "--bench-path", missing)
    # conflicting flags
    case("train --resume with --init", "train", "--resume", run, "--init", run, "--steps", "1")
    case("train --resume with a shape flag", "train", "--resume", run, "--n-layer", "3", "--steps", "1")
    case("train --data with --jsonl", "train", *tiny, "--out", root / "o10", "--data", text, "--jsonl", jsonl)
    case("train --init with a shape flag", "train", "--init", run, "--n-embd", "32", "--steps", "1", "--out",
         root / "o11")
    case("train into an existing run", "train", *tiny, "--out", run)
    case("sample --stream with --num-samples 2", "sample", run, "--prompt", "x", "--stream", "--num-samples", "2",
         "--max-new-tokens", "2", valid=True)  # one sample streamed after the other
    case("sample --seed=-1", "sample", run, "--prompt", "x", "--max-new-tokens", "2", "--seed=-1", valid=True)
    case("sample --dtype bfloat16 on cpu", "sample", run, "--prompt", "x", "--dtype", "bfloat16")
    case("sample prompt longer than the model", "sample", run, "--prompt", "x" * 100, "--max-new-tokens", "2")
    # unwritable outputs
    case("train --out read-only", "train", *tiny, "--out", ro / "run")
    case("train --out is a file", "train", *tiny, "--out", text)
    case("prepare -o read-only", "prepare", "-i", text, "-o", ro / "p", "--tokenizer", "bytes")
    case("prepare -o is a file", "prepare", "-i", text, "-o", text, "--tokenizer", "bytes")
    case("demo --out read-only", "demo", "--out", ro / "d", "--steps", "1", "--chars", "5")
    case("bench --json read-only", "bench", "--json", ro / "b.json", "--list")
    case("info --json with a junk flag", "info", "--json", "--nonsense")
    case("unknown subcommand", "frobnicate")
    return cases


def make_cli_root(root: Path) -> None:
    """A trained run, a text file, pairs and shards for the command-line cases."""
    import numpy as np

    import gptx

    (root / "text.txt").write_text("hello world, this is text. " * 400)
    (root / "pairs.jsonl").write_text('{"prompt": "a b", "completion": " c"}\n' * 4)
    model = gptx.GPT(gptx.GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=257), seed=0)
    opt = gptx.AdamW(model.named_parameters(), model.grads, flat=model.flat_buffers())
    model.forward(np.zeros((1, 4), np.int32), np.ones((1, 4), np.int32))
    model.backward()
    opt.step()
    gptx.save_checkpoint(root / "run", model, optimizer=opt, tokenizer=gptx.Tokenizer.bytes(),
                         state={"step": 1, "train_config": {}})
    gptx.data.prepare([root / "text.txt"], root / "shards", tokenizer="bytes", shard_tokens=2000)


def run_cli_case(case: dict, cwd: Path) -> str:
    import gptx

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(gptx.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("GPTX_NUM_THREADS", "1")
    cmd = [sys.executable, "-c", "import resource, sys, runpy; "
           f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP})); "
           "sys.argv = ['gptx'] + sys.argv[1:]; runpy.run_module('gptx', run_name='__main__')", *case["argv"]]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        return "hang"
    if r.returncode < 0:
        return "crash"
    if "Traceback (most recent call last)" in r.stderr:
        return "traceback"
    if r.returncode == 0:
        return "accepted" if case.get("valid") else "silent"
    lines = [s for s in r.stderr.strip().splitlines() if s.strip()]
    usage = bool(lines) and lines[0].startswith("usage:") and r.returncode == 2
    one_line = usage or len(lines) == 1
    return "clean" if one_line and lines else "unclear"


# ---- report ---------------------------------------------------------------------------------------------------------
def table(cases: list[dict], outcomes: list[str]) -> dict:
    rows = {}
    for c, o in zip(cases, outcomes):
        row = rows.setdefault("command line" if c["kind"] == "cli" else "Python API",
                              {k: 0 for k in ("cases", "clean", "accepted") + BAD})
        row["cases"] += 1
        row[o] += 1
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="a seeded sample of the cases (the suite's slice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["api", "cli"], help="one half of the probe")
    ap.add_argument("--api-worker", metavar="CASES", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.api_worker:
        api_worker(args.api_worker, args.start)
        return 0
    rng = random.Random(args.seed)
    report = {"failures": []}
    cases, outcomes = [], []
    if args.only != "cli":
        api = api_cases()
        if args.fast:
            api = rng.sample(api, min(len(api), 150))
        cases += api
        outcomes += run_api(api)
    if args.only != "api":
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_cli_root(root)
            cli = cli_cases(root)
            if args.fast:
                cli = rng.sample(cli, min(len(cli), 12))
            outcomes += [run_cli_case(c, root) for c in cli]
            cases += cli
    report["table"] = table(cases, outcomes)
    for c, o in zip(cases, outcomes):
        if o in BAD:
            report["failures"].append({**{k: c[k] for k in ("name", "label") if k in c},
                                       **({"arg": c["arg"]} if "arg" in c else {}), "outcome": o})
    width = max(len(k) for k in BAD + ("clean", "accepted"))
    print(f"{'input class':<14} {'cases':>6} " + " ".join(f"{k:>{width}}" for k in ("clean", "accepted") + BAD))
    for name, row in report["table"].items():
        print(f"{name:<14} {row['cases']:>6} " + " ".join(f"{row[k]:>{width}}" for k in ("clean", "accepted") + BAD))
    for f in report["failures"]:
        print("  ", json.dumps(f))
    print(json.dumps(report))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
